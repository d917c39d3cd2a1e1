"""A user's FAQ too small to hold anything out (4 answers × 3 questions), trained by a real run and served over
HTTP: the accuracy reported is measured by cross-validation, not on the questions trained on, and says it is
rough, while the served chatbot, trained on every question, answers each of them."""

from __future__ import annotations

import csv

import httpx
import yaml
from sqlalchemy import select

from runtime.db import MetricPoint, session_factory
from tests.integration.conftest import ServerThread, run_pipeline

# Three topics, each asked once for every answer: a question's topic-mates all belong to other answers, so a
# model that never saw a question cannot give its answer (its out-of-fold accuracy is 0), while one trained on
# all twelve tells them apart (its training accuracy is 1). A figure measured on training questions reads 1.000.
TOPICS = [
    ["How do I reset my password?", "I forgot my password, what now?", "Can I change my login password?",
     "My password does not work anymore"],
    ["When does the shop open?", "What are your opening hours?", "Are you open on Sundays?",
     "What time do you close tonight?"],
    ["Where is my parcel?", "How can I track my order?", "My delivery has not arrived yet",
     "When will my package be shipped?"],
]  # fmt: skip
ANSWERS = ["Answer one.", "Answer two.", "Answer three.", "Answer four."]
ROWS = [(question, answer) for topic in TOPICS for question, answer in zip(topic, ANSWERS, strict=True)]


def test_a_tiny_faq_is_cross_validated_and_its_served_model_answers_every_question(prefect_api, faq_template):
    faq_template = faq_template.with_name("faq-chatbot-fast.yaml")  # the FAQ bot on MiniLM
    with (faq_template.parent / "data" / "faq.csv").open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("question", "answer"), *ROWS])
    pipeline = yaml.safe_load(faq_template.read_text())
    del pipeline["blocks"]["faq"]["params"]["heldout_path"]  # a user's own file, as after an upload
    faq_template.write_text(yaml.safe_dump(pipeline, sort_keys=False))

    summary = run_pipeline(faq_template)
    assert summary["status"] == "succeeded", summary["error"]
    m = summary["metrics"]
    assert (m["eval_split"], m["cv_folds"], m["eval_examples"]) == ("cross-validation", 3, 12), m
    assert m["train_accuracy"] == 1.0 and m["accuracy"] == 0.0, m  # out of fold, as the design above predicts
    assert m["metric_note"].startswith("Measured by 3-fold cross-validation on 12 questions: a rough figure.")
    assert "add at least 18 more questions (about 5 per answer)" in m["metric_note"]
    with session_factory()() as s:  # no per-epoch "accuracy" either: there were no held-out questions to score
        series = set(s.scalars(select(MetricPoint.name).where(MetricPoint.run_id == summary["run_id"],
                                                              MetricPoint.node_id == "classifier")))  # fmt: skip
    assert "train_accuracy" in series and "accuracy" not in series

    from runtime.keys import create_key
    from runtime.serving import create_app

    with session_factory()() as s:
        key, _ = create_key(s, summary["service_id"])
    with ServerThread(create_app(summary["service_id"])) as server:
        r = httpx.post(f"{server.url}/v1/predict/batch", json={"texts": [q for q, _ in ROWS]},
                       headers={"X-API-Key": key}, timeout=60)  # fmt: skip
    assert r.status_code == 200, r.text
    got = [(q, res["answer"]) for (q, _), res in zip(ROWS, r.json()["results"], strict=True)]
    assert got == ROWS  # trained on all twelve: each is answered with its own answer, above the threshold
