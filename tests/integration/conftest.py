"""Shared real resources: one trained FAQ service (real Prefect run) and a real uvicorn server for it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TEMPLATES, free_port


def run_pipeline(path: Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Validate, compile and execute a pipeline in-process (real Prefect flow); returns the run summary."""
    from builder.errors import RunError
    from builder.pipeline import load_pipeline
    from builder.plan import compile_plan
    from runtime.db import session_factory
    from runtime.runner import execute_run
    from runtime.runs import create_run, get_run, run_summary

    pipeline = load_pipeline(path, overrides or [])
    plan = compile_plan(pipeline)
    Session = session_factory()
    with Session() as s:
        run_id = create_run(s, pipeline, plan).id
    try:
        execute_run(run_id, pipeline, plan)
    except RunError:
        pass
    with Session() as s:
        return run_summary(s, get_run(s, run_id))


@pytest.fixture(scope="session")
def template_dir(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("template")
    shutil.copytree(TEMPLATES, dest, dirs_exist_ok=True)
    return dest


@pytest.fixture(scope="session")
def trained(prefect_api, template_dir) -> dict[str, Any]:
    """The faq-chatbot-fast template (the FAQ bot on MiniLM) trained once for the session."""
    summary = run_pipeline(template_dir / "faq-chatbot-fast.yaml")
    assert summary["status"] == "succeeded", summary["error"]
    return summary


class ServerThread:
    """A real uvicorn server on a free loopback port, in a background thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("the test server did not start")

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="session")
def served(trained) -> Any:
    """The trained service behind a real HTTP server, with a fresh API key."""
    from runtime.db import session_factory
    from runtime.keys import create_key
    from runtime.serving import create_app

    with session_factory()() as s:
        key, _ = create_key(s, trained["service_id"])
    with ServerThread(create_app(trained["service_id"])) as server:
        server.key = key
        server.service_id = trained["service_id"]
        yield server


def aib(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    """Run the `aib` CLI in a subprocess with this session's environment."""
    return subprocess.run(
        [sys.executable, "-m", "builder.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
    )


@pytest.fixture(scope="module")
def paid_chain(prefect_api):
    """A real Anvil on a free loopback port with the contracts deployed, for this test module."""
    port = free_port()
    r = aib("chain", "start", "--port", str(port), "--json")
    assert r.returncode == 0, r.stderr
    from runtime.settlement import Chain

    yield Chain.connect()
    aib("chain", "stop")


# The workbench in a real browser: `aib ui` on a free port for each test module, Debian's chromium driven by
# Playwright, and a fresh browser context (page) per test.
@pytest.fixture(scope="module")
def ui_url(prefect_api):
    from builder.cli.launch import start_ui, stop_ui

    proc, url = start_ui("127.0.0.1", free_port())
    yield url
    stop_ui(proc)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    from builder.cli.launch import CHROMIUM, CHROMIUM_FLAGS

    assert shutil.which(CHROMIUM), "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield b
        b.close()


def open_page(browser, ui_url: str, tmp_path: Path, **context_options):
    """A fresh browser page on the workbench (a generator for fixtures): screenshot of the end kept for failures."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, **context_options)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.base = ui_url
    yield pg
    pg.screenshot(path=str(tmp_path / "last.png"), full_page=True)  # what the page showed at the end (failures)
    print(f"last screenshot: {tmp_path / 'last.png'}")
    context.close()


@pytest.fixture()
def page(browser, ui_url, tmp_path):
    yield from open_page(browser, ui_url, tmp_path)
