"""Fix the data from a mistake on the Runs page: the question goes into a new version of the user's FAQ (under its
right answer, or a new one, never dropped), the pipeline points at it, and the next run answers it right."""

from __future__ import annotations

import hashlib

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import TEMPLATES
from tests.integration.conftest import run_pipeline
from tests.integration.test_ui_pages import PAGES


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def workbench_run(prefect_api):
    """The FAQ template opened in the workbench (its own copy of the data: each test its own) and run once."""
    from builder.ui import actions

    draft = actions.open_template(TEMPLATES / "faq-chatbot.yaml")
    path = actions.save(draft)
    summary = run_pipeline(path)
    assert summary["status"] == "succeeded", summary["error"]
    return draft.base_dir, summary


def runs_page(run_id: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / "runs_page.py"), default_timeout=60)
    at.session_state["selected_run"] = run_id
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_missed_question_is_taught_under_its_right_answer_in_a_new_version_and_the_next_run_answers_it(
    workbench_run,
):
    from builder.ui.draft import from_yaml
    from runtime.bundle import load_bundle

    workspace, summary = workbench_run
    mistake = summary["evaluation"]["classifier"]["misclassified"][0]
    original = workspace / "data" / "faq.csv"
    before = sha(original)
    at = runs_page(summary["run_id"])
    key = "fix-classifier-0"
    assert at.selectbox(key=f"{key}-answer").value == mistake["true"]  # offered: the answer it should have given
    at.text_area(key=f"{key}-more").input("Could you tell me that again?\nOne more way to ask it")
    at.button(key=f"{key}-add").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("a new version of your FAQ" in s.value for s in at.success), [e.value for e in at.error]
    new = workspace / "data" / "faq.v2.csv"
    assert sha(original) == before  # the old version is kept as it was
    text = new.read_text(encoding="utf-8")
    assert mistake["text"] in text and "One more way to ask it" in text
    assert len(text.splitlines()) == len(original.read_text(encoding="utf-8").splitlines()) + 3
    pipeline = workspace / "pipeline.yaml"
    draft = from_yaml(pipeline.read_text(encoding="utf-8"), workspace)
    assert draft.blocks["faq"]["params"]["path"] == "data/faq.v2.csv"
    again = run_pipeline(pipeline)
    assert again["status"] == "succeeded", again["error"]
    from runtime.db import Service, session_factory

    with session_factory()() as s:
        bundle = s.get(Service, again["service_id"]).bundle_dir
    answer = load_bundle(bundle).predict([{"text": mistake["text"]}])[0]
    assert answer["top_intent"] == mistake["true"], answer  # the question it missed, now learnt


def test_a_new_answer_is_added_as_a_new_label_an_empty_one_and_a_conflicting_one_are_refused(workbench_run):
    workspace, summary = workbench_run
    at = runs_page(summary["run_id"])
    key = "fix-classifier-0"
    at.selectbox(key=f"{key}-answer").select("__new__").run()
    at.button(key=f"{key}-add").click().run()
    assert any("choose the right answer, or write a new one" in e.value for e in at.error)
    versions = sorted(p.name for p in (workspace / "data").glob("faq*.csv"))
    at = runs_page(summary["run_id"])
    at.selectbox(key=f"{key}-answer").select("__new__").run()
    at.text_input(key=f"{key}-new").input("Please call our hotline on 0800 123 456.")
    at.text_area(key=f"{key}-more").input("Is there a phone number?")
    at.button(key=f"{key}-add").click().run()
    assert not at.exception and any("a new version of your FAQ" in s.value for s in at.success), [
        e.value for e in at.error
    ]
    newest = sorted(p.name for p in (workspace / "data").glob("faq*.csv"))
    assert len(newest) == len(versions) + 1
    from builder.ui.draft import from_yaml
    from builder.ui.fix_data import faq_answers, faq_node

    draft = from_yaml((workspace / "pipeline.yaml").read_text(encoding="utf-8"), workspace)
    answers = faq_answers(draft, faq_node(draft))
    assert "Please call our hotline on 0800 123 456." in answers.values()  # a new label, not dropped
    # The same question under another answer now: refused, naming both rows; no version is written.
    at = runs_page(summary["run_id"])
    at.button(key=f"{key}-add").click().run()
    assert any("ask the same question" in e.value and "with different answers" in e.value for e in at.error)
    assert sorted(p.name for p in (workspace / "data").glob("faq*.csv")) == newest
