"""The served API over real HTTP: auth, answers, fallback, errors, and metering under concurrency."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from builder.errors import ServeError
from runtime.db import Service, Usage, session_factory


def usage_count(service_id: str) -> int:
    with session_factory()() as s:
        return s.scalar(select(func.count()).select_from(Usage).where(Usage.service_id == service_id))


def post(served, path: str, body: dict | None = None, key: str | None = "default", **kw) -> httpx.Response:
    headers = {} if key is None else {"X-API-Key": served.key if key == "default" else key}
    return httpx.post(f"{served.url}{path}", json=body, headers=headers, timeout=30, **kw)


def test_health_openapi_and_docs_need_no_key(served):
    health = httpx.get(f"{served.url}/health").json()
    assert health["status"] == "ok" and health["service_id"] == served.service_id and len(health["intents"]) >= 15
    spec = httpx.get(f"{served.url}/openapi.json").json()
    assert {"/v1/predict", "/v1/predict/batch", "/health"} <= set(spec["paths"])
    assert httpx.get(f"{served.url}/docs").status_code == 200


def test_predict_answers_a_known_question(served):
    r = post(served, "/v1/predict", {"text": "I forgot my password, help"})
    assert r.status_code == 200
    body = r.json()
    assert body["intent"] == "reset_password" and body["answer"].startswith("Click 'Forgot password'")
    assert 0.5 <= body["score"] <= 1


def test_out_of_scope_question_gets_the_fallback_answer(served):
    body = post(served, "/v1/predict", {"text": "What is the capital of Mongolia?"}).json()
    assert body == {**body, "answer": "Sorry, I don't know that yet.", "intent": None} and body["top_intent"]
    faq = (Path(__file__).parents[2] / "templates" / "data" / "faq.csv").read_text(encoding="utf-8")
    close = body["suggestions"]  # "did you mean…?": FAQ questions, each with its own answer, closest first
    assert 2 <= len(close) <= 3 and len({s["answer"] for s in close}) == len(close)
    assert all(s["question"] in faq and s["answer"] in faq for s in close)
    assert [s["score"] for s in close] == sorted((s["score"] for s in close), reverse=True)


def test_a_confident_answer_has_no_suggestions(served):
    body = post(served, "/v1/predict", {"text": "Do you take PayPal?"}).json()
    assert body["intent"] == "payment_methods" and body["suggestions"] == []


def test_batch_answers_in_order_and_meters_each_input(served):
    before = usage_count(served.service_id)
    r = post(served, "/v1/predict/batch", {"texts": ["Do you take PayPal?", "How long is the warranty?"]})
    assert r.status_code == 200
    assert [x["intent"] for x in r.json()["results"]] == ["payment_methods", "warranty"]
    assert usage_count(served.service_id) == before + 1
    with session_factory()() as s:
        last = s.scalars(select(Usage).where(Usage.service_id == served.service_id).order_by(Usage.id.desc())).first()
    assert (last.quantity, last.unit, last.block_id) == (2, "call", "service.api")


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (None, "missing API key: send it in the X-API-Key header"),
        ("aib_wrong", "invalid or revoked API key"),
    ],
)
def test_calls_without_a_valid_key_are_refused_and_not_billed(served, key, message):
    before = usage_count(served.service_id)
    r = post(served, "/v1/predict", {"text": "hi"}, key=key)
    assert (r.status_code, r.json()) == (401, {"error": message})
    assert usage_count(served.service_id) == before


def test_revoked_key_stops_working(served):
    from runtime.keys import create_key, revoke_key

    with session_factory()() as s:
        key, record = create_key(s, served.service_id)
    assert post(served, "/v1/predict", {"text": "hi"}, key=key).status_code == 200
    with session_factory()() as s:
        revoke_key(s, record.id)
    time.sleep(2.2)  # the server caches key checks for 2 s
    assert post(served, "/v1/predict", {"text": "hi"}, key=key).status_code == 401


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"txt": "hi"}, 422, "text is required"),
        ({"text": 5}, 422, "text: Input should be a valid string"),
        ({"text": ""}, 422, "text: String should have at least 1 character"),
        ({"text": "x" * 1001}, 413, "text is 1001 characters long; this service accepts at most 1000"),
    ],
)
def test_bad_bodies_get_a_readable_4xx(served, body, status, error):
    r = post(served, "/v1/predict", body)
    assert (r.status_code, r.json()) == (status, {"error": error})


def test_invalid_json_and_oversize_requests(served):
    r = httpx.post(
        f"{served.url}/v1/predict",
        content=b'{"text":',
        headers={"X-API-Key": served.key, "Content-Type": "application/json"},
    )
    assert (r.status_code, r.json()) == (422, {"error": "the request body is not valid JSON"})
    r = post(served, "/v1/predict/batch", {"texts": ["hi"] * 65})
    assert (r.status_code, r.json()) == (413, {"error": "the batch has 65 items; this service accepts at most 64"})
    r = post(served, "/v1/predict", {"text": "y" * 1_100_000})
    assert r.status_code == 413 and "the limit is 1000000" in r.json()["error"]


def test_no_usage_record_is_lost_under_concurrency(served):
    n, concurrency = 240, 32
    before = usage_count(served.service_id)

    async def main() -> list[int]:
        sem = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(
            base_url=served.url,
            headers={"X-API-Key": served.key},
            timeout=60,
            limits=httpx.Limits(max_connections=concurrency),
        ) as client:

            async def one(i: int) -> int:
                async with sem:
                    r = await client.post("/v1/predict", json={"text": f"where is my order number {i}?"})
                    return r.status_code

            return await asyncio.gather(*(one(i) for i in range(n)))

    statuses = asyncio.run(main())
    assert statuses.count(200) == n and not [s for s in statuses if s >= 500]
    assert usage_count(served.service_id) - before == statuses.count(200)


def test_tampered_bundle_is_refused(trained, tmp_path):
    from runtime.bundle import load_bundle

    with session_factory()() as s:
        bundle = Path(s.get(Service, trained["service_id"]).bundle_dir)
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    with open(copy / "vocab.txt", "a", encoding="utf-8") as f:
        f.write("extra\n")
    with pytest.raises(ServeError, match="vocab.txt does not match its checksum"):
        load_bundle(copy)
    (copy / "tokenizer.json").unlink()
    with pytest.raises(ServeError, match="missing tokenizer.json"):
        load_bundle(copy)


def test_port_in_use_is_one_sentence(served):
    from runtime.serving import ensure_port_free

    with pytest.raises(ServeError, match=f"port {served.port} on 127.0.0.1 is already in use; choose another"):
        ensure_port_free("127.0.0.1", served.port)
