"""Run records: create, look up, list, and mark runs whose process died as failed."""

from __future__ import annotations

import os
import uuid
from datetime import UTC
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from builder.errors import NotFoundError, RunError
from builder.money import format_aic
from builder.pipeline import Pipeline
from builder.plan import Plan, sha256_hex
from runtime.db import Artifact, MetricPoint, Run, Service, Step, utcnow
from runtime.ledger import add_compute_usage, list_usage, usage_dict
from runtime.processes import pid_alive

ACTIVE = ("queued", "running")


def new_run_id() -> str:
    """A fresh run id like `run-3f9a1c2b7d4e`."""
    return f"run-{uuid.uuid4().hex[:12]}"


def create_run(session: Session, pipeline: Pipeline, plan: Plan, run_id: str | None = None) -> Run:
    """Insert a queued run with one pending step per Plan step (committed)."""
    run_id = run_id or new_run_id()
    if session.get(Run, run_id) is not None:
        raise RunError(f"run id {run_id!r} is already taken; choose another --run-id")
    run = Run(
        id=run_id,
        name=plan.name,
        status="queued",
        pipeline_path=pipeline.source,
        pipeline_yaml=pipeline.source_text,
        pipeline_hash=sha256_hex(pipeline.source_text),
        overrides=list(pipeline.overrides),
        plan=plan.to_dict(),
        plan_hash=plan.plan_hash,
        quote_wei=plan.quote_wei,
        metrics={},
        pid=os.getpid(),
    )
    session.add(run)
    for i, step in enumerate(plan.steps):
        session.add(
            Step(
                run_id=run_id,
                node_id=step.node_id,
                block_id=step.block_id,
                version=step.version,
                position=i,
                status="pending",
                cache_key=step.cache_key,
                metrics={},
            )
        )
    session.commit()
    return run


def fail_run(session: Session, run_id: str, reason: str) -> None:
    """Mark a run that could not start (or stopped) as failed with `reason` (committed)."""
    run = get_run(session, run_id)
    run.status, run.error, run.finished_at = "failed", reason, utcnow()
    session.commit()


def get_run(session: Session, run_id: str) -> Run:
    """The run `run_id`; NotFoundError with a hint when there is none."""
    run = session.get(Run, run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id!r}; `aib runs list` shows the runs")
    return run


def reap_stale_runs(session: Session) -> list[str]:
    """Mark runs whose process is gone as failed, with the reason; returns their ids."""
    reaped = []
    for run in session.scalars(select(Run).where(Run.status.in_(ACTIVE))):
        if run.pid == os.getpid() or pid_alive(run.pid):
            continue
        run.status = "failed"
        run.error = f"the process running it (pid {run.pid}) stopped before the run finished; run it again to resume"
        run.finished_at = utcnow()
        for step in session.scalars(select(Step).where(Step.run_id == run.id, Step.status == "running")):
            step.status, step.error, step.finished_at = "failed", "interrupted", utcnow()
            _bill_interrupted_compute(session, run, step)
        reaped.append(run.id)
    session.commit()
    return reaped


def _bill_interrupted_compute(session: Session, run: Run, step: Step) -> None:
    """Bill a killed step's device time up to its last recorded heartbeat (a lower bound: never more than used).

    The step's own finishing transaction never ran, so without this its compute would never be billed.
    """
    last = session.scalar(
        select(func.max(MetricPoint.created_at)).where(
            MetricPoint.run_id == run.id, MetricPoint.node_id == step.node_id
        )
    )
    if step.started_at is None or last is None:
        return
    last = last if last.tzinfo else last.replace(tzinfo=UTC)
    seconds = (last - step.started_at).total_seconds()
    if seconds <= 0:
        return
    step.seconds = seconds
    add_compute_usage(session, run_id=run.id, node_id=step.node_id, compute=run.plan["compute"], seconds=seconds)


def list_runs(session: Session, limit: int = 50) -> list[Run]:
    """Most recent runs first."""
    return list(session.scalars(select(Run).order_by(Run.created_at.desc()).limit(limit)))


def run_summary(session: Session, run: Run) -> dict[str, Any]:
    """The run as the JSON object `aib run --json` prints."""
    usage = [usage_dict(u) for u in list_usage(session, run_id=run.id)]
    total = sum(u["amount_wei"] for u in usage)
    steps = list(session.scalars(select(Step).where(Step.run_id == run.id).order_by(Step.position)))
    artifacts = list(session.scalars(select(Artifact).where(Artifact.run_id == run.id).order_by(Artifact.id)))
    return {
        "run_id": run.id,
        "status": run.status,
        "error": run.error,
        "pipeline": run.name,
        "plan_hash": run.plan_hash,
        "metrics": run.metrics or {},
        "service_id": run.service_id,
        "provider_id": run.provider_id,
        "allocation": run.allocation,
        "cost": {"quote_wei": run.quote_wei, "total_wei": total, "total": format_aic(total)},
        "usage": usage,
        "steps": [
            {
                "node_id": s.node_id,
                "block": f"{s.block_id}@{s.version}",
                "status": s.status,
                "cached": s.cached,
                "seconds": s.seconds,
                "error": s.error,
            }
            for s in steps
        ],
        "settlement": _settlement_of(session, run.id),
        # Why each model is wrong (runtime/evaluation.py), by the node that trained it.
        "evaluation": {s.node_id: s.metrics["evaluation"] for s in steps if "evaluation" in (s.metrics or {})},
        "artifacts": [
            {"node_id": a.node_id, "name": a.name, "path": a.path, "sha256": a.sha256, "size": a.size}
            for a in artifacts
        ],
    }


def _settlement_of(session: Session, run_id: str) -> dict[str, Any] | None:
    from runtime.db import Settlement
    from runtime.settlement import settlement_dict

    row = session.get(Settlement, run_id)
    return settlement_dict(row) if row is not None else None


def get_service(session: Session, service_id: str) -> Service:
    """The service `service_id`; NotFoundError with a hint when there is none."""
    svc = session.get(Service, service_id)
    if svc is None:
        raise NotFoundError(f"no service {service_id!r}; `aib services list` shows the services")
    return svc


__all__ = [
    "create_run",
    "fail_run",
    "get_run",
    "get_service",
    "list_runs",
    "new_run_id",
    "reap_stale_runs",
    "run_summary",
]
