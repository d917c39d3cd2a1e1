"""Distributed mode for real: `aib server start` (a real `prefect server`), two provider agents with real Prefect
workers on loopback, and `aib run` placing a pipeline on the provider the Resource Allocator picks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import TEMPLATES, free_port

AIB = [sys.executable, "-m", "builder.cli"]


def env() -> dict[str, str]:
    e = os.environ.copy()
    e.pop("PREFECT_API_URL", None)  # the session's test server is not the distributed one
    e["AIB_PAYMENTS"] = "off"  # figures of placement here; paid runs are covered by the chain tests
    return e


def aib(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*AIB, *args], capture_output=True, text=True, timeout=timeout, env=env())


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*AIB, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env(), start_new_session=True
    )


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture()
def server():
    started = aib("server", "start", "--port", str(free_port()), "--json", timeout=240)
    assert started.returncode == 0, started.stderr
    yield json.loads(started.stdout)
    aib("server", "stop")


def test_a_run_goes_to_the_cheaper_provider_and_runs_in_its_worker(server, tmp_path):
    import torch

    from runtime.db import Run, Usage, session_factory

    if not torch.cuda.is_available():  # a worker cannot claim a tier its hardware lacks
        gpu = aib("provider", "start", "--tier", "gpu-small", "--price", "1")
        assert gpu.returncode == 2
        assert "tier gpu-small needs a CUDA GPU with at least 8 GB; this machine has none" in gpu.stderr
    bad = aib("provider", "start", "--tier", "cpu", "--price", "free")
    assert bad.returncode == 2 and "--price: expected an amount like '0.5 AIC'" in bad.stderr
    unknown = aib("provider", "start", "--tier", "tpu", "--price", "1")
    assert unknown.returncode == 2 and "unknown compute tier 'tpu'" in unknown.stderr

    agents = [spawn("provider", "start", "--tier", "cpu", "--price", p, "--name", n)
              for p, n in (("0.36", "cheap"), ("0.72", "dear"))]  # fmt: skip
    try:

        def online():
            listed = aib("providers", "list", "--json")
            rows = [r for r in json.loads(listed.stdout or "[]") if r["online"] and r["name"] in ("cheap", "dear")]
            return {r["name"]: r for r in rows} if len(rows) == 2 else None

        offers = wait_for(online, 90, "two online providers")
        time.sleep(3)  # the workers have polled their queues once

        src = shutil.copytree(TEMPLATES, tmp_path / "t", ignore=shutil.ignore_patterns("*.md"))
        pipeline = yaml.safe_load((src / "faq-chatbot.yaml").read_text())
        pipeline["compute"] = {"use": "compute.rented@1.0.0", "params": {"tier": "cpu"}}
        path = src / "faq-rented.yaml"
        path.write_text(yaml.safe_dump(pipeline))
        done = aib("run", str(path), "--set", "classifier.epochs=5", "--json", timeout=400)
        assert done.returncode == 0, done.stdout + done.stderr
        summary = json.loads(done.stdout)
        assert summary["status"] == "succeeded" and summary["provider_id"] == offers["cheap"]["id"]
        assert summary["allocation"].startswith(f"{offers['cheap']['id']} (cpu, ")
        assert "of 2 eligible provider(s)" in summary["allocation"]
        with session_factory()() as s:
            run = s.get(Run, summary["run_id"])
            compute = [u for u in s.query(Usage).filter(Usage.run_id == run.id) if u.block_id == "compute.rented"]
        assert compute and {u.provider for u in compute} == {offers["cheap"]["id"]}  # billed at its own price
        assert run.pid is not None and run.pid not in (os.getpid(),)  # ran in the worker's flow-run process

        again = aib("run", str(path), "--set", "classifier.epochs=1", "--json", timeout=200)
        assert again.returncode == 0 and json.loads(again.stdout)["provider_id"] == offers["cheap"]["id"]  # free again
        big = dict(pipeline, compute={"use": "compute.rented@1.0.0", "params": {"tier": "gpu-large"}})
        (src / "faq-big.yaml").write_text(yaml.safe_dump(big))
        refused = aib("run", str(src / "faq-big.yaml"), "--json", timeout=120)
        assert refused.returncode == 1
        assert json.loads(refused.stdout)["error"] == "no provider: no online provider offers tier gpu-large or above"
    finally:
        for a in agents:
            if a.poll() is None:
                os.killpg(a.pid, signal.SIGTERM)
        for a in agents:
            try:
                a.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(a.pid, signal.SIGKILL)
    listed = json.loads(aib("providers", "list", "--json").stdout)
    assert not [r for r in listed if r["name"] in ("cheap", "dear") and r["online"]]  # stopped agents are offline
