"""Verification of untrusted work: an honest worker passes, cheating workers are caught by spot-check replays."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from runtime.verification import (
    SegmentedTrainer,
    WorkLog,
    choose_segments,
    detection_probability,
    max_abs_diff,
    train_honestly,
    verify,
    weights_hash,
)

EPOCHS = 3


def make_trainer(seed: int = 0) -> SegmentedTrainer:
    torch.manual_seed(123)
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(96, 6, generator=gen)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 0.5).long()
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    return SegmentedTrainer(net, opt, x, y, batch_size=16, seed=seed, segment_steps=2)


def cheat(kind: str, faked: set[int]) -> WorkLog:
    """A worker that fakes the segments in `faked` and trains the others honestly from wherever it is."""
    t = make_trainer()
    checkpoints = [t.state()]
    for k in range(t.n_segments(EPOCHS)):
        if k in faked:
            if kind == "random":
                with torch.no_grad():
                    for prm in t.module.parameters():
                        prm.copy_(torch.randn_like(prm))
            elif kind == "noise":
                t.run_segment(k, EPOCHS)
                with torch.no_grad():
                    for prm in t.module.parameters():
                        prm.add_(torch.randn_like(prm) * 1e-3)
            # "skip": the state is left as it was
        else:
            t.run_segment(k, EPOCHS)
        checkpoints.append(t.state())
    return WorkLog(checkpoints)


def test_segments_replay_exactly_from_the_checkpoint_before_them():
    honest = train_honestly(make_trainer(), EPOCHS)
    n = make_trainer().n_segments(EPOCHS)
    assert n == 9 and len(honest.checkpoints) == n + 1  # 96 / 16 = 6 steps per epoch, 2 per segment
    replayer = make_trainer()
    for k in (0, 4, 8):  # any segment, mid-epoch included (dropout is seeded per step)
        replayer.load(honest.checkpoints[k])
        replayer.run_segment(k, EPOCHS)
        assert weights_hash(replayer.module) == weights_of(honest.checkpoints[k + 1])
        assert max_abs_diff(replayer.state(), honest.checkpoints[k + 1]) == 0.0
    replayer.load(honest.checkpoints[4])
    replayer.run_segment(5, EPOCHS)  # the wrong segment from that checkpoint gives other weights
    assert max_abs_diff(replayer.state(), honest.checkpoints[5]) > 1e-4


def weights_of(data: bytes) -> str:
    t = make_trainer()
    t.load(data)
    return weights_hash(t.module)


def test_an_honest_worker_passes_even_a_full_check():
    log = train_honestly(make_trainer(), EPOCHS)
    verdict = verify(make_trainer, log, EPOCHS, rate=1.0, secret=b"s")
    assert verdict.ok and verdict.checked == list(range(9)) and verdict.max_abs_diff == 0.0


@pytest.mark.parametrize("kind", ["skip", "random", "noise"])
def test_a_faked_segment_is_caught_when_it_is_checked(kind):
    log = cheat(kind, {5})
    verdict = verify(make_trainer, log, EPOCHS, rate=1.0, secret=b"s")
    assert not verdict.ok and verdict.bad_segment == 5
    assert verdict.reason.startswith("segment 5 replayed to weights") and "tolerance 1e-04" in verdict.reason


def test_a_checkpoint_swapped_after_committing_is_caught():
    log = train_honestly(make_trainer(), EPOCHS)
    forged = WorkLog(list(log.checkpoints), list(log.commitments))
    forged.checkpoints[3] = cheat("random", {2}).checkpoints[3]
    verdict = verify(make_trainer, forged, EPOCHS, rate=1.0, secret=b"s")
    assert not verdict.ok and verdict.reason == "checkpoint 3 does not match its commitment"
    short = WorkLog(log.checkpoints[:-1])
    assert "expected 10 checkpoints" in verify(make_trainer, short, EPOCHS, rate=1.0, secret=b"s").reason


def test_the_sample_depends_on_the_verifiers_secret_and_the_commitments():
    a = choose_segments(1000, 0.1, "root-1", b"secret-a")
    assert a == choose_segments(1000, 0.1, "root-1", b"secret-a")  # reproducible by the verifier
    assert a != choose_segments(1000, 0.1, "root-1", b"secret-b")
    assert a != choose_segments(1000, 0.1, "root-2", b"secret-a")
    assert 60 < len(a) < 140
    assert detection_probability(500, 50, 0.1) == pytest.approx(1 - 0.9**50)


def test_log_root_changes_with_any_commitment():
    log = train_honestly(make_trainer(), EPOCHS)
    other = WorkLog(log.checkpoints[:-1] + [io.BytesIO(b"x").getvalue()])
    assert log.root != other.root
