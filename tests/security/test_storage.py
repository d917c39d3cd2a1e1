"""Attacks by storage providers (`aib provider start --storage`, strangers on other machines) on the coordinator API,
the ledger and the providers they send shards to: against the real application, database and HTTP; each refused with
one sentence, or worth nothing to the attacker."""

from __future__ import annotations

import uuid

import pytest
from eth_account import Account
from fastapi import FastAPI
from fastapi.responses import Response
from fastapi.testclient import TestClient

from runtime.db import Replica, Store, Usage, session_factory, utcnow
from runtime.protocol import leases as L
from runtime.protocol import storage as S
from runtime.protocol.api import create_app
from runtime.protocol.blobs import BlobStore
from runtime.protocol.client import BlobCache, Coordinator
from tests.conftest import free_port
from tests.integration.conftest import ServerThread
from tests.security.test_provider_protocol import bearer, sign_in


@pytest.fixture(scope="module")
def api():
    with TestClient(create_app()) as client:
        yield client


def register(api, token: str, name: str, price: int = 10**17) -> dict:
    """A store whose URL answers nothing (a loopback port nobody listens on)."""
    body = {"name": name, "url": f"http://127.0.0.1:{free_port()}", "region": "eu", "capacity_gb": 1,
            "price_gb_month_wei": price}  # fmt: skip
    return api.post("/v1/stores", headers=bearer(token), json=body)


def sealed_entry() -> dict:
    with session_factory().begin() as s:
        return L.seal_blob(s, BlobStore(), b"digitized shard " + uuid.uuid4().bytes * 50)


@pytest.fixture()
def two_stores(api):
    with session_factory().begin() as s:  # stores of other tests are offline: these two get the shards
        s.query(Store).update({"status": "stopped"})
    a, b = Account.create(), Account.create()
    ta, tb = sign_in(api, a), sign_in(api, b)
    return {
        "a": (ta, register(api, ta, "alice").json()["store_id"]),
        "b": (tb, register(api, tb, "bob").json()["store_id"]),
    }


def test_a_store_downloads_only_the_blobs_placed_on_it(api, two_stores):
    (ta, sa), (tb, sb) = two_stores["a"], two_stores["b"]
    entry = sealed_entry()
    with session_factory().begin() as s:
        assert S.place(s, [entry], factor=1) == 1
        [replica] = s.query(Replica).filter_by(sealed_sha256=entry["sealed_sha256"]).all()
        holder, other = (sa, ta), (sb, tb)
        if replica.store_id == sb:
            holder, other = other, holder
    digest = entry["sealed_sha256"]
    got = api.get(f"/v1/stores/{holder[0]}/blobs/{digest}", headers=bearer(holder[1]))
    assert got.status_code == 200 and len(got.content) == entry["sealed_size"]
    refused = api.get(f"/v1/stores/{other[0]}/blobs/{digest}", headers=bearer(other[1]))
    assert refused.status_code == 403 and refused.json() == {
        "error": f"blob {digest} is not placed on store {other[0]}"
    }
    assert api.get(f"/v1/stores/{holder[0]}/blobs/{digest}", headers=bearer(other[1])).status_code == 404
    # Its heartbeat names what is placed on it, never the keys: a store reads nothing of a shard.
    beat = api.post(f"/v1/stores/{holder[0]}/heartbeat", headers=bearer(holder[1]), json={"held": []})
    assert beat.json() == {"replicas": [{"sealed_sha256": digest, "size": entry["sealed_size"]}]}
    assert entry["key"] not in beat.text


def test_a_store_claiming_to_hold_is_not_paid_until_the_coordinator_fetched_it_whole(api, two_stores):
    ta, sa = two_stores["a"]
    entry = sealed_entry()
    with session_factory().begin() as s:
        S.place(s, [entry], factor=2)
    # Alice says she holds it (and a blob never placed on her): only the placed one counts as held, and holding
    # is paid for nothing until a spot check passes.
    other = "ab" * 32
    api.post(f"/v1/stores/{sa}/heartbeat", headers=bearer(ta), json={"held": [entry["sealed_sha256"], other]})
    with session_factory().begin() as s:
        assert s.query(Replica).filter_by(store_id=sa, sealed_sha256=other).count() == 0
        replica = s.query(Replica).filter_by(store_id=sa, sealed_sha256=entry["sealed_sha256"]).one()
        assert replica.status == "held" and replica.checked_at is None
        before = s.query(Usage).filter(Usage.provider == sa).count()
        S.accrue_held(s)
        assert s.query(Usage).filter(Usage.provider == sa).count() == before
        # Its URL answers nothing: the check fails, and the replica ends unpaid.
        assert "could not be reached" in S.check_one(s, replica)
        assert replica.status == "failed" and s.get(Store, sa).reputation == pytest.approx(0.5)
        S.accrue_held(s)
        assert s.query(Usage).filter(Usage.provider == sa).count() == before


def test_a_store_cannot_report_usage_or_set_its_reputation_or_prices_of_others(api, two_stores):
    (ta, sa), (_tb, sb) = two_stores["a"], two_stores["b"]
    for extra in ({"served_bytes": 10**12}, {"reputation": 1.0}, {"usage": []}):
        r = api.post(f"/v1/stores/{sa}/heartbeat", headers=bearer(ta), json={"held": [], **extra})
        assert r.status_code == 422 and "does not take this field from a provider" in r.json()["error"]
    for path in (f"/v1/stores/{sb}/heartbeat", f"/v1/stores/{sb}/stop"):
        r = api.post(path, headers=bearer(ta), json={"held": []})
        assert r.status_code == 404 and r.json() == {"error": f"there is no store {sb} of this wallet"}
    bad = api.post("/v1/stores", headers=bearer(ta), json={"name": "x", "url": "http://h:1", "capacity_gb": 0,
                                                           "price_gb_month_wei": 1})  # fmt: skip
    assert bad.status_code == 422 and bad.json()["error"].startswith("capacity_gb:")
    with session_factory()() as s:
        assert s.get(Store, sb).status == "online"


def test_a_shard_a_store_spoils_is_fetched_from_the_coordinator_and_opens_right(tmp_path):
    """A store that sends other bytes cannot change what a provider trains on: the hash check refuses them, and the
    provider fetches the shard from the coordinator (the route named in its job) instead."""
    entry = sealed_entry()
    spoiler = FastAPI()

    @spoiler.get("/blobs/{digest}")
    def spoiled(digest: str) -> Response:
        return Response(b"x" * entry["sealed_size"], media_type="application/octet-stream")

    @spoiler.get("/health")
    def health() -> dict:
        return {"ok": True}

    coordinator = FastAPI()

    @coordinator.get("/v1/leases/lease-1/blobs/{digest}")
    def blob(digest: str) -> Response:
        return Response(BlobStore().read(digest), media_type="application/octet-stream")

    @coordinator.get("/health")
    def coordinator_health() -> dict:
        return {"ok": True}

    said = []
    with ServerThread(spoiler) as store, ServerThread(coordinator) as coord_server:
        coord = Coordinator(coord_server.url, bytes(Account.create().key), say=said.append)
        with_source = {**entry, "source": {"store_id": "store-x", "url": store.url}}
        plain = coord.download("/v1/leases/lease-1/blobs", "t", with_source, BlobCache(tmp_path / "cache"))
        coord.close()
    assert plain.startswith(b"digitized shard ")
    assert said and "did not send" in said[0] and "arrived altered" in said[0]


def test_a_replica_is_paid_only_up_to_its_last_passed_check(api, two_stores):
    ta, sa = two_stores["a"]
    entry = sealed_entry()
    with session_factory().begin() as s:
        S.place(s, [entry], factor=2)
        replica = s.query(Replica).filter_by(store_id=sa, sealed_sha256=entry["sealed_sha256"]).one()
        from datetime import timedelta

        now = utcnow()
        replica.status, replica.held_at = "held", now - timedelta(days=30)
        replica.checked_at = now - timedelta(days=15)  # passed half-way through; nothing proven since
        S.accrue_held(s)
        [usage] = s.query(Usage).filter(Usage.provider == sa, Usage.unit == "gb-month",
                                        Usage.bill_key.like(f"store:{sa}:held:{replica.id}:%")).all()  # fmt: skip
        expected = 10**17 * entry["sealed_size"] * (15 * 24 * 3600) // (10**9 * 30 * 24 * 3600)
        assert usage.amount_wei == expected and replica.billed_until == replica.checked_at
        S.accrue_held(s)  # idempotent: nothing more until another check passes
        assert s.query(Usage).filter(Usage.bill_key.like(f"store:{sa}:held:{replica.id}:%")).count() == 1
