"""Data files as a data block sees them: which parameter takes the file, which suffixes it reads, and the checks
an upload passes before anything is stored. Pure: publishing and the catalog live in runtime/datasets.py."""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from builder.errors import AibError, DataError
from builder.pipeline import param_problems

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
DATA_SUFFIXES = {".csv", ".xlsx"}


class DatasetError(AibError):
    """A dataset cannot be published or used; the message is one sentence for the user."""


def data_param(block: Any) -> str:
    """The block's main data-file parameter (the first required one ending in `path`)."""
    names = [n for n, f in block.Params.model_fields.items() if n.endswith("path") and f.is_required()]
    if not names:
        raise DatasetError(f"{block.ref()} takes no data file")
    return names[0]


def check_data_file(block: Any, params: dict[str, Any], base_dir: Path, only: str | None = None) -> list[str]:
    """The block's own problems with `params` (read relative to `base_dir`), optionally for one parameter."""
    try:
        parsed = block.Params(**params)
    except PydanticValidationError as exc:
        return param_problems(exc)
    return [msg for name, msg in block().check(parsed, base_dir) if only is None or name == only]


def upload_types(block: Any) -> tuple[str, ...]:
    """The file suffixes a data block reads (`upload_types` on the block; CSV and XLSX by default)."""
    return tuple(getattr(block, "upload_types", None) or sorted(DATA_SUFFIXES))


def kinds_text(suffixes: tuple[str, ...]) -> str:
    """'.csv', '.xlsx' → 'CSV or XLSX'."""
    names = [s.lstrip(".").upper() for s in suffixes]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def check_upload(filename: str, data: bytes, suffixes: tuple[str, ...] = tuple(sorted(DATA_SUFFIXES))) -> str:
    """The safe file name for an upload; DatasetError when it is the wrong kind, empty or too large."""
    if Path(filename).suffix.lower() not in suffixes:
        raise DatasetError(f"{filename} is not a {kinds_text(suffixes)} file")
    if not data:
        raise DatasetError(f"{filename} is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise DatasetError(f"{filename} is {len(data) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES // 10**6} MB")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(filename).name)


# --- CSV as people save it: comma, semicolon (Excel in much of Europe) or tab; UTF-8, with or without BOM, or
# Latin-1. Uploads are stored byte-identical and every reader detects the format with read_csv_bytes, so the
# preview, the block's check and the run read a file the same way (and its sha256 stays the user's file's).

SEPARATORS = {",": "comma", ";": "semicolon", "\t": "tab"}
ENCODING_NAMES = {
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8 with BOM",
    "utf-16": "UTF-16",
    "cp1252": "Latin-1",  # Windows' superset of Latin-1, which is what Excel writes
    "latin-1": "Latin-1",
}
MAX_CSV_BYTES = 50 * 1024 * 1024
MAX_CSV_COLUMNS = 1000
SNIFF_CHARS = 64 * 1024


@dataclass(frozen=True)
class CsvFormat:
    """How a CSV file is written: its column separator and text encoding, and both in plain words."""

    separator: str  # ",", ";" or "\t"
    encoding: str  # the Python codec that reads it
    description: str  # "semicolon-separated, Latin-1"


@dataclass(frozen=True)
class CsvTable:
    """A CSV file read as text: its format, header and data rows (blank rows dropped, short rows padded)."""

    format: CsvFormat
    columns: list[str]  # stripped; an empty name becomes "column 3"
    rows: list[list[str]]  # as long as columns; cells as written (spaces after a separator skipped)


@dataclass(frozen=True)
class UploadPreview:
    """What an upload would give its block, shown before anything is stored."""

    filename: str  # the name it would be stored under, in data/
    description: str  # "semicolon-separated, Latin-1", "Excel workbook", "zip archive"
    columns: list[str]  # as the block sees them
    rows: list[dict[str, Any]]  # the first rows, column -> value
    total_rows: int | None  # data rows in the file; None when it is not a table


def _decode(data: bytes, name: str) -> tuple[str, str]:
    """(text, codec): a BOM decides; else UTF-8 when it decodes, else Windows Latin-1 (what Excel writes)."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = ["utf-16"]
    elif data.startswith(codecs.BOM_UTF8):
        candidates = ["utf-8-sig"]
    else:
        candidates = ["utf-8", "cp1252", "latin-1"]  # latin-1 decodes any byte: cp1252 leaves five undefined
    for codec in candidates:
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        return text, codec
    raise DataError(f"{name} is marked as {ENCODING_NAMES[candidates[0]]} but is not; save it as 'CSV UTF-8' again")


def _reader(text: str, separator: str) -> Iterator[list[str]]:
    return csv.reader(io.StringIO(text, newline=""), delimiter=separator, skipinitialspace=True)


def _width(row: list[str]) -> int:
    """The number of cells up to the last non-empty one (Excel may end every line with extra separators)."""
    n = len(row)
    while n and not row[n - 1].strip():
        n -= 1
    return n


def _fit(text: str, separator: str) -> tuple[float, int]:
    """(share of rows with as many cells as the header, header width) when `text` is split at `separator`."""
    try:
        rows = [r for r in _reader(text, separator) if _width(r)]
    except csv.Error:
        return 0.0, 0
    if not rows:
        return 0.0, 0
    width = _width(rows[0])
    fits = sum(1 for r in rows[1:] if len(r) >= width >= _width(r))
    return (fits / (len(rows) - 1) if len(rows) > 1 else 1.0), width


def _separator(text: str, name: str) -> str:
    """The separator that splits the most lines into as many columns as the header; csv.Sniffer, which reads
    the quoting, breaks ties (and without its opinion: comma, then semicolon, then tab)."""
    sample = text[:SNIFF_CHARS]
    if len(text) > SNIFF_CHARS and "\n" in sample:
        sample = sample[: sample.rindex("\n")]  # a cut line would look inconsistent
    scores = {sep: _fit(sample, sep) for sep in SEPARATORS}
    valid = {sep: score for sep, score in scores.items() if score[1] >= 2}
    if not valid:
        first = next((line.strip() for line in sample.splitlines() if line.strip()), "")
        shown = first if len(first) <= 60 else first[:57] + "..."
        raise DataError(
            f"{name} has only one column (its first line is {shown!r}); "
            "separate the columns with commas, semicolons or tabs"
        )
    best = max(score[0] for score in valid.values())
    tied = [sep for sep, score in valid.items() if score[0] == best]
    if len(tied) > 1:
        with contextlib.suppress(csv.Error):
            sniffed = csv.Sniffer().sniff(sample, delimiters="".join(SEPARATORS)).delimiter
            if sniffed in tied:
                return sniffed
    return tied[0]


def _check_text(text: str, name: str) -> None:
    """DataError when decoded text is mostly control characters: a binary file renamed to .csv."""
    sample = text[:SNIFF_CHARS]
    controls = sum(1 for ch in sample if ch < " " and ch not in "\t\n\r\x0c\x1a")
    if controls > max(2, len(sample) // 100):
        raise DataError(f"{name} is not a text file; save the spreadsheet as CSV and try again")


def sniff_csv(data: bytes, name: str = "the file") -> CsvFormat:
    """The separator (comma, semicolon or tab) and encoding (UTF-8, UTF-8 with BOM, else Latin-1) of CSV bytes."""
    text, codec = _decode(data, name)
    return _format(text, codec, name)


def _format(text: str, codec: str, name: str) -> CsvFormat:
    if not text.strip():
        raise DataError(f"{name} is empty")
    _check_text(text, name)
    sep = _separator(text, name)
    return CsvFormat(sep, codec, f"{SEPARATORS[sep]}-separated, {ENCODING_NAMES[codec]}")


def _table(text: str, fmt: CsvFormat, name: str, strict: bool) -> CsvTable:
    """The header and rows of `text`; csv.Error only for a quote mark in the middle of a value (when strict)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=fmt.separator, skipinitialspace=True, strict=strict)
    header: list[str] = []
    rows: list[list[str]] = []
    width, start = -1, 1  # start: the first line of the record being read
    try:
        for row in reader:
            if len(row) == width and row[-1]:  # the usual row: the loop stays cheap on a 20 MB file
                rows.append(row)
            elif (n := _width(row)) == 0:
                pass  # a blank line
            elif not header:
                header = [c.strip() or f"column {i + 1}" for i, c in enumerate(row[:n])]
                width = len(header)
                _check_columns(header, name)
            elif n > width:
                raise DataError(
                    f"{name}: line {start} has {n} values but the header has {width}; "
                    f"put double quotes around a value that contains a {SEPARATORS[fmt.separator]}"
                )
            else:
                rows.append(row[:width] + [""] * (width - len(row)))
            start = reader.line_num + 1
    except csv.Error as exc:
        if "field limit" in str(exc):
            why = "has a value that is too long; is a closing quote mark missing?"
            raise DataError(f"{name}: line {start} {why}") from None
        if "unexpected end" in str(exc):
            raise DataError(f"{name}: the quote mark opened on line {start} is never closed") from None
        if not strict:
            raise DataError(f"{name}: line {start} cannot be read ({exc})") from None
        raise
    return CsvTable(fmt, header, rows)


def _check_columns(header: list[str], name: str) -> None:
    if len(header) > MAX_CSV_COLUMNS:
        raise DataError(f"{name} has more than {MAX_CSV_COLUMNS} columns; that is not a table we can read")
    seen: set[str] = set()
    for column in header:
        if column.lower() in seen:
            raise DataError(f"{name}: the column {column!r} appears twice in the header")
        seen.add(column.lower())


def read_csv_bytes(data: bytes, name: str = "the file") -> CsvTable:
    """CSV bytes read with their detected separator and encoding; DataError (one sentence) when unreadable."""
    text, codec = _decode(data, name)
    fmt = _format(text, codec, name)
    try:  # strict first: only it notices a quote mark that is never closed
        return _table(text, fmt, name, strict=True)
    except csv.Error:  # a stray quote after a quoted value (`"5" screen`): read it as Excel does
        return _table(text, fmt, name, strict=False)


def read_csv_path(path: Path, max_bytes: int = MAX_CSV_BYTES) -> CsvTable:
    """A CSV file read like read_csv_bytes; DataError when missing, empty or larger than max_bytes."""
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    size = path.stat().st_size
    if size > max_bytes:
        raise DataError(f"{path.name} is {size / 1e6:.1f} MB; the limit is {max_bytes // 10**6} MB")
    return read_csv_bytes(path.read_bytes(), path.name)


__all__ = [
    "DATA_SUFFIXES",
    "MAX_CSV_BYTES",
    "MAX_UPLOAD_BYTES",
    "CsvFormat",
    "CsvTable",
    "DatasetError",
    "UploadPreview",
    "check_data_file",
    "check_upload",
    "data_param",
    "kinds_text",
    "read_csv_bytes",
    "read_csv_path",
    "sniff_csv",
    "upload_types",
]
