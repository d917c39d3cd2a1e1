"""The mini-batch training loop every classifier block shares: seeded epochs, per-epoch metrics, and a
checkpoint after each epoch so a killed run resumes where it stopped (with the same result)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from runtime.context import StepContext
from runtime.store import atomic_write_bytes
from runtime.verification import checkpoint_hash, state_bytes


def accuracy(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of `x` whose highest-scoring class is `y` (0 for no examples)."""
    with torch.no_grad():
        return float((module(x).argmax(dim=-1) == y).float().mean()) if len(y) else 0.0


def confusion_matrix(module: nn.Module, x: torch.Tensor, y: torch.Tensor, classes: int) -> list[list[int]]:
    """Counts of (true class row, predicted class column) on (x, y)."""
    with torch.no_grad():
        predicted = module(x).argmax(dim=-1).cpu().tolist()
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


def classifier_metrics(
    module: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    classes: int,
    loss: float,
    epochs: int,
) -> dict[str, Any]:
    """A trained classifier's run metrics: accuracy on both splits, the trivial baseline's, last loss, sizes and the
    confusion matrix."""
    x, y, ex, ey = data
    return {
        "accuracy": round(accuracy(module, ex, ey), 6),
        "baseline_accuracy": baseline_accuracy(y, ey),
        "train_accuracy": round(accuracy(module, x, y), 6),
        "loss": round(loss, 6) if loss == loss else None,
        "eval_examples": len(ey),
        "classes": classes,
        "epochs": epochs,
        "confusion_matrix": confusion_matrix(module, ex, ey, classes),
    }


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
    """
    x, y, ex, ey = data
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    name, measure = score or ("accuracy", accuracy)
    if ctx.verify_epochs is not None:
        return _verify(ctx, module, opt, x, y, loss_fn, seed, batch_size)
    ckpt_path = ctx.work_dir / "checkpoint.pt"
    start_epoch, loss_value = 0, float("nan")
    if ckpt_path.exists():  # resume where a killed run stopped
        state = torch.load(ckpt_path, map_location=ctx.device, weights_only=True)
        module.load_state_dict(state["module"] if "module" in state else state["head"])
        opt.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"])
        loss_value = float(state.get("loss", float("nan")))
        ctx.log_metric("resumed_from_epoch", start_epoch)
        if ctx.keep_segments:  # recommit the state it resumes from (another provider may have written it)
            _commit(ctx, start_epoch, ckpt_path.read_bytes())
    elif ctx.keep_segments:
        _commit(ctx, 0, state_bytes(module, opt, epoch=0, loss=loss_value))

    for epoch in range(start_epoch, epochs):
        loss_value = _epoch(module, opt, x, y, loss_fn, seed, epoch, batch_size, ctx.device)
        module.eval()
        ctx.log_metric("loss", loss_value, epoch + 1)
        ctx.log_metric(f"train_{name}", measure(module, x, y), epoch + 1)
        ctx.log_metric(name, measure(module, ex, ey), epoch + 1)
        state = state_bytes(module, opt, epoch=epoch + 1, loss=loss_value)
        atomic_write_bytes(ckpt_path, state)
        if ctx.keep_segments:
            _commit(ctx, epoch + 1, state)
        ctx.progress(epoch + 1, epochs, f"epoch {epoch + 1}/{epochs}")
    module.eval()
    return loss_value


def _epoch(module, opt, x, y, loss_fn, seed: int, epoch: int, batch_size: int, device: str) -> float:
    """One training epoch; its mean loss. Its order and dropout masks depend only on (seed, epoch), so a
    resumed run repeats it exactly and a verifier can replay it from the checkpoint before it."""
    module.train()
    epoch_seed = seed * 100_003 + epoch
    torch.manual_seed(epoch_seed)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(epoch_seed))
    total = 0.0
    for start in range(0, len(y), batch_size):
        idx = order[start : start + batch_size].to(device)
        opt.zero_grad()
        loss = loss_fn(module(x[idx]), y[idx])
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
    return total / len(y)


def _commit(ctx: StepContext, epoch: int, state: bytes) -> None:
    """Keep the state after `epoch` (0: before training) and append its sha256 to the step's commitments."""
    import json

    folder = ctx.segments_dir
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / f"epoch-{epoch}.pt", state)
    path = folder / "commitments.json"
    commitments = json.loads(path.read_text()) if path.exists() else []
    del commitments[epoch:]  # a resumed step recommits from where it resumed
    commitments += [""] * (epoch - len(commitments))  # an epoch lost to a crash cannot be verified
    commitments.append(checkpoint_hash(state))
    atomic_write_bytes(path, json.dumps(commitments).encode())


def _verify(ctx: StepContext, module, opt, x, y, loss_fn, seed: int, batch_size: int) -> float:
    """Replay the epochs in ctx.verify_epochs from the provider's checkpoints and compare (runtime/verification);
    the module ends with the provider's final weights. Findings go to ctx.verification."""
    import json
    import time

    from runtime.verification import TOLERANCE, max_abs_diff

    started = time.perf_counter()
    folder = ctx.segments_dir
    commitments = json.loads((folder / "commitments.json").read_text())
    found: dict[str, Any] = {"epochs": len(commitments) - 1, "checked": sorted(ctx.verify_epochs), "ok": True}

    def load(k: int) -> bytes:
        data = (folder / f"epoch-{k}.pt").read_bytes()
        if checkpoint_hash(data) != commitments[k]:
            raise ValueError(f"the checkpoint after epoch {k} does not match its commitment")
        return data

    try:
        for k in sorted(ctx.verify_epochs):
            before = torch.load(io.BytesIO(load(k - 1)), map_location=ctx.device, weights_only=True)
            module.load_state_dict(before["module"])
            opt.load_state_dict(before["optimizer"])
            loss = _epoch(module, opt, x, y, loss_fn, seed, k - 1, batch_size, ctx.device)
            diff = max_abs_diff(module, load(k))
            found["max_abs_diff"] = max(found.get("max_abs_diff", 0.0), diff)
            if not diff <= TOLERANCE:
                found.update(ok=False, reason=f"epoch {k} replayed to weights {diff:.2e} away from the committed "
                             f"ones (tolerance {TOLERANCE:.0e})", epoch=k, committed_hash=commitments[k],
                             # The replay's own checkpoint hash: the evidence a slash sets against the commitment.
                             replayed_hash=checkpoint_hash(state_bytes(module, opt, epoch=k, loss=loss)))  # fmt: skip
                break
        final = torch.load(io.BytesIO(load(len(commitments) - 1)), map_location=ctx.device, weights_only=True)
    except (OSError, ValueError, KeyError, IndexError, RuntimeError) as exc:
        found.update(ok=False, reason=str(exc))
        final = None
    if final is not None:
        module.load_state_dict(final["module"])
    found["seconds"] = round(time.perf_counter() - started, 3)
    ctx.verification.update(found)
    module.eval()
    return float(final["loss"]) if final is not None else float("nan")


__all__ = ["WithSoftmax", "accuracy", "baseline_accuracy", "classifier_metrics", "confusion_matrix", "fit"]
