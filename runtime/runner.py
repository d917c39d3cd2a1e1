"""Execute a Plan as one Prefect flow with one task per step, recording states, metrics and usage."""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from sqlalchemy import select

from builder.errors import AibError, RunError
from builder.files import sha256_file
from builder.pipeline import Pipeline
from builder.plan import Plan, PlanStep
from builder.ports import PortType
from runtime.bundle import MANIFEST, ServiceBundle, read_manifest
from runtime.config import Settings, get_settings
from runtime.context import NullReporter, Reporter, StepContext
from runtime.db import Artifact, MetricPoint, Run, Service, Step, session_factory, utcnow
from runtime.ledger import add_compute_usage, add_usage
from runtime.prefect_env import configure_prefect
from runtime.settlement_math import call_price_per_1k
from runtime.store import StepCache


@dataclass
class _RunState:
    pipeline: Pipeline
    plan: Plan
    settings: Settings
    device: str
    reporter: Reporter
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    compute: dict[str, Any] | None = None  # the compute tier billed (a rented provider's own price and address)
    attempt: int = 0  # rented compute: which attempt of the run this is (a preempted run resumes as the next)
    remote: Any = None  # rented compute over the provider protocol: training steps are leased (protocol.remote)


class Preempted(BaseException):  # noqa: N818 - a signal, like KeyboardInterrupt, not an error
    """The provider takes its machine back: the running step stops at once, its last checkpoint is kept."""


_ACTIVE: dict[str, _RunState] = {}


class DbReporter:
    """Writes progress and metric points to the database (throttled) for the UI and `aib runs show`."""

    def __init__(self, run_id: str, inner: Reporter, min_interval: float = 0.5) -> None:
        self.run_id = run_id
        self.inner = inner
        self.min_interval = min_interval
        self.Session = session_factory()
        self._points: list[MetricPoint] = []
        self._progress: dict[str, float] = {}
        self._last_flush = 0.0
        self._lock = threading.Lock()

    def step_started(self, node_id: str, cached: bool) -> None:
        self.inner.step_started(node_id, cached)

    def progress(self, node_id: str, done: float, total: float, description: str) -> None:
        self.inner.progress(node_id, done, total, description)
        with self._lock:
            self._progress[node_id] = done / total if total else 0.0
        self._maybe_flush()

    def metric(self, node_id: str, name: str, value: float, step: int) -> None:
        self.inner.metric(node_id, name, value, step)
        with self._lock:
            self._points.append(MetricPoint(run_id=self.run_id, node_id=node_id, name=name, step=step, value=value))
        self._maybe_flush()

    def step_finished(self, node_id: str, status: str) -> None:
        self.flush()
        self.inner.step_finished(node_id, status)

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= self.min_interval:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            points, progress = self._points, self._progress
            self._points, self._progress = [], {}
            self._last_flush = time.monotonic()
        if not points and not progress:
            return
        with self.Session.begin() as s:
            s.add_all(points)
            for node_id, frac in progress.items():
                step = s.scalar(select(Step).where(Step.run_id == self.run_id, Step.node_id == node_id))
                if step is not None:
                    step.progress = frac


def _reason(exc: BaseException) -> str:
    if isinstance(exc, AibError):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "TerminationSignal":  # Prefect's SIGTERM
        return "interrupted (Ctrl-C or SIGTERM) while running; run it again to resume from the last checkpoint"
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return "the GPU ran out of memory; lower batch sizes or choose a bigger compute tier"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _log_failure(settings: Settings, run_id: str, node_id: str, exc: BaseException) -> None:
    log = settings.runs_dir / run_id / "error.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"step {node_id} failed at {utcnow().isoformat()}\n")
        f.write("".join(traceback.format_exception(exc)))


def execute_step(run_id: str, node_id: str) -> None:
    """Run one Plan step (or reuse its cached outputs), then record its state and compute usage."""
    state = _ACTIVE[run_id]
    step = state.plan.step(node_id)
    node = state.pipeline.nodes[node_id]
    Session = session_factory()
    cache = StepCache(state.settings.cache_dir / "steps")
    inputs = {}
    for port, src in step.inputs.items():
        src_node, src_port = src.split(".", 1)
        inputs[port] = state.outputs[src_node][src_port]

    cached = cache.get(step.cache_key) if node.block.cacheable else None
    with Session.begin() as s:
        row = s.scalar(select(Step).where(Step.run_id == run_id, Step.node_id == node_id))
        row.status, row.started_at, row.cached = "running", utcnow(), cached is not None
    state.reporter.step_started(node_id, cached is not None)

    started = time.monotonic()
    try:
        if cached is not None:
            outputs = cached
        else:
            ctx = StepContext(
                run_id=run_id,
                node_id=node_id,
                cache_key=step.cache_key,
                device=state.device,
                base_dir=state.pipeline.base_dir,
                settings=state.settings,
                plan=state.plan.to_dict(),
                reporter=state.reporter,
                keep_segments=state.compute is not None,  # a rented provider commits its work for verification
                segment_batches=_segment_batches(state.pipeline) if state.compute is not None else 0,
                remote=state.remote if node.block.trains else None,
            )
            outputs = node.block().run(ctx, inputs, node.params)
            missing = [p.name for p in node.block.outputs if p.name not in outputs]
            if missing:
                raise RunError(f"block {node.block.ref()} did not produce output(s) {', '.join(missing)}")
            if node.block.cacheable:
                cache.put(step.cache_key, outputs)
    except Preempted:
        seconds = time.monotonic() - started
        _finish_step(Session, state, run_id, step, "preempted", seconds, False, {}, None)
        with Session.begin() as s:
            s.get(Run, run_id).status = "preempted"
        state.reporter.step_finished(node_id, "preempted")
        raise
    except BaseException as exc:
        seconds = time.monotonic() - started
        _log_failure(state.settings, run_id, node_id, exc)
        _finish_step(Session, state, run_id, step, "failed", seconds, False, {}, _reason(exc))
        state.reporter.step_finished(node_id, "failed")
        raise
    seconds = time.monotonic() - started
    metrics = next(
        (v for p, v in outputs.items() if node.block.output(p) and node.block.output(p).type == PortType.METRICS), {}
    )
    state.outputs[node_id] = outputs
    _finish_step(Session, state, run_id, step, "succeeded", seconds, cached is not None, metrics, None)
    state.reporter.step_finished(node_id, "cached" if cached is not None else "succeeded")


def _finish_step(
    Session: Any,
    state: _RunState,
    run_id: str,
    step: PlanStep,
    status: str,
    seconds: float,
    cached: bool,
    metrics: dict,
    error: str | None,
) -> None:
    """Step state change and the compute time it consumed, in one transaction."""
    compute = state.compute or asdict(state.plan.compute)
    with Session.begin() as s:
        row = s.scalar(select(Step).where(Step.run_id == run_id, Step.node_id == step.node_id))
        row.status, row.finished_at, row.seconds, row.error = status, utcnow(), seconds, error
        row.metrics = metrics
        if status == "succeeded":
            row.progress = 1.0
        # Over the provider protocol the coordinator runs these steps itself; the provider's leases bill its time.
        if not cached and seconds > 0 and state.remote is None:
            add_compute_usage(
                s, run_id=run_id, node_id=step.node_id, compute=compute, seconds=seconds, attempt=state.attempt
            )
        if error is not None:
            run = s.get(Run, run_id)
            run.status, run.error, run.finished_at = "failed", f"step {step.node_id!r} failed: {error}", utcnow()


def _finish_run(state: _RunState, run_id: str) -> None:
    """Run success, its services and the per-run fees of every block, in one transaction."""
    Session = session_factory()
    metrics: dict[str, Any] = {}
    services: list[tuple[PlanStep, ServiceBundle]] = []
    for step in state.plan.steps:
        node = state.pipeline.nodes[step.node_id]
        for port, value in state.outputs.get(step.node_id, {}).items():
            ptype = node.block.output(port).type
            if ptype == PortType.METRICS and isinstance(value, dict):
                # A model's evaluation stays with its step (run_summary's `evaluation`, one per model node).
                metrics.update({k: v for k, v in value.items() if k != "evaluation"})
            elif ptype == PortType.SERVICE_BUNDLE:
                services.append((step, value))
    with Session.begin() as s:
        run = s.get(Run, run_id)
        # Work receipts signed by earlier attempts (on providers that were preempted) stay with the run.
        kept = {k: v for k, v in (run.metrics or {}).items() if k == "receipts"}
        run.status, run.finished_at, run.metrics = "succeeded", utcnow(), {**metrics, **kept}
        for step, bundle in services:
            service_id = (
                f"svc-{run_id.removeprefix('run-')}" if len(services) == 1 else f"svc-{run_id[4:]}-{step.node_id}"
            )
            s.add(
                Service(
                    id=service_id,
                    run_id=run_id,
                    name=state.plan.name,
                    bundle_dir=bundle.path,
                    plan_hash=state.plan.plan_hash,
                    block_id=step.block_id,
                    version=step.version,
                    provider=step.provider,
                    # every block of the plan earns its call price on each served call
                    call_price_wei=call_price_per_1k(asdict(p) for p in state.plan.steps),
                )
            )
            manifest = read_manifest(Path(bundle.path))
            for name, digest in sorted({**manifest.get("files", {}), MANIFEST: None}.items()):
                path = Path(bundle.path) / name
                s.add(
                    Artifact(
                        run_id=run_id,
                        node_id=step.node_id,
                        name=name,
                        path=str(path),
                        sha256=digest or sha256_file(path),
                        size=path.stat().st_size,
                    )
                )
            run.service_id = run.service_id or service_id
        for step in state.plan.steps:
            if step.price["unit"] == "run":
                add_usage(
                    s,
                    bill_key=f"run:{run_id}:step:{step.node_id}:block",
                    run_id=run_id,
                    node_id=step.node_id,
                    block_id=step.block_id,
                    version=step.version,
                    provider=step.provider,
                    quantity=1,
                    unit="run",
                    amount_wei=step.price["amount_wei"],
                )
            for owed in step.royalties:  # a published dataset the step read: its owner is paid per run
                name, _, version = owed["ref"].rpartition("@")
                add_usage(
                    s,
                    bill_key=f"run:{run_id}:step:{step.node_id}:{owed['ref']}",
                    run_id=run_id,
                    node_id=step.node_id,
                    block_id=name,
                    version=version,
                    provider=owed["provider"],
                    quantity=1,
                    unit="run",
                    amount_wei=owed["amount_wei"],
                )


def resolve_device(requested: str) -> str:
    """The torch device for a compute block's request; refuses `cuda` on a machine without a GPU."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise RunError("the pipeline asks for device 'cuda' but this machine has no usable GPU; use 'auto' or 'cpu'")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def execute_run(
    run_id: str,
    pipeline: Pipeline,
    plan: Plan,
    reporter: Reporter | None = None,
    engine: Literal["prefect", "direct"] = "prefect",
    remote: Any = None,
) -> None:
    """Run `plan` (already recorded as `run_id`) as a Prefect flow; raises RunError when a step fails.

    engine="direct" calls the same steps in order without Prefect: the baseline of bench/orchestration.py.
    """
    settings = get_settings()
    compute_params = pipeline.compute.params
    Session = session_factory()
    try:
        # A rented provider's machine asks "auto": its GPU when it has one (its tier was checked at start).
        device = resolve_device(pipeline.compute.block().device_request(compute_params))
    except RunError as exc:
        with Session.begin() as s:
            run = s.get(Run, run_id)
            run.status, run.error, run.finished_at = "failed", str(exc), utcnow()
        raise
    if getattr(compute_params, "threads", 0):
        torch.set_num_threads(compute_params.threads)
    db_reporter = DbReporter(run_id, reporter or NullReporter())
    compute, attempt = _billed_compute(run_id, plan)
    state = _RunState(pipeline, plan, settings, device, db_reporter, compute=compute, attempt=attempt, remote=remote)
    _ACTIVE[run_id] = state
    with Session.begin() as s:
        run = s.get(Run, run_id)
        run.status, run.started_at, run.device = "running", utcnow(), device

    try:
        if engine == "direct":
            for step in plan.steps:
                execute_step(run_id, step.node_id)
        else:
            _prefect_flow(run_id, plan)()
        _finish_run(state, run_id)
    except BaseException as exc:
        with Session.begin() as s:
            run = s.get(Run, run_id)
            # A preempted step has recorded the run as preempted; by now the submitter may have placed it again
            # (queued elsewhere), which this process must not undo.
            if isinstance(exc, Preempted):
                if run.status == "running":  # stopped between steps: the last finished one is kept
                    run.status = "preempted"
            elif run.status not in ("failed", "cancelled", "preempted"):
                run.status, run.error, run.finished_at = "failed", _reason(exc), utcnow()
        if isinstance(exc, (KeyboardInterrupt, SystemExit, Preempted)):
            raise
        with Session() as s:
            error = s.get(Run, run_id).error
        raise RunError(error or _reason(exc)) from exc
    finally:
        db_reporter.flush()
        _ACTIVE.pop(run_id, None)


def _billed_compute(run_id: str, plan: Plan) -> tuple[dict[str, Any] | None, int]:
    """For a run placed on a provider: the plan's compute tier at that provider's price, paid to it, and the
    attempt number; (None, 0) for a run on this machine."""
    from runtime.db import ProviderRow

    with session_factory()() as s:
        run = s.get(Run, run_id)
        row = s.get(ProviderRow, run.provider_id) if run is not None and run.provider_id else None
        if row is None:
            return None, 0
        compute = asdict(plan.compute)
        compute["provider"] = row.id
        compute["price"] = {**compute["price"], "amount_wei": int(row.price_wei_per_s)}
        return compute, run.attempt or 1


def _prefect_flow(run_id: str, plan: Plan) -> Any:
    """One Prefect flow for the Plan, one task per step (tasks run in order, in this process)."""
    configure_prefect()
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    step_task = task(execute_step, cache_policy=NO_CACHE, persist_result=False, retries=0)

    @flow(name=f"aib-{plan.name}", flow_run_name=run_id, persist_result=False, validate_parameters=False)
    def pipeline_flow() -> None:
        for step in plan.steps:
            step_task.with_options(name=step.node_id, task_run_name=f"{step.node_id} ({step.block_id})")(
                run_id, step.node_id
            )

    return pipeline_flow


def _segment_batches(pipeline: Pipeline) -> int:
    """Optimiser steps per verified segment asked for by the pipeline's compute block (0: per epoch)."""
    return int(getattr(pipeline.compute.params, "segment_batches", 0) or 0)


def verify_step(run_id: str, pipeline: Pipeline, plan: Plan, node_id: str, epochs: list[int]) -> dict[str, Any]:
    """Replay segments `epochs` of a finished training step (cut as its provider's work was: epochs, or
    segment_batches steps) from the checkpoints the provider committed, here (a trusted node), with the step's
    inputs from the step cache (steps that are never cached are computed here); the findings ({ok, checked, reason,
    …}) or {} when the step has no committed work or its inputs are not in the cache."""
    settings = get_settings()
    step = plan.step(node_id)
    node = pipeline.nodes[node_id]
    cache = StepCache(settings.cache_dir / "steps")
    device = "cuda" if torch.cuda.is_available() else "cpu"

    def outputs_of(src: str) -> dict[str, Any] | None:
        """A step's outputs: from the step cache, or computed here for a step that is never cached (speech.log-mel
        keeps its features in the shard store), from its own inputs."""
        src_step, src_node = plan.step(src), pipeline.nodes[src]
        if src_node.block.cacheable:
            return cache.get(src_step.cache_key)
        ins = inputs_of(src_step)
        if ins is None:
            return None
        ctx = StepContext(run_id=run_id, node_id=src, cache_key=src_step.cache_key, device=device,
                          base_dir=pipeline.base_dir, settings=settings, plan=plan.to_dict())  # fmt: skip
        return src_node.block().run(ctx, ins, src_node.params)

    def inputs_of(of: Any) -> dict[str, Any] | None:
        found = {}
        for port, src in of.inputs.items():
            src_node, src_port = src.split(".", 1)
            outputs = outputs_of(src_node)
            if outputs is None or src_port not in outputs:
                return None
            found[port] = outputs[src_port]
        return found

    inputs = inputs_of(step)
    if inputs is None:
        return {}
    ctx = StepContext(
        run_id=run_id,
        node_id=node_id,
        cache_key=step.cache_key,
        device=device,
        base_dir=pipeline.base_dir,
        settings=settings,
        plan=plan.to_dict(),
        verify_epochs=epochs,
    )
    node.block().run(ctx, inputs, node.params)
    return ctx.verification


def run_dir(run_id: str) -> Path:
    """Folder of a run's logs."""
    return get_settings().runs_dir / run_id


__all__ = ["DbReporter", "execute_run", "execute_step", "run_dir"]
