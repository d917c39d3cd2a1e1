"""Shared set-up of the benchmarks: a private AIB_HOME and a trained FAQ bot service."""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("AIB_HOME", str(ROOT / "bench" / "out" / "home"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

# The FAQ bot the serving, hosting, settlement, orchestration and UI benches measure: on MiniLM (faq-chatbot-fast), as
# they were measured before faq-chatbot moved to MPNet; bench/faq_quality.py measures faq-chatbot itself.
TEMPLATE = ROOT / "templates" / "faq-chatbot-fast.yaml"


def train_template(
    overrides: list[str] | None = None, engine: str = "prefect", template: Path = TEMPLATE
) -> dict[str, Any]:
    """Run a template (the FAQ bot on MiniLM by default; cached steps are reused) and return the run summary."""
    from builder.pipeline import load_pipeline
    from builder.plan import compile_plan
    from runtime.db import session_factory
    from runtime.runner import execute_run
    from runtime.runs import create_run, get_run, run_summary

    pipeline = load_pipeline(template, overrides or [])
    plan = compile_plan(pipeline)
    Session = session_factory()
    with Session() as s:
        run_id = create_run(s, pipeline, plan).id
    execute_run(run_id, pipeline, plan, engine=engine)  # type: ignore[arg-type]
    with Session() as s:
        return run_summary(s, get_run(s, run_id))


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """A plain aligned table for humans."""
    cells = [columns] + [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    print(f"\n{title}")
    for i, r in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def print_figures(figures: dict[str, Any]) -> None:
    """The machine-readable result: one JSON object on the last line."""
    print(json.dumps(figures, sort_keys=True))
