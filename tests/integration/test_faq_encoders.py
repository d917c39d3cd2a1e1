"""The faq-chatbot template as shipped (chat.mpnet-encoder, the stronger encoder) through the real path: a Prefect
run, the ONNX bundle with the 768-d encoder inside the one graph, and the served API over HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
import yaml

from runtime.bundle import read_manifest
from runtime.db import Service, session_factory
from tests.integration.conftest import ServerThread, run_pipeline
from tests.integration.test_run import heldout_rows


def test_the_faq_chatbot_template_trains_exports_and_answers_with_the_mpnet_encoder(prefect_api, template_dir):
    from runtime.keys import create_key
    from runtime.serving import create_app

    path = template_dir / "faq-chatbot.yaml"
    assert yaml.safe_load(path.read_text())["blocks"]["encoder"]["use"] == "chat.mpnet-encoder@1.0.0"
    summary = run_pipeline(path)
    assert summary["status"] == "succeeded", summary["error"]
    assert summary["metrics"]["accuracy"] >= 0.9  # held-out paraphrases (measured 0.98)
    with session_factory()() as s:
        service = s.get(Service, summary["service_id"])
        manifest = read_manifest(Path(service.bundle_dir))
        key, _ = create_key(s, service.id)
    assert manifest["encoder"] == "sentence-transformers/all-mpnet-base-v2"
    assert manifest["parity"]["parity_max_abs_diff"] < 1e-4  # the ONNX graph answers as the torch model does
    rows = heldout_rows(template_dir)[::4]
    with ServerThread(create_app(service.id)) as server:
        answers = [
            httpx.post(f"{server.url}/v1/predict", json={"text": row["question"]}, headers={"X-API-Key": key},
                       timeout=60).json()
            for row in rows
        ]  # fmt: skip
    right = sum(a["top_intent"] == row["intent"] for a, row in zip(answers, rows, strict=True))
    assert right / len(rows) >= 0.9, [(r["question"], a["top_intent"]) for r, a in zip(rows, answers, strict=True)]
