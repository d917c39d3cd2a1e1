"""Automatic tuning of a pipeline's model block: its own declared params searched with Optuna, each trial a real run.

The search space comes from the block's pydantic Params: every numeric param (not the seed) within its declared
bounds, narrowed to a factor of 4 around the pipeline's value (log scale where the range spans a decade or more;
a param at 0 stays fixed), and every choice param (a Literal) over its choices. The first trial is the pipeline as
written, so a tune is never worse than the defaults it starts from. The objective is the model's held-out figure
(accuracy, higher is better; a regressor's mae, lower is better); a trial whose per-epoch figure falls below the
median of earlier trials at the same epoch is stopped early (Optuna's median pruner)."""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Any

from annotated_types import Ge, Gt, Le, Lt

from builder.errors import Problem, RunError, ValidationError
from builder.spec import Kind

NARROW = 4.0  # a numeric param is searched within a factor of this around its value
SKIPPED = frozenset({"seed"})
PRUNE_WARMUP_EPOCHS = 2  # no trial is stopped before this many epochs


@dataclass(frozen=True)
class Dimension:
    """One tuned param: (low, high, log) for a number, or its choices."""

    name: str
    kind: str  # int | float | choice
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def describe(self) -> str:
        if self.kind == "choice":
            return " | ".join(str(c) for c in self.choices)
        shown = (
            (f"{self.low:g}", f"{self.high:g}") if self.kind == "float" else (str(int(self.low)), str(int(self.high)))
        )
        return f"{shown[0]} … {shown[1]}" + (" (log)" if self.log else "")


class Pruned(RunError):
    """A trial stopped early by the tuner: its held-out figure was below the median of earlier trials."""


def model_node(pipeline: Any) -> str:
    """The node the tuner searches: the pipeline's last model block that trains."""
    nodes = [nid for nid, node in pipeline.nodes.items() if node.block.kind == Kind.MODEL and node.block.trains]
    if not nodes:
        raise ValidationError(
            [Problem("blocks", "the pipeline has no model block that trains: there is nothing to tune")]
        )
    return nodes[-1]


def _bounds(field: Any) -> tuple[float | None, float | None, bool]:
    low = high = None
    strict_low = False
    for m in field.metadata:
        if isinstance(m, Ge):
            low = float(m.ge)
        elif isinstance(m, Gt):
            low, strict_low = float(m.gt), True
        elif isinstance(m, Le):
            high = float(m.le)
        elif isinstance(m, Lt):
            high = float(m.lt)
    return low, high, strict_low


def search_space(params: Any) -> list[Dimension]:
    """The tuned dimensions of a model block's params (see the module's docstring)."""
    out = []
    for name, field in type(params).model_fields.items():
        value = getattr(params, name)
        kind = field.annotation
        if name in SKIPPED or name.endswith("_path"):
            continue
        if typing.get_origin(kind) is typing.Literal:
            out.append(Dimension(name, "choice", choices=typing.get_args(kind)))
            continue
        if kind not in (int, float) or isinstance(value, bool) or not value:
            continue
        low, high, strict = _bounds(field)
        lo, hi = value / NARROW, value * NARROW
        if low is not None:
            lo = max(lo, low if not strict else (low + (1 if kind is int else 1e-12)))
        if high is not None:
            hi = min(hi, high)
        if kind is int:
            lo, hi = max(1, math.ceil(lo)), max(1, math.floor(hi))
        if hi <= lo:
            continue
        out.append(Dimension(name, kind.__name__, lo, hi, log=lo > 0 and hi / lo >= 10))
    return out


def objective_of(metrics: dict[str, Any]) -> tuple[str, str]:
    """(figure, direction) the tune optimises for a model's metrics."""
    if "accuracy" in metrics:
        return "accuracy", "maximize"
    if "mae" in metrics:
        return "mae", "minimize"
    raise RunError("the model reports neither accuracy nor mae on held-out data: there is no figure to tune on")


def suggest(trial: Any, space: list[Dimension]) -> dict[str, Any]:
    """A trial's params, drawn by Optuna from the space."""
    drawn: dict[str, Any] = {}
    for d in space:
        if d.kind == "choice":
            drawn[d.name] = trial.suggest_categorical(d.name, list(d.choices))
        elif d.kind == "int":
            drawn[d.name] = trial.suggest_int(d.name, int(d.low), int(d.high), log=d.log)
        else:
            drawn[d.name] = trial.suggest_float(d.name, d.low, d.high, log=d.log)
    return drawn


class TrialReporter:
    """Passes a run's events on, and reports the model node's per-epoch held-out figure to its Optuna trial,
    stopping the run (Pruned) when the trial should be pruned."""

    def __init__(self, inner: Any, trial: Any, node: str, figure: str) -> None:
        self.inner, self.trial, self.node, self.figure = inner, trial, node, figure

    def step_started(self, node_id: str, cached: bool) -> None:
        self.inner.step_started(node_id, cached)

    def progress(self, node_id: str, done: float, total: float, description: str) -> None:
        self.inner.progress(node_id, done, total, description)

    def metric(self, node_id: str, name: str, value: float, step: int) -> None:
        self.inner.metric(node_id, name, value, step)
        if node_id != self.node or name != self.figure or step < 1:
            return
        self.trial.report(value, step)
        if step >= PRUNE_WARMUP_EPOCHS and self.trial.should_prune():
            raise Pruned(
                f"stopped early by the tuner: its held-out {name} at epoch {step} ({value:.4f}) was worse than the "
                "median of the earlier trials at that epoch"
            )

    def step_finished(self, node_id: str, status: str) -> None:
        self.inner.step_finished(node_id, status)


def new_study(direction: str, seed: int = 0) -> Any:
    """An in-memory Optuna study: seeded TPE sampler, median pruner after the warm-up epochs."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        direction=direction,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=PRUNE_WARMUP_EPOCHS),
    )


__all__ = [
    "Dimension",
    "Pruned",
    "TrialReporter",
    "model_node",
    "new_study",
    "objective_of",
    "search_space",
    "suggest",
]
