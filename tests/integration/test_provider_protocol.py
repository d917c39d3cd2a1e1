"""Providers that speak only the provider protocol, for real: `aib server start` (prefect server + coordinator API),
provider agents with their own AIB_HOME (no access to the coordinator's database or files: they have its URL and a
wallet key), and `aib run` leasing the training step to them. Outcomes are read where the user sees them: the run
summary, the ledger and the coordinator's lease records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from contextlib import contextmanager
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.integration.test_distributed import (
    AIB,
    EPOCHS,
    QUICK_HEARTBEATS,
    aib,
    assert_same_as_on_local_compute,
    env,
    rented_copy,
    signal_pending,
    task_states,
    wait_for,
)

LAZY = """
# A provider's machine running altered code: it reports every epoch but never trains (weights never change).
import runtime.training

runtime.training._epoch = lambda module, opt, x, y, loss_fn, seed, epoch, batch_size, device: 0.5
"""


@pytest.fixture(scope="module")
def server():
    started = aib("server", "start", "--port", str(free_port()), "--coordinator-port", str(free_port()), "--json",
                  timeout=240)  # fmt: skip
    assert started.returncode == 0, started.stderr
    yield json.loads(started.stdout)
    aib("server", "stop")


def offers_listed() -> dict[str, dict]:
    """Protocol offers by name; of several with one name (agents of earlier tests), the online one."""
    from runtime.db import session_factory
    from runtime.providers import offer_rows

    with session_factory()() as s:
        rows = [r for r in offer_rows(s) if r["via"] == "api"]
    return {r["name"]: r for r in sorted(rows, key=lambda r: r["online"])}


@contextmanager
def agent_processes(tmp_path: Path, commands: dict[str, list[str]], envs: dict | None = None):
    """`aib` agent processes (name → its arguments), each with its own AIB_HOME under tmp_path and no database URL:
    ({name: process}, {name: home}); stopped (SIGTERM, then SIGKILL) at the end."""
    homes = {n: tmp_path / f"home-{n}" for n in commands}
    agents = {}
    for n, argv in commands.items():
        homes[n].mkdir(mode=0o700, parents=True, exist_ok=True)
        e = {**env(), "AIB_HOME": str(homes[n]), "PREFECT_WORKER_QUERY_SECONDS": "1", **(envs or {}).get(n, {})}
        e.pop("AIB_DATABASE_URL", None)
        agents[n] = subprocess.Popen([*AIB, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=e, start_new_session=True)  # fmt: skip
    try:
        yield agents, homes
    finally:
        for a in agents.values():
            if a.poll() is None:
                os.killpg(a.pid, signal.SIGTERM)
        for a in agents.values():
            try:
                a.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(a.pid, signal.SIGKILL)


@contextmanager
def protocol_agents(server: dict, tmp_path: Path, *offers: tuple[str, str], envs: dict | None = None,
                    extra: dict | None = None):  # fmt: skip
    """Protocol agents (name, price per hour), each with its own AIB_HOME under tmp_path, yielded once online:
    ({name: offer}, {name: process}, {name: home}). `extra`: more arguments of an agent, by name."""
    commands = {n: ["provider", "start", "--coordinator", server["coordinator_url"], "--tier", "cpu", "--price", price,
                    "--name", n, *(extra or {}).get(n, [])] for n, price in offers}  # fmt: skip
    with agent_processes(tmp_path, commands, envs) as (agents, homes):

        def online():
            listed = {n: r for n, r in offers_listed().items() if n in agents and r["online"]}
            return listed if len(listed) == len(agents) else None

        listed = wait_for(online, 120, f"{len(agents)} protocol providers online")
        yield listed, agents, homes


def leases_of(run_id: str | None = None, provider_id: str | None = None) -> list:
    from runtime.db import Lease, session_factory

    with session_factory()() as s:
        q = s.query(Lease)
        if run_id:
            q = q.filter(Lease.run_id == run_id)
        if provider_id:
            q = q.filter(Lease.provider_id == provider_id)
        return q.order_by(Lease.created_at).all()


def stopped_mid_lease(submitter: subprocess.Popen, provider_id: str, segments: int = 2,
                      home: Path | None = None) -> tuple[int, str]:  # fmt: skip
    """The provider's lease process, stopped (SIGSTOP) in the middle of its training; (pid, lease id).

    With `home` (the provider's AIB_HOME), once the lease has committed `segments` checkpoints in its own work folder:
    what the test then does (a preemption, which sends every committed checkpoint) lands mid-training however late
    the checkpoints reach the coordinator. Without it, once the coordinator holds `segments` uploaded checkpoints (for
    a provider that vanishes without a last sync). Watching the coordinator alone lost the race on a busy machine:
    the checkpoints arrived in a burst and the lease had trained every epoch when it was stopped."""
    deadline = time.monotonic() + 240
    lease = None
    while True:
        assert submitter.poll() is None, submitter.stdout.read()
        assert time.monotonic() < deadline, f"no lease on {provider_id} got {segments} checkpoints in"
        if lease is None:
            running = [x for x in leases_of(provider_id=provider_id) if x.status == "claimed" and x.pid]
            lease = running[-1] if running else None
        if lease is not None:
            done = len(lease.uploads or {}) if home is None else _committed(home, lease.id)
            if done >= segments:
                os.kill(lease.pid, signal.SIGSTOP)
                wait_for(lambda p=lease.pid: task_states(p) == {"T"}, 30, "the lease's process to stop")
                if home is not None:  # else the preempted lease ends complete, and the run needs no other provider
                    assert _committed(home, lease.id) < lease.job["segments"], "the lease trained every epoch unseen"
                return lease.pid, lease.id
            if home is None:
                lease = None  # read it again for its uploads
        time.sleep(0.01 if home is not None else 0.05)


def _committed(home: Path, lease_id: str) -> int:
    """How many checkpoints (after the starting one) lease `lease_id` has committed in the provider's work folder."""
    from runtime.config import Settings
    from runtime.context import segments_dir

    folder = segments_dir(Settings(home=home, database_url=""), lease_id)  # the provider's own layout
    try:
        return len(json.loads((folder / "commitments.json").read_text())) - 1
    except (OSError, ValueError):
        return 0


def summary_of(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=500)
    assert proc.returncode == 0, out[-4000:]
    return json.loads(out.strip().splitlines()[-1])


def compute_paid(run_id: str) -> dict[str, int]:
    from runtime.db import Usage, session_factory

    paid: dict[str, int] = {}
    with session_factory()() as s:
        for u in s.query(Usage).filter(Usage.run_id == run_id, Usage.block_id == "compute.rented"):
            paid[u.provider] = paid.get(u.provider, 0) + u.amount_wei
    return paid


def test_prefects_api_answers_only_with_the_coordinators_credentials(server):
    r = httpx.post(f"{server['api_url']}/work_pools/filter", json={}, timeout=10)
    assert r.status_code == 401
    from runtime.distributed import prefect_auth_string

    auth = tuple(prefect_auth_string().split(":", 1))
    assert httpx.post(f"{server['api_url']}/work_pools/filter", json={}, timeout=10, auth=auth).status_code == 200


def test_a_provider_trains_from_sealed_digitized_shards_is_verified_and_paid_on_the_coordinators_clock(
    server, tmp_path
):
    from runtime.protocol.blobs import BlobStore

    with protocol_agents(server, tmp_path, ("cheap", "0.36"), ("dear", "0.72")) as (offers, _, homes):
        path = rented_copy(tmp_path)
        seed = time.time_ns() % 10**6
        r = aib("run", str(path), "--set", "classifier.epochs=5", "--set", f"classifier.seed={seed}", "--json",
                timeout=500)  # fmt: skip
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        summary = json.loads(r.stdout.strip().splitlines()[-1])
        cheap = offers["cheap"]["id"]
        assert summary["status"] == "succeeded" and summary["provider_id"] == cheap
        checked = summary["metrics"]["verification"]["classifier"]
        assert checked["ok"] is True and checked["checked"] and checked["max_abs_diff"] == 0.0
        [lease] = leases_of(summary["run_id"])
        assert lease.status == "completed" and lease.provider_id == cheap
        assert len(lease.uploads) == 5  # a checkpoint per epoch (the starting one is the coordinator's own)
        # Billed on the coordinator's clock (claim to completion), at the provider's own price, to it alone.
        worked = (lease.finished_at - lease.claimed_at).total_seconds()
        [usage] = [u for u in summary["usage"] if u["block_id"] == "compute.rented"]
        assert usage["provider"] == cheap and usage["quantity"] == pytest.approx(worked, abs=1e-3)
        # In exact decimals, rounded half up to a wei: the float `worked * price // 3600` fell a wei short for some
        # durations (0.755311 s gave …99999999), which failed this test now and then.
        per_second = Decimal(int(offers["cheap"]["price_per_hour_wei"]) // 3600)
        assert usage["amount_wei"] == int((per_second * Decimal(repr(worked))).quantize(Decimal(1), ROUND_HALF_UP))
        # The provider holds no database and none of the raw FAQ: only sealed inputs it opened (tensors).
        home = homes["cheap"]
        assert not list(home.rglob("*.db"))
        faq_text = (path.parent / "data" / "faq.csv").read_text().splitlines()[1].split(",")[0].encode()
        for f in home.rglob("*"):
            if f.is_file():
                assert faq_text not in f.read_bytes(), f
        # A second run on the same data (another seed): the provider fetches the starting checkpoint alone, not one
        # byte of the data shards or the training program it already holds.
        again = aib("run", str(path), "--set", "classifier.epochs=2", "--set", f"classifier.seed={seed + 1}", "--json",
                    timeout=500)  # fmt: skip
        assert again.returncode == 0, again.stdout[-3000:]
        [second] = leases_of(json.loads(again.stdout.strip().splitlines()[-1])["run_id"])
        program, resume = second.job["inputs"]["program"], second.job["resume"]
        # The same model trained again is the same (weightless) program: held already, like the data.
        assert second.provider_id == cheap and set(second.served) == {resume["sealed_sha256"]}
        assert second.served_bytes == BlobStore().size(resume["sealed_sha256"]) and program["sha256"]
        data_shards = {second.job["inputs"][n]["sha256"] for n in ("x", "y", "ex", "ey")}
        assert data_shards <= set(offers_listed()["cheap"]["datasets"])  # reported for data locality


def test_a_preempted_lease_resumes_from_its_last_checkpoint_on_another_provider_as_if_never_stopped(server, tmp_path):
    from runtime.db import MetricPoint, session_factory

    with protocol_agents(server, tmp_path, ("miner-a", "0.36"), ("miner-b", "0.72")) as (offers, _, homes):
        path = rented_copy(tmp_path)
        overrides = [f"classifier.epochs={EPOCHS}", "classifier.batch_size=4",
                     f"classifier.seed={time.time_ns() % 10**6}"]  # fmt: skip
        sets = sum((["--set", o] for o in overrides), [])
        run = subprocess.Popen([*AIB, "run", str(path), "--json", *sets], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env(), start_new_session=True)  # fmt: skip
        a = offers["miner-a"]["id"]
        pid, lease_id = stopped_mid_lease(run, a, home=homes["miner-a"])
        try:
            stopping = subprocess.Popen([*AIB, "provider", "preempt", a], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True,
                                        env={**env(), "AIB_HOME": str(homes["miner-a"])})  # fmt: skip
            wait_for(lambda: signal_pending(pid, signal.SIGUSR1) or stopping.poll() is not None, 120,
                     "the agent's preemption signal")  # fmt: skip
        finally:
            os.kill(pid, signal.SIGCONT)
        out, _ = stopping.communicate(timeout=240)
        assert stopping.returncode == 0, out
        summary = summary_of(run)
        assert summary["status"] == "succeeded" and summary["provider_id"] == offers["miner-b"]["id"]
        first, second = leases_of(summary["run_id"])
        assert (first.id, first.status, first.reason) == (lease_id, "preempted", "the provider took its machine back")
        from runtime.protocol.leases import accepted

        assert second.status == "completed" and second.job["start"] == len(accepted(first)) - 1 >= 2
        with session_factory()() as s:
            points = s.query(MetricPoint).filter(MetricPoint.run_id == summary["run_id"])
            resumed = [p.value for p in points.filter(MetricPoint.name == "resumed_from_epoch")]
        assert resumed and 2 <= resumed[0] < EPOCHS  # where the first stopped, not from the start
        assert set(compute_paid(summary["run_id"])) == {a, offers["miner-b"]["id"]}  # each for its time

    assert_same_as_on_local_compute(summary, path, sets, tmp_path / "fresh-home")


def test_a_provider_that_vanishes_is_not_paid_and_its_step_resumes_elsewhere(server, tmp_path):
    with protocol_agents(server, tmp_path, ("flaky", "0.30"), ("steady", "0.90")) as (offers, agents, _):
        path = rented_copy(tmp_path)
        overrides = [f"classifier.epochs={EPOCHS}", "classifier.batch_size=4",
                     f"classifier.seed={time.time_ns() % 10**6}"]  # fmt: skip
        # A lease syncs every 0.5 s: this run gives one silent for 6 s up as lost (15 s by default).
        run = subprocess.Popen([*AIB, "run", str(path), "--json", *sum((["--set", o] for o in overrides), [])],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**env(), **QUICK_HEARTBEATS}, start_new_session=True)  # fmt: skip
        flaky = offers["flaky"]["id"]
        pid, _ = stopped_mid_lease(run, flaky)
        worker = subprocess.run(["pgrep", "-f", f"worker start .*--name {flaky}"], capture_output=True, text=True)
        for p in [pid, *map(int, worker.stdout.split())]:
            os.kill(p, signal.SIGKILL)
        os.killpg(agents["flaky"].pid, signal.SIGKILL)  # the machine is gone: no goodbye, no release
        summary = summary_of(run)
        assert summary["status"] == "succeeded" and summary["provider_id"] == offers["steady"]["id"]
        first, second = leases_of(summary["run_id"])
        assert first.status == "lost" and "stopped answering" in first.reason
        assert second.job["start"] >= 2  # from the checkpoints that had arrived
        assert set(compute_paid(summary["run_id"])) == {offers["steady"]["id"]}


def test_work_that_fails_verification_is_not_paid_and_is_redone_by_another_provider(server, tmp_path):
    from runtime.db import ProviderRow, Service, session_factory

    altered = tmp_path / "altered"
    altered.mkdir()
    (altered / "sitecustomize.py").write_text(LAZY)
    pythonpath = os.pathsep.join(p for p in (str(altered), os.environ.get("PYTHONPATH", "")) if p)
    with protocol_agents(server, tmp_path, ("lazy", "0.20"), ("honest", "0.80"),
                         envs={"lazy": {"PYTHONPATH": pythonpath}}) as (offers, _, _h):  # fmt: skip
        lazy, honest = offers["lazy"]["id"], offers["honest"]["id"]
        path = rented_copy(tmp_path)
        r = aib("run", str(path), "--set", "classifier.epochs=5", "--set", f"classifier.seed={time.time_ns() % 10**6}",
                timeout=600)  # fmt: skip
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert f"{lazy}'s work failed verification; running it again on another provider" in r.stdout
        run_id = r.stdout.split("run ", 1)[1].split()[0]
        summary = json.loads(aib("runs", "show", run_id, "--json").stdout)
        assert summary["status"] == "succeeded" and summary["provider_id"] == honest
        assert summary["metrics"]["verification"]["classifier"]["ok"] is True
        paid = compute_paid(run_id)
        assert paid[lazy] == 0 and paid[honest] > 0
        with session_factory()() as s:
            assert s.get(ProviderRow, lazy).reputation < s.get(ProviderRow, honest).reputation
            [service] = s.query(Service).filter(Service.run_id == run_id)
        assert summary["service_id"] == service.id


def test_a_provider_whose_disk_fills_releases_its_lease_with_the_reason(server, tmp_path):
    small = tmp_path / "small"
    cache = small / "home-cramped" / "cache"  # its work folders and input cache, on a 1 MB disk
    cache.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(cache)], check=True)
    try:
        with protocol_agents(server, tmp_path, ("roomy", "0.90")) as (offers, _, _h), \
                protocol_agents(server, small, ("cramped", "0.10")) as (cramped, _, _c):  # fmt: skip
            path = rented_copy(tmp_path)
            r = aib("run", str(path), "--set", f"classifier.epochs={EPOCHS}", "--set", "classifier.batch_size=4",
                    "--set", f"classifier.seed={time.time_ns() % 10**6}", "--json", timeout=600)  # fmt: skip
            assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
            summary = json.loads(r.stdout.strip().splitlines()[-1])
            first, second = leases_of(summary["run_id"])
            assert first.provider_id == cramped["cramped"]["id"]
            assert (first.status, first.reason) == ("released", "the provider's disk is full")
            assert second.provider_id == offers["roomy"]["id"] and summary["status"] == "succeeded"
    finally:
        subprocess.run(["umount", "-l", str(cache)], check=False)


def test_an_unreachable_coordinator_is_retried_with_back_off_and_said_in_one_line(tmp_path):
    home = tmp_path / "lonely"
    home.mkdir(mode=0o700)
    dead = f"http://127.0.0.1:{free_port()}"
    agent = subprocess.Popen([*AIB, "provider", "start", "--coordinator", dead, "--tier", "cpu", "--price", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={**env(), "AIB_HOME": str(home)}, start_new_session=True)  # fmt: skip
    try:
        line = agent.stdout.readline()
        while "retrying" not in line and line:
            line = agent.stdout.readline()
        assert line.strip() == f"the coordinator at {dead} is unreachable (ConnectError); retrying"
        time.sleep(3)
        assert agent.poll() is None  # still trying, not a traceback
    finally:
        os.killpg(agent.pid, signal.SIGKILL)
        agent.wait()


def test_a_flow_run_of_someone_elses_making_runs_nothing_on_a_provider(server, tmp_path):
    """Providers hold the Prefect credentials, so anyone of them can create a deployment with a shell step and
    schedule it on another provider's queue: the worker refuses it and nothing of it runs."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from runtime.distributed import prefect_auth_string

    planted = tmp_path / "planted"
    with protocol_agents(server, tmp_path, ("target", "0.50")) as (offers, _, _h):
        target = offers["target"]["id"]

        async def attack() -> str:
            async with get_client() as client:
                flow_id = await client.create_flow_from_name("not-ours")
                deployment = await client.create_deployment(
                    flow_id, name="evil", work_pool_name="cpu", entrypoint="x.py:f", path="/",
                    pull_steps=[{"prefect.deployments.steps.run_shell_script": {"script": f"touch {planted}"}}],
                )  # fmt: skip
                run = await client.create_flow_run_from_deployment(deployment, work_queue_name=target,
                                                                   parameters={})  # fmt: skip
                for _ in range(120):
                    state = (await client.read_flow_run(run.id)).state
                    if state.is_final():
                        return f"{state.type.value}: {state.message}"
                    await asyncio.sleep(0.5)
                return "never picked up"

        settings = {PREFECT_API_URL: server["api_url"], PREFECT_API_AUTH_STRING: prefect_auth_string()}
        with temporary_settings(updates=settings):
            outcome = asyncio.run(attack())
    assert outcome.startswith(f"FAILED: refused by worker {target}: a provider runs leases only"), outcome
    assert not planted.exists()
