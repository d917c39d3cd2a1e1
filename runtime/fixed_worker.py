"""A Prefect worker that runs only our own code: how every provider agent pulls its work.

It pulls flow runs from Prefect exactly where a Prefect process worker would (the tier's work pool, the offer's own
work queue), heartbeats as a worker of that pool, and reports each flow run's state. But it never loads a
deployment's entrypoint or runs its pull steps: a flow run only names which work to do (`lease_id`, or `run_id`
with the coordinator's ticket), and the worker runs the fixed code for it in a child process. Prefect's open-source
server has one credential for everything, and providers on other machines hold it; with a stock worker, anyone
holding it could create a deployment with a shell step and schedule it on any machine's queue. Here such a flow run
is marked failed and nothing of it runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.prefect_env import configure_prefect

HEARTBEAT_SECONDS = 10.0
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class _Job:
    flow_run_id: Any
    proc: subprocess.Popen
    log: Path


@dataclass
class FixedWorker:
    """Pulls flow runs of `pool`/`queue` and runs `command(parameters)` (the fixed code) for each, `slots` at once."""

    pool: str
    queue: str
    name: str
    command: Any  # (parameters: dict) -> argv list, or raises ValueError for a flow run that is not ours to run
    slots: int = 1
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    api_url: str = ""
    auth_string: str = ""
    query_seconds: float = float(os.environ.get("PREFECT_WORKER_QUERY_SECONDS", "5"))
    logs: Path = field(default_factory=lambda: Path.cwd())
    jobs: dict[str, _Job] = field(default_factory=dict)

    def run(self, stop: threading.Event) -> None:
        """Pull and run work until `stop` is set; children still running are left to the caller (preemption)."""
        configure_prefect()
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        settings = {PREFECT_API_URL: self.api_url, PREFECT_API_AUTH_STRING: self.auth_string}
        with temporary_settings(updates=settings), get_client(sync_client=True) as client:
            from prefect.exceptions import ObjectAlreadyExists

            try:  # its own queue in the tier's pool, where the coordinator places its work
                client.create_work_queue(name=self.queue, work_pool_name=self.pool)
            except ObjectAlreadyExists:
                pass
            beat = 0.0
            while not stop.is_set():
                if time.monotonic() - beat > HEARTBEAT_SECONDS:
                    client.send_worker_heartbeat(self.pool, self.name, heartbeat_interval_seconds=HEARTBEAT_SECONDS)
                    beat = time.monotonic()
                self._reap(client)
                if len(self.jobs) < self.slots:
                    self._pull(client)
                stop.wait(self.query_seconds)
            self._reap(client)

    def _pull(self, client: Any) -> None:
        from prefect.states import Failed, Pending, Running

        scheduled = client.get_scheduled_flow_runs_for_work_pool(self.pool, work_queue_names=[self.queue])
        for response in scheduled:
            if len(self.jobs) >= self.slots:
                return
            run = response.flow_run
            if str(run.id) in self.jobs:
                continue
            if client.set_flow_run_state(run.id, Pending()).status.value != "ACCEPT":
                continue  # taken by another worker, or cancelled meanwhile
            try:
                argv = self.command(dict(run.parameters or {}))
            except ValueError as exc:  # not a flow run of ours: nothing of it runs
                client.set_flow_run_state(run.id, Failed(message=f"refused by worker {self.name}: {exc}"))
                continue
            client.set_flow_run_state(run.id, Running(), force=True)
            self.logs.mkdir(parents=True, exist_ok=True)
            log = self.logs / f"{run.id}.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(argv, env=self.env, cwd=str(ROOT), stdout=out, stderr=subprocess.STDOUT)
            self.jobs[str(run.id)] = _Job(run.id, proc, log)

    def _reap(self, client: Any) -> None:
        from prefect.states import Completed, Crashed

        for key, job in list(self.jobs.items()):
            code = job.proc.poll()
            if code is None:
                continue
            del self.jobs[key]
            if code == 0:
                client.set_flow_run_state(job.flow_run_id, Completed(), force=True)
            else:
                client.set_flow_run_state(job.flow_run_id, Crashed(message=_last_line(job.log, code)), force=True)

    def start(self) -> FixedWorker:
        """Run in a thread of this process (its agent's); `error` holds what stopped it, if anything did."""
        self._stop = threading.Event()
        self.error: BaseException | None = None

        def body() -> None:
            try:
                self.run(self._stop)
            except BaseException as exc:  # reported by the agent, which stops
                self.error = exc

        self._thread = threading.Thread(target=body, name=f"worker-{self.name}", daemon=True)
        self._thread.start()
        return self

    def alive(self) -> bool:
        """Whether the pulling thread still runs."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop pulling (children that still run are the caller's to preempt or stop)."""
        self._stop.set()
        self._thread.join(timeout)

    def children(self) -> list[int]:
        """Process ids of the work running now."""
        return [job.proc.pid for job in self.jobs.values() if job.proc.poll() is None]


def _last_line(log: Path, code: int) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    return f"exit code {code}: {lines[-1][:300]}" if lines else f"exit code {code}"


def lease_command(parameters: dict[str, Any]) -> list[str]:
    """A protocol provider's work: one lease (its code claims it with this provider's own wallet)."""
    lease_id = parameters.get("lease_id")
    if set(parameters) != {"lease_id"} or not isinstance(lease_id, str) or not lease_id.startswith("lease-"):
        raise ValueError("a provider runs leases only (a flow run with a lease_id alone)")
    return [sys.executable, "-m", "runtime.protocol.worker", lease_id]


def run_command(parameters: dict[str, Any]) -> list[str]:
    """An operator agent's work: a recorded run, with the coordinator's ticket for it (checked by the run's code)."""
    run_id, ticket = parameters.get("run_id"), parameters.get("ticket")
    if set(parameters) != {"run_id", "ticket"} or not isinstance(run_id, str) or not isinstance(ticket, str):
        raise ValueError("an operator agent runs recorded runs only (a flow run with a run_id and its ticket)")
    return [sys.executable, "-m", "runtime.distributed", run_id, ticket]


__all__ = ["FixedWorker", "lease_command", "run_command"]
