"""A real Prefect run of the faq-chatbot-fast template (the FAQ bot on MiniLM; faq-chatbot itself, on MPNet:
test_faq_encoders): accuracy, caching, usage records, failures."""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from runtime.bundle import read_manifest
from runtime.db import MetricPoint, session_factory
from tests.integration.conftest import run_pipeline

BLOCK_IDS = {"chat.faq-csv", "chat.minilm-encoder", "chat.intent-classifier", "service.api"}


def heldout_rows(template_dir: Path) -> list[dict[str, str]]:
    """The template's held-out paraphrases (intent, question): rows training never sees."""
    with (template_dir / "data" / "faq-heldout.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_template_reaches_target_accuracy_on_heldout_paraphrases(served, template_dir):
    heldout = heldout_rows(template_dir)
    with (template_dir / "data" / "faq.csv").open(encoding="utf-8") as f:
        trained_on = {row["question"].strip().lower() for row in csv.DictReader(f)}
    assert len(heldout) >= 60 and not {row["question"].strip().lower() for row in heldout} & trained_on
    answers = []
    for start in range(0, len(heldout), 32):  # asked over HTTP, as a client of the served API would
        texts = [row["question"] for row in heldout[start : start + 32]]
        r = httpx.post(
            f"{served.url}/v1/predict/batch", json={"texts": texts}, headers={"X-API-Key": served.key}, timeout=60
        )
        assert r.status_code == 200, r.text
        answers += r.json()["results"]
    wrong = [
        (row["question"], row["intent"], a["intent"])
        for row, a in zip(heldout, answers, strict=True)
        if a["intent"] != row["intent"]
    ]
    assert 1 - len(wrong) / len(heldout) >= 0.85, wrong  # the template's stated target (templates/faq-chatbot-fast.md)


def test_every_block_and_the_compute_used_is_billed_once(trained):
    usage = trained["usage"]
    per_run = [u for u in usage if u["unit"] == "run"]
    compute = [u for u in usage if u["block_id"] == "compute.local"]
    assert {u["block_id"] for u in per_run} == BLOCK_IDS and len(per_run) == 4
    computed = {s["node_id"] for s in trained["steps"] if not s["cached"]}
    assert "api" in computed  # the export step is never cached
    assert sorted(u["node_id"] for u in compute) == sorted(computed)  # none for cached steps, one per step run
    assert all(u["unit"] == "device_second" and u["quantity"] > 0 for u in compute)
    assert trained["cost"]["total_wei"] == sum(u["amount_wei"] for u in usage)
    assert all(u["provider"].startswith("0x") and len(u["provider"]) == 42 for u in usage)


def test_bundle_manifest_is_self_describing_and_parity_checked(trained, template_dir):
    import numpy as np
    import onnxruntime
    import torch
    from tokenizers import Tokenizer

    from runtime.db import Service

    with session_factory()() as s:
        bundle = Path(s.get(Service, trained["service_id"]).bundle_dir)
    manifest = read_manifest(bundle)
    assert manifest["plan_hash"] == trained["plan_hash"]
    assert {b["block_id"] for b in manifest["blocks"]} == BLOCK_IDS
    assert all(b["provider"] for b in manifest["blocks"])
    assert (bundle / "model.onnx").stat().st_size > 50_000_000  # encoder + head, no external data
    assert not list(bundle.glob("*.data"))
    assert {"tokenizer.json", "vocab.txt", "manifest.json"} <= {p.name for p in bundle.iterdir()}
    artifacts = {a["name"]: a for a in trained["artifacts"]}
    assert set(artifacts) == {p.name for p in bundle.iterdir()}
    assert artifacts["model.onnx"]["sha256"] == manifest["files"]["model.onnx"]

    # Parity, measured here: the bundle's ONNX graph (onnxruntime) and the trained torch model (the classifier
    # step's output) give the same probabilities for the same token ids.
    texts = [row["question"] for row in heldout_rows(template_dir)]
    texts += ["What is the capital of Mongolia?", "ok", "refund " * 100]  # out of scope, one token, truncated
    tokenizer = Tokenizer.from_file(str(bundle / manifest["tokenizer_file"]))
    tokenizer.enable_truncation(max_length=manifest["max_length"])
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    encoded = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encoded], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
    graph = onnxruntime.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    exported, similar = graph.run(None, {"input_ids": ids, "attention_mask": mask})
    with torch.inference_mode():
        module = trained_model(trained).torch_module("cpu")
        ref, ref_similar = (t.numpy() for t in module(torch.from_numpy(ids), torch.from_numpy(mask)))
    assert exported.shape == ref.shape == (len(texts), len(manifest["labels"]))
    assert np.abs(exported - ref).max() <= 1e-4
    assert (exported.argmax(-1) == ref.argmax(-1)).all()
    # The second output: each question's cosine similarity to every FAQ question the manifest lists ("did you
    # mean…?"), one per distinct question of the file.
    assert similar.shape == ref_similar.shape == (len(texts), len(manifest["questions"])) == (len(texts), 160)
    assert np.abs(similar - ref_similar).max() <= 1e-4


def trained_model(summary: dict) -> Any:
    """The classifier step's trained model, as the run stored it in the step cache (what the export read)."""
    from runtime.config import get_settings
    from runtime.db import Run
    from runtime.store import StepCache

    with session_factory()() as s:
        step = next(p for p in s.get(Run, summary["run_id"]).plan["steps"] if p["node_id"] == "classifier")
    outputs = StepCache(get_settings().cache_dir / "steps").get(step["cache_key"])
    assert outputs is not None, "the classifier step's output is not in the step cache"
    return outputs["model"]


def test_second_run_of_unchanged_data_recomputes_nothing(trained, template_dir):
    again = run_pipeline(template_dir / "faq-chatbot-fast.yaml")
    steps = {s["node_id"]: s for s in again["steps"]}
    assert again["status"] == "succeeded"
    assert steps["faq"]["cached"] and steps["encoder"]["cached"] and steps["classifier"]["cached"]
    assert not any(
        u["block_id"] == "compute.local" and u["node_id"] in ("faq", "encoder", "classifier") for u in again["usage"]
    )
    assert again["metrics"]["accuracy"] == trained["metrics"]["accuracy"]


def test_changed_row_embeds_only_the_new_text(trained, tmp_path):
    import shutil

    shutil.copytree(Path(trained_template := _template_of(trained)).parent, tmp_path / "t")
    faq = tmp_path / "t" / "data" / "faq.csv"
    rows = list(csv.reader(faq.open(encoding="utf-8")))
    rows[1][1] = f"Where on earth is my order {uuid.uuid4().hex[:8]} right now?"  # never embedded before
    with faq.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    summary = run_pipeline(tmp_path / "t" / Path(trained_template).name)
    assert summary["status"] == "succeeded"
    with session_factory()() as s:
        points = {
            p.name: p.value
            for p in s.scalars(
                select(MetricPoint).where(MetricPoint.run_id == summary["run_id"], MetricPoint.node_id == "encoder")
            )
        }
    assert points["embeddings_computed"] == 1
    assert points["embeddings_cached"] >= 200


def _template_of(summary: dict) -> str:
    from runtime.db import Run

    with session_factory()() as s:
        return s.get(Run, summary["run_id"]).pipeline_path


def test_failed_step_fails_the_run_with_its_reason_and_bills_only_compute(prefect_api, tmp_path):
    import shutil

    from builder.pipeline import load_pipeline
    from builder.plan import compile_plan
    from runtime.runner import execute_run
    from runtime.runs import create_run, get_run, run_summary
    from tests.conftest import TEMPLATES

    shutil.copytree(TEMPLATES, tmp_path / "t")
    with open(tmp_path / "t" / "data" / "faq.csv", "a", encoding="utf-8") as f:  # new data: no cache hit
        f.write(f"refund,Refund question {uuid.uuid4().hex}?,\n")
    pipeline = load_pipeline(tmp_path / "t" / "faq-chatbot-fast.yaml")
    plan = compile_plan(pipeline)
    (tmp_path / "t" / "data" / "faq.csv").unlink()  # vanishes after validation, before the run
    with session_factory()() as s:
        run_id = create_run(s, pipeline, plan).id
    try:
        execute_run(run_id, pipeline, plan)
        raise AssertionError("the run should have failed")
    except Exception as exc:
        assert "file not found" in str(exc)
    with session_factory()() as s:
        summary = run_summary(s, get_run(s, run_id))
    assert summary["status"] == "failed"
    assert summary["error"].startswith("step 'faq' failed: file not found:")
    assert "Traceback" not in summary["error"]
    assert [u["block_id"] for u in summary["usage"]] == ["compute.local"]
    assert summary["service_id"] is None
    steps = {s["node_id"]: s["status"] for s in summary["steps"]}
    assert steps == {"faq": "failed", "encoder": "pending", "classifier": "pending", "api": "pending"}
    assert json.dumps(summary)  # JSON-ready
