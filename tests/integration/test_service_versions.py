"""Model versions over the real path: two runs of one pipeline are two versions of its service; the stable endpoint
switches between them under load with no lost call and no 5xx, each call billed to the version that answered;
versions and compare through the CLI; bad references in one sentence."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter

import httpx
import pytest
from sqlalchemy import func, select

from runtime.db import Usage, session_factory
from tests.integration.conftest import ServerThread, aib, run_pipeline

LOAD = 600
CONCURRENCY = 8


@pytest.fixture(scope="module")
def two_versions(prefect_api, template_dir):
    """A FAQ pipeline of its own name, trained twice (60 and 3 epochs): versions 1 and 2 of its service."""
    name = f"faq-versions-{uuid.uuid4().hex[:6]}"
    text = (
        (template_dir / "faq-chatbot-fast.yaml")
        .read_text(encoding="utf-8")
        .replace("name: faq-chatbot-fast", f"name: {name}")
    )
    path = template_dir / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    runs = [run_pipeline(path, [f"classifier.epochs={epochs}"]) for epochs in (60, 3)]
    assert all(r["status"] == "succeeded" for r in runs), [r["error"] for r in runs]
    return name, runs


def billed(service_ids: list[str]) -> Counter:
    with session_factory()() as s:
        rows = s.execute(
            select(Usage.service_id, func.sum(Usage.quantity))
            .where(Usage.service_id.in_(service_ids), Usage.unit == "call")
            .group_by(Usage.service_id)
        ).all()
    return Counter({sid: int(n) for sid, n in rows})


def wait_for_version(url: str, version: int) -> None:
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/health").json()["version"] != version:
        assert time.monotonic() < deadline, f"the stable endpoint did not switch to version {version}"
        time.sleep(0.05)


def test_promote_and_rollback_under_load_lose_no_call_and_bill_the_version_that_answered(two_versions):
    from runtime.keys import create_key
    from runtime.serving import create_app

    name, (first, second) = two_versions
    ids = [first["service_id"], second["service_id"]]
    with session_factory()() as s:
        key, _ = create_key(s, first["service_id"])  # a key of version 1 keeps working on version 2
    before = billed(ids)
    with ServerThread(create_app(name)) as server:
        assert httpx.get(f"{server.url}/health").json()["version"] == 2  # never promoted: the newest, now pinned
        r = aib("services", "rollback", name, "1")
        assert r.returncode == 0, r.stderr
        wait_for_version(server.url, 1)
        done: list[httpx.Response] = []
        errors: list[BaseException] = []
        stop = threading.Event()

        async def load() -> None:
            """CONCURRENCY clients calling without pause until told to stop, and at least LOAD calls."""
            questions = ["Do you take PayPal?", "How long is the warranty?", "I forgot my password", "Where is it?"]
            async with httpx.AsyncClient(timeout=30) as client:

                async def caller(c: int) -> None:
                    i = c
                    while not stop.is_set() or len(done) < LOAD:
                        r = await client.post(
                            f"{server.url}/v1/predict",
                            json={"text": questions[i % len(questions)]},
                            headers={"X-API-Key": key},
                        )
                        done.append(r)
                        i += CONCURRENCY

                await asyncio.gather(*(caller(c) for c in range(CONCURRENCY)))

        def run_load() -> None:
            try:
                asyncio.run(load())
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        def answered_by(version: str) -> int:
            return sum(r.headers.get("X-Service-Version") == version for r in list(done))

        loader = threading.Thread(target=run_load)
        loader.start()
        try:
            for action, version in (("promote", 2), ("rollback", 1), ("promote", 2)):
                seen = answered_by(str(version))
                r = aib("services", action, name, str(version))  # while the calls go on
                assert r.returncode == 0, r.stderr
                wait_for_version(server.url, version)
                deadline = time.monotonic() + 30
                while answered_by(str(version)) < seen + 20:  # the switched-to version answers the load
                    assert time.monotonic() < deadline and loader.is_alive(), errors
                    time.sleep(0.01)
        finally:
            stop.set()
            loader.join(timeout=300)
        assert not errors and not loader.is_alive(), errors
    codes = Counter(r.status_code for r in done)
    assert len(done) >= LOAD and codes == {200: len(done)}, codes  # none lost, no 5xx
    by_id = Counter(r.headers["X-Service-Id"] for r in done)
    print(f"{len(done)} calls through promote, rollback, promote: {dict(codes)}, by version {dict(by_id)}")
    assert set(by_id) == set(ids), by_id  # both versions answered during the load
    assert Counter(r.headers["X-Service-Version"] for r in done).keys() == {"1", "2"}
    # The ledger bills each call to the version that answered it, exactly once.
    gained = billed(ids) - before
    assert gained == by_id, (gained, by_id)


def test_versions_and_compare_say_what_produced_each_and_which_answers_changed(two_versions):
    name, (first, second) = two_versions
    r = aib("services", "versions", name, "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout.strip().splitlines()[-1])
    assert [v["version"] for v in rows] == [1, 2] and [v["run_id"] for v in rows] == [first["run_id"], second["run_id"]]
    assert sum(v["live"] for v in rows) == 1
    assert rows[0]["data"] == rows[1]["data"] and rows[0]["data"]  # the same FAQ file: the same data hashes
    assert rows[0]["plan_hash"] != rows[1]["plan_hash"] and rows[0]["pipeline_path"].endswith(f"{name}.yaml")
    assert rows[0]["metrics"]["accuracy"] == first["metrics"]["accuracy"]

    r = aib("services", "compare", f"{name}@1", second["service_id"], "--json")
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout.strip().splitlines()[-1])
    ea, eb = first["evaluation"]["classifier"], second["evaluation"]["classifier"]
    assert found["matched"] == "by question" and found["compared"] == ea["examples"] == eb["examples"]
    # Recomputed from the two runs' own held-out answers: what changed, what was fixed and what broke.
    changed = [i for i in range(len(ea["answers"])) if ea["answers"][i] != eb["answers"][i]]
    assert found["changed_count"] == len(changed) > 0
    assert found["fixed"] == sum(eb["answers"][i] == eb["truth"][i] for i in changed)
    assert found["broken"] == sum(ea["answers"][i] == ea["truth"][i] for i in changed)
    assert {c["example"] for c in found["changed"]} <= set(ea["keys"])
    r = aib("services", "compare", f"{name}@1", f"{name}@2")
    assert r.returncode == 0 and "held-out examples changed their answer" in r.stdout, r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("rollback", "{name}", "7"), "has no version '7'; its versions are 1 to 2"),
        (("promote", "{name}", "v0"), "has no version 'v0'"),
        (("rollback", "no-such-service", "1"), "no service named 'no-such-service'"),
        (("compare", "{name}@1", "svc-nope"), "no service 'svc-nope'"),
        (("versions", "no-such-service"), "no service named 'no-such-service'"),
    ],
)
def test_unknown_versions_are_refused_in_one_sentence_with_exit_2(two_versions, args, message):
    name, _ = two_versions
    r = aib("services", *(a.format(name=name) for a in args))
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_rollback_goes_only_back(two_versions):
    name, _ = two_versions
    assert aib("services", "promote", name, "1").returncode == 0
    r = aib("services", "rollback", name, "2")
    assert r.returncode == 2 and "is not older than the live version 1" in r.stderr


def test_the_services_page_lists_the_versions_makes_one_live_and_compares_two(two_versions):
    from streamlit.testing.v1 import AppTest

    from runtime.versions import live_service, number_of
    from tests.integration.test_ui_pages import PAGES

    name, (first, second) = two_versions
    assert aib("services", "promote", name, "2").returncode == 0
    at = AppTest.from_file(str(PAGES / "services_page.py"), default_timeout=60)
    at.session_state["selected_service"] = second["service_id"]
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "Version" in d.value.columns and "Live" in d.value.columns)
    assert list(table["Version"]) == [1, 2] and list(table["Live"]) == ["", "● live"]
    assert any("held-out examples changed their answer" in c.value for c in at.caption)
    at.selectbox(key=f"version-pick-{name}").select(1).run()
    at.button(key=f"make-live-{name}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(s.value.startswith("Version 1 is live") for s in at.success)
    with session_factory()() as s:
        assert number_of(s, live_service(s, name)) == 1  # where the stable endpoint reads it


def test_only_keys_of_this_services_versions_open_its_stable_endpoint(two_versions, trained):
    from runtime.keys import create_key, revoke_key
    from runtime.serving import create_app

    name, (first, second) = two_versions
    with session_factory()() as s:
        mine, _ = create_key(s, second["service_id"])
        other, _ = create_key(s, trained["service_id"])  # a key of another service (faq-chatbot)
        revoked, record = create_key(s, first["service_id"])
        revoke_key(s, record.id)
    with ServerThread(create_app(name)) as server:
        ask = {"text": "Do you take PayPal?"}
        assert httpx.post(f"{server.url}/v1/predict", json=ask, headers={"X-API-Key": mine}).status_code == 200
        for key in (other, revoked):
            r = httpx.post(f"{server.url}/v1/predict", json=ask, headers={"X-API-Key": key})
            assert (r.status_code, r.json()) == (401, {"error": "invalid or revoked API key"})
