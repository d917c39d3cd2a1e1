"""The digit-reader template through the real path: Prefect run → ONNX bundle → HTTP API taking image uploads."""

from __future__ import annotations

import base64
import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from tests.integration.conftest import ServerThread, run_pipeline


def paper_png(image: np.ndarray, size: int = 48) -> bytes:
    """A digit as a user would photograph it: dark ink on white paper, larger than 8×8."""
    pixels = (255 - np.clip(image * 16, 0, 255)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).resize((size, size), Image.BILINEAR).save(buf, format="PNG")
    return buf.getvalue()


def calls(service_id: str) -> int:
    from runtime.db import Usage, session_factory

    with session_factory()() as s:
        return int(s.scalar(select(func.coalesce(func.sum(Usage.quantity), 0)).where(Usage.service_id == service_id)))


@pytest.fixture(scope="module")
def reader(prefect_api, template_dir):
    # A reduced run keeps the suite fast; the full template (30 epochs, all images) reaches 0.98 (bench/RESULTS.md).
    summary = run_pipeline(template_dir / "digit-reader.yaml", ["cnn.epochs=8"])
    assert summary["status"] == "succeeded", summary["error"]
    from runtime.db import session_factory
    from runtime.keys import create_key
    from runtime.serving import create_app

    with session_factory()() as s:
        key, _ = create_key(s, summary["service_id"])
    with ServerThread(create_app(summary["service_id"])) as server:
        server.key, server.summary = key, summary
        yield server


def test_the_reduced_template_trains_to_a_real_accuracy_with_a_confusion_matrix(reader):
    metrics = reader.summary["metrics"]
    assert metrics["accuracy"] >= 0.9, metrics
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == metrics["eval_examples"]
    assert np.trace(matrix) / matrix.sum() == pytest.approx(metrics["accuracy"], abs=1e-6)


def test_uploads_and_base64_images_are_read_and_each_call_is_metered(reader):
    from sklearn.datasets import load_digits

    digits = load_digits()
    headers = {"X-API-Key": reader.key}
    service = reader.summary["service_id"]
    before = calls(service)
    right = 0
    for i in range(1700, 1760):
        r = httpx.post(
            f"{reader.url}/v1/predict",
            files={"file": ("d.png", paper_png(digits.images[i]), "image/png")},
            headers=headers,
        )
        assert r.status_code == 200, r.text
        right += r.json()["label"] == str(digits.target[i])
    assert right / 60 >= 0.85
    png = paper_png(digits.images[0])
    one = httpx.post(f"{reader.url}/v1/predict", json={"image_base64": base64.b64encode(png).decode()}, headers=headers)
    assert one.status_code == 200 and set(one.json()) == {"label", "score"}
    batch = httpx.post(
        f"{reader.url}/v1/predict/batch", json={"images_base64": [base64.b64encode(png).decode()] * 3}, headers=headers
    )
    assert [r["label"] for r in batch.json()["results"]] == [one.json()["label"]] * 3
    assert calls(service) - before == 60 + 1 + 3
    doc = httpx.get(f"{reader.url}/openapi.json").json()["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert set(doc) == {"application/json", "multipart/form-data"}


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        ({"files": {"file": ("d.txt", b"hello", "text/plain")}}, 422, "the data is not a PNG or JPEG image"),
        ({"files": {"other": ("d.png", b"x", "image/png")}}, 422, "send the file in the multipart field `file`"),
        ({"json": {"image_base64": "@@@"}}, 422, "image_base64 is not valid base64"),
        ({"json": {"image_base64": ""}}, 422, "image_base64"),
        ({"content": b"raw", "headers": {"content-type": "text/plain"}}, 415, "send JSON or a multipart upload"),
    ],
)
def test_bad_images_get_one_sentence_and_are_not_billed(reader, kwargs, status, error):
    headers = {"X-API-Key": reader.key, **kwargs.pop("headers", {})}
    before = calls(reader.summary["service_id"])
    r = httpx.post(f"{reader.url}/v1/predict", headers=headers, **kwargs)
    assert r.status_code == status and error in r.json()["error"], r.text
    assert calls(reader.summary["service_id"]) == before


def test_a_call_without_a_key_is_refused_before_reading_the_image(reader):
    r = httpx.post(f"{reader.url}/v1/predict", files={"file": ("d.png", b"x", "image/png")})
    assert r.status_code == 401


def test_the_workbench_shows_the_run_the_image_sample_and_reads_an_uploaded_image(reader):
    from sklearn.datasets import load_digits

    from tests.integration.test_ui_pages import page

    runs = page("runs", selected_run=reader.summary["run_id"])
    assert any(m.label == "Accuracy" for m in runs.metric)
    assert any("each column what the model said" in c.value for c in runs.caption)  # above the confusion matrix
    # Why it is wrong: stored by the run (`evaluation`, by model node) and shown with the images it got wrong.
    (node, evaluation), *_ = reader.summary["evaluation"].items()
    assert evaluation["kind"] == "classification" and len(evaluation["per_class"]) == 10
    assert sum(c["support"] for c in evaluation["per_class"]) == reader.summary["metrics"]["eval_examples"]
    assert evaluation["confusion_matrix"] == reader.summary["metrics"]["confusion_matrix"]
    wrong = evaluation["misclassified"]
    assert wrong and all(w["true"] != w["predicted"] and w["image_png"] for w in wrong)
    assert "Why it is wrong" in [h.value for h in runs.subheader]
    per_class = next(d.value for d in runs.dataframe if "Precision" in d.value.columns)
    assert list(per_class["Class"]) == [str(i) for i in range(10)]
    mistakes = [c.value for c in runs.caption if c.value.startswith("Really: ")]
    assert len(mistakes) == len(wrong) and f"the model said: **{wrong[0]['predicted']}**" in mistakes[0]
    assert len(runs.get("image")) >= len(wrong)  # each mistake shown as its picture

    market = page("marketplace")
    market.selectbox(key="market-detail").select("vision.digits@1.0.0").run()
    assert not market.exception
    sample = market.dataframe[-1].value
    assert list(sample.columns) == ["image", "label"] and sample["image"][0].startswith("data:image/png;base64,")

    services = page("services", selected_service=reader.summary["service_id"])
    services.button(key="FormSubmitter:try-it-Ask").click().run()
    assert "Choose a file first." in [e.value for e in services.error]
    digits = load_digits()
    services.file_uploader(key="try-file").set_value(("seven.png", paper_png(digits.images[7]), "image/png"))
    services.button(key="FormSubmitter:try-it-Ask").click().run()
    assert not services.exception, [e.value for e in services.exception]
    assert json.loads([j.value for j in services.json][-1])["label"] == str(digits.target[7])
    services.file_uploader(key="try-file").set_value(("notes.png", b"not an image", "image/png"))
    services.button(key="FormSubmitter:try-it-Ask").click().run()
    assert any("not a PNG or JPEG image" in e.value for e in services.error)


def test_a_users_image_zip_trains_through_augmentation_and_is_served(prefect_api, tmp_path):
    import zipfile

    from sklearn.datasets import load_digits

    from runtime.db import session_factory
    from runtime.keys import create_key
    from runtime.serving import create_app

    digits = load_digits()
    with zipfile.ZipFile(tmp_path / "scans.zip", "w") as z:  # dark ink on white, as scanned, 40 per digit
        for d in range(10):
            for k, i in enumerate([i for i, t in enumerate(digits.target) if t == d][:40]):
                z.writestr(f"scans/{d}/{k}.png", paper_png(digits.images[i], size=32))
    (tmp_path / "pipeline.yaml").write_text(
        """schema_version: 1
name: my-scans
blocks:
  scans: {use: vision.image-folder@1.0.0, params: {path: scans.zip, size: 16}}
  more: {use: vision.augment@1.0.0, params: {copies: 2}}
  cnn: {use: vision.small-cnn@1.0.0, params: {epochs: 12}}
  api: {use: service.api@1.0.0}
edges: [scans.images -> more.images, more.images -> cnn.images, cnn.model -> api.model]
compute: compute.local@1.0.0
"""
    )
    summary = run_pipeline(tmp_path / "pipeline.yaml")
    assert summary["status"] == "succeeded", summary["error"]
    assert summary["metrics"]["accuracy"] >= 0.8, summary["metrics"]
    with session_factory()() as s:
        key, _ = create_key(s, summary["service_id"])
    with ServerThread(create_app(summary["service_id"])) as server:
        right = 0
        for i in range(1700, 1740):  # images the pipeline never saw, in the same dark-on-white form
            r = httpx.post(
                f"{server.url}/v1/predict",
                files={"file": ("d.png", paper_png(digits.images[i], size=32), "image/png")},
                headers={"X-API-Key": key},
            )
            right += r.json()["label"] == str(digits.target[i])
    assert right / 40 >= 0.75
