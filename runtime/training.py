"""The mini-batch training loop every classifier block shares: seeded epochs, per-epoch metrics, and a
checkpoint after each epoch so a killed run resumes where it stopped (with the same result)."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from builder.files import atomic_write_bytes
from runtime.context import StepContext
from runtime.verification import checkpoint_hash, state_bytes

EVAL_BATCH = 128  # examples per forward pass when measuring (fastest of 32-512 here for the speech model)


def predicted_classes(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The highest-scoring class of every example, in batches: one pass over thousands of audio clips held ~1 GB of
    activations and took 2.6× a whole training epoch (measured on 5,724 clips: 24 s in one pass, 4.1 s in batches
    of 128, 9.4 s for a training epoch)."""
    with torch.no_grad():
        if len(x) <= EVAL_BATCH:
            return module(x).argmax(dim=-1)
        return torch.cat([module(x[i : i + EVAL_BATCH]).argmax(dim=-1) for i in range(0, len(x), EVAL_BATCH)])


def accuracy(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of `x` whose highest-scoring class is `y` (0 for no examples)."""
    return float((predicted_classes(module, x) == y).float().mean()) if len(y) else 0.0


def confusion_matrix(module: nn.Module, x: torch.Tensor, y: torch.Tensor, classes: int) -> list[list[int]]:
    """Counts of (true class row, predicted class column) on (x, y)."""
    predicted = predicted_classes(module, x).cpu().tolist() if len(y) else []
    matrix = [[0] * classes for _ in range(classes)]
    for truth, guess in zip(y.cpu().tolist(), predicted, strict=True):
        matrix[truth][guess] += 1
    return matrix


def baseline_accuracy(train_y: torch.Tensor, eval_y: torch.Tensor) -> float:
    """Accuracy on `eval_y` of the trivial model that always answers the training set's most common class (what a
    dataset's models must beat for its data to count as worth anything in Proof-of-Value rewards)."""
    if len(eval_y) == 0 or len(train_y) == 0:
        return 0.0
    majority = int(torch.bincount(train_y.flatten().cpu()).argmax())
    return round(float((eval_y.cpu() == majority).float().mean()), 6)


def class_probabilities(module: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Softmax of the classifier's scores for every example (rows × classes), in batches, as numpy."""
    with torch.no_grad():
        parts = [torch.softmax(module(x[i : i + EVAL_BATCH]), dim=-1).cpu() for i in range(0, len(x), EVAL_BATCH)]
    return torch.cat(parts).numpy() if parts else np.zeros((0, 0), np.float32)


def classifier_metrics(
    module: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    classes: int,
    loss: float,
    epochs: int,
    labels: Sequence[str] | None = None,
    example: Callable[[int], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A trained classifier's run metrics: accuracy on both splits, the trivial baseline's, last loss, sizes and the
    confusion matrix; with `labels`, its `evaluation` on the held-out split (runtime/evaluation.py; `example(i)`:
    held-out row i as its user knows it)."""
    from runtime.evaluation import classification_evaluation

    x, y, ex, ey = data
    metrics = {
        "accuracy": round(accuracy(module, ex, ey), 6),
        "baseline_accuracy": baseline_accuracy(y, ey),
        "train_accuracy": round(accuracy(module, x, y), 6),
        "loss": round(loss, 6) if loss == loss else None,
        "eval_examples": len(ey),
        "classes": classes,
        "epochs": epochs,
    }
    if labels is None or not len(ey):
        return {**metrics, "confusion_matrix": confusion_matrix(module, ex, ey, classes)}
    # One pass over the held-out split gives the evaluation and its confusion matrix (the same counts).
    started = time.perf_counter()
    evaluation = classification_evaluation(ey.cpu().numpy(), class_probabilities(module, ex), labels, example)
    evaluation["seconds"] = round(time.perf_counter() - started, 4)  # what it added to the run (eval_overhead)
    return {**metrics, "confusion_matrix": evaluation["confusion_matrix"], "evaluation": evaluation}


class WithSoftmax(nn.Module):
    """A classifier's served graph: the network's logits turned into probabilities."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=-1)


def fit(
    ctx: StepContext,
    module: nn.Module,
    opt: torch.optim.Optimizer,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    loss_fn: nn.Module | None = None,
    score: tuple[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], float]] | None = None,
) -> float:
    """Train `module` on (train x, train y, eval x, eval y); the last epoch's mean loss.

    The loss is cross-entropy unless `loss_fn` is given; `score` (name, function) is measured on both
    splits after every epoch (default: accuracy). Logs `loss`, `train_<name>` and `<name>` per epoch.
    On rented compute every segment's state is committed (an epoch, or `ctx.segment_batches` optimiser steps).
    """
    x, y, ex, ey = data
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    name, measure = score or ("accuracy", accuracy)
    if ctx.verify_epochs is not None:  # the segments are those the provider committed, whatever is asked now
        seg = _recorded_layout(ctx) or 0
        return _verify(ctx, module, opt, x, y, loss_fn, seed, batch_size, seg)
    if ctx.remote is not None:  # rented compute: a provider trains it over the provider protocol
        final = ctx.remote.train(ctx, module, opt, data, epochs=epochs, batch_size=batch_size, seed=seed,
                                 loss_fn=loss_fn, score=score)  # fmt: skip
        module.load_state_dict(final["module"])
        opt.load_state_dict(final["optimizer"])
        module.eval()
        return float(final.get("loss", float("nan")))
    seg = ctx.segment_batches if ctx.keep_segments else 0
    ckpt_path = ctx.work_dir / "checkpoint.pt"
    start_epoch, start_chunk, loss_value, partial, rng = 0, 0, float("nan"), 0.0, None
    if ckpt_path.exists():  # resume where a killed or preempted run stopped
        state = torch.load(ckpt_path, map_location=ctx.device, weights_only=True)
        module.load_state_dict(state["module"] if "module" in state else state["head"])
        opt.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"])
        start_chunk = int(state.get("chunk", 0))
        loss_value = float(state.get("loss", float("nan")))
        partial, rng = float(state.get("partial", 0.0)), state.get("rng")
        if start_epoch or start_chunk:  # (a leased step starts from the coordinator's initial state: not a resume)
            ctx.log_metric("resumed_from_epoch", start_epoch)
        recorded = _recorded_layout(ctx) if ctx.keep_segments else None
        # Work goes on cut as it was begun: mid-epoch, that epoch's segments; else the layout already committed.
        seg = int(state["segment_batches"]) if start_chunk else (recorded if recorded is not None else seg)
        per_epoch = segments_per_epoch(len(y), batch_size, seg)
        if ctx.keep_segments:  # recommit the state it resumes from (another provider may have written it)
            _write_layout(ctx, seg)
            _commit(ctx, start_epoch * per_epoch + start_chunk, ckpt_path.read_bytes())
    elif ctx.keep_segments:
        _write_layout(ctx, seg)
        _commit(ctx, 0, state_bytes(module, opt, epoch=0, loss=loss_value))
    per_epoch = segments_per_epoch(len(y), batch_size, seg)

    for epoch in range(start_epoch, epochs):
        if per_epoch == 1:
            loss_value = _epoch(module, opt, x, y, loss_fn, seed, epoch, batch_size, ctx.device)
        else:  # segments inside the epoch: each boundary's state (with the random state) is kept and committed
            first = start_chunk if epoch == start_epoch else 0
            total = partial if first else 0.0
            order = _begin_epoch(module, opt, y, seed, epoch, None if not first else rng)
            for chunk in range(first, per_epoch):
                lo, hi = _chunk_batches(len(y), batch_size, seg, chunk)
                total += _batches(module, opt, x, y, loss_fn, order, lo, hi, batch_size, ctx.device)
                if chunk < per_epoch - 1:
                    state = _mid_state(module, opt, epoch, chunk + 1, total, seg)
                    atomic_write_bytes(ckpt_path, state)
                    if ctx.keep_segments:
                        _commit(ctx, epoch * per_epoch + chunk + 1, state)
            loss_value = total / len(y)
        module.eval()
        ctx.log_metric("loss", loss_value, epoch + 1)
        ctx.log_metric(f"train_{name}", measure(module, x, y), epoch + 1)
        if len(ey):  # without evaluation rows (cross-validation is measured after) there is nothing to log
            ctx.log_metric(name, measure(module, ex, ey), epoch + 1)
        state = state_bytes(module, opt, epoch=epoch + 1, loss=loss_value)
        atomic_write_bytes(ckpt_path, state)
        if ctx.keep_segments:
            _commit(ctx, (epoch + 1) * per_epoch, state)
        ctx.progress(epoch + 1, epochs, f"epoch {epoch + 1}/{epochs}")
    module.eval()
    return loss_value


def fit_quietly(
    module: nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    device: str,
    loss_fn: nn.Module | None = None,
) -> float:
    """Train `module` on (x, y) exactly as `fit` would, but with no checkpoint, commitment, log or progress: for
    models that are measured and thrown away (cross-validation folds), never for the one that is served."""
    loss_value = float("nan")
    for epoch in range(epochs):
        loss_value = _epoch(module, opt, x, y, loss_fn or nn.CrossEntropyLoss(), seed, epoch, batch_size, device)
    module.eval()
    return loss_value


def segments_per_epoch(examples: int, batch_size: int, segment_batches: int) -> int:
    """How many verified segments an epoch is cut into: 1, or one per `segment_batches` optimiser steps."""
    batches = max(1, math.ceil(examples / batch_size))
    return 1 if segment_batches <= 0 else math.ceil(batches / segment_batches)


def _chunk_batches(examples: int, batch_size: int, segment_batches: int, chunk: int) -> tuple[int, int]:
    """The batch range [lo, hi) of segment `chunk` of an epoch."""
    batches = max(1, math.ceil(examples / batch_size))
    return chunk * segment_batches, min((chunk + 1) * segment_batches, batches)


def cosine_groups(params: Iterable[nn.Parameter], lr: float, epochs: int) -> list[dict[str, Any]]:
    """Optimiser parameter groups whose learning rate falls from `lr` to 0 along a half cosine over `epochs`. The
    schedule lives in the groups (so in the optimiser's state): a resumed run, a provider training it and a
    verifier replaying one segment all set each epoch's rate from its number alone."""
    return [{"params": list(params), "lr": lr, "base_lr": lr, "cosine_epochs": epochs}]


def _schedule(opt: torch.optim.Optimizer, epoch: int) -> None:
    """Set the learning rate of every scheduled group (cosine_groups) for `epoch`."""
    for g in opt.param_groups:
        if "cosine_epochs" in g:
            done = min(epoch, g["cosine_epochs"]) / max(1, g["cosine_epochs"])
            g["lr"] = g["base_lr"] * 0.5 * (1 + math.cos(math.pi * done))


def _begin_epoch(module: nn.Module, opt, y: torch.Tensor, seed: int, epoch: int, rng: torch.Tensor | None):
    """Set up an epoch (or its continuation): train mode, the learning rate, the random state, and the epoch's
    example order."""
    module.train()
    _schedule(opt, epoch)
    epoch_seed = seed * 100_003 + epoch
    if rng is None:
        torch.manual_seed(epoch_seed)
    else:  # mid-epoch: continue the random stream (dropout) exactly where the segment boundary left it
        torch.set_rng_state(rng.cpu() if rng.device.type != "cpu" else rng)
    return torch.randperm(len(y), generator=torch.Generator().manual_seed(epoch_seed))


def _batches(module, opt, x, y, loss_fn, order, lo: int, hi: int, batch_size: int, device: str) -> float:
    """Train on batches lo..hi-1 of `order`; the sum of their losses weighted by batch size."""
    total = 0.0
    for b in range(lo, hi):
        idx = order[b * batch_size : (b + 1) * batch_size].to(device)
        opt.zero_grad()
        loss = loss_fn(module(x[idx]), y[idx])
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
    return total


def _mid_state(
    module: nn.Module, opt: torch.optim.Optimizer, epoch: int, chunk: int, partial: float, segment_batches: int
) -> bytes:
    """The state at a boundary inside an epoch: what resuming or replaying the next segment needs."""
    return state_bytes(module, opt, epoch=epoch, chunk=chunk, partial=partial, rng=torch.get_rng_state(),
                       segment_batches=segment_batches)  # fmt: skip


def _recorded_layout(ctx: StepContext) -> int | None:
    """The segment size a step's committed work was cut into: from its layout file, 0 for work committed per
    epoch before layouts were recorded, None when nothing was committed."""
    import json

    folder = ctx.segments_dir
    try:
        return int(json.loads((folder / "layout.json").read_text())["segment_batches"])
    except (OSError, ValueError, KeyError):
        return 0 if (folder / "commitments.json").exists() else None


def _write_layout(ctx: StepContext, segment_batches: int) -> None:
    import json

    ctx.segments_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(ctx.segments_dir / "layout.json", json.dumps({"segment_batches": segment_batches}).encode())


def _epoch(module, opt, x, y, loss_fn, seed: int, epoch: int, batch_size: int, device: str) -> float:
    """One training epoch; its mean loss. Its order and dropout masks depend only on (seed, epoch), so a
    resumed run repeats it exactly and a verifier can replay it from the checkpoint before it."""
    order = _begin_epoch(module, opt, y, seed, epoch, None)
    batches = max(1, math.ceil(len(y) / batch_size))
    return _batches(module, opt, x, y, loss_fn, order, 0, batches, batch_size, device) / len(y)


def _commit(ctx: StepContext, segment: int, state: bytes) -> None:
    """Keep the state after `segment` (0: before training) and append its sha256 to the step's commitments."""
    import json

    folder = ctx.segments_dir
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / f"epoch-{segment}.pt", state)
    path = folder / "commitments.json"
    commitments = json.loads(path.read_text()) if path.exists() else []
    del commitments[segment:]  # a resumed step recommits from where it resumed
    commitments += [""] * (segment - len(commitments))  # a segment lost to a crash cannot be verified
    commitments.append(checkpoint_hash(state))
    atomic_write_bytes(path, json.dumps(commitments).encode())


def _verify(ctx: StepContext, module, opt, x, y, loss_fn, seed: int, batch_size: int, seg: int) -> float:
    """Replay the segments in ctx.verify_epochs from the provider's checkpoints and compare (runtime/verification);
    the module ends with the provider's final weights. Findings go to ctx.verification."""
    import json
    import time

    from runtime.verification import TOLERANCE, max_abs_diff

    started = time.perf_counter()
    per_epoch = segments_per_epoch(len(y), batch_size, seg)
    folder = ctx.segments_dir
    commitments = json.loads((folder / "commitments.json").read_text())
    n = len(commitments) - 1
    found: dict[str, Any] = {"epochs": n // per_epoch, "segments": n, "checked": sorted(ctx.verify_epochs), "ok": True}

    def load(k: int) -> bytes:
        data = (folder / f"epoch-{k}.pt").read_bytes()
        if checkpoint_hash(data) != commitments[k]:
            raise ValueError(f"the checkpoint after {_segment_name(k, per_epoch)} does not match its commitment")
        return data

    try:
        for k in sorted(ctx.verify_epochs):
            epoch, chunk = divmod(k - 1, per_epoch)
            before = torch.load(io.BytesIO(load(k - 1)), map_location=ctx.device, weights_only=True)
            module.load_state_dict(before["module"])
            opt.load_state_dict(before["optimizer"])
            if per_epoch == 1:
                loss = _epoch(module, opt, x, y, loss_fn, seed, epoch, batch_size, ctx.device)
                replayed = state_bytes(module, opt, epoch=k, loss=loss)
            else:
                order = _begin_epoch(module, opt, y, seed, epoch, before["rng"] if chunk else None)
                lo, hi = _chunk_batches(len(y), batch_size, seg, chunk)
                total = (float(before["partial"]) if chunk else 0.0) + _batches(
                    module, opt, x, y, loss_fn, order, lo, hi, batch_size, ctx.device
                )
                last = chunk == per_epoch - 1
                replayed = (
                    state_bytes(module, opt, epoch=epoch + 1, loss=total / len(y))
                    if last
                    else _mid_state(module, opt, epoch, chunk + 1, total, seg)
                )
            diff = max_abs_diff(module, load(k))
            found["max_abs_diff"] = max(found.get("max_abs_diff", 0.0), diff)
            if not diff <= TOLERANCE:
                found.update(ok=False, reason=f"{_segment_name(k, per_epoch)} replayed to weights {diff:.2e} away "
                             f"from the committed ones (tolerance {TOLERANCE:.0e})", epoch=epoch + 1, segment=k,
                             committed_hash=commitments[k],
                             # The replay's own checkpoint hash: the evidence a slash sets against the commitment.
                             replayed_hash=checkpoint_hash(replayed))  # fmt: skip
                break
        final = torch.load(io.BytesIO(load(n)), map_location=ctx.device, weights_only=True)
    except (OSError, ValueError, KeyError, IndexError, RuntimeError) as exc:
        found.update(ok=False, reason=str(exc))
        final = None
    if final is not None:
        module.load_state_dict(final["module"])
    found["seconds"] = round(time.perf_counter() - started, 3)
    ctx.verification.update(found)
    module.eval()
    return float(final["loss"]) if final is not None else float("nan")


def _segment_name(k: int, per_epoch: int) -> str:
    """How findings name segment k: `epoch k` when segments are epochs, else its epoch and part."""
    if per_epoch == 1:
        return f"epoch {k}"
    epoch, chunk = divmod(k - 1, per_epoch)
    return f"segment {k} (epoch {epoch + 1}, part {chunk + 1} of {per_epoch})"


__all__ = [
    "WithSoftmax",
    "accuracy",
    "baseline_accuracy",
    "classifier_metrics",
    "class_probabilities",
    "confusion_matrix",
    "cosine_groups",
    "fit",
    "fit_quietly",
]
