"""Fix the data from the model's mistakes (issue 14, part 2): a FAQ question the model got wrong is added to the
user's FAQ under its right answer, or under a new answer the user writes (never dropped), with more phrasings of it.

The change is a new version of the user's FAQ file beside the old one (`faq.v2.csv`, `faq.v3.csv`, …: the old one is
kept, so a run can always be repeated), and the pipeline in the user's workspace points at it; running it again
computes only what the new rows change (the sentence embeddings of unchanged questions come from the cache)."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from builder.errors import AibError
from builder.ui.draft import Draft, DraftError

FAQ_BLOCK = "chat.faq-csv@1.0.0"


def faq_node(draft: Draft) -> str | None:
    """The node reading the FAQ file, or None."""
    return next((nid for nid, node in draft.blocks.items() if node.get("use") == FAQ_BLOCK), None)


def faq_answers(draft: Draft, node_id: str) -> dict[str, str]:
    """The FAQ's answers by intent, as its file defines them (DraftError when it cannot be read)."""
    from blocks.chat.faq_csv import parse_faq_checked, read_table

    path = _path(draft, node_id)
    try:
        _texts, _intents, answers, _warnings = parse_faq_checked(read_table(path), path.name)
    except AibError as exc:
        raise DraftError(str(exc)) from None
    return answers


def _path(draft: Draft, node_id: str) -> Path:
    value = (draft.blocks[node_id].get("params") or {}).get("path")
    if not value:
        raise DraftError(f"{node_id} reads no FAQ file yet: choose one in the Builder first")
    path = Path(value)
    return path if path.is_absolute() else draft.base_dir / path


def next_version(path: Path, folder: Path) -> Path:
    """`faq.csv` → `faq.v2.csv` (or the next free number) in `folder`."""
    stem = re.sub(r"\.v\d+$", "", path.stem)
    number = 2
    while (folder / f"{stem}.v{number}{path.suffix}").exists():
        number += 1
    return folder / f"{stem}.v{number}{path.suffix if path.suffix == '.csv' else '.csv'}"


def add_questions(draft: Draft, node_id: str, questions: list[str], answer: str) -> Path:
    """Add `questions` under `answer` (an existing answer's text or intent, or a new answer) as a new version of the
    FAQ file, checked by the FAQ block as a run would; points the pipeline at it and saves it. The new file."""
    from blocks.chat.faq_csv import _slug, _unique, parse_faq_checked, read_table
    from builder.ui.actions import save

    questions = [q.strip() for q in questions if q.strip()]
    answer = answer.strip()
    if not questions:
        raise DraftError("write at least one question to add")
    if not answer:
        raise DraftError("choose the right answer, or write a new one")
    path = _path(draft, node_id)
    try:
        frame = read_table(path)
    except AibError as exc:
        raise DraftError(str(exc)) from None
    answers = faq_answers(draft, node_id)
    intent = answer if answer in answers else next((i for i, a in answers.items() if a == answer), None)
    columns = list(frame.columns)
    text_col = next(c for c in ("question", "text", "utterance") if c in columns)
    rows = frame.to_dict("records")
    for question in questions:
        row = dict.fromkeys(columns, "")
        row[text_col] = question
        if "intent" in columns:
            row["intent"] = intent or _unique(_slug(answer), set(answers))
        if "answer" in columns:
            row["answer"] = answers.get(intent, answer) if intent else answer
        if "intent" in columns and "answer" not in columns and intent is None:
            raise DraftError("this FAQ names intents without answers: choose one of its intents")
        rows.append(row)
    folder = path.parent if _inside(path, draft.base_dir) else draft.base_dir / "data"
    folder.mkdir(parents=True, exist_ok=True)
    target = next_version(path, folder)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    target.write_text(buf.getvalue(), encoding="utf-8")
    try:  # the block's own check: a question given two answers, an empty one, … is refused before anything changes
        parse_faq_checked(read_table(target), target.name)
    except AibError as exc:
        target.unlink()
        raise DraftError(str(exc)) from None
    draft.blocks[node_id].setdefault("params", {})["path"] = target.relative_to(draft.base_dir).as_posix()
    save(draft)
    return target


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


__all__ = ["add_questions", "faq_answers", "faq_node", "next_version"]
