"""chat.faq-csv: a FAQ spreadsheet (CSV or XLSX) read into labelled question/answer examples."""

from __future__ import annotations

import logging
import random
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import Field

from blocks import DATA_PROVIDER
from blocks.chat.confidence import OUT_OF_SCOPE_FILE, out_of_scope_questions
from blocks.chat.evaluation import CROSS_VALIDATION, DEPENDABLE_EVAL_EXAMPLES, question_key
from builder.datasets import read_csv_path
from builder.errors import DataError
from builder.files import sha256_file
from builder.ports import Port, PortType
from builder.registry import register_block
from builder.spec import Block, BlockParams, Kind, Price, PriceUnit

if TYPE_CHECKING:
    from runtime.context import StepContext

log = logging.getLogger(__name__)

TEXT_COLUMNS = ("question", "example", "text")
MAX_FILE_BYTES = 50 * 1024 * 1024
# An .xlsx is a zip: what it unpacks to, not its packed size, is what openpyxl holds in memory.
MAX_UNPACKED_BYTES = 100 * 10**6


@dataclass
class FaqData:
    """Labelled FAQ examples split into training and evaluation sets, with one answer per intent."""

    train_texts: list[str]
    train_intents: list[str]
    eval_texts: list[str]
    eval_intents: list[str]
    answers: dict[str, str]
    # "heldout" (a separate file), "split" (sampled from the file) or "cross-validation" (too little to hold out:
    # the eval lists are empty and the classifier cross-validates over the training rows, which are all of them)
    eval_split: str
    sources: dict[str, str] = field(default_factory=dict)  # file -> sha256
    heldout_repeats: int = 0  # held-out questions left out because they are also training questions
    # Plain defaults (not factories), so data cached before these fields existed still load.
    out_of_scope: tuple[str, ...] = ()  # general questions the FAQ has no answer for (blocks/chat/confidence.py)
    warnings: tuple[str, ...] = ()  # problems that do not stop training, one sentence each

    @property
    def all_texts(self) -> list[str]:
        """Every question of the FAQ file: what the served model trains on (a split's evaluation rows too)."""
        return self.train_texts + (self.eval_texts if self.eval_split == "split" else [])

    @property
    def all_intents(self) -> list[str]:
        return self.train_intents + (self.eval_intents if self.eval_split == "split" else [])

    @property
    def intents(self) -> list[str]:
        return sorted(self.answers)


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:40].rstrip("-") or "intent"


def _check_unpacked(path: Path) -> None:
    """DataError when a spreadsheet is not a zip, or unpacks to more than MAX_UNPACKED_BYTES (a zip bomb)."""
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile:
        raise DataError(f"{path.name} is not a readable .xlsx file (it is not a zip archive)") from None
    if unpacked > MAX_UNPACKED_BYTES:
        raise DataError(
            f"{path.name} unpacks to {unpacked / 1e6:.0f} MB; the limit is {MAX_UNPACKED_BYTES // 10**6} MB"
        )


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV or XLSX file into a frame of strings; raises DataError with one sentence."""
    return read_table_described(path)[0]


def read_table_described(path: Path) -> tuple[pd.DataFrame, str]:
    """The file as a frame of strings (columns stripped, lower case) and its format in plain words.

    A CSV may be comma-, semicolon- or tab-separated, in UTF-8 (with or without BOM) or Latin-1: builder.datasets
    detects which, the same way for the upload preview, the block's check and the run.
    """
    if not path.exists():
        raise DataError(f"file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a folder; expected a .csv or .xlsx file")
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{path.name} is empty")
    if size > MAX_FILE_BYTES:
        raise DataError(f"{path.name} is {size / 1e6:.1f} MB; the limit is {MAX_FILE_BYTES // 10**6} MB")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt", ""):
        table = read_csv_path(path, MAX_FILE_BYTES)
        frame, description = pd.DataFrame(table.rows, columns=table.columns, dtype=str), table.format.description
    elif suffix in (".xlsx", ".xlsm"):
        _check_unpacked(path)
        try:
            frame, description = pd.read_excel(path, dtype=str, keep_default_na=False), "Excel workbook"
        except Exception as exc:  # openpyxl / zipfile errors for a broken .xlsx
            raise DataError(f"{path.name} could not be read as a spreadsheet: {exc}") from None
    else:
        raise DataError(f"{path.name}: unsupported file type {suffix!r}; use .csv or .xlsx")
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    return frame.map(lambda v: str(v).strip()), description


def parse_faq(
    frame: pd.DataFrame, name: str, answers: dict[str, str] | None = None
) -> tuple[list[str], list[str], dict[str, str]]:
    """Turn a frame into (texts, intents, answers); every problem is reported in one DataError."""
    return parse_faq_checked(frame, name, answers)[:3]  # type: ignore[return-value]


def parse_faq_checked(
    frame: pd.DataFrame, name: str, answers: dict[str, str] | None = None
) -> tuple[list[str], list[str], dict[str, str], list[str]]:
    """(texts, intents, answers, warnings): every problem that stops training in one DataError; an answer with a
    single question is trained on, with a warning naming it."""
    if frame.empty:
        raise DataError(f"{name} has a header but no rows")
    text_col = next((c for c in TEXT_COLUMNS if c in frame.columns), None)
    has_intent, has_answer = "intent" in frame.columns, "answer" in frame.columns
    if text_col is None or not (has_intent or has_answer):
        found = ", ".join(frame.columns) or "none"
        raise DataError(f"{name} needs columns `question,answer` (or `intent,example` plus answers); found: {found}")
    problems: list[str] = []
    texts: list[str] = []
    intents: list[str] = []
    found_answers: dict[str, str] = dict(answers or {})
    answer_row: dict[str, int] = {}
    intent_of_answer: dict[str, str] = {}
    question_row: dict[str, tuple[int, str]] = {}  # question key -> (first line, its intent)
    intent_row: dict[str, int] = {}  # intent -> its first line
    for i, row in enumerate(frame.to_dict("records")):
        line = i + 2  # header is line 1
        text = row[text_col]
        answer = row.get("answer", "") if has_answer else ""
        if not text and not answer and not row.get("intent"):
            continue
        if not text:
            problems.append(f"row {line}: the {text_col} is empty")
            continue
        if has_intent and row["intent"]:
            intent = row["intent"]
        elif has_answer and answer:
            intent = intent_of_answer.get(answer) or _unique(_slug(answer), set(intent_of_answer.values()))
            intent_of_answer[answer] = intent
        else:
            problems.append(f"row {line}: no intent and no answer for {text!r}")
            continue
        key = question_key(text)
        first = question_row.setdefault(key, (line, intent))
        if first[1] != intent:
            problems.append(f"rows {first[0]} and {line} ask the same question ({text!r}) with different answers")
            continue
        if answer:
            if intent in answer_row and found_answers.get(intent) != answer:
                problems.append(
                    f"row {line}: intent {intent!r} already has a different answer (row {answer_row[intent]})"
                )
            elif intent not in answer_row:
                found_answers[intent], answer_row[intent] = answer, line
        texts.append(text)
        intents.append(intent)
        intent_row.setdefault(intent, line)
    if not texts and not problems:
        raise DataError(f"{name} has no examples")
    counts: dict[str, int] = {}
    for intent in intents:
        counts[intent] = counts.get(intent, 0) + 1
    warnings: list[str] = []
    for intent, n in sorted(counts.items()):
        if n < 2 and intent in found_answers:
            named = f"the answer {_short(found_answers[intent])!r}" if intent in intent_of_answer.values() else (
                f"intent {intent!r}")  # fmt: skip
            warnings.append(
                f"{name}: {named} has only one question (row {intent_row[intent]}); add a few more phrasings "
                "of it, or the bot will rarely recognise it when it is asked in other words"
            )
        if intent not in found_answers:
            problems.append(f"intent {intent!r} has no answer")
    if len(counts) < 2 and not problems:
        problems.append("only one intent found; a classifier needs at least 2")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise DataError(f"{name}: " + "; ".join(problems[:3]) + more)
    return texts, intents, {k: v for k, v in found_answers.items() if k in counts}, warnings


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _unique(base: str, taken: set[str]) -> str:
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def parse_heldout(frame: pd.DataFrame, name: str, answers: dict[str, str]) -> tuple[list[str], list[str]]:
    """Held-out examples must use intents (or answers) known from the training file."""
    text_col = next((c for c in TEXT_COLUMNS if c in frame.columns), None)
    if frame.empty or text_col is None or not ({"intent", "answer"} & set(frame.columns)):
        raise DataError(f"{name} needs a question column and an intent or answer column, with rows")
    by_answer = {a: i for i, a in answers.items()}
    texts, intents, problems = [], [], []
    for i, row in enumerate(frame.to_dict("records")):
        if not row[text_col]:
            continue
        intent = row.get("intent") or by_answer.get(row.get("answer", ""), "")
        if intent not in answers:
            problems.append(f"row {i + 2}: {intent or row.get('answer')!r} is not an intent of the training file")
            continue
        texts.append(row[text_col])
        intents.append(intent)
    if problems:
        raise DataError(
            f"{name}: " + "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
        )
    if not texts:
        raise DataError(f"{name} has no examples")
    return texts, intents


def split_faq(
    texts: list[str], intents: list[str], fraction: float, seed: int
) -> tuple[list[str], list[str], list[str], list[str]] | None:
    """(train texts, train intents, eval texts, eval intents): `fraction` of each intent's distinct questions held
    out (copies of a question stay together), at least one kept for training; None when that leaves an intent
    without an evaluation question or fewer than DEPENDABLE_EVAL_EXAMPLES in all (cross-validation is better)."""
    rng = random.Random(seed)
    train_t, train_i, eval_t, eval_i = [], [], [], []
    for intent in sorted(set(intents)):
        groups: dict[str, list[str]] = {}
        for t, i in zip(texts, intents, strict=True):
            if i == intent:
                groups.setdefault(question_key(t), []).append(t)
        rows = list(groups.values())
        rng.shuffle(rows)
        n_eval = min(int(len(rows) * fraction), len(rows) - 1)
        if n_eval == 0:
            return None
        held, kept = [t for g in rows[:n_eval] for t in g], [t for g in rows[n_eval:] for t in g]
        eval_t, eval_i = eval_t + held, eval_i + [intent] * len(held)
        train_t, train_i = train_t + kept, train_i + [intent] * len(kept)
    return None if len(eval_t) < DEPENDABLE_EVAL_EXAMPLES else (train_t, train_i, eval_t, eval_i)


class FaqCsvParams(BlockParams):
    path: str = Field(
        description="CSV (comma, semicolon or tab; UTF-8 or Latin-1) or XLSX file with question,answer "
        "(or intent,example,answer) columns; relative to the pipeline file"
    )
    heldout_path: str | None = Field(
        None, description="Optional file of paraphrases kept out of training, used to measure accuracy"
    )
    eval_fraction: float = Field(
        0.2,
        ge=0.0,
        le=0.5,
        description="Share of each intent's examples held out for evaluation when there is no heldout_path; "
        "when that is too few to measure (under 30 in all, or none for some intent), cross-validation is used",
    )
    seed: int = Field(0, ge=0, description="Seed of the evaluation split")


@register_block
class FaqCsv(Block):
    id = "chat.faq-csv"
    version = "1.0.0"
    kind = Kind.DATA
    domain = "chat"
    outputs = (Port("examples", PortType.TEXT_PAIRS, "labelled questions with one answer per intent"),)
    Params = FaqCsvParams
    price = Price(10**15, PriceUnit.RUN)  # 0.001 AIC per run
    provider = DATA_PROVIDER
    license = "CC-BY-4.0"
    description = "FAQ spreadsheet (CSV/XLSX): questions and the answer to give, or intent,example + answers."

    def _paths(self, params: FaqCsvParams, base_dir: Path) -> tuple[Path, Path | None]:
        main = (base_dir / params.path).resolve()
        held = (base_dir / params.heldout_path).resolve() if params.heldout_path else None
        return main, held

    def check(self, params: BlockParams, base_dir: Path) -> list[tuple[str, str]]:
        assert isinstance(params, FaqCsvParams)
        main, held = self._paths(params, base_dir)
        try:
            _, _, answers = parse_faq(read_table(main), main.name)
        except DataError as exc:
            return [("path", str(exc))]
        if held is not None:
            try:
                parse_heldout(read_table(held), held.name, answers)
            except DataError as exc:
                return [("heldout_path", str(exc))]
        return []

    def fingerprint(self, params: BlockParams, base_dir: Path) -> str:
        assert isinstance(params, FaqCsvParams)
        files = [*self._paths(params, base_dir), OUT_OF_SCOPE_FILE]
        return ",".join(sha256_file(p) if p.exists() else "missing" for p in files if p)

    def load(self, params: FaqCsvParams, base_dir: Path) -> FaqData:
        """Read, check and split the FAQ files."""
        main, held = self._paths(params, base_dir)
        texts, intents, answers, warnings = parse_faq_checked(read_table(main), main.name)
        sources = {str(main): sha256_file(main), str(OUT_OF_SCOPE_FILE): sha256_file(OUT_OF_SCOPE_FILE)}
        extra = {"out_of_scope": out_of_scope_questions(), "warnings": tuple(warnings)}
        if held is not None:
            eval_texts, eval_intents = parse_heldout(read_table(held), held.name, answers)
            sources[str(held)] = sha256_file(held)
            # A held-out question that is also a training question would measure memory, not understanding.
            trained = {question_key(t) for t in texts}
            kept = [(t, i) for t, i in zip(eval_texts, eval_intents, strict=True) if question_key(t) not in trained]
            repeats = len(eval_texts) - len(kept)
            if kept:
                eval_texts, eval_intents = [t for t, _ in kept], [i for _, i in kept]
                return FaqData(texts, intents, eval_texts, eval_intents, answers, "heldout", sources, repeats, **extra)
            return FaqData(texts, intents, [], [], answers, CROSS_VALIDATION, sources, repeats, **extra)
        split = split_faq(texts, intents, params.eval_fraction, params.seed)
        if split is None:  # too little to hold out: the classifier cross-validates over every row
            return FaqData(list(texts), list(intents), [], [], answers, CROSS_VALIDATION, sources, **extra)
        # The split measures; the served model still trains on every row (FaqData.all_texts).
        return FaqData(*split, answers, "split", sources, **extra)

    def preview(
        self, params: FaqCsvParams, base_dir: Path, rows: int = 5, seed: int | None = None
    ) -> list[dict[str, Any]]:
        """A random sample of training examples with their answer (and their intent, when the file names one:
        an intent made up from the answer's words is a code name the user never wrote)."""
        data = self.load(params, base_dir)
        rng = random.Random(seed)
        idx = rng.sample(range(len(data.train_texts)), min(rows, len(data.train_texts)))
        named = any(not intent.startswith(_slug(data.answers[intent])) for intent in data.answers)
        return [
            {
                "question": data.train_texts[i],
                **({"intent": data.train_intents[i]} if named else {}),
                "answer": data.answers[data.train_intents[i]],
            }
            for i in idx
        ]

    def run(self, ctx: StepContext, inputs: dict[str, Any], params: BlockParams) -> dict[str, Any]:
        assert isinstance(params, FaqCsvParams)
        data = self.load(params, ctx.base_dir)
        ctx.log_metric("train_examples", len(data.all_texts))
        for warning in data.warnings:
            log.warning(warning)
        ctx.log_metric("intents", len(data.answers))
        if data.heldout_repeats:
            ctx.log_metric("heldout_repeats_left_out", data.heldout_repeats)
        return {"examples": data}
