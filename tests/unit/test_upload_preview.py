"""The workbench shows an upload's detected format and first rows before storing it, and stores the same files."""

from __future__ import annotations

import pytest

from builder.ui import actions
from builder.ui.draft import DraftError
from tests.conftest import TEMPLATES

# Excel's "CSV (separator: semicolon)" in France or Germany: semicolons, Windows Latin-1, CRLF.
EXCEL_FR = (
    "Question;Réponse;Answer\r\n"
    "Où est ma commande ?;;Suivez-la sous Compte > Commandes.\r\n"
    '"Livraison: combien, et quand ?";;"Gratuite dès 50 €; sinon 4,90 €."\r\n'
    "Où en est mon colis ?;;Suivez-la sous Compte > Commandes.\r\n"
    'Les frais de port ?;;"Gratuite dès 50 €; sinon 4,90 €."\r\n'
).encode("cp1252")


@pytest.fixture()
def draft():
    return actions.open_template(TEMPLATES / "faq-chatbot.yaml")


def test_preview_shows_format_columns_and_first_rows_and_stores_nothing(draft):
    before = {p: p.read_bytes() for p in draft.base_dir.rglob("*") if p.is_file()}
    params = dict(draft.blocks["faq"]["params"])
    shown = actions.preview_upload(draft, "faq", "path", "mes questions.csv", EXCEL_FR, rows=2)
    assert shown.description == "semicolon-separated, Latin-1"
    assert shown.filename == "mes_questions.csv" and shown.total_rows == 4
    assert shown.columns == ["question", "réponse", "answer"]
    assert [r["question"] for r in shown.rows] == ["Où est ma commande ?", "Livraison: combien, et quand ?"]
    assert shown.rows[1]["answer"] == "Gratuite dès 50 €; sinon 4,90 €."
    assert {p: p.read_bytes() for p in draft.base_dir.rglob("*") if p.is_file()} == before
    assert draft.blocks["faq"]["params"] == params


def test_store_upload_keeps_the_file_as_sent_and_the_block_reads_it(draft):
    from blocks.chat.faq_csv import FaqCsv, FaqCsvParams

    rel, _ = actions.store_upload(draft, "faq", "path", "mes questions.csv", EXCEL_FR)
    assert (draft.base_dir / rel).read_bytes() == EXCEL_FR  # byte for byte: its sha256 is the user's file's
    data = FaqCsv().load(FaqCsvParams(**draft.blocks["faq"]["params"]), draft.base_dir)
    assert "Gratuite dès 50 €; sinon 4,90 €." in data.answers.values()


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("faq.pdf", b"%PDF-1.7", "faq.pdf is not a CSV or XLSX file"),
        ("faq.csv", b"question|answer\nhi|hello\n", "faq.csv has only one column"),
        ("faq.csv", b"q;a\nhi;hello\n", "needs columns `question,answer`"),
    ],
)
def test_preview_refuses_what_store_upload_refuses_with_the_same_sentence(draft, name, data, message):
    with pytest.raises(DraftError) as previewed:
        actions.preview_upload(draft, "faq", "path", name, data)
    with pytest.raises(DraftError) as stored:
        actions.store_upload(draft, "faq", "path", name, data)
    assert str(previewed.value) == str(stored.value) and message in str(previewed.value)


def test_an_excel_workbook_is_previewed_as_one(draft, tmp_path):
    import pandas as pd

    path = tmp_path / "faq.xlsx"
    pd.DataFrame({"Question": ["Où ?", "Quand ?"], "Answer": ["Ici", "Ici"]}).to_excel(path, index=False)
    with pytest.raises(DraftError, match="only one intent found"):  # checked by the block, as store_upload does
        actions.preview_upload(draft, "faq", "path", "faq.xlsx", path.read_bytes())
    pd.DataFrame({"Question": ["Où ?", "Quand ?", "Qui ?", "Quoi ?"], "Answer": ["Ici", "Ici", "Moi", "Moi"]}).to_excel(
        path, index=False
    )
    shown = actions.preview_upload(draft, "faq", "path", "faq.xlsx", path.read_bytes(), rows=1)
    assert (shown.description, shown.columns, shown.rows, shown.total_rows) == (
        "Excel workbook",
        ["question", "answer"],
        [{"question": "Où ?", "answer": "Ici"}],
        4,
    )


def test_a_zip_of_folders_is_checked_and_described_without_rows(tmp_path):
    import zipfile

    from tests.unit.test_vision_blocks import write_digit_folder

    root = write_digit_folder(tmp_path / "photos")
    with zipfile.ZipFile(tmp_path / "photos.zip", "w") as z:
        for p in sorted(root.rglob("*.png")):
            z.write(p, p.relative_to(tmp_path).as_posix())
    draft = actions.open_yaml(
        "schema_version: 1\nname: photos\nblocks:\n  photos:\n    use: vision.image-folder@1.0.0\n"
        "    params: {path: data/photos.zip}\nedges: []\ncompute: compute.local@1.0.0\n"
    )
    shown = actions.preview_upload(draft, "photos", "path", "photos.zip", (tmp_path / "photos.zip").read_bytes())
    assert (shown.filename, shown.description, shown.total_rows) == ("photos.zip", "zip archive", None)
    assert not (draft.base_dir / "data").exists()
