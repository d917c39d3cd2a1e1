"""Services answered on providers' machines, for real: `aib server start` (the coordinator API), `aib provider serve`
in its own AIB_HOME (no access to the coordinator's database or files), and the coordinator's gateway (the service's
app with `on_providers`) in front of it. Outcomes are read where the user sees them: the answers and headers of the
served API, the usage records, and the host's wallet on Anvil after `aib settle services`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from fastapi import FastAPI, Request

from tests.conftest import free_port
from tests.integration import test_provider_protocol
from tests.integration.conftest import ServerThread
from tests.integration.test_distributed import AIB, wait_for
from tests.integration.test_provider_protocol import agent_processes

server = test_provider_protocol.server  # this module's coordinator: `aib server start`, as for compute providers

WRONG = """
# A host running altered code: every answer claims the first intent with full confidence.
import runtime.protocol.host as host

def _answer(predictor, items):
    return [{"answer": "wrong", "intent": predictor.labels[0], "score": 1.0, "top_intent": predictor.labels[0]}
            for _ in items]

host.answer = _answer
"""

QUESTIONS = ["how do I reset my password", "can I get a refund", "where is my order", "what are your opening hours"]


def hosts_listed() -> dict[str, dict]:
    from runtime.db import session_factory
    from runtime.protocol.hosting import host_rows

    with session_factory()() as s:
        return {r["name"]: r for r in host_rows(s)}


@contextmanager
def host_agent(server: dict, tmp_path: Path, name: str, price: str, extra_env: dict | None = None):
    """`aib provider serve` with its own home, yielded once online: (host row, process)."""
    argv = ["provider", "serve", "--coordinator", server["coordinator_url"], "--price-per-1k-calls", price, "--host",
            "127.0.0.1", "--port", str(free_port()), "--name", name]  # fmt: skip
    with agent_processes(tmp_path, {name: argv}, {name: extra_env or {}}) as (procs, _homes):
        row = wait_for(lambda: (r := hosts_listed().get(name)) and r["online"] and r, 120, f"host {name} online")
        yield row, procs[name]


@contextmanager
def gateway(service_id: str, audit_rate: float):
    """The service's API answered on hosts (what `aib serve SERVICE --on-providers` runs), with a fresh API key."""
    from runtime.db import session_factory
    from runtime.keys import create_key
    from runtime.serving import create_app

    with session_factory()() as s:
        key, _ = create_key(s, service_id)
    app = create_app(service_id, on_providers={"replicas": 1, "audit_rate": audit_rate})
    with ServerThread(app) as gw:
        gw.key, gw.app = key, app
        yield gw


def ask(gw, text: str) -> httpx.Response:
    r = httpx.post(f"{gw.url}/v1/predict", json={"text": text}, headers={"X-API-Key": gw.key}, timeout=60)
    assert r.status_code == 200, r.text
    return r


def served_by(gw, host_id: str) -> None:
    """Wait until the host has the bundle loaded and the gateway sends it calls."""
    wait_for(lambda: ask(gw, QUESTIONS[0]).headers["X-Served-By"] == host_id, 180, f"{host_id} answering")


def usage_of(service_id: str, unit: str, provider: str | None = None) -> list:
    from runtime.db import Usage, session_factory

    with session_factory()() as s:
        q = s.query(Usage).filter(Usage.service_id == service_id, Usage.unit == unit, Usage.batch_id.is_(None))
        if provider:
            q = q.filter(Usage.provider == provider)
        return q.all()


def test_a_service_hosted_on_a_providers_machine_answers_through_the_gateway_and_its_host_is_paid(
    paid_chain,
    server,
    trained,
    tmp_path,
):
    from runtime.bundle import load_bundle
    from runtime.db import Service, session_factory

    service_id = trained["service_id"]
    earlier = subprocess.run([*AIB, "settle", "services", "--service", service_id], capture_output=True, text=True,
                             env=os.environ.copy(), timeout=300)  # fmt: skip
    assert earlier.returncode == 0, earlier.stderr  # calls other tests made are paid first
    with session_factory()() as s:
        local = load_bundle(s.get(Service, service_id).bundle_dir)
    with host_agent(server, tmp_path, "host-a", "0.002") as (row, proc), gateway(service_id, audit_rate=1.0) as gw:
        host_id, wallet = row["id"], row["wallet"]
        served_by(gw, host_id)
        already = len(usage_of(service_id, "call"))  # the calls made while waiting for the host
        for text in QUESTIONS:
            r = ask(gw, text)
            assert r.headers["X-Served-By"] == host_id
            assert r.json() == local.predict([{"text": text}])[0]  # the host's answer is the model's
        batch = httpx.post(f"{gw.url}/v1/predict/batch", json={"texts": QUESTIONS}, headers={"X-API-Key": gw.key},
                           timeout=60)  # fmt: skip
        assert batch.status_code == 200 and batch.headers["X-Served-By"] == host_id
        assert batch.json()["results"] == local.predict([{"text": t} for t in QUESTIONS])
        # Without the gateway's secret nobody gets an answer from the host, the key holder included.
        direct = httpx.post(f"{row['url']}/v1/hosted/{service_id}/predict", json={"items": [{"text": "hi"}]},
                            headers={"Authorization": f"Bearer {gw.key}"}, timeout=10)  # fmt: skip
        assert direct.status_code == 401
        listed = subprocess.run([*AIB, "providers", "hosts", "--json"], capture_output=True, text=True,
                                env=os.environ.copy(), timeout=60)  # fmt: skip
        shown = {r["id"]: r for r in json.loads(listed.stdout)}[host_id]
        assert shown["services"] == {service_id: "ready"} and shown["wallet"] == wallet and shown["online"]

        calls = len(QUESTIONS) + len(QUESTIONS)  # four single calls and a batch of four
        hosted = usage_of(service_id, "hosted-call", host_id)
        assert sum(u.quantity for u in hosted) >= calls
        assert all(u.amount_wei == 2 * 10**15 * u.quantity // 1000 for u in hosted)  # 0.002 AIC per 1k calls
        owed_host = sum(u.amount_wei for u in hosted)
        assert len(usage_of(service_id, "call")) == already + len(QUESTIONS) + 1

        # Paid on chain with the blocks' royalties, in the same batch, to the wallet the host signed in with.
        before = paid_chain.token.functions.balanceOf(wallet).call()
        r = subprocess.run([*AIB, "settle", "services", "--service", service_id, "--json"], capture_output=True,
                           text=True, env=os.environ.copy(), timeout=300)  # fmt: skip
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["errors"] == [] and len(out["batches"]) == 1
        payouts = {p["block_ref"]: p for p in out["batches"][0]["payouts"]}
        assert payouts[f"offer:{host_id}"]["amount_wei"] == owed_host
        assert payouts[f"offer:{host_id}"]["payee"] == wallet
        assert paid_chain.token.functions.balanceOf(wallet).call() - before == owed_host

        # The host stops: calls go on, answered by the gateway itself (nothing lost, nothing owed to a host).
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, proc.stdout.read()
        wait_for(lambda: ask(gw, QUESTIONS[1]).headers["X-Served-By"] == "gateway", 60, "the gateway answering")
        assert not hosts_listed()["host-a"]["online"]


def test_a_host_caught_answering_wrong_is_taken_off_and_not_paid(server, trained, tmp_path):
    from runtime.db import Host, Hosting, session_factory

    service_id = trained["service_id"]
    altered = tmp_path / "altered"
    altered.mkdir()
    (altered / "sitecustomize.py").write_text(WRONG)
    pythonpath = os.pathsep.join(p for p in (str(altered), os.environ.get("PYTHONPATH", "")) if p)
    with host_agent(server, tmp_path, "liar", "0.001", {"PYTHONPATH": pythonpath}) as (row, _), \
            gateway(service_id, audit_rate=0.0) as gw:  # fmt: skip
        host_id = row["id"]
        wait_for(lambda: ask(gw, QUESTIONS[2]).json()["answer"] == "wrong", 180, "the liar answering")
        assert usage_of(service_id, "hosted-call", host_id)  # unchecked, its calls are owed to it for now
        gw.app.state.predictor.audit_rate = 1.0  # the gateway's random check falls on the next call
        r = ask(gw, QUESTIONS[2])
        assert r.headers["X-Served-By"] == "gateway" and r.json()["answer"] != "wrong"  # the right answer
        assert ask(gw, QUESTIONS[3]).headers["X-Served-By"] == "gateway"  # and it is never called again
        assert sum(u.amount_wei for u in usage_of(service_id, "hosted-call", host_id)) == 0  # forfeited
        with session_factory()() as s:
            hosting = s.query(Hosting).filter_by(service_id=service_id, host_id=host_id).one()
            assert hosting.status == "caught" and "differ" in hosting.reason
            assert s.get(Host, host_id).reputation == pytest.approx(0.5)


def test_a_host_whose_answers_are_not_the_services_is_taken_off_without_an_audit(trained, tmp_path):
    """Answers that are not the service's response (wrong shape, one answer for two inputs) need no audit to be
    caught: the host is taken off at once and the client gets the model's own answers."""
    from runtime.db import Host, Hosting, session_factory
    from runtime.protocol import hosting as H

    garbage = FastAPI()

    @garbage.post("/v1/hosted/{service_id}/predict")
    async def answer(service_id: str, request: Request) -> dict:
        return {"results": [{"answer": "buy now"}]}  # one incomplete answer, whatever was asked

    @garbage.get("/health")
    def health() -> dict:
        return {"ok": True}

    service_id = trained["service_id"]
    with ServerThread(garbage) as fake:
        with session_factory().begin() as s:
            wallet = Account.create().address
            host = H.register_host(s, wallet=wallet, name="garbage", url=fake.url, call_price_wei=0, hardware={})
            s.flush()
            s.query(Hosting).filter(Hosting.service_id == service_id, Hosting.status != "dropped").update(
                {"status": "dropped", "reason": "test"}
            )
            entry = {"sha256": "0" * 64, "sealed_sha256": "0" * 64, "size": 0, "key": "0" * 64}
            s.add(Hosting(service_id=service_id, host_id=host.id, status="ready", secret="x" * 64, bundle=entry))
            host_id = host.id
        with gateway(service_id, audit_rate=0.0) as gw:
            r = httpx.post(f"{gw.url}/v1/predict/batch", json={"texts": QUESTIONS[:2]},
                           headers={"X-API-Key": gw.key}, timeout=60)  # fmt: skip
            assert r.status_code == 200 and r.headers["X-Served-By"] == "gateway"
            assert "buy now" not in [x["answer"] for x in r.json()["results"]]
    with session_factory().begin() as s:
        hosting = s.query(Hosting).filter_by(service_id=service_id, host_id=host_id).one()
        assert hosting.status == "caught" and "not the service's response" in hosting.reason
        assert s.get(Host, host_id).reputation == 0.5
        s.get(Host, host_id).status = "stopped"  # it is gone: later tests place services on real hosts
    assert not usage_of(service_id, "hosted-call", host_id)


def test_an_image_upload_is_answered_on_the_host_as_on_the_coordinator(prefect_api, server, template_dir, tmp_path):
    from sklearn.datasets import load_digits

    from runtime.bundle import load_bundle
    from runtime.db import Service, session_factory
    from tests.integration.conftest import run_pipeline
    from tests.integration.test_digit_reader import paper_png

    summary = run_pipeline(template_dir / "digit-reader.yaml", ["cnn.epochs=2"])
    assert summary["status"] == "succeeded", summary["error"]
    service_id = summary["service_id"]
    with session_factory()() as s:
        local = load_bundle(s.get(Service, service_id).bundle_dir)
    images = [paper_png(image) for image in load_digits().images[:3]]
    with host_agent(server, tmp_path, "host-images", "0.001") as (row, _), gateway(service_id, 1.0) as gw:

        def upload(png: bytes) -> httpx.Response:
            return httpx.post(f"{gw.url}/v1/predict", files={"file": ("d.png", png, "image/png")},
                              headers={"X-API-Key": gw.key}, timeout=60)  # fmt: skip

        wait_for(lambda: upload(images[0]).headers["X-Served-By"] == row["id"], 180, "the host answering")
        for png in images:
            r = upload(png)
            assert r.status_code == 200 and r.headers["X-Served-By"] == row["id"]
            assert r.json() == local.predict([local.prepare({"file": png})])[0]
        # A file that is not an image: the host's refusal is not taken on its word; the gateway says why itself.
        bad = upload(b"not an image at all")
        assert bad.status_code == 422 and bad.headers.get("X-Served-By") is None, bad.text
        assert usage_of(service_id, "hosted-call", row["id"])  # its answers are owed to it; the refusal is not
