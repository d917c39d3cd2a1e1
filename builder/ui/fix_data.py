"""Fix the data from the model's mistakes (issue 14, part 2).

- FAQ: a question the model got wrong is added under its right answer, or under a new answer the user writes (never
  dropped), with more phrasings of it; a question already in the FAQ under a wrong answer is moved (relabelled).
- Images and recordings of the user's own folder (vision.image-folder, speech.wav-folder): a held-out file the model
  got wrong is moved to its right label (an existing one or a new one, never dropped), and more examples of a label
  can be added.

Every change is a new version of the user's data beside the old one (`faq.v2.csv`, `photos.v2.zip`, `photos.v2/`,
…: the old one is kept, so a run can always be repeated), checked by the data block as a run would check it, and the
pipeline in the user's workspace points at it; running it again computes only what the change touches (the cache
keeps every step whose inputs did not change)."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from blocks.chat.faq_csv import parse_faq_checked, read_table
from builder.errors import AibError
from builder.ui.draft import Draft, DraftError

FAQ_BLOCK = "chat.faq-csv@1.0.0"
FOLDER_BLOCKS = ("vision.image-folder@1.0.0", "speech.wav-folder@1.0.0")  # a user's labelled folder or zip
MAX_LABEL_CHARS = 64


@dataclass(frozen=True)
class Fixed:
    """What a fix wrote: the new version of the data, and how many examples it added and moved."""

    path: Path
    added: int = 0
    moved: int = 0


def faq_node(draft: Draft) -> str | None:
    """The node reading the FAQ file, or None."""
    return next((nid for nid, node in draft.blocks.items() if node.get("use") == FAQ_BLOCK), None)


def faq_answers(draft: Draft, node_id: str) -> dict[str, str]:
    """The FAQ's answers by intent, as its file defines them (DraftError when it cannot be read)."""
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


def next_version(path: Path, folder: Path, suffix: str = ".csv") -> Path:
    """The next free version of `path` in `folder`, ending in `suffix` ("" for a folder): `faq.xlsx` → `faq.v2.csv`
    (a FAQ is written as CSV), `photos.zip` → `photos.v2.zip`, `photos/` → `photos.v2/`, `faq.v2.csv` → `faq.v3.csv`."""
    stem = re.sub(r"\.v\d+$", "", path.stem if path.is_file() else path.name)
    number = 2
    while (folder / f"{stem}.v{number}{suffix}").exists():  # the very name returned: none is ever overwritten
        number += 1
    return folder / f"{stem}.v{number}{suffix}"


def add_questions(draft: Draft, node_id: str, questions: list[str], answer: str) -> Fixed:
    """Put `questions` under `answer` (an existing answer's text or intent, or a new answer) in a new version of the
    FAQ file, checked by the FAQ block as a run would; points the pipeline at it and saves it. A question already in
    the FAQ under another answer is moved (relabelled), one already under this answer is not written twice."""
    from blocks.chat.evaluation import question_key
    from blocks.chat.faq_csv import _slug, _unique

    questions = list(dict.fromkeys(q.strip() for q in questions if q.strip()))
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
    if "intent" in columns and "answer" not in columns and intent is None:
        raise DraftError("this FAQ names intents without answers: choose one of its intents")
    label = {
        **({"intent": intent or _unique(_slug(answer), set(answers))} if "intent" in columns else {}),
        **({"answer": answers.get(intent, answer) if intent else answer} if "answer" in columns else {}),
    }
    rows = frame.to_dict("records")
    where = {question_key(str(row[text_col])): row for row in rows if isinstance(row[text_col], str)}
    added = moved = 0
    for question in questions:
        row = where.get(question_key(question))
        if row is None:
            row = {**dict.fromkeys(columns, ""), text_col: question, **label}
            rows.append(row)
            where[question_key(question)] = row
            added += 1
        elif any(str(row[c]).strip() != label[c] for c in label):
            row.update(label)  # the user says this question means that answer: relabelled, not duplicated
            moved += 1
    if not added and not moved:
        raise DraftError("your FAQ already gives these questions that answer: nothing to change")
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
    _point_at(draft, node_id, target)
    return Fixed(target, added=added, moved=moved)


def _point_at(draft: Draft, node_id: str, target: Path) -> None:
    """The pipeline reads the new version from now on (saved)."""
    from builder.ui.actions import save

    draft.blocks[node_id].setdefault("params", {})["path"] = target.relative_to(draft.base_dir).as_posix()
    save(draft)


# --- a user's folder of labelled images or recordings ----------------------------------------------------------


def folder_node(draft: Draft) -> str | None:
    """The node reading the user's own labelled folder (images or recordings), or None."""
    return next((nid for nid, node in draft.blocks.items() if node.get("use") in FOLDER_BLOCKS), None)


def example_word(draft: Draft, node_id: str) -> str:
    """What one example of the node's data is called: "image" or "recording"."""
    return _folder_block(draft, node_id).example


def _folder_block(draft: Draft, node_id: str):  # -> blocks.folders.LabelledFolderBlock
    from builder.ui.draft import block_of

    block = block_of(draft, node_id)
    if block is None:
        raise DraftError(f"{node_id} uses no known block")
    return block()


def _params(draft: Draft, node_id: str, path: Path | None = None):
    block = _folder_block(draft, node_id)
    given = dict(draft.blocks[node_id].get("params") or {})
    if path is not None:
        given["path"] = str(path)
    try:
        return block.Params(**given)
    except ValueError as exc:
        raise DraftError(f"{node_id}'s settings are not valid yet: fix them in the Builder first ({exc})") from None


def _listing(draft: Draft, node_id: str) -> list[tuple[str, str]]:
    """(label, name) of every example file of the node's folder or zip, as the block lists them."""
    _path(draft, node_id)  # a node without a folder yet: one sentence
    try:
        return _folder_block(draft, node_id).listing(_params(draft, node_id), draft.base_dir)
    except AibError as exc:
        raise DraftError(str(exc)) from None


def example_suffixes(draft: Draft, node_id: str) -> list[str]:
    """The file suffixes of the node's examples (".png", ".wav", …)."""
    return sorted(_folder_block(draft, node_id).file_suffixes)


def folder_labels(draft: Draft, node_id: str) -> dict[str, int]:
    """The labels of the user's folder with how many examples each has."""
    counts: dict[str, int] = {}
    for label, _name in _listing(draft, node_id):
        counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items()))


def check_label(label: str) -> str:
    """A label usable as a folder name (stripped); DraftError in one sentence otherwise."""
    label = label.strip()
    if not label:
        raise DraftError("choose the right label, or write a new one")
    if len(label) > MAX_LABEL_CHARS:
        raise DraftError(f"a label has at most {MAX_LABEL_CHARS} characters")
    if label.startswith(".") or any(c in label for c in '/\\:*?"<>|') or any(ord(c) < 32 for c in label):
        raise DraftError(f'{label!r} cannot be a label: it names a folder, so no / \\ : * ? " < > | or leading dot')
    return label


def relabel(draft: Draft, node_id: str, name: str, label: str, more: list[tuple[str, bytes]] = ()) -> Fixed:
    """Move the example `name` (as the run named it) to `label` (an existing label or a new one, with `more` uploaded
    examples of it: a label needs two) in a new version of the user's folder or zip, checked by the data block; the
    pipeline points at it."""
    label = check_label(label)
    listing = _listing(draft, node_id)
    current = dict((n, lab) for lab, n in listing)
    if name not in current:  # only a file of the user's data can be moved, never a path from elsewhere
        raise DraftError(f"{name} is not in {_path(draft, node_id).name} any more: run the pipeline again first")
    if current[name] == label:
        raise DraftError(f"{PurePosixPath(name).name} is labelled {label} already: nothing to change")
    if label not in current.values() and not more:
        raise DraftError(
            f"{label} is a new label: add at least one more {example_word(draft, node_id)} of it (a label needs two)"
        )
    parts = PurePosixPath(name).parts
    target = _free_name(PurePosixPath(*parts[:-2], label, parts[-1]).as_posix(), set(current))
    added = _placed(draft, node_id, label, list(more), listing, set(current) | {target})
    return _new_version(draft, node_id, moves={name: target}, added=added, moved=1)


def add_examples(draft: Draft, node_id: str, label: str, files: list[tuple[str, bytes]]) -> Fixed:
    """Add uploaded example files under `label` (existing or new) in a new version of the user's folder or zip,
    checked by the data block (an unreadable file is named and nothing changes); the pipeline points at it."""
    label = check_label(label)
    if not files:
        raise DraftError(f"choose at least one {example_word(draft, node_id)} to add")
    listing = _listing(draft, node_id)
    added = _placed(draft, node_id, label, files, listing, {n for _lab, n in listing})
    return _new_version(draft, node_id, moves={}, added=added, moved=0)


def _placed(
    draft: Draft, node_id: str, label: str, files: list[tuple[str, bytes]], listing: list[tuple[str, str]],
    taken: set[str],
) -> dict[str, bytes]:  # fmt: skip
    """Where each uploaded file goes in the new version (name → bytes): beside the label's existing files (a zip may
    keep everything under one top folder), under a safe, free name; DraftError for a wrong kind or size."""
    from builder.datasets import DatasetError, check_upload

    prefix = next((PurePosixPath(n).parts[:-2] for lab, n in listing if lab == label), None)
    if prefix is None:
        prefix = PurePosixPath(listing[0][1]).parts[:-2] if listing else ()
    suffixes = tuple(example_suffixes(draft, node_id))
    placed: dict[str, bytes] = {}
    for filename, data in files:
        try:
            safe = check_upload(filename, data, suffixes)
        except DatasetError as exc:
            raise DraftError(str(exc)) from None
        name = _free_name(PurePosixPath(*prefix, label, safe).as_posix(), taken | set(placed))
        placed[name] = data
    return placed


def _free_name(name: str, taken: set[str]) -> str:
    """`name`, or `stem-2.ext`, `stem-3.ext`, … when a file of that name is there already."""
    path, n = PurePosixPath(name), 2
    while name in taken:
        name, n = path.with_name(f"{path.stem}-{n}{path.suffix}").as_posix(), n + 1
    return name


def _new_version(draft: Draft, node_id: str, moves: dict[str, str], added: dict[str, bytes], moved: int) -> Fixed:
    """Write the next version of the node's folder or zip with `moves` applied and `added` written, have the block
    check it as a run would, and point the pipeline at it."""
    source = _path(draft, node_id)
    folder = source.parent if _inside(source, draft.base_dir) else draft.base_dir / "data"
    folder.mkdir(parents=True, exist_ok=True)
    target = next_version(source, folder, ".zip" if source.is_file() else "")
    if source.is_file():
        _zip_version(source, target, moves, added)
    else:
        _folder_version(source, target, moves, added)
    problems = _folder_block(draft, node_id).check(_params(draft, node_id, target), draft.base_dir)
    if problems:
        if target.is_file():
            target.unlink()
        else:
            shutil.rmtree(target)
        raise DraftError(problems[0][1])
    _point_at(draft, node_id, target)
    return Fixed(target, added=len(added), moved=moved)


def _zip_version(source: Path, target: Path, moves: dict[str, str], added: dict[str, bytes]) -> None:
    """A copy of the zip `source` with members renamed by `moves` and `added` written (member by member)."""
    tmp = target.with_name(f".{target.name}.part")
    try:
        with zipfile.ZipFile(source) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
            for info in zin.infolist():
                if info.is_dir():
                    continue
                with zin.open(info) as member, zout.open(moves.get(info.filename, info.filename), "w") as out:
                    shutil.copyfileobj(member, out, 1 << 20)
            for name, data in added.items():
                zout.writestr(name, data)
        os.replace(tmp, target)
    except (zipfile.BadZipFile, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise DraftError(f"{source.name} cannot be rewritten: {exc}") from None


def _folder_version(source: Path, target: Path, moves: dict[str, str], added: dict[str, bytes]) -> None:
    """A copy of the folder `source` as `target` with `moves` applied and `added` written; built aside and renamed
    into place so no half version is ever seen."""
    tmp = target.with_name(f".{target.name}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for path in sorted(source.rglob("*")):
            if not path.is_file():
                continue
            name = path.relative_to(source).as_posix()
            dest = tmp / moves.get(name, name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)  # a copy, not a link: an edit of one version must never change another
        for name, data in added.items():
            dest = tmp / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        os.rename(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DraftError(f"{source.name} cannot be copied to a new version: {exc}") from None


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


__all__ = [
    "Fixed",
    "add_examples",
    "add_questions",
    "check_label",
    "example_suffixes",
    "example_word",
    "faq_answers",
    "faq_node",
    "folder_labels",
    "folder_node",
    "next_version",
    "relabel",
]
