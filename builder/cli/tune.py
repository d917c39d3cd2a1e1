"""`aib run FILE --tune N [--budget AIC]`: N trials of the model block's own params, each a real run, billed."""

from __future__ import annotations

import contextlib
import logging
import uuid
from pathlib import Path
from typing import Any

import typer

from builder.cli.base import _fail, _print_json, _session, _table, err, out
from builder.cli.payments import _pay_deposit, _payment_check, _settle_after_run
from builder.errors import AibError
from builder.money import format_aic


def tune(
    file: Path, overrides: list[str], trials: int, budget_wei: int | None, json_: bool, first_run_id: str | None = None
) -> int:
    """Run the search (its first trial's run id `first_run_id`, when given); prints the trials and the best; the
    exit status."""
    from builder.pipeline import load_pipeline
    from runtime.context import NullReporter
    from runtime.datasets import compile_with_datasets
    from runtime.db import Run
    from runtime.runner import execute_run
    from runtime.runs import create_run, get_run, reap_stale_runs, run_summary
    from runtime.tuning import TrialReporter, model_node, new_study, objective_of, search_space, suggest

    pipeline = load_pipeline(file, overrides)
    if pipeline.compute.block.id == "compute.rented":
        _fail(
            "--tune runs its trials on this machine: use compute.local (or tune, then run the best on rented compute)"
        )
    node = model_node(pipeline)
    params = pipeline.nodes[node].params
    space = search_space(params)
    if not space:
        _fail(f"{node}'s params leave nothing to search: none is a number other than its seed, or a choice")
    plan = compile_with_datasets(pipeline)
    per_trial = plan.quote_wei
    affordable = trials if budget_wei is None else min(trials, budget_wei // per_trial if per_trial else trials)
    if budget_wei is not None and affordable < 1:
        _fail(
            f"the budget {format_aic(budget_wei)} is below one trial's quote {format_aic(per_trial)}: "
            f"{trials} trials would cost {format_aic(per_trial * trials)}"
        )
    study_id = f"tune-{uuid.uuid4().hex[:10]}"
    if not json_:
        left_out = f" (budget {format_aic(budget_wei)}; {trials - affordable} left out)" if affordable < trials else ""
        out.print(
            f"tuning [bold]{node}[/] of {plan.name}: {affordable} trial(s) × quote {format_aic(per_trial)} = "
            f"{format_aic(per_trial * affordable)}{left_out}",
            highlight=False,
        )
        _table(["param", "pipeline's value", "searched"],
               [{"param": d.name, "pipeline's value": getattr(params, d.name), "searched": d.describe()}
                for d in space])  # fmt: skip
    study = None
    rows: list[dict[str, Any]] = []
    objective = direction = None
    spent = 0
    for number in range(affordable):
        if study is None:  # the first trial: the pipeline as written (its figure names the objective)
            drawn = {d.name: getattr(params, d.name) for d in space}
            trial = None
        else:
            trial = study.ask()
            drawn = suggest(trial, space)
        sets = [*overrides, *(f"{node}.{k}={v}" for k, v in drawn.items())]
        trial_pipeline = load_pipeline(file, sets)
        trial_plan = compile_with_datasets(trial_pipeline)
        chain, deposit_wei = _payment_check(trial_plan)
        with _session() as s:
            reap_stale_runs(s)
            run_id = create_run(s, trial_pipeline, trial_plan, first_run_id if number == 0 else None).id
        if chain is not None:
            _pay_deposit(chain, run_id, deposit_wei, quiet=True)
        reporter = NullReporter() if trial is None else TrialReporter(NullReporter(), trial, node, objective)
        try:
            with _quiet_when_pruned():
                execute_run(run_id, trial_pipeline, trial_plan, reporter)
        except AibError:
            pass  # the run records why (a pruned trial: stopped early by the tuner)
        if chain is not None:
            _settle_after_run(chain, run_id, quiet=True)
        with _session() as s:
            run = get_run(s, run_id)
            summary = run_summary(s, run)
            tuned = {"study": study_id, "trial": number, "params": drawn, "planned": affordable}
            run.metrics = {**(run.metrics or {}), "tune": tuned}
            s.commit()
        spent += summary["cost"]["total_wei"]
        value = None
        if summary["status"] == "succeeded":
            if objective is None:
                objective, direction = objective_of(summary["metrics"])
                study = new_study(direction)
                study.enqueue_trial(drawn)  # the pipeline's own values are trial 0 of the study too
                first = study.ask()
                study.tell(first, summary["metrics"][objective])
            else:
                study.tell(trial, summary["metrics"][objective])
            value = summary["metrics"][objective]
            state = "done"
        else:
            state = "pruned" if "stopped early by the tuner" in (summary["error"] or "") else "failed"
            if trial is not None:
                import optuna

                study.tell(
                    trial, state=optuna.trial.TrialState.PRUNED if state == "pruned" else optuna.trial.TrialState.FAIL
                )
            elif objective is None:
                _fail(f"the first trial (the pipeline as written) failed: {summary['error']}", code=1)
        rows.append({"trial": number, "run_id": run_id, "state": state, objective or "value": value,
                     "cost": summary["cost"]["total"], **drawn})  # fmt: skip
        if not json_:
            shown = "–" if value is None else f"{value:.4f}"
            tried = ", ".join(f"{k}={v}" for k, v in drawn.items())
            out.print(f"  trial {number}: {state} {objective} {shown}  ({tried})", highlight=False)
    done = [r for r in rows if r["state"] == "done"]
    sign = 1 if direction == "maximize" else -1
    best = max(done, key=lambda r: (sign * r[objective], -r["trial"]))  # ties go to the earlier trial
    result = {
        "study": study_id,
        "node": node,
        "objective": objective,
        "direction": direction,
        "trials": rows,
        "best": best,
        "defaults": rows[0],
        "quote_wei": per_trial * affordable,
        "total_wei": spent,
        "space": [{"param": d.name, "searched": d.describe()} for d in space],
    }
    with _session() as s:  # every trial's run page shows the search
        for r in rows:
            run = s.get(Run, r["run_id"])
            run.metrics = {**(run.metrics or {}), "tune": {**run.metrics["tune"], "best_run": best["run_id"]}}
        s.commit()
    if json_:
        _print_json(result)
    else:
        out.print(
            f"best: trial {best['trial']} ({best['run_id']}), {objective} {best[objective]:.4f} against the "
            f"pipeline's own {rows[0][objective]:.4f}; spent {format_aic(spent)}",
            highlight=False,
        )
        err.print("its params, to keep: " + " ".join(f"--set {node}.{k}={v}" for k, v in best.items()
                                                      if k in {d.name for d in space}), highlight=False)  # fmt: skip
    return 0


class _NotPruned(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "stopped early by the tuner" not in record.getMessage()


@contextlib.contextmanager
def _quiet_when_pruned() -> Any:
    """A pruned trial is the tuner's decision, not an error: Prefect logs no traceback for it (its run keeps the
    reason). Attached for each trial, after Prefect has configured its loggers."""
    quiet = _NotPruned()
    loggers = [logging.getLogger(n) for n in ("prefect.task_runs", "prefect.flow_runs", "prefect.task_engine")]
    handlers = [h for lg in loggers for h in lg.handlers] + logging.getLogger().handlers
    for target in [*loggers, *handlers]:
        target.addFilter(quiet)
    try:
        yield
    finally:
        for target in [*loggers, *handlers]:
            target.removeFilter(quiet)


def tune_or_exit(
    file: Path, overrides: list[str], trials: int, budget: str | None, json_: bool, run_id: str | None
) -> None:
    """The `--tune` branch of `aib run`."""
    from builder.cli.base import _aic_option

    budget_wei = _aic_option(budget, "--budget") if budget is not None else None
    raise typer.Exit(tune(file, overrides, trials, budget_wei, json_, run_id))
