"""Attacks on service hosting by providers (`aib provider serve`, strangers on other machines) and by strangers who
reach a host: against the real coordinator API, database and host server; each refused with one sentence."""

from __future__ import annotations

import uuid

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from runtime.db import Host, Hosting, Run, Service, Usage, session_factory
from runtime.protocol import hosting as H
from runtime.protocol.api import create_app
from runtime.protocol.host import Hosted, HostServer
from tests.security.test_provider_protocol import bearer, sign_in


@pytest.fixture(scope="module")
def api():
    with TestClient(create_app()) as client:
        yield client


def register(api, token: str, name: str, price: int = 2000) -> dict:
    return api.post("/v1/hosts", headers=bearer(token), json={"name": name, "url": "http://10.0.0.9:8700",
                                                              "price_per_1k_calls_wei": price})  # fmt: skip


def service(tmp_path) -> str:
    """A service (with a run and a bundle folder of its own) to place on hosts."""
    sid, run_id = f"svc-{uuid.uuid4().hex[:10]}", f"run-{uuid.uuid4().hex[:12]}"
    bundle = tmp_path / sid
    bundle.mkdir()
    (bundle / "model.onnx").write_bytes(uuid.uuid4().bytes * 100)
    with session_factory().begin() as s:
        s.add(Run(id=run_id, name="hosted", status="succeeded", pipeline_yaml="", pipeline_hash="0" * 64, plan={},
                  plan_hash="0" * 64, quote_wei=0, overrides=[], metrics={}))  # fmt: skip
        s.flush()
        s.add(Service(id=sid, run_id=run_id, name="hosted", bundle_dir=str(bundle), plan_hash="0" * 64,
                      block_id="service.api", version="1.0.0", provider="0x" + "0" * 40, call_price_wei=0))  # fmt: skip
    return sid


def placed(sid: str, replicas: int = 1) -> list[Hosting]:
    with session_factory().begin() as s:
        rows = H.place(s, s.get(Service, sid), replicas)
        s.expunge_all()
    return rows


@pytest.fixture()
def two_hosts(api):
    a, b = Account.create(), Account.create()
    ta, tb = sign_in(api, a), sign_in(api, b)
    ha, hb = register(api, ta, "alice").json()["host_id"], register(api, tb, "bob", 5000).json()["host_id"]
    return {"a": (ta, ha), "b": (tb, hb)}


def test_a_host_downloads_only_the_bundles_of_services_placed_on_it(api, two_hosts, tmp_path):
    (ta, ha), (tb, hb) = two_hosts["a"], two_hosts["b"]
    sid = service(tmp_path)
    with session_factory().begin() as s:  # hosts of other tests are offline: the cheaper of these two gets it
        s.query(Host).filter(Host.id.not_in([ha, hb])).update({"status": "stopped"})
    [hosting] = placed(sid)
    assert hosting.host_id == ha
    digest = hosting.bundle["sealed_sha256"]
    got = api.get(f"/v1/hosts/{ha}/blobs/{digest}", headers=bearer(ta))
    assert got.status_code == 200 and len(got.content) > 1600
    refused = api.get(f"/v1/hosts/{hb}/blobs/{digest}", headers=bearer(tb))
    assert refused.status_code == 403 and "not the bundle of a service placed on host" in refused.json()["error"]
    # Nor through alice's host id with bob's token: the host is not his.
    assert api.get(f"/v1/hosts/{ha}/blobs/{digest}", headers=bearer(tb)).status_code == 404
    # And bob's heartbeat never hands him alice's hosting (its key and the gateway's secret).
    beat = api.post(f"/v1/hosts/{hb}/heartbeat", headers=bearer(tb), json={"ready": [sid]})
    assert beat.status_code == 200 and beat.json()["hostings"] == []
    # Once dropped, alice cannot read it any more either.
    with session_factory().begin() as s:
        H.drop(s, hosting.id, "test", caught=False)
    assert api.get(f"/v1/hosts/{ha}/blobs/{digest}", headers=bearer(ta)).status_code == 403


def test_another_wallet_cannot_heartbeat_stop_or_take_over_a_host(api, two_hosts):
    (_ta, ha), (tb, _hb) = two_hosts["a"], two_hosts["b"]
    for method, path, body in (("post", f"/v1/hosts/{ha}/heartbeat", {"ready": []}),
                               ("post", f"/v1/hosts/{ha}/stop", None)):  # fmt: skip
        r = getattr(api, method)(path, headers=bearer(tb), json=body)
        assert r.status_code == 404 and r.json() == {"error": f"there is no host {ha} of this wallet"}
    # Registering the same name from another wallet makes another host: the id is bound to the wallet.
    again = register(api, tb, "alice").json()
    assert again["host_id"] != ha
    with session_factory()() as s:
        assert s.get(Host, ha).status == "online" and s.get(Host, ha).url == "http://10.0.0.9:8700"


def test_a_host_cannot_report_calls_or_set_its_own_reputation(api, two_hosts, tmp_path):
    ta, ha = two_hosts["a"]
    with session_factory()() as s:
        before = s.query(Usage).count()
    for extra in ({"calls": 1_000_000}, {"usage": [{"quantity": 5}]}, {"reputation": 1.0}):
        r = api.post(f"/v1/hosts/{ha}/heartbeat", headers=bearer(ta), json={"ready": [], **extra})
        assert r.status_code == 422 and "does not take this field from a provider" in r.json()["error"]
    r = api.post("/v1/hosts", headers=bearer(ta), json={"name": "x", "url": "http://10.0.0.9:1",
                                                        "price_per_1k_calls_wei": 1, "asset_id": 3})  # fmt: skip
    assert r.status_code == 422
    # A service the host claims to serve without being placed on it changes nothing.
    sid = service(tmp_path)
    api.post(f"/v1/hosts/{ha}/heartbeat", headers=bearer(ta), json={"ready": [sid]})
    with session_factory()() as s:
        assert s.query(Usage).count() == before
        assert s.query(Hosting).filter_by(service_id=sid).count() == 0


def test_bad_host_registrations_are_one_sentence(api):
    token = sign_in(api, Account.create())
    odd = register(api, token, "odd", price=1500)
    assert odd.status_code == 422 and "whole multiple of 1000 wei" in odd.json()["error"]
    for url in ("10.0.0.9:8700", "http://10.0.0.9:8700/path", "file:///etc/passwd", "http://a b"):
        r = api.post("/v1/hosts", headers=bearer(token), json={"name": "u", "url": url, "price_per_1k_calls_wei": 0})
        assert r.status_code == 422 and r.json()["error"].startswith("url:")
    assert api.post("/v1/hosts", json={"name": "n", "url": "http://h:1", "price_per_1k_calls_wei": 0}).status_code \
        == 401  # fmt: skip


class Counting:
    """A stand-in model that counts the calls it answers (the host server's routing is what is attacked here)."""

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, items):
        self.calls += len(items)
        return [{"n": len(items)} for _ in items]


def test_the_host_answers_only_the_gateways_secret_for_that_service():
    server = HostServer()
    model_a, model_b = Counting(), Counting()
    server.hosted = {"svc-a": Hosted(model_a, "s" * 64, "0" * 64), "svc-b": Hosted(model_b, "t" * 64, "1" * 64)}
    with TestClient(server.app) as host:
        body = {"items": [{"text": "hi"}]}
        for path, header in (("svc-a", None), ("svc-a", "Bearer " + "t" * 64), ("svc-b", "Bearer " + "s" * 64),
                             ("svc-c", "Bearer " + "s" * 64), ("svc-a", "Bearer " + "s" * 63)):  # fmt: skip
            r = host.post(f"/v1/hosted/{path}/predict", json=body, headers={"Authorization": header} if header else {})
            assert r.status_code == 401 and r.json() == {"error": "only the coordinator's gateway calls this host"}
        assert model_a.calls == model_b.calls == 0
        ok = host.post("/v1/hosted/svc-a/predict", json=body, headers={"Authorization": "Bearer " + "s" * 64})
        assert ok.status_code == 200 and ok.json() == {"results": [{"n": 1}]} and model_a.calls == 1
        bad = host.post(
            "/v1/hosted/svc-a/predict", json={"items": "x"}, headers={"Authorization": "Bearer " + "s" * 64}
        )
        assert bad.status_code == 422 and bad.json() == {"error": "items must be a list of objects"}


def test_a_host_that_failed_is_placed_again_once_back_but_one_caught_lying_never(api, two_hosts, tmp_path):
    (ta, ha), (_tb, hb) = two_hosts["a"], two_hosts["b"]
    sid = service(tmp_path)
    with session_factory().begin() as s:
        s.query(Host).filter(Host.id.not_in([ha, hb])).update({"status": "stopped"})
    [first] = placed(sid)
    assert first.host_id == ha
    with session_factory().begin() as s:
        H.drop(s, first.id, "unreachable 3 calls in a row", caught=False)
    [again] = placed(sid)  # alice is online: the service goes back to her, with a new secret for the gateway
    assert again.host_id == ha and again.id == first.id and again.secret != first.secret
    with session_factory().begin() as s:
        H.drop(s, again.id, "its answers differ from the service's own model's", caught=True)
        assert s.get(Hosting, again.id).status == "caught"
    [third] = placed(sid)  # caught: never again for this service (and her reputation is halved)
    assert third.host_id == hb
    beat = api.post(f"/v1/hosts/{ha}/heartbeat", headers=bearer(ta), json={"ready": [sid]})
    assert beat.json()["hostings"] == []
