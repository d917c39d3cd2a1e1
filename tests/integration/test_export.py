"""`aib export`: the FAQ pipeline as a standalone project that, in a fresh virtualenv and without this repository,
trains to the workbench's held-out accuracy and serves answers; a trained service as a bundle with a Dockerfile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from runtime.processes import wait_for_http
from tests.conftest import free_port
from tests.integration.conftest import aib

ROOT = Path(__file__).resolve().parents[2]


def fresh_venv(where: Path) -> Path:
    """A new virtualenv with nothing of its own (no pip, no setuptools, no project): the third-party packages come
    from this environment's site-packages through a .pth line, whose own .pth files (the editable install of this
    repository) are not read, so `builder`, `blocks` and `runtime` can only come from the exported project."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    site = subprocess.run([python, "-c", "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    ours = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    Path(site, "deps.pth").write_text(ours + "\n")
    return python


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    drop = {"PYTHONPATH", "AIB_HOME", "AIB_DATABASE_URL", "PREFECT_API_URL", "PREFECT_HOME"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "AIB_HOME": str(home), **extra}


def serve_and_ask(python: Path, cwd: Path, args: list[str], home: Path) -> None:
    """Start the exported server with an API key, ask it one FAQ question, and refuse a call without the key."""
    port = free_port()
    key = "exported-key-0123456789"
    proc = subprocess.Popen([python, "serve.py", *args, "--port", str(port)], cwd=cwd,
                            env=clean_env(home, SERVICE_API_KEY=key), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_for_http(proc, f"{url}/health", timeout_s=90), "the exported server did not start"
        ask = {"text": "Can I pay with PayPal?"}
        r = httpx.post(f"{url}/v1/predict", json=ask, headers={"X-API-Key": key}, timeout=30)
        assert r.status_code == 200 and r.json()["intent"] == "payment_methods", r.text
        assert httpx.post(f"{url}/v1/predict", json=ask, timeout=30).status_code == 401
        r = httpx.post(f"{url}/v1/predict/batch", json={"texts": ["Do you take PayPal?"]}, headers={"X-API-Key": key})
        assert r.json()["results"][0]["intent"] == "payment_methods"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_exported_faq_project_trains_to_the_same_accuracy_and_serves_without_this_repository(trained, tmp_path):
    project = tmp_path / "faq-project"
    r = aib("export", str(ROOT / "templates" / "faq-chatbot-fast.yaml"), "--to", str(project))  # as `trained`
    assert r.returncode == 0, r.stderr
    assert {"pyproject.toml", "flow.py", "serve.py", "README.md", "pipeline.yaml"} <= {
        p.name for p in project.iterdir()
    }
    assert (project / "data" / "faq.csv").exists() and (project / "data" / "faq-heldout.csv").exists()
    assert not (project / "builder" / "ui").exists() and not (project / "runtime" / "db.py").exists()
    readme = (project / "README.md").read_text()
    assert "pip install .\npython flow.py --serve\n" in readme  # its two commands
    python = fresh_venv(tmp_path / "venv")
    home = tmp_path / "home"
    installed = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "."],
                               cwd=project, capture_output=True, text=True, env=clean_env(home))  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    where = subprocess.run([python, "-c", "import builder, runtime.training; print(builder.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, env=clean_env(home))  # fmt: skip
    assert str(tmp_path / "venv") in where.stdout and str(ROOT) not in where.stdout, where
    assert subprocess.run([python, "-c", "import runtime.db"], cwd=tmp_path, capture_output=True,
                          env=clean_env(home)).returncode != 0  # fmt: skip  # the workbench's runtime is not there
    done = subprocess.run([python, "flow.py"], cwd=project, capture_output=True, text=True, env=clean_env(home),
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads(done.stdout.strip().splitlines()[-1])
    assert metrics["eval_split"] == "heldout" and metrics["eval_examples"] == trained["metrics"]["eval_examples"]
    assert metrics["accuracy"] == pytest.approx(trained["metrics"]["accuracy"], abs=0.02)
    serve_and_ask(python, project, [], home)


def test_a_trained_service_exports_as_a_bundle_with_a_dockerfile_that_serves_it(trained, tmp_path):
    dest = tmp_path / "bundle-project"
    r = aib("export", trained["service_id"], "--bundle", str(dest), "--json")
    assert r.returncode == 0, r.stderr
    assert (dest / "bundle" / "manifest.json").exists() and (dest / "serve.py").exists()
    dockerfile = (dest / "Dockerfile").read_text()
    assert "FROM python:3.11" in dockerfile and 'CMD ["python", "serve.py", "--bundle", "bundle"' in dockerfile
    python = fresh_venv(tmp_path / "venv")
    serve_and_ask(python, dest, ["--bundle", "bundle"], tmp_path / "home")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--to", "{busy}"), "is not empty: export into a new or empty folder"),
        ((), "give either --to DIR"),
        (("--to", "{new}", "--bundle", "{new}"), "give either --to DIR"),
    ],
)
def test_bad_exports_are_refused_in_one_sentence(tmp_path, args, message):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    filled = [a.format(busy=busy, new=tmp_path / "new") for a in args]
    r = aib("export", str(ROOT / "templates" / "faq-chatbot.yaml"), *filled)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert (busy / "keep.txt").read_text() == "mine"  # nothing of the user's is overwritten
