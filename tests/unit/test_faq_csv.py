"""chat.faq-csv reads CSV/XLSX FAQ files and says exactly what is wrong with a bad one."""

from pathlib import Path

import pandas as pd
import pytest

from blocks.chat.faq_csv import (
    MAX_FILE_BYTES,
    FaqCsv,
    FaqCsvParams,
    parse_faq,
    parse_faq_checked,
    read_table,
    read_table_described,
)
from builder.errors import DataError


def write(tmp_path: Path, text: str | bytes, name: str = "faq.csv") -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return p


def test_question_answer_format_groups_questions_by_answer(tmp_path):
    p = write(tmp_path, "question,answer\nHi there,Hello!\nHey,Hello!\nBye,See you\nGoodbye,See you\n")
    texts, intents, answers = parse_faq(read_table(p), p.name)
    assert texts == ["Hi there", "Hey", "Bye", "Goodbye"]
    assert intents[0] == intents[1] != intents[2] == intents[3]
    assert sorted(answers.values()) == ["Hello!", "See you"]


def test_intent_example_format_with_answer_on_first_row(tmp_path):
    p = write(tmp_path, "intent,example,answer\ngreet,hi,Hello!\ngreet,hey,\nbye,bye,See you\nbye,ciao,\n")
    _, intents, answers = parse_faq(read_table(p), p.name)
    assert intents == ["greet", "greet", "bye", "bye"] and answers == {"greet": "Hello!", "bye": "See you"}


def test_xlsx_is_read_like_csv(tmp_path):
    p = tmp_path / "faq.xlsx"
    pd.DataFrame({"question": ["a", "b", "c", "d"], "answer": ["x", "x", "y", "y"]}).to_excel(p, index=False)
    texts, _, answers = parse_faq(read_table(p), p.name)
    assert texts == ["a", "b", "c", "d"] and len(answers) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "faq.csv is empty"),
        ("question,answer\n", "faq.csv has a header but no rows"),
        ("q,a\nx,y\n", "needs columns `question,answer` (or `intent,example` plus answers); found: q, a"),
        ("question,answer\nhi,Hello\nhey,Hello\nHI ,See you\nbye,See you\n", "rows 2 and 4 ask the same question"),
        ("question,answer\nhi,Hello\nhey,Hello\n", "only one intent found; a classifier needs at least 2"),
        ("intent,question\ngreet,hi\ngreet,hey\nbye,a\nbye,b\n", "intent 'bye' has no answer"),
        (
            "intent,question,answer\ng,hi,A\ng,hey,B\nb,x,C\nb,y,\n",
            "row 3: intent 'g' already has a different answer (row 2)",
        ),
        ("question,answer\n,Hello\nhey,Hello\n", "row 2: the question is empty"),
        ("question,answer\nhi,Hello\nhey,Hello\nbye,See you\n  ,See you\n", "row 5: the question is empty"),
    ],
)
def test_bad_files_are_explained_in_one_sentence(tmp_path, content, message):
    p = write(tmp_path, content)
    with pytest.raises(DataError) as info:
        parse_faq(read_table(p), p.name)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_excel_semicolon_latin1_file_is_read_like_utf8(tmp_path):
    text = "Question;Answer\nUn café ?;Oui, 2 €\nUn café, svp;Oui, 2 €\nAu revoir;À bientôt\nSalut;À bientôt\n"
    p = write(tmp_path, text.encode("cp1252"))
    frame, description = read_table_described(p)
    assert description == "semicolon-separated, Latin-1"
    texts, _, answers = parse_faq(frame, p.name)
    assert texts == ["Un café ?", "Un café, svp", "Au revoir", "Salut"]
    assert sorted(answers.values()) == ["Oui, 2 €", "À bientôt"]


def test_bom_does_not_hide_the_first_column(tmp_path):
    p = write(tmp_path, "\ufeffquestion\tanswer\nhi\thello\nhey\thello\nbye\tciao\nciao\tciao\n".encode("utf-8"))
    frame = read_table(p)
    assert list(frame.columns) == ["question", "answer"]
    assert parse_faq(frame, p.name)[0] == ["hi", "hey", "bye", "ciao"]


def test_csv_larger_than_the_limit_is_refused_before_it_is_read(tmp_path):
    p = tmp_path / "faq.csv"
    with p.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: nothing is written, only the size is claimed
    with pytest.raises(DataError, match=r"^faq.csv is 52.4 MB; the limit is 52 MB$"):
        read_table(p)


def test_unsupported_extension_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="unsupported file type '.pdf'"):
        read_table(write(tmp_path, "x", "faq.pdf"))
    with pytest.raises(DataError, match="file not found"):
        read_table(tmp_path / "nope.csv")


def test_split_keeps_every_intent_in_training_and_preview_samples_rows(tmp_path):
    rows = "".join(f"q{i}-{k},answer {k}\n" for k in range(16) for i in range(10))
    write(tmp_path, "question,answer\n" + rows)
    block, params = FaqCsv(), FaqCsvParams(path="faq.csv", eval_fraction=0.2, seed=1)
    data = block.load(params, tmp_path)
    assert data.eval_split == "split" and len(data.eval_texts) == 32 and len(data.train_texts) == 128
    assert set(data.train_intents) == set(data.eval_intents) and not set(data.train_texts) & set(data.eval_texts)
    sample = block.preview(params, tmp_path, rows=4, seed=3)
    assert len(sample) == 4 and set(sample[0]) == {"question", "answer"}  # its intents are made from the answers


def test_heldout_with_unknown_intent_is_reported_against_heldout_path(tmp_path):
    write(tmp_path, "intent,question,answer\ng,hi,A\ng,hey,\nb,x,C\nb,y,\n")
    write(tmp_path, "intent,question\ng,hello\nweather,is it sunny\n", "held.csv")
    problems = FaqCsv().check(FaqCsvParams(path="faq.csv", heldout_path="held.csv"), tmp_path)
    assert problems == [("heldout_path", "held.csv: row 3: 'weather' is not an intent of the training file")]


def test_the_preview_shows_an_intent_only_when_the_file_names_one(tmp_path):
    rows = ["question,answer"] + [f"where is invoice {i}?,Open Billing." for i in range(3)]
    rows += [f"lost my password {i},Use Reset." for i in range(3)]
    (tmp_path / "qa.csv").write_text("\n".join(rows) + "\n")
    shown = FaqCsv().preview(FaqCsvParams(path="qa.csv"), tmp_path, rows=4, seed=0)
    assert shown and all(set(r) == {"question", "answer"} for r in shown)  # no made-up code name like open-billing
    rows = ["intent,question,answer", "billing,where is my invoice?,Open Billing.", "billing,invoice copy?,"]
    rows += ["password,lost my password,Use Reset.", "password,cannot log in,"]
    (tmp_path / "named.csv").write_text("\n".join(rows) + "\n")
    shown = FaqCsv().preview(FaqCsvParams(path="named.csv"), tmp_path, rows=4, seed=0)
    assert {r["intent"] for r in shown} <= {"billing", "password"} and all("answer" in r for r in shown)


def test_an_answer_with_one_question_is_trained_on_with_a_warning_naming_it(tmp_path):
    p = write(tmp_path, "question,answer\nhi,Hello\nhey,Hello\nbye,See you later\n")
    texts, intents, answers, warnings = parse_faq_checked(read_table(p), p.name)
    assert texts == ["hi", "hey", "bye"] and sorted(answers.values()) == ["Hello", "See you later"]
    assert len(warnings) == 1 and warnings[0].startswith(
        "faq.csv: the answer 'See you later' has only one question (row 4); add a few more phrasings"
    )
    data = FaqCsv().load(FaqCsvParams(path=p.name), tmp_path)
    assert data.warnings == tuple(warnings) and "bye" in data.all_texts
