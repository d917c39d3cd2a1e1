"""Published datasets: checked by their block, stored by checksum, refused cleanly, priced into plans."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from builder.datasets import MAX_UPLOAD_BYTES, DatasetError
from builder.errors import ValidationError
from builder.pipeline import load_pipeline, parse_pipeline
from runtime import datasets
from runtime.datasets import compile_with_datasets as compile_plan
from runtime.datasets import list_datasets, publish
from tests.conftest import TEMPLATES

OWNER = "0x000000000000000000000000000000000000bEEF"
FAQ = (TEMPLATES / "data" / "faq.csv").read_bytes()


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("AIB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def stored(home: Path) -> list[str]:
    root = home / "datasets"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_a_published_dataset_is_stored_by_checksum_with_its_terms(home):
    ds = publish("shop faq.csv", FAQ, block="chat.faq-csv", price_wei=10**16, owner=OWNER.lower(), name="Shop FAQ")
    assert ds.id == f"ds-{hashlib.sha256(FAQ).hexdigest()[:16]}" and ds.filename == "shop_faq.csv"
    assert ds.path.read_bytes() == FAQ and ds.block == "chat.faq-csv@1.0.0" and ds.param == "path"
    assert ds.owner == OWNER and ds.asset_id is None  # checksummed; no chain in unit tests
    assert ds.ref == f"dataset:{ds.id}@1" and list_datasets() == [ds]
    assert datasets.preview(ds, rows=3) and len(datasets.preview(ds, rows=3)) == 3
    # Same bytes, same terms: the same dataset (safe to retry); other terms: refused, nothing changes.
    assert publish("shop faq.csv", FAQ, block="chat.faq-csv", price_wei=10**16, owner=OWNER, register=False) == ds
    with pytest.raises(DatasetError, match="already published as ds-"):
        publish("copy.csv", FAQ, block="chat.faq-csv", price_wei=1, owner=OWNER, register=False)
    assert datasets.load(ds.id) == ds


@pytest.mark.parametrize(
    ("filename", "data", "message"),
    [
        ("notes.txt", b"hello", "not a CSV or XLSX file"),
        ("empty.csv", b"", "is empty"),
        ("big.csv", b"x" * (MAX_UPLOAD_BYTES + 1), "the limit is 20 MB"),
        ("wrong.csv", b"foo,bar\n1,2\n", "wrong.csv: "),
    ],
)
def test_bad_files_are_refused_in_one_sentence_and_nothing_is_stored(home, filename, data, message):
    with pytest.raises(DatasetError, match=message):
        publish(filename, data, block="chat.faq-csv", price_wei=1, owner=OWNER, register=False)
    assert stored(home) == []  # not even a temporary folder is left


def test_bad_terms_are_refused(home):
    with pytest.raises(DatasetError, match="not an Ethereum address"):
        publish("f.csv", FAQ, block="chat.faq-csv", price_wei=1, owner="me", register=False)
    with pytest.raises(DatasetError, match="negative"):
        publish("f.csv", FAQ, block="chat.faq-csv", price_wei=-1, owner=OWNER, register=False)
    with pytest.raises(DatasetError, match="is a model block|is a transform block"):
        publish("f.csv", FAQ, block="chat.intent-classifier", price_wei=1, owner=OWNER, register=False)
    with pytest.raises(DatasetError, match="unknown block"):
        publish("f.csv", FAQ, block="chat.nope", price_wei=1, owner=OWNER, register=False)
    with pytest.raises(DatasetError, match="is not a dataset id"):
        datasets.load("../etc")
    assert stored(home) == []


def pipeline_reading(ds, tmp_path: Path):
    data = yaml.safe_load((TEMPLATES / "faq-chatbot.yaml").read_text())
    data["blocks"]["faq"]["params"] = {"path": str(ds.path)}
    return parse_pipeline(yaml.safe_dump(data, sort_keys=False), TEMPLATES)


def test_a_plan_reading_a_published_dataset_quotes_and_owes_its_price(home, tmp_path):
    ds = publish("faq.csv", FAQ, block="chat.faq-csv", price_wei=7 * 10**15, owner=OWNER, register=False)
    plain = compile_plan(load_pipeline(TEMPLATES / "faq-chatbot.yaml"))
    assert all(s.royalties == () for s in plain.steps)
    plan = compile_plan(pipeline_reading(ds, tmp_path))
    faq = plan.step("faq")
    assert faq.royalties == ({"ref": ds.ref, "dataset": ds.id, "provider": OWNER, "amount_wei": 7 * 10**15},)
    # The same bytes outside the catalog owe nothing: only choosing the published dataset pays its owner.
    copy = tmp_path / "faq.csv"
    copy.write_bytes(FAQ)
    assert plan.quote_wei - compile_plan(pipeline_reading_path(copy)).quote_wei == 7 * 10**15


def pipeline_reading_path(path: Path):
    data = yaml.safe_load((TEMPLATES / "faq-chatbot.yaml").read_text())
    data["blocks"]["faq"]["params"] = {"path": str(path)}
    return parse_pipeline(yaml.safe_dump(data, sort_keys=False), path.parent)  # a pipeline beside the copy


def test_a_dataset_changed_on_disk_stops_the_plan_with_the_parameter_named(home, tmp_path):
    ds = publish("faq.csv", FAQ, block="chat.faq-csv", price_wei=1, owner=OWNER, register=False)
    ds.path.write_bytes(FAQ + FAQ.splitlines(keepends=True)[1])  # still a valid FAQ, but not what was sold
    with pytest.raises(ValidationError) as err:
        compile_plan(pipeline_reading(ds, tmp_path))
    assert err.value.problems[0].path == "blocks.faq.params.path"
    assert "was changed on disk" in err.value.problems[0].message


def test_the_workbench_points_a_data_node_at_a_published_dataset(home):
    from builder.ui import actions
    from builder.ui.draft import DraftError, from_yaml

    ds = publish("faq.csv", FAQ, block="chat.faq-csv", price_wei=1, owner=OWNER, register=False)
    draft = actions.open_template(TEMPLATES / "faq-chatbot.yaml")
    note = actions.use_dataset(draft, "faq", ds.id)
    assert draft.blocks["faq"]["params"] == {"path": str(ds.path)} and ds.id in note
    assert from_yaml((draft.base_dir / "pipeline.yaml").read_text(), draft.base_dir).blocks["faq"]["params"][
        "path"
    ] == str(ds.path)
    with pytest.raises(DraftError, match="is published for chat.faq-csv@1.0.0, not for encoder"):
        actions.use_dataset(draft, "encoder", ds.id)


def test_an_image_zip_is_published_for_the_image_folder_block(home, tmp_path):
    import zipfile

    from tests.unit.test_vision_blocks import write_digit_folder

    root = write_digit_folder(tmp_path / "photos")
    with zipfile.ZipFile(tmp_path / "photos.zip", "w") as z:
        for p in sorted(root.rglob("*.png")):
            z.write(p, p.relative_to(tmp_path).as_posix())
    data = (tmp_path / "photos.zip").read_bytes()
    with pytest.raises(DatasetError, match="is not a ZIP file"):
        publish("photos.csv", FAQ, block="vision.image-folder", price_wei=1, owner=OWNER, register=False)
    ds = publish("photos.zip", data, block="vision.image-folder", price_wei=5, owner=OWNER, register=False)
    assert ds.block == "vision.image-folder@1.0.0" and ds.param == "path" and ds.path.read_bytes() == data
    assert {r["label"] for r in datasets.preview(ds, rows=6, seed=0)} <= {"digit0", "digit1", "digit2"}
