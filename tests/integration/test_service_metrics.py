"""/metrics of a served API over real HTTP: what it counts matches what clients got and what the ledger holds; its
own key; strangers cannot read it or grow it; the workbench's Services page shows its latency and error figures."""

from __future__ import annotations

import stat
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from runtime.db import Usage, session_factory
from runtime.service_metrics import summarise
from tests.integration.conftest import ServerThread, aib

METRICS_KEY = "metrics-" + uuid.uuid4().hex


def ledger(service_id: str) -> tuple[int, int]:
    """(usage records, calls billed) of a service as the database holds them."""
    with session_factory()() as s:
        rows = s.execute(
            select(func.count(), func.coalesce(func.sum(Usage.quantity), 0)).where(
                Usage.service_id == service_id, Usage.unit == "call"
            )
        ).one()
    return int(rows[0]), int(rows[1])


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture(scope="module")
def metered(trained):
    """The trained FAQ service behind its own server (its counts start at zero), with a metrics key and an API key."""
    from runtime.keys import create_key
    from runtime.serving import create_app

    with session_factory()() as s:
        key, _ = create_key(s, trained["service_id"])
    with ServerThread(create_app(trained["service_id"], metrics_key=METRICS_KEY)) as server:
        server.key, server.service_id = key, trained["service_id"]
        yield server


def scrape(server, key: str | None = METRICS_KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{server.url}/metrics", headers=headers, timeout=10)


def test_metrics_count_what_clients_got_and_what_the_ledger_holds(metered):
    records0, calls0 = ledger(metered.service_id)
    first = summarise(scrape(metered).text)
    key = {"X-API-Key": metered.key}
    codes = []
    for text in ["Do you take PayPal?", "How long is the warranty?", "I forgot my password"]:
        codes.append(httpx.post(f"{metered.url}/v1/predict", json={"text": text}, headers=key).status_code)
    batch = {"texts": ["Do you take PayPal?", "Where is my parcel?", "Hello"]}
    codes.append(httpx.post(f"{metered.url}/v1/predict/batch", json=batch, headers=key).status_code)
    retry = {**key, "Idempotency-Key": uuid.uuid4().hex}  # a client's retry: answered twice, billed once
    for _ in range(2):
        codes.append(httpx.post(f"{metered.url}/v1/predict", json={"text": "hi"}, headers=retry).status_code)
    codes.append(httpx.post(f"{metered.url}/v1/predict", json={"text": "hi"}).status_code)  # no key
    codes.append(httpx.post(f"{metered.url}/v1/predict", json={"txt": "hi"}, headers=key).status_code)  # bad body
    assert codes == [200] * 6 + [401, 422]

    text = scrape(metered).text
    now = summarise(text)
    records1, calls1 = ledger(metered.service_id)
    # What the ledger gained since the first scrape, and the counters' gain, are the same numbers: 5 records
    # (3 single calls, 1 batch, 1 retried call once), billing 3 + 3 + 1 = 7 calls.
    assert (records1 - records0, calls1 - calls0) == (5, 7)
    assert now["usage_records_written"] - first["usage_records_written"] == 5
    assert now["billed_calls"] - first["billed_calls"] == 7
    assert now["predict_requests"] - first["predict_requests"] == 8
    assert now["errors_by_code"].get("401", 0) - first["errors_by_code"].get("401", 0) == 1
    assert now["errors_by_code"].get("422", 0) - first["errors_by_code"].get("422", 0) == 1
    got = samples(text)
    ok = got[("aib_http_requests_total", frozenset({"route": "/v1/predict", "method": "POST", "code": "200"}.items()))]
    assert ok == 5
    histogram = ("aib_http_request_duration_seconds_count", frozenset({"route": "/v1/predict"}.items()))
    assert got[histogram] == 7  # every /v1/predict request timed, refused ones too
    assert 0 < now["latency_ms"]["p50"] <= now["latency_ms"]["p95"] <= now["latency_ms"]["p99"] < 10_000
    health = httpx.get(f"{metered.url}/health").json()
    assert now["model"]["service_id"] == metered.service_id and now["model"]["plan_hash"] == health["plan_hash"]
    assert scrape(metered).headers["content-type"].startswith("text/plain")


def test_metrics_need_their_own_key_not_an_api_key(metered):
    for headers in [{}, {"X-API-Key": metered.key}, {"Authorization": f"Bearer {metered.key}"},
                    {"Authorization": "Bearer " + METRICS_KEY[:-1]}]:  # fmt: skip
        r = httpx.get(f"{metered.url}/metrics", headers=headers, timeout=10)
        assert r.status_code == 401 and "metrics key" in r.json()["error"], headers
    # A stranger's failed scrapes are counted like any refused request, and no key ever appears in the exposition.
    text = scrape(metered).text
    assert METRICS_KEY not in text and metered.key not in text
    assert "/metrics" in httpx.get(f"{metered.url}/openapi.json").json()["paths"]


def test_a_stranger_spraying_paths_cannot_grow_the_metrics(metered):
    junk = [f"/v1/{uuid.uuid4().hex}" for _ in range(40)]
    for path in junk[:1]:
        httpx.get(f"{metered.url}{path}", headers={"X-API-Key": metered.key})
    size = len(samples(scrape(metered).text))
    for path in junk[1:]:
        assert httpx.request("PROPFIND", f"{metered.url}{path}", headers={"X-API-Key": metered.key}).status_code
    text = scrape(metered).text
    assert not any(path in text for path in junk)
    # Spraying adds at most one series set for an unseen method (PROPFIND -> 'other'), never one per path.
    assert len(samples(text)) - size <= 3


def test_a_short_metrics_key_is_refused_in_one_sentence(trained, monkeypatch):
    monkeypatch.setenv("AIB_METRICS_KEY", "short")
    r = aib("serve", trained["service_id"], "--port", "1")
    assert r.returncode == 2 and "metrics key is shorter than 16 characters" in r.stderr
    assert "Traceback" not in r.stderr


def test_the_services_page_shows_the_latency_and_errors_of_the_server_the_workbench_started(trained):
    from streamlit.testing.v1 import AppTest

    from builder.ui import actions
    from runtime.config import ui_servers_dir
    from runtime.keys import create_key
    from tests.integration.test_ui_pages import PAGES

    service_id = trained["service_id"]
    info = actions.start_server(service_id)
    try:
        record = ui_servers_dir() / f"{service_id}.json"
        assert stat.S_IMODE(record.stat().st_mode) == 0o600  # it holds the metrics key
        assert httpx.get(f"{info['url']}/metrics").status_code == 401  # only the workbench reads them
        with session_factory()() as s:
            key, _ = create_key(s, service_id)
        for text in ["Do you take PayPal?", "How long is the warranty?"]:
            r = httpx.post(f"{info['url']}/v1/predict", json={"text": text}, headers={"X-API-Key": key})
            assert r.status_code == 200
        assert httpx.post(f"{info['url']}/v1/predict", json={"text": "x"}).status_code == 401
        at = AppTest.from_file(str(PAGES / "services_page.py"), default_timeout=60)
        at.session_state["selected_service"] = service_id
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        shown = {m.label: m.value for m in at.metric}
        assert shown["Latency p50"].endswith(" ms") and shown["Latency p99"].endswith(" ms"), shown
        assert shown["Failed calls"] == "33.3%", shown  # 1 of its 3 prediction calls had no key
        caption = next(c.value for c in at.caption if c.value.startswith("Since it started"))
        assert "3 of them prediction calls; 2 calls billed in 2 usage records" in caption
        assert "401 × 2" in caption  # the unkeyed call and the unkeyed scrape above
    finally:
        actions.stop_server(service_id)
    at.run()
    assert any("Start the API server (API tab)" in c.value for c in at.caption)
