"""Test-wide set-up: a private AIB_HOME, offline model loading, and one Prefect API per session."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runtime.processes import free_port  # noqa: F401 - re-exported for the tests

# Must be set before any runtime module reads settings.
_HOME = tempfile.mkdtemp(prefix="aib-test-home-")
os.environ["AIB_HOME"] = _HOME
os.environ.pop("AIB_DATABASE_URL", None)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "180"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"


@pytest.fixture(scope="session")
def aib_home() -> Path:
    """The AIB_HOME shared by this test session."""
    return Path(_HOME)


@pytest.fixture(scope="session")
def prefect_api():
    """One Prefect API for the whole session (the first start costs ~12 s; later flows ~1 s)."""
    from runtime.prefect_env import configure_prefect

    configure_prefect()
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture()
def faq_template(tmp_path: Path) -> Path:
    """A private copy of the faq-chatbot template and its data (tests may edit it)."""
    dest = tmp_path / "faq"
    shutil.copytree(TEMPLATES, dest, ignore=shutil.ignore_patterns("*.md"))
    return dest / "faq-chatbot.yaml"


def all_at_once(call: Callable[[], Any], n: int) -> list[Any]:
    """`call()` in `n` threads released together: what each returned or raised (for races the tests reproduce)."""
    start, outcomes = threading.Barrier(n), []

    def one() -> None:
        start.wait()
        try:
            outcomes.append(call())
        except Exception as exc:  # the caller asserts on it
            outcomes.append(exc)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark `browser` the tests that drive the workbench through the shared Playwright browser: `make test` runs
    them alone, after the rest (which run on two workers), so real mouse drags and typing never share the machine
    with a training on the other worker (a canvas drag was lost once that way: see tests/README.md)."""
    for item in items:
        # The `browser` of tests/integration/conftest.py (Playwright, chromium); tests/unit has a simulated one.
        if "browser" in getattr(item, "fixturenames", ()) and "integration" in item.path.parts:
            item.add_marker(pytest.mark.browser)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_HOME, ignore_errors=True)
