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


def classifier_metrics(
    module: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    classes: int,
    loss: float,
    epochs: int,
) -> dict[str, Any]:
    """A trained classifier's run metrics: accuracy on both splits, last loss, sizes and the confusion matrix."""
    x, y, ex, ey = data
    return {
        "accuracy": round(accuracy(module, ex, ey), 6),
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
    ckpt_path = ctx.work_dir / "checkpoint.pt"
    start_epoch, loss_value = 0, float("nan")
    if ckpt_path.exists():  # resume where a killed run stopped
        state = torch.load(ckpt_path, map_location=ctx.device, weights_only=True)
        module.load_state_dict(state["module"] if "module" in state else state["head"])
        opt.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"])
        loss_value = float(state.get("loss", float("nan")))
        ctx.log_metric("resumed_from_epoch", start_epoch)

    for epoch in range(start_epoch, epochs):
        module.train()
        # Each epoch's order and dropout masks depend only on (seed, epoch): a resumed run repeats it exactly.
        epoch_seed = seed * 100_003 + epoch
        torch.manual_seed(epoch_seed)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(epoch_seed))
        total = 0.0
        for start in range(0, len(y), batch_size):
            idx = order[start : start + batch_size].to(ctx.device)
            opt.zero_grad()
            loss = loss_fn(module(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        loss_value = total / len(y)
        module.eval()
        ctx.log_metric("loss", loss_value, epoch + 1)
        ctx.log_metric(f"train_{name}", measure(module, x, y), epoch + 1)
        ctx.log_metric(name, measure(module, ex, ey), epoch + 1)
        buf = io.BytesIO()
        torch.save(
            {"epoch": epoch + 1, "loss": loss_value, "module": module.state_dict(), "optimizer": opt.state_dict()}, buf
        )
        atomic_write_bytes(ckpt_path, buf.getvalue())
        ctx.progress(epoch + 1, epochs, f"epoch {epoch + 1}/{epochs}")
    module.eval()
    return loss_value


__all__ = ["WithSoftmax", "accuracy", "classifier_metrics", "confusion_matrix", "fit"]
