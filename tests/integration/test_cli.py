"""The `aib` CLI contract, exercised as a user would: real subprocesses, real Prefect, real server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch

from tests.conftest import TEMPLATES, free_port

AIB = [sys.executable, "-m", "builder.cli"]


def aib(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*AIB, *args], capture_output=True, text=True, timeout=timeout, env=os.environ.copy(), **kw)


def spawn(*args: str) -> subprocess.Popen:
    # A session of its own, so a simulated crash can kill the CLI and its ephemeral Prefect server together.
    return subprocess.Popen(
        [*AIB, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
        start_new_session=True,
    )


def test_validate_prints_valid_or_every_problem_and_exits_2(tmp_path):
    ok = aib("validate", str(TEMPLATES / "faq-chatbot.yaml"))
    assert (ok.returncode, ok.stdout.strip()) == (0, "valid")
    shutil.copytree(TEMPLATES, tmp_path / "t")
    bad = tmp_path / "t" / "bad.yaml"
    bad.write_text(
        (TEMPLATES / "faq-chatbot.yaml")
        .read_text()
        .replace("epochs: 30", "epochs: 0")
        .replace("chat.mpnet-encoder@1.0.0", "chat.mpnet@1.0.0")
    )
    r = aib("validate", str(bad))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines == [
        "blocks.encoder.use (line 15): unknown block 'chat.mpnet'; did you mean 'chat.mpnet-encoder'?",
        "blocks.classifier.params.epochs (line 21): must be ≥ 1, got 0",
    ]
    missing = aib("validate", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "file not found" in missing.stderr


def test_listings(tmp_path):
    blocks = json.loads(aib("blocks", "list", "--json").stdout.strip().splitlines()[-1])
    assert {"chat.faq-csv", "service.api", "compute.local"} <= {b["id"] for b in blocks}
    assert "faq-chatbot" in aib("templates", "list").stdout
    names = [t["template"] for t in json.loads(aib("templates", "list", "--json").stdout)]
    assert names == sorted(names) and names.index("faq-chatbot-fast") == names.index("faq-chatbot") + 1
    preview = json.loads(aib("preview", str(TEMPLATES / "faq-chatbot.yaml"), "faq", "--rows", "3", "--json").stdout)
    assert len(preview) == 3 and set(preview[0]) == {"question", "intent", "answer"}


def test_bad_input_errors_are_one_sentence_with_exit_2(tmp_path):
    for args, message in [
        (("serve", "svc-doesnotexist"), "error: no service 'svc-doesnotexist'"),
        (("keys", "create", "svc-doesnotexist"), "error: no service 'svc-doesnotexist'"),
        (("keys", "revoke", "aib_nope"), "error: no such API key"),
        (("runs", "show", "run-nope"), "error: no run 'run-nope'"),
    ]:
        r = aib(*args)
        assert r.returncode == 2 and r.stderr.startswith(message) and "Traceback" not in r.stderr, (args, r.stderr)


def _checkpoint_epoch(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=True)["epoch"])
    except Exception:
        return 0


def _checkpoint_for(yaml_path: Path, overrides: list[str]) -> Path:
    from builder.pipeline import load_pipeline
    from builder.plan import compile_plan
    from runtime.config import get_settings

    key = compile_plan(load_pipeline(yaml_path, overrides)).step("classifier").cache_key
    return get_settings().cache_dir / "work" / key / "checkpoint.pt"


@pytest.fixture()
def slow_template(tmp_path) -> tuple[Path, list[str]]:
    shutil.copytree(TEMPLATES, tmp_path / "t")
    # A unique seed gives this test its own cache keys (fresh training, fresh checkpoint).
    overrides = ["classifier.epochs=150", "classifier.batch_size=4", f"classifier.seed={time.time_ns() % 10**6}"]
    return tmp_path / "t" / "faq-chatbot-fast.yaml", overrides


def _start_and_wait_for_checkpoint(yaml_path: Path, overrides: list[str]) -> tuple[subprocess.Popen, Path]:
    ckpt = _checkpoint_for(yaml_path, overrides)
    proc = spawn("run", str(yaml_path), "--json", *sum((["--set", o] for o in overrides), []))
    deadline = time.monotonic() + 240
    while _checkpoint_epoch(ckpt) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training never checkpointed"
        time.sleep(0.05)
    return proc, ckpt


def test_killed_run_is_marked_failed_and_rerun_resumes_from_checkpoint(slow_template):
    yaml_path, overrides = slow_template
    proc, ckpt = _start_and_wait_for_checkpoint(yaml_path, overrides)
    os.killpg(proc.pid, signal.SIGKILL)  # the machine dies: the CLI and everything it started
    proc.wait()
    killed_at = _checkpoint_epoch(ckpt)
    assert 2 <= killed_at < 150

    runs = json.loads(aib("runs", "list", "--json").stdout)
    killed = runs[0]  # the newest run is the one just killed
    assert killed["status"] == "failed" and "stopped before the run finished" in killed["error"]

    r = aib("run", str(yaml_path), "--json", *sum((["--set", o] for o in overrides), []), timeout=400)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"run_id", "status", "metrics", "service_id", "cost", "usage"} <= set(result)
    assert result["status"] == "succeeded" and result["metrics"]["accuracy"] >= 0.85
    assert result["service_id"].startswith("svc-") and result["usage"]

    from sqlalchemy import select

    from runtime.db import MetricPoint, session_factory

    with session_factory()() as s:
        resumed = s.scalar(
            select(MetricPoint.value).where(
                MetricPoint.run_id == result["run_id"], MetricPoint.name == "resumed_from_epoch"
            )
        )
    assert resumed is not None and resumed >= killed_at


def test_sigterm_marks_the_run_failed_with_its_reason(slow_template):
    yaml_path, overrides = slow_template
    proc, _ = _start_and_wait_for_checkpoint(yaml_path, overrides)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == "failed" and "interrupted" in result["error"]
    assert "Traceback" not in err


def test_serve_keys_and_usage_from_the_cli(trained):
    service_id = trained["service_id"]
    created = aib("keys", "create", service_id)
    assert created.returncode == 0
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("aib_") and len(key) > 30
    port = free_port()
    server = spawn("serve", service_id, "--port", str(port))
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.HTTPError:
                assert server.poll() is None, server.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.2)
        r = httpx.post(f"{url}/v1/predict", json={"text": "Can I pay with Apple Pay?"}, headers={"X-API-Key": key})
        assert r.status_code == 200 and r.json()["intent"] == "payment_methods"
        busy = aib("serve", service_id, "--port", str(port))
        assert busy.returncode == 2 and f"port {port} on 127.0.0.1 is already in use" in busy.stderr
        records = json.loads(aib("usage", "--service", service_id, "--json").stdout)
        # The service's records only; other tests of the session may have hosted it too ("hosted-call").
        assert all(u["service_id"] == service_id for u in records)
        assert {u["unit"] for u in records} <= {"call", "hosted-call"} and any(u["unit"] == "call" for u in records)
        assert aib("keys", "revoke", key).returncode == 0
    finally:
        server.send_signal(signal.SIGINT)
        _out, err = server.communicate(timeout=30)
    assert server.returncode == 130 and "Traceback" not in err, err  # Ctrl-C: a clean stop


def test_run_id_already_taken_is_refused_before_any_work(trained):
    r = aib("run", str(TEMPLATES / "faq-chatbot.yaml"), "--run-id", trained["run_id"])
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: run id {trained['run_id']!r} is already taken; choose another --run-id"


def test_runs_show_json_says_why_the_faq_model_is_wrong_with_the_questions_it_missed(trained):
    r = aib("runs", "show", trained["run_id"], "--json")
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout.strip().splitlines()[-1])
    evaluation = shown["evaluation"]["classifier"]  # by the node that trained the model
    assert evaluation["kind"] == "classification" and evaluation["examples"] == shown["metrics"]["eval_examples"]
    assert evaluation["accuracy"] == pytest.approx(shown["metrics"]["accuracy"], abs=1e-6)
    heldout = (TEMPLATES / "data" / "faq-heldout.csv").read_text(encoding="utf-8")
    wrong = evaluation["misclassified"]
    assert all(w["text"] in heldout and w["true"] != w["predicted"] for w in wrong)
    assert len(wrong) == min(8, round(evaluation["examples"] * (1 - evaluation["accuracy"])))
    # What a threshold does, read at the service's own threshold: answered share and accuracy move opposite ways.
    coverage = evaluation["coverage"]
    assert coverage[0]["coverage"] == 1.0 and coverage[-1]["coverage"] <= coverage[0]["coverage"]
    assert 0 <= evaluation["calibration"]["ece"] < 0.5
    assert "evaluation" not in shown["metrics"]
