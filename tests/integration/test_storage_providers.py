"""Storage providers, for real: `aib server start` (the coordinator API with its spot checks), two stores
(`aib provider start --coordinator URL --storage GB`, each with its own AIB_HOME, in two regions), a compute provider
in one of those regions, and `aib run` leasing the training to it. Outcomes are read where they land: which bytes
the coordinator sent, the stores' folders, the spot checks, and the stores' wallets on Anvil after
`aib settle storage`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.conftest import free_port
from tests.integration import test_provider_protocol
from tests.integration.test_distributed import AIB, aib, rented_copy, wait_for
from tests.integration.test_provider_protocol import agent_processes, leases_of, protocol_agents

server = test_provider_protocol.server  # this module's coordinator: `aib server start`, as for compute providers
DATA = ("x", "y", "ex", "ey")


@pytest.fixture(scope="module", autouse=True)
def frequent_spot_checks():
    """The coordinator started for this module spot-checks a held replica every second (default: 30 s)."""
    before = os.environ.get("AIB_STORAGE_CHECK_SECONDS")
    os.environ["AIB_STORAGE_CHECK_SECONDS"] = "1"
    yield
    if before is None:
        os.environ.pop("AIB_STORAGE_CHECK_SECONDS", None)
    else:
        os.environ["AIB_STORAGE_CHECK_SECONDS"] = before


def stores_listed() -> dict[str, dict]:
    from runtime.db import session_factory
    from runtime.protocol.storage import store_rows

    with session_factory()() as s:
        return {r["name"]: r for r in store_rows(s) if r["online"]}


def store_command(server: dict, name: str, region: str, price_gb_month: str) -> list[str]:
    return ["provider", "start", "--coordinator", server["coordinator_url"], "--storage", "1", "--price-gb-month",
            price_gb_month, "--price-gb-served", "2", "--region", region, "--name", name, "--storage-host",
            "127.0.0.1", "--storage-port", str(free_port())]  # fmt: skip


def run(path, epochs: int) -> dict:
    r = aib("run", str(path), "--set", f"classifier.epochs={epochs}", "--set",
            f"classifier.seed={time.time_ns() % 10**6}", "--json", timeout=500)  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["status"] == "succeeded", summary["error"]
    return summary


def replicas_of(digests: set[str]) -> list:
    from runtime.db import Replica, session_factory

    with session_factory()() as s:
        return s.query(Replica).filter(Replica.sealed_sha256.in_(digests)).all()


def test_shards_are_held_by_stores_sent_from_the_nearest_checked_and_paid_for_what_was_proven(
    paid_chain, server, tmp_path
):
    from runtime.db import Replica, Store, Usage, session_factory
    from runtime.protocol import storage as S

    commands = {"store-eu": store_command(server, "store-eu", "eu", "0.5"),
                "store-us": store_command(server, "store-us", "us", "0.4")}  # fmt: skip
    with agent_processes(tmp_path, commands) as (_, homes):
        stores = wait_for(lambda: (got := stores_listed()).keys() >= commands.keys() and got, 120, "two stores")
        eu, us = stores["store-eu"]["id"], stores["store-us"]["id"]
        gpus = (("gpu-eu-1", "0.36"), ("gpu-eu-2", "0.72"))
        region = {n: ["--region", "eu"] for n, _ in gpus}
        with protocol_agents(server, tmp_path, *gpus, extra=region) as (offers, agents, _homes):
            path = rented_copy(tmp_path)
            # The first run's shards are new: placed on the stores as it starts, sent by the coordinator this once.
            first = run(path, 2)
            [lease] = leases_of(first["run_id"])
            sealed = {lease.job["inputs"][n]["sealed_sha256"] for n in DATA}
            assert sealed <= set(lease.served) and all("source" not in lease.job["inputs"][n] for n in DATA)
            wait_for(lambda: all(x.status == "held" for x in replicas_of(sealed)), 60, "the stores to hold the shards")
            # The provider that holds them goes away; the next run goes to one that never had them.
            os.killpg(agents["gpu-eu-1"].pid, signal.SIGTERM)
            assert agents["gpu-eu-1"].wait(timeout=120) == 0
            summary = run(path, 3)
            assert summary["provider_id"] == offers["gpu-eu-2"]["id"]
        [lease] = leases_of(summary["run_id"])
        assert {lease.job["inputs"][n]["sealed_sha256"] for n in DATA} == sealed  # the same data
        # Each sealed data shard is on both stores (replication 2), and each store holds the very bytes.
        replicas = replicas_of(sealed)
        assert {(x.store_id, x.sealed_sha256) for x in replicas} == {(st, d) for st in (eu, us) for d in sealed}
        for name in commands:
            assert sealed <= {p.name for p in (homes[name] / "store" / "blobs").iterdir()}
        # The compute provider in region eu was sent each shard from the eu store, not by the coordinator.
        assert {lease.job["inputs"][n]["source"]["store_id"] for n in DATA} == {eu}
        assert not sealed & set(lease.served)  # the coordinator sent none of the shards' bytes itself
        with session_factory()() as s:
            served = s.query(Usage).filter(Usage.unit == "gb-served", Usage.provider == eu).all()
            sizes = {lease.job["inputs"][n]["sealed_sha256"]: lease.job["inputs"][n]["sealed_size"] for n in DATA}
            assert sorted(u.amount_wei for u in served) == sorted(2 * 10**18 * n // 10**9 for n in sizes.values())

        # The coordinator's own spot checks (every second here) fetch replicas whole and find them right.
        wait_for(lambda: all(x.checks for x in replicas_of(sealed) if x.store_id == us), 90, "the us store checked")
        # Then the us store loses a shard: the next check of it fails, it is not paid past its last passed check,
        # its reputation halves, and it is never sent to a lease again.
        spoiled = sorted(sealed)[0]
        (homes["store-us"] / "store" / "blobs" / spoiled).write_bytes(b"not the shard any more")
        wait_for(lambda: [x for x in replicas_of({spoiled}) if x.store_id == us and x.status == "failed"], 90,
                 "the spoiled replica's spot check to fail")  # fmt: skip
        with session_factory()() as s:
            replica = s.query(Replica).filter_by(store_id=us, sealed_sha256=spoiled).one()
            last_pass = replica.checked_at
            assert replica.reason == "spot check failed: the blob it returned does not match its hash"
            assert last_pass is not None and replica.checks >= 1
            assert s.get(Store, us).reputation == pytest.approx(0.5)
            assert S.source_for(s, spoiled, "us").id == eu  # the other holder serves it now, even to region us

        # `aib settle storage` pays each store, on chain, what the coordinator itself counted: held time up to each
        # replica's last passed check, and the GB it sent.
        wallets = {eu: stores["store-eu"]["wallet"], us: stores["store-us"]["wallet"]}
        before = {k: paid_chain.token.functions.balanceOf(w).call() for k, w in wallets.items()}
        done = subprocess.run([*AIB, "settle", "storage", "--json"], capture_output=True, text=True,
                              env=os.environ.copy(), timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        assert out["errors"] == [] and len(out["batches"]) == 1
        payouts = {p["block_ref"]: p for p in out["batches"][0]["payouts"]}
        with session_factory()() as s:
            owed = {k: sum(u.amount_wei for u in s.query(Usage).filter(Usage.provider == k,
                                                                      Usage.unit.in_(("gb-month", "gb-served"))))
                    for k in wallets}  # fmt: skip
            spoiled_row = s.query(Replica).filter_by(store_id=us, sealed_sha256=spoiled).one()
            assert spoiled_row.billed_until == last_pass  # never paid past its last passed check
        for k, wallet in wallets.items():
            assert owed[k] > 0 and payouts[f"offer:{k}"]["amount_wei"] == owed[k]
            assert payouts[f"offer:{k}"]["payee"] == wallet
            assert paid_chain.token.functions.balanceOf(wallet).call() - before[k] == owed[k]
        again = subprocess.run([*AIB, "settle", "storage", "--json"], capture_output=True, text=True,
                               env=os.environ.copy(), timeout=300)  # fmt: skip
        assert again.returncode == 0 and all(b["status"] != "pending" for b in json.loads(again.stdout)["batches"])
