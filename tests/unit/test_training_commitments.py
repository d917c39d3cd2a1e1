"""Training on rented compute commits every epoch; a trusted replay of sampled epochs checks them."""

from __future__ import annotations

import hashlib
import io
import json

import torch
from torch import nn

from runtime.config import Settings
from runtime.context import StepContext
from runtime.training import fit


def setup(tmp_path, **kw):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(64, 5, generator=gen)
    y = (x[:, 0] > 0).long()
    net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    ctx = StepContext(run_id="r", node_id="n", cache_key="k" * 64, device="cpu", base_dir=tmp_path,
                      settings=Settings(tmp_path, f"sqlite:///{tmp_path}/x.db"), plan={}, **kw)  # fmt: skip
    return ctx, net, opt, (x, y, x, y)


def test_a_rented_step_commits_every_epoch_and_an_honest_one_replays_exactly(tmp_path):
    ctx, net, opt, data = setup(tmp_path, keep_segments=True)
    fit(ctx, net, opt, data, epochs=4, batch_size=8, seed=1)
    commitments = json.loads((ctx.segments_dir / "commitments.json").read_text())
    assert len(commitments) == 5  # before training, then after each epoch
    for k, c in enumerate(commitments):
        assert hashlib.sha256((ctx.segments_dir / f"epoch-{k}.pt").read_bytes()).hexdigest() == c
    trained = {k: v.clone() for k, v in net.state_dict().items()}

    vctx, vnet, vopt, vdata = setup(tmp_path, verify_epochs=[1, 3, 4])
    fit(vctx, vnet, vopt, vdata, epochs=4, batch_size=8, seed=1)
    assert vctx.verification["ok"] is True and vctx.verification["max_abs_diff"] == 0.0
    assert all(torch.equal(v, trained[k]) for k, v in vnet.state_dict().items())  # ends at the provider's result


def test_skipped_or_altered_work_is_caught_on_replay(tmp_path):
    ctx, net, opt, data = setup(tmp_path, keep_segments=True)
    fit(ctx, net, opt, data, epochs=4, batch_size=8, seed=1)
    folder = ctx.segments_dir
    commitments = json.loads((folder / "commitments.json").read_text())
    # A cheater skips epoch 2: it reports the weights after epoch 1 again, with a matching commitment.
    (folder / "epoch-2.pt").write_bytes((folder / "epoch-1.pt").read_bytes())
    commitments[2] = commitments[1]
    (folder / "commitments.json").write_text(json.dumps(commitments))
    vctx, vnet, vopt, vdata = setup(tmp_path, verify_epochs=[2])
    fit(vctx, vnet, vopt, vdata, epochs=4, batch_size=8, seed=1)
    assert vctx.verification["ok"] is False and vctx.verification["reason"].startswith("epoch 2 replayed")
    # A checkpoint swapped after committing does not match its commitment.
    state = torch.load(io.BytesIO((folder / "epoch-3.pt").read_bytes()), weights_only=True)
    state["loss"] = 0.0
    buf = io.BytesIO()
    torch.save(state, buf)
    (folder / "epoch-3.pt").write_bytes(buf.getvalue())
    vctx, vnet, vopt, vdata = setup(tmp_path, verify_epochs=[4])
    fit(vctx, vnet, vopt, vdata, epochs=4, batch_size=8, seed=1)
    assert vctx.verification == {**vctx.verification, "ok": False,
                                 "reason": "the checkpoint after epoch 3 does not match its commitment"}  # fmt: skip


def _weights(net) -> dict:
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_segments_finer_than_an_epoch_train_exactly_as_epochs_do_and_replay_exactly(tmp_path):
    ref_ctx, ref_net, ref_opt, data = setup(tmp_path / "ref", keep_segments=True)
    ref_loss = fit(ref_ctx, ref_net, ref_opt, data, epochs=3, batch_size=8, seed=1)  # 8 batches per epoch
    ctx, net, opt, data = setup(tmp_path / "seg", keep_segments=True, segment_batches=3)
    loss = fit(ctx, net, opt, data, epochs=3, batch_size=8, seed=1)
    assert loss == ref_loss and all(torch.equal(v, _weights(ref_net)[k]) for k, v in net.state_dict().items())
    commitments = json.loads((ctx.segments_dir / "commitments.json").read_text())
    assert len(commitments) == 1 + 3 * 3  # the start, then 3 segments (3 + 3 + 2 batches) per epoch
    # The end of each epoch is the same state either way (same bytes, same commitment).
    ref = json.loads((ref_ctx.segments_dir / "commitments.json").read_text())
    assert [commitments[3], commitments[6], commitments[9]] == ref[1:]

    vctx, vnet, vopt, vdata = setup(tmp_path / "seg", verify_epochs=list(range(1, 10)), segment_batches=3)
    fit(vctx, vnet, vopt, vdata, epochs=3, batch_size=8, seed=1)
    found = vctx.verification
    assert found["ok"] is True and found["max_abs_diff"] == 0.0 and (found["segments"], found["epochs"]) == (9, 3)


def test_a_run_resumed_mid_epoch_ends_exactly_where_an_uninterrupted_one_does(tmp_path):
    import shutil

    ctx, net, opt, data = setup(tmp_path / "a", keep_segments=True, segment_batches=3)
    fit(ctx, net, opt, data, epochs=3, batch_size=8, seed=1)
    # Another machine resumes from the state after segment 5 (epoch 2, after 6 of its 8 batches).
    rctx, rnet, ropt, rdata = setup(tmp_path / "b", keep_segments=True, segment_batches=3)
    shutil.copy(ctx.segments_dir / "epoch-5.pt", rctx.work_dir / "checkpoint.pt")
    fit(rctx, rnet, ropt, rdata, epochs=3, batch_size=8, seed=1)
    assert all(torch.equal(v, _weights(net)[k]) for k, v in rnet.state_dict().items())
    resumed = json.loads((rctx.segments_dir / "commitments.json").read_text())
    original = json.loads((ctx.segments_dir / "commitments.json").read_text())
    assert resumed[5:] == original[5:] and resumed[:5] == [""] * 5  # it commits from where it resumed


def test_a_faked_segment_inside_an_epoch_is_caught_and_named(tmp_path):
    ctx, net, opt, data = setup(tmp_path, keep_segments=True, segment_batches=3)
    fit(ctx, net, opt, data, epochs=3, batch_size=8, seed=1)
    folder = ctx.segments_dir
    commitments = json.loads((folder / "commitments.json").read_text())
    honest = commitments[5]
    state = torch.load(folder / "epoch-5.pt", weights_only=True)
    state["module"] = {k: v + 1e-2 if v.is_floating_point() else v for k, v in state["module"].items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    (folder / "epoch-5.pt").write_bytes(buf.getvalue())
    commitments[5] = hashlib.sha256(buf.getvalue()).hexdigest()
    (folder / "commitments.json").write_text(json.dumps(commitments))
    vctx, vnet, vopt, vdata = setup(tmp_path, verify_epochs=[4, 5], segment_batches=3)
    fit(vctx, vnet, vopt, vdata, epochs=3, batch_size=8, seed=1)
    found = vctx.verification
    assert found["ok"] is False and found["reason"].startswith("segment 5 (epoch 2, part 2 of 3) replayed to weights")
    assert (found["segment"], found["epoch"], found["committed_hash"]) == (5, 2, commitments[5])
    assert found["replayed_hash"] == honest  # the replay is the honest work, bit for bit


def test_work_is_checked_and_continued_as_it_was_cut_whatever_is_asked_later(tmp_path):
    # Committed per epoch (e.g. a cached step from an earlier run); a later run asks for segments of 2 steps.
    ctx, net, opt, data = setup(tmp_path, keep_segments=True)
    fit(ctx, net, opt, data, epochs=2, batch_size=8, seed=1)
    vctx, vnet, vopt, vdata = setup(tmp_path, verify_epochs=[1, 2], segment_batches=2)
    fit(vctx, vnet, vopt, vdata, epochs=2, batch_size=8, seed=1)
    found = vctx.verification
    assert found["ok"] is True and (found["segments"], found["epochs"]) == (2, 2)
    # Training two more epochs under the new request keeps cutting per epoch (the commitments stay consistent).
    rctx, rnet, ropt, rdata = setup(tmp_path, keep_segments=True, segment_batches=2)
    fit(rctx, rnet, ropt, rdata, epochs=4, batch_size=8, seed=1)
    assert len(json.loads((ctx.segments_dir / "commitments.json").read_text())) == 5
    wctx, wnet, wopt, wdata = setup(tmp_path, verify_epochs=[3, 4])
    fit(wctx, wnet, wopt, wdata, epochs=4, batch_size=8, seed=1)
    assert wctx.verification["ok"] is True


def test_accuracy_and_confusion_are_measured_in_batches_with_the_one_pass_result():
    import torch

    from runtime.training import EVAL_BATCH, accuracy, confusion_matrix

    torch.manual_seed(0)
    module = torch.nn.Linear(8, 3).eval()
    x, y = torch.randn(EVAL_BATCH * 3 + 7, 8), torch.randint(0, 3, (EVAL_BATCH * 3 + 7,))
    calls = []
    module.register_forward_hook(lambda m, args, out: calls.append(len(args[0])))
    with torch.no_grad():
        one_pass = module(x).argmax(dim=-1)
    calls.clear()
    assert accuracy(module, x, y) == float((one_pass == y).float().mean())
    assert max(calls) == EVAL_BATCH and sum(calls) == len(x)  # never the whole set at once
    matrix = confusion_matrix(module, x, y, 3)
    assert sum(map(sum, matrix)) == len(x) and sum(matrix[i][i] for i in range(3)) == int((one_pass == y).sum())
    assert accuracy(module, x[:0], y[:0]) == 0.0 and confusion_matrix(module, x[:0], y[:0], 3) == [[0] * 3] * 3


def test_a_cosine_schedule_is_followed_by_resumes_and_replays_exactly(tmp_path):
    import shutil

    from runtime.training import cosine_groups

    def cosine(tmp, **kw):
        ctx, net, _, data = setup(tmp, **kw)
        return ctx, net, torch.optim.Adam(cosine_groups(net.parameters(), 0.02, 4)), data

    ctx, net, opt, data = cosine(tmp_path / "a", keep_segments=True, segment_batches=3)
    fit(ctx, net, opt, data, epochs=4, batch_size=8, seed=1)
    # Each epoch's rate is set from its number: 0.02 × (1 + cos(π e / 4)) / 2 for e = 0 … 3.
    rates = [torch.load(ctx.segments_dir / f"epoch-{3 * e + 1}.pt", weights_only=True)["optimizer"]["param_groups"]
             [0]["lr"] for e in range(4)]  # fmt: skip
    assert [round(r, 6) for r in rates] == [0.02, 0.017071, 0.01, 0.002929]
    ref_ctx, ref_net, ref_opt, ref_data = setup(tmp_path / "constant", keep_segments=True, segment_batches=3)
    fit(ref_ctx, ref_net, ref_opt, ref_data, epochs=4, batch_size=8, seed=1)
    assert not all(torch.equal(v, _weights(ref_net)[k]) for k, v in net.state_dict().items())  # it changed training
    # Resumed on another machine mid-epoch 3, it ends where the uninterrupted run did; a verifier replays any segment.
    rctx, rnet, ropt, rdata = cosine(tmp_path / "b", keep_segments=True, segment_batches=3)
    shutil.copy(ctx.segments_dir / "epoch-8.pt", rctx.work_dir / "checkpoint.pt")
    fit(rctx, rnet, ropt, rdata, epochs=4, batch_size=8, seed=1)
    assert all(torch.equal(v, _weights(net)[k]) for k, v in rnet.state_dict().items())
    vctx, vnet, vopt, vdata = cosine(tmp_path / "a", verify_epochs=[2, 7, 12], segment_batches=3)
    fit(vctx, vnet, vopt, vdata, epochs=4, batch_size=8, seed=1)
    assert vctx.verification["ok"] is True and vctx.verification["max_abs_diff"] == 0.0
