"""Providers on other machines, for real: the coordinator (prefect server, coordinator API, the chain) in this
namespace; two providers, each in its own Linux network namespace with its own address, running as another Unix
user with its own home, who cannot read the coordinator's AIB_HOME. A run placed on provider A trains there from
shipped shards, is preempted, resumes on B from the checkpoints A sent, is verified and paid on chain; its metrics
equal those of the same run on local compute."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration.hosts import can_make_hosts, other_host
from tests.integration.test_distributed import (
    AIB,
    EPOCHS,
    assert_same_as_on_local_compute,
    rented_copy,
    signal_pending,
    wait_for,
)
from tests.integration.test_provider_protocol import leases_of, offers_listed, stopped_mid_lease

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable

pytestmark = pytest.mark.skipif(can_make_hosts() is not None, reason=str(can_make_hosts()))


def env() -> dict[str, str]:
    e = os.environ.copy()
    e.pop("PREFECT_API_URL", None)
    e.pop("AIB_PAYMENTS", None)  # paid on chain
    e["OMP_NUM_THREADS"] = "1"  # torch on one thread, as in test_distributed.env (the providers' runs too)
    return e


def aib(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*AIB, *args], capture_output=True, text=True, timeout=timeout, env=env())


@pytest.fixture(scope="module")
def coordinator():
    chain = aib("chain", "start", "--port", str(free_port()), "--json")
    assert chain.returncode == 0, chain.stderr
    # Every address of this machine: each provider reaches it at its own 10.231.N.1.
    started = aib("server", "start", "--host", "0.0.0.0", "--port", str(free_port()), "--coordinator-port",
                  str(free_port()), "--json", timeout=240)  # fmt: skip
    assert started.returncode == 0, started.stderr
    from runtime.settlement import Chain

    yield json.loads(started.stdout), Chain.connect()
    aib("server", "stop")
    aib("chain", "stop")


def provider_on(host, coordinator_port: int, name: str, price: str) -> subprocess.Popen:
    home = host.home / "aib"
    return host.popen(
        [PYTHON, "-m", "builder.cli", "provider", "start", "--coordinator",
         f"http://{host.coordinator_address}:{coordinator_port}", "--tier", "cpu", "--price", price, "--name", name],
        env={"AIB_HOME": str(home), "PREFECT_WORKER_QUERY_SECONDS": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        cwd=str(ROOT),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_a_run_moves_between_providers_on_other_machines_and_is_verified_and_paid(coordinator, tmp_path):
    from runtime.config import get_settings
    from runtime.db import ProviderRow, Settlement, Usage, session_factory
    from runtime.protocol.leases import accepted

    server, chain = coordinator
    cport = int(server["coordinator_url"].rsplit(":", 1)[1])
    with other_host("minera", 41) as host_a, other_host("minerb", 42) as host_b:
        # The other users cannot read the coordinator's data (its database, keys, blobs).
        home = get_settings().home
        assert oct(home.stat().st_mode & 0o777) == "0o700"
        peek = host_a.run(["cat", str(home / "aib.db")])
        assert peek.returncode != 0 and "Permission denied" in peek.stderr
        agents = {"miner-a": provider_on(host_a, cport, "miner-a", "0.36"),
                  "miner-b": provider_on(host_b, cport, "miner-b", "0.72")}  # fmt: skip
        try:

            def online():
                listed = {n: r for n, r in offers_listed().items() if n in agents and r["online"]}
                for agent in agents.values():
                    assert agent.poll() is None, agent.stdout.read()
                return listed if len(listed) == 2 else None

            offers = wait_for(online, 180, "both providers online through the coordinator API")
            a, b = offers["miner-a"]["id"], offers["miner-b"]["id"]
            with session_factory()() as s:
                wallets = {p: s.get(ProviderRow, p).wallet for p in (a, b)}
            balances = {p: chain.token.functions.balanceOf(w).call() for p, w in wallets.items()}

            path = rented_copy(tmp_path)
            overrides = [f"classifier.epochs={EPOCHS}", "classifier.batch_size=4",
                         f"classifier.seed={time.time_ns() % 10**6}"]  # fmt: skip
            sets = sum((["--set", o] for o in overrides), [])
            run = subprocess.Popen([*AIB, "run", str(path), "--json", *sets], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, env=env(), start_new_session=True)  # fmt: skip
            pid, lease_id = stopped_mid_lease(run, a, home=host_a.home / "aib")
            try:  # the owner of machine A takes it back
                stopping = host_a.popen([PYTHON, "-m", "builder.cli", "provider", "preempt", a], cwd=str(ROOT),
                                        env={"AIB_HOME": str(host_a.home / "aib")}, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)  # fmt: skip
                wait_for(lambda: signal_pending(pid, signal.SIGUSR1) or stopping.poll() is not None, 120,
                         "machine A's preemption signal")  # fmt: skip
            finally:
                os.kill(pid, signal.SIGCONT)
            out, _ = stopping.communicate(timeout=240)
            assert stopping.returncode == 0, out
            out, _ = run.communicate(timeout=600)
            assert run.returncode == 0, out[-4000:]
            summary = json.loads(out.strip().splitlines()[-1])
        finally:
            for agent in agents.values():
                if agent.poll() is None:
                    os.killpg(agent.pid, signal.SIGTERM)
            for agent in agents.values():
                try:
                    agent.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(agent.pid, signal.SIGKILL)

        assert summary["status"] == "succeeded" and summary["provider_id"] == b
        first, second = leases_of(summary["run_id"])
        assert (first.id, first.provider_id, first.status) == (lease_id, a, "preempted")
        assert second.provider_id == b and second.status == "completed"
        assert second.job["start"] == len(accepted(first)) - 1 >= 2  # from A's last checkpoint that arrived whole
        assert summary["metrics"]["verification"]["classifier"]["ok"] is True
        # Each provider's home holds what it was sent and made, and no database.
        assert not list((host_a.home / "aib").rglob("*.db")) and list((host_a.home / "aib").rglob("epoch-*.pt"))
        # Paid on chain to the wallets that signed in, exactly what the coordinator's settlement decided from its own
        # ledger: each provider's time at its price, within the deposit (an overrun of the quote is cut from the
        # last provider's payout first, then from the one before).
        with session_factory()() as s:
            usage = s.query(Usage).filter(Usage.run_id == summary["run_id"]).all()
            owed = {p: sum(u.amount_wei for u in usage if u.provider == p) for p in (a, b)}
            assets = {p: s.get(ProviderRow, p).asset_id for p in (a, b)}
            settled = s.get(Settlement, summary["run_id"])
            payouts = {x["asset_id"]: x["amount_wei"] for x in settled.payouts}
        gained = {p: chain.token.functions.balanceOf(w).call() - balances[p] for p, w in wallets.items()}
        assert settled.status == "settled" and owed[a] > 0 and owed[b] > 0
        assert gained == {p: payouts.get(assets[p], 0) for p in (a, b)} and gained[a] > 0
        assert chain.asset_of["compute.rented@1.0.0"] not in payouts  # the providers' time went to them, not the block
        assert gained[a] + gained[b] + settled.shortfall_wei == owed[a] + owed[b]
        assert gained[b] == 0 or gained[a] == owed[a]  # B absorbs the overrun before A does

    assert_same_as_on_local_compute(summary, path, sets, tmp_path / "fresh-home")  # (payments off there)
