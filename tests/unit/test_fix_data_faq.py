"""Teaching a FAQ from a mistake (builder/ui/fix_data.add_questions): new questions are added under the chosen
answer, a question already in the FAQ under another answer is moved (relabelled) and never written twice, and the
old file is kept."""

from __future__ import annotations

import pandas as pd
import pytest

from builder.ui.draft import DraftError, from_yaml

ROWS = [
    ("hours", "When do you open?", "9 to 5."),
    ("hours", "What are your opening hours?", "9 to 5."),
    ("returns", "Can I return a jacket?", "Within 30 days."),
    ("returns", "How do returns work?", "Within 30 days."),
    ("returns", "Are you open on Sunday?", "Within 30 days."),  # filed under the wrong answer
]


@pytest.fixture()
def draft(tmp_path):
    (tmp_path / "data").mkdir()
    pd.DataFrame(ROWS, columns=["intent", "question", "answer"]).to_csv(tmp_path / "data" / "faq.csv", index=False)
    text = """schema_version: 1
name: faq
blocks:
  faq: {use: chat.faq-csv@1.0.0, params: {path: data/faq.csv}}
compute: compute.local@1.0.0
"""
    (tmp_path / "pipeline.yaml").write_text(text)
    return from_yaml(text, tmp_path)


def table(draft) -> pd.DataFrame:
    return pd.read_csv(draft.base_dir / draft.blocks["faq"]["params"]["path"])


def test_a_question_filed_under_the_wrong_answer_is_moved_not_duplicated_and_new_ones_are_added(draft):
    from builder.ui.fix_data import add_questions

    before = (draft.base_dir / "data" / "faq.csv").read_bytes()
    fixed = add_questions(draft, "faq", ["are you OPEN on  sunday?", "Is the shop open at weekends?"], "9 to 5.")
    assert (fixed.added, fixed.moved) == (1, 1)
    rows = table(draft)
    assert len(rows) == len(ROWS) + 1
    moved = rows[rows["question"] == "Are you open on Sunday?"]
    assert moved[["intent", "answer"]].values.tolist() == [["hours", "9 to 5."]]  # one row, now under hours
    assert (draft.base_dir / "data" / "faq.csv").read_bytes() == before
    assert draft.blocks["faq"]["params"]["path"] == "data/faq.v2.csv"


def test_a_question_already_under_that_answer_changes_nothing_and_writes_no_version(draft):
    from builder.ui.fix_data import add_questions

    with pytest.raises(DraftError, match="nothing to change"):
        add_questions(draft, "faq", ["When do you open?"], "hours")
    assert sorted(p.name for p in (draft.base_dir / "data").iterdir()) == ["faq.csv"]
    assert draft.blocks["faq"]["params"]["path"] == "data/faq.csv"


def test_a_new_answer_becomes_a_new_intent_never_dropped(draft):
    from builder.ui.fix_data import add_questions, faq_answers

    add_questions(draft, "faq", ["Do you deliver?", "Is there delivery?"], "We deliver within 10 km.")
    answers = faq_answers(draft, "faq")
    assert "We deliver within 10 km." in answers.values() and len(answers) == 3


def test_a_new_version_never_overwrites_one_already_there(tmp_path):
    from builder.ui.fix_data import next_version

    (tmp_path / "faq.xlsx").write_bytes(b"x")
    (tmp_path / "faq.v2.csv").write_text("kept")
    (tmp_path / "photos.v2.zip").write_bytes(b"z")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos.v2").mkdir()
    assert next_version(tmp_path / "faq.xlsx", tmp_path) == tmp_path / "faq.v3.csv"  # a FAQ is written as CSV
    assert next_version(tmp_path / "photos.v2.zip", tmp_path, ".zip") == tmp_path / "photos.v3.zip"
    assert next_version(tmp_path / "photos", tmp_path, "") == tmp_path / "photos.v3"
