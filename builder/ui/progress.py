"""Progress in words: what each step of a run is doing, for how long, which training round, and when it ends; and
how long a template takes (measured on a 2-core CPU) before it is run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from builder.ui.words import step_words

__all__ = ["StepView", "duration_text", "estimate_text", "step_view", "template_timing"]

TIMINGS_FILE = "timings.json"  # beside the templates: measured seconds per template


@dataclass(frozen=True)
class StepView:
    """One step of a run as the Runs page shows it: a sentence and how full its bar is."""

    text: str
    fraction: float
    epoch: int | None = None
    epochs: int | None = None
    eta_s: float | None = None


def duration_text(seconds: float) -> str:
    """A duration as people say it: "12 s", "1 min 05 s", "about 8 minutes"."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 300:
        minutes, rest = divmod(int(round(seconds)), 60)
        return f"{minutes} min {rest:02d} s"
    return f"about {round(seconds / 60)} minutes"


def step_view(
    step: dict[str, Any], plan_step: dict[str, Any] | None, epochs_done: int | None, now: datetime | None = None
) -> StepView:
    """What one step is doing, in words, from its row (status, block_id, progress, started_at, seconds, cached),
    its plan entry (params, estimated_seconds) and the last training round it reported (its `loss` points)."""
    words = step_words(step["block_id"])
    status = step["status"]
    epochs = _int((plan_step or {}).get("params", {}).get("epochs"))
    if status in ("succeeded", "cached"):
        took = duration_text(step.get("seconds") or 0)
        how = "reused from an earlier run" if step.get("cached") else f"done in {took}"
        return StepView(f"{words} · {how}", 1.0, epochs_done, epochs)
    if status in ("queued", "pending", "waiting"):
        return StepView(f"{words} · waiting", 0.0, None, epochs)
    if status != "running":  # failed, cancelled, preempted
        return StepView(f"{words} · {status}", float(step.get("progress") or 0.0), epochs_done, epochs)
    started = step.get("started_at")
    now = now or datetime.now(UTC)
    elapsed = (now - _utc(started)).total_seconds() if started else 0.0
    parts = [words, f"{duration_text(elapsed)} so far"]
    fraction = float(step.get("progress") or 0.0)
    if epochs and epochs_done:
        fraction = max(fraction, min(epochs_done / epochs, 1.0))
        parts.insert(1, f"epoch {epochs_done} of {epochs}")
    elif epochs:
        parts.insert(1, f"starting epoch 1 of {epochs}")
    known = (epochs_done or 0) >= 2 or fraction >= 0.05  # one round includes the step's set-up: too early to tell
    eta = elapsed * (1 - fraction) / fraction if known and 0 < fraction < 1.0 and elapsed > 0 else None
    if eta is not None:
        parts.append(f"about {duration_text(eta).removeprefix('about ')} left")
    elif (plan_step or {}).get("estimated_seconds"):
        parts.append(f"usually takes {duration_text(plan_step['estimated_seconds']).removeprefix('about ')}")
    return StepView(" · ".join(parts), min(max(fraction, 0.0), 1.0), epochs_done, epochs, eta)


def template_timing(name: str) -> dict[str, Any] | None:
    """The measured times of template `name` ({first_run_s, later_run_s, measured_on, source}), if any."""
    from runtime.config import templates_dir

    path = Path(templates_dir()) / TIMINGS_FILE
    try:
        timings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    entry = timings.get(name)
    return entry if isinstance(entry, dict) and entry.get("first_run_s") else None


def estimate_text(draft_or_template_name: Any) -> str | None:
    """How long a run takes, in words, before it is started: the template's measured time for a template name or
    an unchanged template draft; the template's time as a guide when a draft of it was changed; else None."""
    if isinstance(draft_or_template_name, str):
        name, changed = draft_or_template_name, False
    else:
        data = getattr(draft_or_template_name, "data", None) or {}
        name = str(data.get("name") or "")
        changed = _changed_from_template(name, data)
        if changed is None:
            return None
    timing = template_timing(name)
    if timing is None:
        return None
    where = timing.get("measured_on", "a 2-core CPU")
    text = f"About {_bare(timing['first_run_s'])} on {where} (measured)"
    if timing.get("later_run_s"):
        text += f"; about {_bare(timing['later_run_s'])} when run again, as finished steps are reused"
    if changed:
        text = f"The unchanged template takes {text[0].lower()}{text[1:]}; your changes can make it faster or slower"
    return text + "."


def _bare(seconds: float) -> str:
    return duration_text(seconds).removeprefix("about ")


def _changed_from_template(name: str, data: dict[str, Any]) -> bool | None:
    """Whether a draft differs from the template of its name in what it runs; None when there is no such template."""
    import yaml

    from runtime.config import templates_dir

    path = Path(templates_dir()) / f"{name}.yaml"
    if not name or not path.is_file():
        return None
    try:
        template = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return None

    def runs(d: dict[str, Any]) -> tuple:
        blocks = {k: (v.get("use"), v.get("params") or {}) for k, v in (d.get("blocks") or {}).items()}
        return blocks, sorted(str(e).replace(" ", "") for e in d.get("edges") or []), d.get("compute")

    return runs(template) != runs(data)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _utc(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)
