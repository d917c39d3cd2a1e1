"""An Excel-style FAQ (semicolons, Windows Latin-1) uploaded in the workbench trains through a real `aib run`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from runtime.bundle import read_manifest
from tests.conftest import TEMPLATES
from tests.integration.conftest import aib


def excel_semicolon_latin1(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, delimiter=";", lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("cp1252")


def test_semicolon_latin1_faq_uploaded_in_the_workbench_trains_with_its_accents():
    from builder.ui import actions
    from runtime.db import Service, session_factory

    with (TEMPLATES / "data" / "faq.csv").open(encoding="utf-8") as f:
        rows = list(csv.reader(f))
    answer = "Livraison gratuite dès 50 €; sinon 4,90 € (délai : 2 à 3 jours)."
    rows = [rows[0]] + [[r[0], r[1], answer if r[0] == "shipping_cost" and r[2] else r[2]] for r in rows[1:]]
    assert answer in (r[2] for r in rows)  # the template has a shipping_cost intent with an answer
    data = excel_semicolon_latin1(rows)

    draft = actions.open_template(TEMPLATES / "faq-chatbot-fast.yaml")
    shown = actions.preview_upload(draft, "faq", "path", "FAQ export.csv", data)
    assert shown.description == "semicolon-separated, Latin-1" and shown.total_rows == len(rows) - 1
    rel, _ = actions.store_upload(draft, "faq", "path", "FAQ export.csv", data)
    assert (draft.base_dir / rel).read_bytes() == data  # the run reads the file exactly as it was sent

    r = aib("run", str(draft.base_dir / "pipeline.yaml"), "--json", timeout=400)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["status"] == "succeeded" and result["metrics"]["accuracy"] >= 0.85
    with session_factory()() as s:
        bundle = Path(s.get(Service, result["service_id"]).bundle_dir)
    assert read_manifest(bundle)["answers"]["shipping_cost"] == answer  # accents and euro signs intact
