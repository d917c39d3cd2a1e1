"""Data files as a data block sees them: which parameter takes the file, which suffixes it reads, and the checks
an upload passes before anything is stored. Pure: publishing and the catalog live in runtime/datasets.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from builder.errors import AibError
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


__all__ = [
    "DATA_SUFFIXES",
    "MAX_UPLOAD_BYTES",
    "DatasetError",
    "check_data_file",
    "check_upload",
    "data_param",
    "kinds_text",
    "upload_types",
]
