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

    draft = actions.open_template(TEMPLATES / "faq-chatbot-fast.yaml")
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
    question = summary["evaluation"]["classifier"]["misclassified"][0]["text"]
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
    # Given its first answer again, the question is moved back (relabelled), never written twice.
    at = runs_page(summary["run_id"])
    at.button(key=f"{key}-add").click().run()
    assert not at.exception and any("Moved 1" in s.value for s in at.success), [e.value for e in at.error]
    draft = from_yaml((workspace / "pipeline.yaml").read_text(encoding="utf-8"), workspace)
    newest_file = workspace / draft.blocks["faq"]["params"]["path"]
    import pandas as pd

    rows = pd.read_csv(newest_file).astype(str)
    rows = rows[rows["question"] == question]
    assert len(rows) == 1 and not rows.apply(lambda r: "hotline" in " ".join(r), axis=1).any(), rows
    # Asked once more with the same answer: nothing to change, and no version is written.
    versions = sorted(p.name for p in (workspace / "data").glob("faq*.csv"))
    at = runs_page(summary["run_id"])
    at.button(key=f"{key}-add").click().run()
    assert any("nothing to change" in e.value for e in at.error)
    assert sorted(p.name for p in (workspace / "data").glob("faq*.csv")) == versions


def digits_zip(extra_sevens_as_ones: int = 3) -> bytes:
    """Scans of 0, 1 and 7 (12 each) in one top folder, and a few sevens filed under 1 by mistake."""
    import io
    import zipfile

    from sklearn.datasets import load_digits

    from tests.integration.test_digit_reader import paper_png

    digits = load_digits()
    of = {d: [i for i, t in enumerate(digits.target) if t == d] for d in (0, 1, 7)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for d, members in of.items():
            for k, i in enumerate(members[:12]):
                z.writestr(f"scans/{d}/{k}.png", paper_png(digits.images[i], size=16))
        for k, i in enumerate(of[7][12 : 12 + extra_sevens_as_ones]):
            z.writestr(f"scans/1/seven-{k}.png", paper_png(digits.images[i], size=16))
    return buf.getvalue()


def test_an_image_the_model_got_wrong_is_moved_to_its_right_label_or_given_more_examples_in_a_new_version(
    prefect_api,
):
    """The user's own images (a zip, as the workbench uploads a folder): a held-out scan is traced to its file,
    moved to the label the user picks in a new version of the zip (the old one kept), more scans of its label are
    added (an unreadable one refused, nothing changed), and the pipeline runs again on the new version."""
    import zipfile

    from builder.ui import actions
    from builder.ui.draft import from_yaml
    from tests.integration.test_digit_reader import paper_png

    draft = actions.open_yaml(
        """schema_version: 1
name: my-scans
blocks:
  scans: {use: vision.image-folder@1.0.0, params: {path: scans.zip, size: 8, test_fraction: 0.25}}
  cnn: {use: vision.small-cnn@1.0.0, params: {epochs: 3, channels: 4}}
edges:
  - scans.images -> cnn.images
compute: compute.local@1.0.0
budget: 1 AIC
"""
    )
    actions.store_upload(draft, "scans", "path", "scans.zip", digits_zip())
    summary = run_pipeline(actions.save(draft))
    assert summary["status"] == "succeeded", summary["error"]
    wrong = summary["evaluation"]["cnn"]["misclassified"]
    assert wrong, "the model made no mistake to fix"
    item = wrong[0]
    workspace = draft.base_dir
    original = workspace / "data" / "scans.zip"
    before = sha(original)
    assert item["file"] in zipfile.ZipFile(original).namelist()  # traced to the user's own file
    at = runs_page(summary["run_id"])
    key = "fix-cnn-0"
    label = at.selectbox(key=f"{key}-label")
    assert label.value == item["predicted"]  # offered first: what the model said
    at.button(key=f"{key}-move").click().run()
    assert not at.exception and any("Moved 1" in s.value for s in at.success), [e.value for e in at.error]
    assert sha(original) == before
    new = workspace / "data" / "scans.v2.zip"
    names = zipfile.ZipFile(new).namelist()
    moved = item["file"].replace(f"/{item['true']}/", f"/{item['predicted']}/")
    assert item["file"] not in names and moved in names
    saved = from_yaml((workspace / "pipeline.yaml").read_text(encoding="utf-8"), workspace)
    assert saved.blocks["scans"]["params"]["path"] == "data/scans.v2.zip"
    # More examples of its label: an unreadable one is named and nothing changes; good ones make a new version.
    at = runs_page(summary["run_id"])
    at.file_uploader(key=f"{key}-files").set_value(("torn.png", b"not an image", "image/png"))
    at.button(key=f"{key}-add").click().run()
    assert any("torn.png" in e.value and "not a PNG or JPEG image" in e.value for e in at.error)
    assert not (workspace / "data" / "scans.v3.zip").exists()
    from sklearn.datasets import load_digits

    digits = load_digits()
    scan = next(i for i, t in enumerate(digits.target) if str(t) == item["true"] and i > 600)
    at = runs_page(summary["run_id"])
    at.file_uploader(key=f"{key}-files").set_value(("more.png", paper_png(digits.images[scan], size=16), "image/png"))
    at.button(key=f"{key}-add").click().run()
    assert not at.exception and any("Added 1 image(s)" in s.value for s in at.success), [e.value for e in at.error]
    newest = workspace / "data" / "scans.v3.zip"
    assert len(zipfile.ZipFile(newest).namelist()) == len(names) + 1
    again = run_pipeline(workspace / "pipeline.yaml")
    assert again["status"] == "succeeded", again["error"]
    assert not next(step for step in again["steps"] if step["node_id"] == "scans")["cached"]  # the new data is read
    traced = {m["file"] for m in again["evaluation"]["cnn"]["misclassified"]}
    assert traced <= set(zipfile.ZipFile(newest).namelist())  # its mistakes are files of the new version
