"""Distributed mode: a real `prefect server`, one work pool per compute tier, and runs placed on providers.

`aib server start` runs `prefect server` (its own SQLite under AIB_HOME, or a PostgreSQL URL for scale),
creates a process work pool per tier and deploys the pipeline flow to each. A provider agent runs a Prefect
worker on its tier's pool, pulling only from its own work queue, so the run the allocator placed on it runs
there and nowhere else. The embedded (ephemeral) mode of `make run` is untouched.

Two kinds of provider. An agent of the operator's own (`aib provider start` without --coordinator, on this machine)
runs the whole flow against the app database: it is trusted like the coordinator. A provider on another machine
(`aib provider start --coordinator URL`) is a stranger: it never reaches the database or disk; it signs in with its
wallet to the coordinator API (runtime/protocol/api.py, started here beside `prefect server`), and its worker runs
only leased training steps (runtime/protocol/worker.py) from sealed digitized inputs. Prefect's API is protected by
an auth string the coordinator hands to signed-in providers alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from builder.errors import AibError
from runtime.allocator import TIERS
from runtime.config import get_settings
from runtime.prefect_env import configure_prefect
from runtime.processes import pid_alive, stop_process_group, wait_for_http
from runtime.providers import HEARTBEAT_SECONDS

ROOT = Path(__file__).resolve().parents[1]
FLOW_NAME = "aib-pipeline"
LOST_AFTER_SECONDS = 3 * HEARTBEAT_SECONDS  # offline this long after its heartbeat deadline: vanished
PREEMPT_SIGNAL = signal.SIGUSR1
# What the flow runs of each deployment stand for; agents never load these (runtime/fixed_worker.py runs our code).
ENTRYPOINT = "runtime/distributed.py:pipeline_flow_impl"
LEASE_FLOW_NAME = "aib-lease"
LEASE_ENTRYPOINT = "runtime/protocol/worker.py:run_lease"


class ServerError(AibError):
    """The distributed server cannot be started, reached or used."""


def _server_file() -> Path:
    return get_settings().home / "server.json"


def server_info() -> dict[str, Any] | None:
    """The running server's address and process (None when none was started or it has stopped)."""
    path = _server_file()
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and pid_alive(info.get("pid")) else None


def api_url() -> str:
    """The Prefect API of the running server; ServerError telling how to start one otherwise."""
    info = server_info()
    if info is None:
        raise ServerError("no distributed server is running; start one with `aib server start`")
    return info["api_url"]


def prefect_auth_string() -> str:
    """The credentials of this coordinator's Prefect API (HTTP basic `user:password`), made on first use."""
    from runtime.config import local_secret

    return f"aib:{local_secret('prefect-api').hex()}"


def start_server(
    port: int = 4200,
    database_url: str | None = None,
    timeout: float = 120.0,
    host: str = "127.0.0.1",
    coordinator_port: int | None = None,
) -> dict[str, Any]:
    """Start `prefect server` (protected by its auth string) and the coordinator API on `host`, then create the
    work pools and deployments; its info."""
    running = server_info()
    if running is not None:
        return running
    settings = get_settings()
    home = settings.home / "prefect-server"
    home.mkdir(parents=True, exist_ok=True)
    db = database_url or f"sqlite+aiosqlite:///{home / 'prefect.db'}"
    if database_url and database_url.startswith("postgresql://"):
        db = "postgresql+asyncpg://" + database_url.removeprefix("postgresql://")
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": db,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_API_AUTH_STRING": prefect_auth_string(),
        "DO_NOT_TRACK": "1",
    }
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_API_AUTH_STRING", None)
    log = open(settings.home / "prefect-server.log", "ab")  # noqa: SIM115 - the child writes to it
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    local_host = "127.0.0.1" if host in ("0.0.0.0", "127.0.0.1") else host
    url = f"http://{local_host}:{port}/api"
    if not wait_for_http(proc, f"{url}/health", timeout):
        if proc.poll() is not None:
            raise ServerError(
                f"prefect server exited with code {proc.returncode}; see {settings.home / 'prefect-server.log'}"
            )
        stop_process_group(proc.pid)
        raise ServerError(f"prefect server did not answer on port {port} within {timeout:.0f} s")
    info: dict[str, Any] = {"api_url": url, "pid": proc.pid, "port": port,
                            "database": "postgresql" if database_url else "sqlite"}  # fmt: skip
    try:
        prepare_pools(url)
        info.update(_start_coordinator(host, local_host, coordinator_port or port + 1, timeout))
    except Exception as exc:
        stop_process_group(proc.pid)
        raise ServerError(f"the server started but could not be made ready: {exc}") from exc
    _server_file().write_text(json.dumps(info))
    return info


def _start_coordinator(host: str, local_host: str, port: int, timeout: float) -> dict[str, Any]:
    """The coordinator API (uvicorn) on `host`:`port`; what server.json records of it."""
    settings = get_settings()
    log = open(settings.home / "coordinator.log", "ab")  # noqa: SIM115 - the child writes to it
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "runtime.protocol.api:app", "--host", host, "--port", str(port),
         "--no-access-log"],
        env={**os.environ, "AIB_HOME": str(settings.home)}, cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://{local_host}:{port}"
    if not wait_for_http(proc, f"{url}/v1/health", timeout):
        stop_process_group(proc.pid)
        raise ServerError(f"the coordinator API did not answer on port {port}; see {settings.home / 'coordinator.log'}")
    return {"coordinator_url": url, "coordinator_pid": proc.pid}


def stop_server() -> bool:
    """Stop the running server; False when none was running."""
    info = server_info()
    _server_file().unlink(missing_ok=True)
    if info is None:
        return False
    if info.get("coordinator_pid"):
        stop_process_group(int(info["coordinator_pid"]))
    stop_process_group(int(info["pid"]))
    return True


@contextmanager
def _talking_to(url: str) -> Iterator[None]:
    """Prefect clients in this block use the distributed server (the process may have imported Prefect with
    another API, or none, in its settings: changing the environment afterwards would not reach them)."""
    configure_prefect()
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_API_AUTH_STRING: prefect_auth_string()}):
        yield


def prepare_pools(url: str) -> None:
    """A process work pool per tier and a deployment of the pipeline flow on each (idempotent)."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    async def setup() -> None:
        async with get_client() as client:
            flows = [(await client.create_flow_from_name(FLOW_NAME), ENTRYPOINT, ["run_id", "ticket"]),
                     (await client.create_flow_from_name(LEASE_FLOW_NAME), LEASE_ENTRYPOINT, ["lease_id"])]  # fmt: skip
            for tier in TIERS:
                try:
                    await client.create_work_pool(WorkPoolCreate(name=tier, type="process"))
                except ObjectAlreadyExists:
                    pass
                for flow_id, entrypoint, params in flows:
                    await client.create_deployment(
                        flow_id,
                        name=tier,
                        work_pool_name=tier,
                        entrypoint=entrypoint,
                        path=str(ROOT),
                        pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}],
                        parameter_openapi_schema={
                            "type": "object",
                            "properties": {p: {"type": "string"} for p in params},
                            "required": params,
                        },
                    )

    with _talking_to(url):
        asyncio.run(setup())


def flow_ticket(run_id: str, attempt: int, provider_id: str) -> str:
    """The coordinator's ticket for one attempt of a run on one operator agent (HMAC with a secret of this
    installation): an agent runs a recorded run only with it, so a flow run scheduled by anyone else runs nothing."""
    import hashlib
    import hmac

    from runtime.config import local_secret

    message = f"{run_id}|{attempt}|{provider_id}".encode()
    return hmac.new(local_secret("flow-tickets"), message, hashlib.sha256).hexdigest()


def pipeline_flow_impl(run_id: str, ticket: str) -> None:
    """Run a recorded run here (on an operator agent's machine): the pipeline and plan come from the database;
    refused unless the run is queued on this agent and `ticket` is the coordinator's for this attempt."""
    import hmac

    from builder.pipeline import load_pipeline
    from runtime.datasets import compile_with_datasets
    from runtime.db import Run, session_factory
    from runtime.runner import Preempted, execute_run

    with session_factory()() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise ServerError(f"run {run_id} is not in this provider's database")
        me = os.environ.get("AIB_PROVIDER_ID", "")
        expected = flow_ticket(run_id, run.attempt or 0, run.provider_id or "")
        if run.provider_id != me or run.status != "queued" or not hmac.compare_digest(ticket, expected):
            raise ServerError(f"run {run_id} was not handed to this agent by the coordinator; nothing was run")
        path, overrides = Path(run.pipeline_path or ""), list(run.overrides or [])
    pipeline = load_pipeline(path, overrides)
    plan = compile_with_datasets(pipeline)
    with session_factory()() as s:
        run = s.get(Run, run_id)
        if plan.plan_hash != run.plan_hash:
            raise ServerError(f"run {run_id}: {path} changed since the run was submitted; submit it again")
        run.pid = os.getpid()
        s.commit()

    def preempt(signum: int, frame: Any) -> None:
        raise Preempted()

    # The provider agent sends PREEMPT_SIGNAL when it takes its machine back: the running step stops here, its
    # last checkpoint stays, the run is marked preempted and the submitter resumes it on another provider. (Not
    # SIGTERM: Prefect turns that into its own termination of the task run while a task runs.)
    from runtime.work_receipts import committed, sign_attempt

    before = {step.node_id: len(committed(step.cache_key)) for step in plan.steps}
    with session_factory()() as s:
        attempt = s.get(Run, run_id).attempt or 1
    previous = signal.signal(PREEMPT_SIGNAL, preempt)
    try:
        execute_run(run_id, pipeline, plan)
    except Preempted:
        return
    finally:
        signal.signal(PREEMPT_SIGNAL, previous)
        sign_attempt(run_id, plan, attempt, before)  # what this attempt trained, signed by the provider


def place_run(run_id: str, pipeline: Any, plan: Any, exclude: frozenset[str] = frozenset()) -> Any:
    """Choose a provider for a recorded run with the Resource Allocator (never one in `exclude`: those that
    preempted it) and record the choice, its reason and the attempt; RunError (the run marked failed) when no
    online provider can take it."""
    from builder.errors import RunError
    from runtime.allocator import RunRequest, allocate
    from runtime.db import Run, session_factory, utcnow
    from runtime.providers import offers

    params = pipeline.compute.params
    datasets = frozenset(r["dataset"] for step in plan.steps for r in step.royalties)
    max_price = round(params.max_price_per_hour * 10**18 / 3600) if params.max_price_per_hour else None
    request = RunRequest(
        id=run_id,
        tier=params.tier,
        memory_gb=params.memory_gb,
        estimated_seconds=sum(st.estimated_seconds for st in plan.steps),
        datasets=datasets,
        max_price_wei_per_s=max_price,
    )
    Session = session_factory()
    with Session.begin() as s:
        [assignment] = allocate([request], [o for o in offers(s) if o.id not in exclude])
        run = s.get(Run, run_id)
        run.provider_id, run.allocation = assignment.provider_id, assignment.reason
        run.attempt, run.status, run.error = (run.attempt or 0) + 1, "queued", None
        if assignment.provider_id is None:
            run.status, run.error, run.finished_at = "failed", f"no provider: {assignment.reason}", utcnow()
    if assignment.provider_id is None:
        raise RunError(f"no provider: {assignment.reason}")
    return assignment


def submit_run(run_id: str, provider_id: str) -> str:
    """Hand the run to the chosen provider's work queue (on its tier's pool), with the coordinator's ticket for
    this attempt; the Prefect flow run id."""
    from runtime.db import ProviderRow, Run, session_factory

    url = api_url()
    with session_factory()() as s:
        tier = s.get(ProviderRow, provider_id).tier
        ticket = flow_ticket(run_id, s.get(Run, run_id).attempt or 0, provider_id)
    configure_prefect()
    from prefect.deployments import run_deployment

    with _talking_to(url):
        flow_run = run_deployment(
            f"{FLOW_NAME}/{tier}",
            parameters={"run_id": run_id, "ticket": ticket},
            work_queue_name=provider_id,
            flow_run_name=run_id,
            timeout=0,  # return once scheduled; the caller follows the run in the app database
        )
    return str(flow_run.id)


def _outside_flow(fn: Any) -> Any:
    """`fn()` in a thread of its own: Prefect clients inside a running flow or task (a leased step is called from
    the run's own flow) would otherwise use that flow's API instead of the distributed server's."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


def submit_lease(lease_id: str, provider_id: str, tier: str) -> str:
    """Hand a lease to a protocol provider's work queue (on its tier's pool); the Prefect flow run id."""
    url = api_url()
    configure_prefect()
    from prefect.deployments import run_deployment

    def submit() -> str:
        with _talking_to(url):
            flow_run = run_deployment(
                f"{LEASE_FLOW_NAME}/{tier}",
                parameters={"lease_id": lease_id},
                work_queue_name=provider_id,
                flow_run_name=lease_id,
                timeout=0,
            )
        return str(flow_run.id)

    return _outside_flow(submit)


def flow_run_state(flow_run_id: str) -> tuple[str, str]:
    """(state type, message) of a flow run on the server, e.g. ("CRASHED", "…")."""
    import asyncio
    import uuid

    from prefect.client.orchestration import get_client

    async def read() -> tuple[str, str]:
        async with get_client() as client:
            fr = await client.read_flow_run(uuid.UUID(flow_run_id))
            return (fr.state.type.value if fr.state else "UNKNOWN", (fr.state.message or "") if fr.state else "")

    def in_thread() -> tuple[str, str]:
        with _talking_to(api_url()):
            return asyncio.run(read())

    return _outside_flow(in_thread)


def cancel_flow_run(flow_run_id: str) -> None:
    """Best effort: cancel a flow run on the server so that no worker starts it later."""
    import asyncio
    import uuid

    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    async def cancel() -> None:
        async with get_client() as client:
            await client.set_flow_run_state(uuid.UUID(flow_run_id), Cancelled(), force=True)

    try:
        with _talking_to(api_url()):
            asyncio.run(cancel())
    except Exception:  # the server may be gone too; the run is already marked
        pass


def wait_for_run(run_id: str, flow_run_id: str, on_change: Any = None, poll: float = 1.0) -> str:
    """Follow a submitted run until this attempt ends; its status. A run whose provider went offline and stayed
    silent is marked preempted (it resumes elsewhere); a flow run that crashes or fails before the run records
    its own end (the worker could not start it) fails the run with why."""
    from runtime.db import ProviderRow, Run, Step, session_factory, utcnow
    from runtime.providers import is_online

    Session = session_factory()
    seen: dict[str, str] = {}
    offline_since: float | None = None
    while True:
        with Session() as s:
            run = s.get(Run, run_id)
            steps = {st.node_id: st.status for st in s.query(Step).filter(Step.run_id == run_id)}
            provider = s.get(ProviderRow, run.provider_id) if run.provider_id else None
        if on_change is not None:
            for node, status in steps.items():
                if seen.get(node) != status:
                    on_change(node, status)
            seen = steps
        if run.status in ("succeeded", "failed", "cancelled", "preempted"):
            return run.status
        state, message = flow_run_state(flow_run_id)
        gone = provider is not None and not is_online(provider)
        offline_since = (offline_since or time.monotonic()) if gone else None
        # A provider stopping on purpose records the run as preempted within a second or two; one that stays
        # silent this long has vanished.
        if offline_since is not None and time.monotonic() - offline_since > LOST_AFTER_SECONDS:
            # The provider vanished (no heartbeat) or stopped without recording the run's end: the run resumes
            # elsewhere from its last checkpoint; the vanished provider is paid nothing for the unfinished step.
            with Session.begin() as s:
                run = s.get(Run, run_id)
                if run.status not in ("succeeded", "failed", "cancelled"):
                    run.status = "preempted"
                    run.error = f"provider {provider.id} went offline during the run"
            cancel_flow_run(flow_run_id)
            continue
        if state in ("CRASHED", "FAILED", "CANCELLED"):
            why = f"the provider's worker reported {state.lower()}: {message or 'no reason given'}"
            with Session.begin() as s:
                run = s.get(Run, run_id)
                if run.status not in ("succeeded", "failed", "cancelled", "preempted"):
                    run.status, run.error, run.finished_at = "failed", why, utcnow()
            continue
        time.sleep(poll)


VERIFY_RATE = 0.1  # share of committed epochs replayed per training step (at least one)


def verify_run(
    run_id: str, pipeline: Any, plan: Any, rate: float = VERIFY_RATE, precached: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Spot-check the training a provider did for a finished run: replay a secret random sample of each training
    step's committed epochs here and compare. A mismatch fails the run, withholds the provider's compute payment
    for it and halves its reputation; so does missing or unreadable evidence of a training step the provider ran
    (every step of a block that trains, except those in `precached`: already done before the run was placed).
    The findings per step (also kept in the run's metrics)."""
    import pickle
    import random

    from runtime.db import ApiKey, Artifact, ProviderRow, Run, Service, Usage, session_factory, utcnow
    from runtime.runner import verify_step
    from runtime.verification import choose_segments, commitments_root
    from runtime.work_receipts import committed

    secret = os.urandom(32)
    findings: dict[str, Any] = {}
    for step in plan.steps:
        trains = pipeline.nodes[step.node_id].block.trains and step.node_id not in precached
        commitments = committed(step.cache_key)
        n = len(commitments) - 1
        if n <= 0:
            if trains:
                findings[step.node_id] = {
                    "ok": False,
                    "reason": "no evidence of its training: the provider committed no readable checkpoints",
                }
            continue
        picked = [k + 1 for k in choose_segments(n, rate, commitments_root(commitments), secret)]
        picked = picked or [random.Random(secret).randrange(n) + 1]
        try:
            found = verify_step(run_id, pipeline, plan, step.node_id, picked)
        except (OSError, RuntimeError, ValueError, KeyError, EOFError, pickle.UnpicklingError) as exc:
            found = {"ok": False, "reason": f"its evidence cannot be read ({type(exc).__name__}: {exc})"[:500]}
        findings[step.node_id] = found or {
            "ok": False,
            "reason": "its inputs are not in the coordinator's cache, so its work cannot be checked",
        }
    bad = {node: f for node, f in findings.items() if f.get("ok") is False}
    Session = session_factory()
    with Session.begin() as s:
        run = s.get(Run, run_id)
        run.metrics = {**(run.metrics or {}), "verification": findings}
        if bad:
            node, f = next(iter(bad.items()))
            run.status, run.finished_at = "failed", utcnow()
            run.error = f"verification failed: step {node!r}: {f.get('reason')}; the provider is not paid for this run"
            for u in s.query(Usage).filter(Usage.run_id == run_id, Usage.provider == run.provider_id):
                u.amount_wei = 0  # withheld: the record of the claimed work stays, unpaid
            # What was built on the unverified work is not served: its service and artifact records go.
            services = [svc.id for svc in s.query(Service).filter(Service.run_id == run_id)]
            s.query(ApiKey).filter(ApiKey.service_id.in_(services)).delete(synchronize_session=False)
            s.query(Service).filter(Service.id.in_(services)).delete(synchronize_session=False)
            s.query(Artifact).filter(Artifact.run_id == run_id).delete(synchronize_session=False)
            run.service_id = None
            provider = s.get(ProviderRow, run.provider_id) if run.provider_id else None
            if provider is not None:
                provider.reputation = round(provider.reputation * 0.5, 4)
    if bad:  # after the payment is withheld: a chain that does not answer must not undo that
        _slash_on_chain(run_id, bad)
        with Session.begin() as s:
            run = s.get(Run, run_id)
            run.metrics = {**(run.metrics or {}), "verification": findings}
    return findings


def discard_unverified(plan: Any, keep: frozenset[str]) -> None:
    """Forget what a provider whose work failed verification left for the run's steps (except `keep`: steps held
    before the run was placed): cached outputs, checkpoints and committed segments, so that the next provider
    computes them again from the start instead of resuming from or reusing the rejected work."""
    import shutil

    from runtime.config import get_settings
    from runtime.context import work_dir
    from runtime.store import StepCache

    settings = get_settings()
    cache = StepCache(settings.cache_dir / "steps")
    for step in plan.steps:
        if step.node_id in keep:
            continue
        cache.discard(step.cache_key)
        shutil.rmtree(work_dir(settings, step.cache_key), ignore_errors=True)


def _slash_on_chain(run_id: str, bad: dict[str, dict[str, Any]]) -> None:
    """For a paid run whose provider signed receipts: slash its stake with the first replay that proves a cheat."""
    from runtime.chain_node import payments_enabled
    from runtime.db import Run, session_factory
    from runtime.work_receipts import slash_cheat

    with session_factory()() as s:
        receipts = (s.get(Run, run_id).metrics or {}).get("receipts", [])
    if not receipts or not payments_enabled():
        return
    from builder.errors import AibError

    for node, found in bad.items():
        if found.get("replayed_hash") and found.get("segment"):
            try:
                found["slash"] = slash_cheat(
                    run_id, node, int(found["segment"]), found["committed_hash"], found["replayed_hash"], receipts
                )
            except AibError as exc:  # the node is down: the finding says so; the receipt stays slashable later
                found["slash"] = {"error": str(exc)}
            return


if __name__ == "__main__":  # an operator agent's work (runtime/fixed_worker.run_command): python -m runtime.distributed
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pipeline_flow_impl(sys.argv[1], sys.argv[2])


__all__ = [
    "ServerError",
    "api_url",
    "flow_ticket",
    "pipeline_flow_impl",
    "place_run",
    "prefect_auth_string",
    "server_info",
    "start_server",
    "stop_server",
    "submit_lease",
    "submit_run",
    "wait_for_run",
]
