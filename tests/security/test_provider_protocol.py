"""Attacks on the coordinator API by providers (strangers on other machines), against the real application and
database: each is refused with one sentence and leaves nothing stored."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from runtime.db import Lease, Run, Usage, session_factory
from runtime.protocol import leases as L
from runtime.protocol.api import create_app
from runtime.protocol.blobs import BlobStore
from runtime.protocol.identity import mint_token, sign_message


@pytest.fixture(scope="module")
def api():
    with TestClient(create_app()) as client:
        yield client


def sign_in(api, acct) -> str:
    ch = api.post("/v1/auth/challenge", json={"wallet": acct.address}).json()
    got = api.post("/v1/auth/token", json={"nonce": ch["nonce"], "signature": sign_message(ch["message"], acct.key)})
    assert got.status_code == 200, got.text
    return got.json()["token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def offer(api, token: str, name: str) -> str:
    r = api.post("/v1/offers", headers=bearer(token), json={"name": name, "tier": "cpu", "price_wei_per_s": 100,
                                                            "hardware": {"cpu_cores": 2, "ram_gb": 8}})  # fmt: skip
    assert r.status_code == 200, r.text
    return r.json()["offer_id"]


def make_lease(provider_id: str, segments: int = 2, secret: bytes = b"digitized features") -> Lease:
    """A run and an offered lease on `provider_id` whose job names one sealed input."""
    run_id = f"run-{uuid.uuid4().hex[:12]}"
    with session_factory().begin() as s:
        s.add(Run(id=run_id, name="attack", status="running", pipeline_yaml="", pipeline_hash="0" * 64, plan={},
                  plan_hash="0" * 64, quote_wei=0, overrides=[], metrics={}))  # fmt: skip
        s.flush()
        entry = L.seal_blob(s, BlobStore(), secret + uuid.uuid4().bytes)
        lease = Lease(id=L.new_lease_id(), run_id=run_id, node_id="train", cache_key="k" * 64, provider_id=provider_id,
                      attempt=1, status="offered", uploads={}, commitments=[], progress={}, served={},
                      job={"run_id": run_id, "inputs": {"x": entry}, "resume_blobs": [], "commitments": [],
                           "start": 0, "layout": 0, "segments": segments})  # fmt: skip
        s.add(lease)
    return lease


@pytest.fixture(scope="module")
def two_providers(api):
    a, b = Account.create(), Account.create()
    ta, tb = sign_in(api, a), sign_in(api, b)
    return {"a": (a, ta, offer(api, ta, "alice")), "b": (b, tb, offer(api, tb, "bob"))}


def claim(api, token: str, lease: Lease) -> tuple[str, dict]:
    r = api.post(f"/v1/leases/{lease.id}/claim", headers=bearer(token), json={"pid": 1})
    assert r.status_code == 200, r.text
    return r.json()["token"], r.json()["job"]


def stored(lease_id: str) -> Lease:
    with session_factory()() as s:
        return s.get(Lease, lease_id)


def test_a_signature_counts_once_and_only_for_the_wallet_that_made_it(api):
    acct, thief = Account.create(), Account.create()
    ch = api.post("/v1/auth/challenge", json={"wallet": acct.address}).json()
    forged = api.post(
        "/v1/auth/token", json={"nonce": ch["nonce"], "signature": sign_message(ch["message"], thief.key)}
    )
    assert forged.status_code == 401 and forged.json()["error"] == (
        f"the challenge was signed by {thief.address}, not by {acct.address}"
    )
    body = {"nonce": ch["nonce"], "signature": sign_message(ch["message"], acct.key)}
    assert api.post("/v1/auth/token", json=body).status_code == 200
    replayed = api.post("/v1/auth/token", json=body)
    assert replayed.status_code == 401 and "already used" in replayed.json()["error"]


def test_expired_forged_and_missing_tokens_reach_nothing(api, two_providers):
    acct, _, offer_id = two_providers["a"]
    expired, _ = mint_token(acct.address, "wallet", 60, now=0)
    r = api.post(f"/v1/offers/{offer_id}/heartbeat", headers=bearer(expired), json={"held": []})
    assert r.status_code == 401 and r.json()["error"] == "the bearer token has expired; sign in again"
    r = api.post(f"/v1/offers/{offer_id}/heartbeat", json={"held": []})
    assert r.status_code == 401 and "needs a bearer token" in r.json()["error"]


def test_a_lease_token_reaches_its_own_lease_alone(api, two_providers):
    _, ta, pa = two_providers["a"]
    _, tb, _ = two_providers["b"]
    mine, other = make_lease(pa), make_lease(pa)
    lease_token, job = claim(api, ta, mine)
    assert set(job["inputs"]) == {"x"} and job["inputs"]["x"]["key"]  # the key reaches the leased provider
    r = api.get(f"/v1/leases/{other.id}", headers=bearer(lease_token))
    assert r.status_code == 403 and r.json()["error"] == f"this token is for lease {mine.id}, not for {other.id}"
    sealed = other.job["inputs"]["x"]["sealed_sha256"]
    r = api.get(f"/v1/leases/{mine.id}/blobs/{sealed}", headers=bearer(lease_token))  # another lease's shard
    assert r.status_code == 403 and r.json()["error"] == f"blob {sealed} is not an input of lease {mine.id}"
    # Another provider's wallet cannot claim or even see someone else's lease.
    r = api.post(f"/v1/leases/{other.id}/claim", headers=bearer(tb), json={})
    assert r.status_code == 404 and r.json()["error"] == f"there is no lease {other.id} for this wallet"
    assert stored(other.id).status == "offered"
    # A wallet token is not a lease token, and a lease token is not a wallet token.
    assert api.get(f"/v1/leases/{mine.id}", headers=bearer(ta)).status_code == 401
    assert api.post(f"/v1/leases/{other.id}/claim", headers=bearer(lease_token), json={}).status_code == 401


def test_a_lease_reads_exactly_the_blobs_its_job_names_and_never_raw_data(api, two_providers):
    from runtime.config import get_settings

    _, ta, pa = two_providers["a"]
    lease = make_lease(pa)
    token, job = claim(api, ta, lease)
    entry = job["inputs"]["x"]
    r = api.get(f"/v1/leases/{lease.id}/blobs/{entry['sealed_sha256']}", headers=bearer(token))
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == entry["sealed_sha256"]
    assert b"digitized features" not in r.content  # sealed: the store's bytes do not show the shard
    part = api.get(f"/v1/leases/{lease.id}/blobs/{entry['sealed_sha256']}", headers={**bearer(token),
                   "Range": "bytes=10-"})  # fmt: skip
    assert part.status_code == 206 and part.content == r.content[10:]  # a cut download resumes
    assert stored(lease.id).served_bytes == 2 * len(r.content) - 10  # what it was sent, counted by the coordinator
    # Raw data the coordinator holds (a user's upload, say) is not a blob of any lease: asking for it by its hash
    # is refused, and so is any path that tries to leave the store.
    raw = get_settings().home / "raw-upload.csv"
    raw.write_text("question,answer\nsecret,customer data\n")
    raw_hash = hashlib.sha256(raw.read_bytes()).hexdigest()
    r = api.get(f"/v1/leases/{lease.id}/blobs/{raw_hash}", headers=bearer(token))
    assert r.status_code == 403 and r.json()["error"] == f"blob {raw_hash} is not an input of lease {lease.id}"
    r = api.get(f"/v1/leases/{lease.id}/blobs/..%2F..%2Faib.db", headers=bearer(token))
    assert r.status_code in (404, 422) and "aib" not in r.text.lower().replace("is not a sha256", "")


def test_an_upload_whose_bytes_differ_from_its_hash_is_discarded_whole(api, two_providers):
    _, ta, pa = two_providers["a"]
    lease = make_lease(pa)
    token, _ = claim(api, ta, lease)
    claimed = hashlib.sha256(b"the real checkpoint").hexdigest()
    url = f"/v1/leases/{lease.id}/uploads/{claimed}"
    r = api.put(url, headers=bearer(token), params={"offset": 0, "size": 19, "name": "epoch-1.pt"},
                content=b"a forged checkpoint")  # fmt: skip
    assert r.status_code == 422 and "not to the announced" in r.json()["error"]
    assert api.get(url, headers=bearer(token)).json() == {"received": 0, "stored": False}
    assert stored(lease.id).uploads == {} and not BlobStore().has(claimed)
    # Sent in two pieces, the second from where the first stopped: stored once whole.
    assert api.put(url, headers=bearer(token), params={"offset": 0, "size": 19, "name": "epoch-1.pt"},
                   content=b"the real ").json() == {"received": 9, "stored": False}  # fmt: skip
    r = api.put(url, headers=bearer(token), params={"offset": 0, "size": 19, "name": "epoch-1.pt"}, content=b"x")
    assert r.status_code == 422 and "resume from there" in r.json()["error"]
    r = api.put(url, headers=bearer(token), params={"offset": 9, "size": 19, "name": "epoch-1.pt"},
                content=b"checkpoint")  # fmt: skip
    assert r.json() == {"received": 19, "stored": True} and BlobStore().has(claimed)


def test_a_provider_cannot_claim_usage_prices_or_verification(api, two_providers):
    from fastapi.routing import APIRoute

    _, ta, pa = two_providers["a"]
    lease = make_lease(pa)
    token, _ = claim(api, ta, lease)
    attempts = [
        ("post", f"/v1/leases/{lease.id}/commitments", {"commitments": [], "verified": True}),
        ("post", f"/v1/leases/{lease.id}/release", {"reason": "done", "usage": [{"seconds": 9999}]}),
        ("post", f"/v1/leases/{lease.id}/release", {"reason": "done", "kind": "completed"}),
        ("post", f"/v1/leases/{lease.id}/heartbeat", {"seconds_worked": 9999}),
        ("post", "/v1/offers", {"name": "x", "tier": "cpu", "price_wei_per_s": 1, "reputation": 1.0}),
    ]
    for method, url, body in attempts:
        r = getattr(api, method)(url, headers=bearer(ta if url == "/v1/offers" else token), json=body)
        assert r.status_code == 422, (url, body, r.text)
        assert set(r.json()) == {"error"} and r.json()["error"]
    assert (
        "does not take this field from a provider"
        in api.post(
            f"/v1/leases/{lease.id}/commitments", headers=bearer(token), json={"commitments": [], "verified": True}
        ).json()["error"]
    )
    # No route of the API writes usage, payments, reputation or verification at all.
    paths = {r.path for r in create_app().routes if isinstance(r, APIRoute)}
    assert not [p for p in paths if any(w in p for w in ("usage", "verif", "settle", "pay", "reputation"))]
    with session_factory()() as s:
        assert s.query(Usage).filter(Usage.run_id == lease.run_id).count() == 0
    assert stored(lease.id).status == "claimed"


def test_completion_needs_every_committed_checkpoint_and_ends_the_lease_token(api, two_providers):
    _, ta, pa = two_providers["a"]
    lease = make_lease(pa, segments=2)
    token, _ = claim(api, ta, lease)
    states = [b"state-0", b"state-1", b"state-2"]
    hashes = [hashlib.sha256(x).hexdigest() for x in states]
    too_many = api.post(f"/v1/leases/{lease.id}/commitments", headers=bearer(token), json={"commitments": hashes * 2})
    assert too_many.status_code == 422 and "6 commitments for a step of 2 segments" in too_many.json()["error"]
    assert api.post(f"/v1/leases/{lease.id}/commitments", headers=bearer(token),
                    json={"commitments": hashes}).status_code == 200  # fmt: skip
    for k in (0, 1):
        api.put(f"/v1/leases/{lease.id}/uploads/{hashes[k]}", headers=bearer(token),
                params={"offset": 0, "size": len(states[k]), "name": f"epoch-{k}.pt"}, content=states[k])  # fmt: skip
    # A file that is no committed checkpoint (a "bundle" of its own making) is kept apart and never counts.
    extra = b"a model.onnx the provider made up"
    api.put(f"/v1/leases/{lease.id}/uploads/{hashlib.sha256(extra).hexdigest()}", headers=bearer(token),
            params={"offset": 0, "size": len(extra), "name": "model.onnx"}, content=extra)  # fmt: skip
    r = api.post(f"/v1/leases/{lease.id}/complete", headers=bearer(token))
    assert r.status_code == 422 and r.json()["error"].startswith("the checkpoint of segment 2 (sha256 ")
    assert stored(lease.id).status == "claimed"
    api.put(f"/v1/leases/{lease.id}/uploads/{hashes[2]}", headers=bearer(token),
            params={"offset": 0, "size": len(states[2]), "name": "epoch-2.pt"}, content=states[2])  # fmt: skip
    assert api.post(f"/v1/leases/{lease.id}/complete", headers=bearer(token)).json()["status"] == "completed"
    assert L.accepted(stored(lease.id)) == hashes  # the committed checkpoints, not the extra file
    # The lease has ended: its token writes nothing more.
    for r in (api.post(f"/v1/leases/{lease.id}/complete", headers=bearer(token)),
              api.post(f"/v1/leases/{lease.id}/heartbeat", headers=bearer(token), json={}),
              api.post(f"/v1/leases/{lease.id}/release", headers=bearer(token), json={"reason": "again"})):  # fmt: skip
        assert r.status_code == 410 and "nothing more is accepted" in r.json()["error"], r.text


def test_a_resumed_lease_whose_work_does_not_start_from_the_checkpoint_it_was_given_counts_nothing():
    given = ["a" * 64, "b" * 64]
    lease = Lease(job={"start": 1, "commitments": given, "segments": 3}, uploads={"c" * 64: {}, "d" * 64: {}},
                  commitments=["a" * 64, "e" * 64, "c" * 64, "d" * 64])  # fmt: skip
    assert L.accepted(lease) == given
    lease.commitments = ["a" * 64, "b" * 64, "c" * 64, "f" * 64]  # segment 3's checkpoint never arrived
    assert L.accepted(lease) == [*given, "c" * 64]


def test_offers_belong_to_the_wallet_that_signed_in(api, two_providers):
    _, ta, pa = two_providers["a"]
    _, tb, _ = two_providers["b"]
    r = api.post(f"/v1/offers/{pa}/stop", headers=bearer(tb))
    assert r.status_code == 404 and r.json()["error"] == f"there is no offer {pa} of this wallet"
    # The same name and tier from another wallet is another offer: nobody takes over alice's.
    assert offer(api, tb, "alice") != pa
    assert json.loads(json.dumps(api.post(f"/v1/offers/{pa}/heartbeat", headers=bearer(ta),
                                          json={"held": ["0" * 64]}).json())) == {"ok": True}  # fmt: skip


def test_an_offer_re_registered_at_another_price_mid_lease_bills_the_lease_at_its_placed_price(api, two_providers):
    acct, ta, pa = two_providers["a"]
    lease = make_lease(pa)
    with session_factory().begin() as s:  # placed at the offer's price, as the coordinator records it
        row = s.get(Lease, lease.id)
        row.job = {**row.job, "price_wei_per_s": 100}
    token, _ = claim(api, ta, lease)
    r = api.post("/v1/offers", headers=bearer(ta), json={"name": "alice", "tier": "cpu", "price_wei_per_s": 10**15,
                                                          "hardware": {"cpu_cores": 2, "ram_gb": 8}})  # fmt: skip
    assert r.status_code == 200 and r.json()["offer_id"] == pa  # the offer itself may change its price…
    assert api.post(f"/v1/leases/{lease.id}/release", headers=bearer(token), json={"reason": "done"}).status_code == 200
    seconds, price = L.bill(stored(lease.id), offer_price_wei_per_s=10**15)
    assert price == 100 and seconds >= 0  # …the lease already placed is billed at the price it was placed at
