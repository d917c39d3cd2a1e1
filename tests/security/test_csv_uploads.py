"""Hostile or broken files uploaded as CSV: one sentence each, nothing stored, no time spent on them."""

from __future__ import annotations

import random
import time

import pytest

from builder.datasets import MAX_UPLOAD_BYTES, read_csv_bytes
from builder.errors import DataError
from builder.ui import actions
from builder.ui.draft import DraftError
from tests.conftest import TEMPLATES

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + random.Random(0).randbytes(4000)
NO_NUL_NOISE = random.Random(1).randbytes(200_000).replace(b"\x00", b"x")  # binary without the tell-tale NUL


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (PNG, "faq.csv is not a text file; save the spreadsheet as CSV and try again"),
        (NO_NUL_NOISE, "faq.csv is not a text file; save the spreadsheet as CSV and try again"),
        (b"x" * (MAX_UPLOAD_BYTES + 1), "faq.csv is 21.0 MB; the limit is 20 MB"),
    ],
)
def test_binary_or_oversized_uploads_are_refused_in_one_sentence_and_not_stored(data, message):
    draft = actions.open_template(TEMPLATES / "faq-chatbot.yaml")
    before = sorted(p.name for p in draft.base_dir.rglob("*"))
    for action in (actions.preview_upload, actions.store_upload):
        with pytest.raises(DraftError) as info:
            action(draft, "faq", "path", "faq.csv", data)
        assert str(info.value) == message
    assert sorted(p.name for p in draft.base_dir.rglob("*")) == before


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (",".join(f"c{i}" for i in range(2_000_000)).encode() + b"\n", "has more than 1000 columns"),
        (b'question,answer\n"' + b"y" * 19_000_000, "line 2 has a value that is too long"),
        (b"x" * 19_000_000, "has only one column"),
        (b"\n" * 19_000_000, "is empty"),
    ],
)
def test_pathological_text_is_refused_before_it_is_parsed_at_length(data, message):
    started = time.monotonic()
    with pytest.raises(DataError, match=message) as info:
        read_csv_bytes(data, "faq.csv")
    assert time.monotonic() - started < 2 and len(str(info.value)) < 200
