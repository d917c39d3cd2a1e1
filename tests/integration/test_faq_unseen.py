"""A FAQ that ships only with the tests (a gym's, never used to choose a default) trained as a user trains their own
(their file, no held-out file) by a real run, and served over HTTP: its questions asked in other words get their
answers, and questions it has no answer for get the fallback."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import httpx
import yaml

from runtime.db import session_factory
from tests.integration.conftest import ServerThread, run_pipeline

GYM = Path(__file__).resolve().parents[1] / "data" / "faqs" / "gym"
# Measured here on 2026-12-06 with the template as shipped (MPNet, 30 epochs): 30 of 37 paraphrases answered right
# (0.811; the other 7 got the fallback, none a wrong answer) and 27 of 30 out-of-scope questions refused (0.900: a
# job, physiotherapy and corporate memberships got answers). On MiniLM (faq-chatbot-fast): 27 of 37 and 30 of 30. The
# floors leave three questions of margin for float differences on other machines (the run is seeded); a drop past
# them is the bot answering its users worse.
IN_SCOPE_FLOOR = 0.72
OUT_OF_SCOPE_FLOOR = 0.80


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def ask(server: ServerThread, key: str, texts: list[str]) -> list[str]:
    """The answers the served bot gives to `texts`, in order."""
    r = httpx.post(f"{server.url}/v1/predict/batch", json={"texts": texts}, headers={"X-API-Key": key}, timeout=60)
    assert r.status_code == 200, r.text
    return [result["answer"] for result in r.json()["results"]]


def test_an_unseen_faq_answers_its_paraphrases_and_refuses_what_it_cannot_answer(prefect_api, faq_template):
    shutil.copyfile(GYM / "faq.csv", faq_template.parent / "data" / "gym.csv")
    summary = run_pipeline(faq_template, ["faq.path=data/gym.csv", "faq.heldout_path=null"])
    assert summary["status"] == "succeeded", summary["error"]
    answers = {r["intent"]: r["answer"] for r in rows(GYM / "faq.csv") if r["answer"]}
    paraphrases = rows(GYM / "paraphrases.csv")
    out_of_scope = [r["question"] for r in rows(GYM / "out-of-scope.csv")]
    fallback = yaml.safe_load(faq_template.read_text())["blocks"]["api"]["params"]["fallback_answer"]

    from runtime.keys import create_key
    from runtime.serving import create_app

    with session_factory()() as s:
        key, _ = create_key(s, summary["service_id"])
    with ServerThread(create_app(summary["service_id"])) as server:
        got_in = ask(server, key, [r["question"] for r in paraphrases])
        got_out = ask(server, key, out_of_scope)
    right = sum(got == answers[r["intent"]] for got, r in zip(got_in, paraphrases, strict=True))
    refused = sum(got == fallback for got in got_out)
    in_scope, rejection = right / len(paraphrases), refused / len(out_of_scope)
    missed = [(r["question"], got) for got, r in zip(got_in, paraphrases, strict=True) if got != answers[r["intent"]]]
    answered = [(q, got) for q, got in zip(out_of_scope, got_out, strict=True) if got != fallback]
    assert in_scope >= IN_SCOPE_FLOOR, f"in-scope accuracy {in_scope:.3f} < {IN_SCOPE_FLOOR}; missed: {missed}"
    assert rejection >= OUT_OF_SCOPE_FLOOR, f"out-of-scope rejection {rejection:.3f} < {OUT_OF_SCOPE_FLOOR}; {answered}"
