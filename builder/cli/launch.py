"""Start the workbench (Streamlit) as a child process: `aib ui`, and `make run` next to the API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from builder.datasets import MAX_UPLOAD_BYTES
from builder.errors import ServeError
from runtime.processes import wait_for_http
from runtime.serving import ensure_port_free

APP = Path(__file__).resolve().parent.parent / "ui" / "app.py"  # a file Streamlit runs, never imported here
# The workbench imports every block (torch among them) before it answers: otherwise the first page that lists
# blocks (the Builder) does it, and shows no canvas for as long (10-30 s on a busy machine).
PRELOAD_THEN_STREAMLIT = (
    "from builder.registry import load_blocks; load_blocks(); from streamlit.web.cli import main; main()"
)
# Debian's chromium (installed by `make test`), as the browser tests and bench/ui.py launch it headless.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def start_ui(host: str = "127.0.0.1", port: int = 8501, script: Path = APP) -> tuple[subprocess.Popen, str]:
    """Start the Streamlit app (or another Streamlit `script`) on host:port, wait until it answers; (process, URL)."""
    ensure_port_free(host, port)
    proc = subprocess.Popen(
        [
            sys.executable,
            *(["-c", PRELOAD_THEN_STREAMLIT] if script == APP else ["-m", "streamlit"]),
            "run",
            str(script),
            "--server.address",
            host,
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
            "--server.fileWatcherType",
            "none",
            # The uploaders then show (and the server enforces) the same limit the data checks apply.
            "--server.maxUploadSize",
            str(MAX_UPLOAD_BYTES // 10**6),
        ],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdin=subprocess.DEVNULL,
    )
    url = f"http://{host}:{port}"
    if wait_for_http(proc, f"{url}/_stcore/health"):
        return proc, url
    if proc.poll() is not None:
        raise ServeError(f"the workbench stopped while starting (exit code {proc.returncode})")
    proc.terminate()
    raise ServeError(f"the workbench did not answer at {url} within 60 s")


def stop_ui(proc: subprocess.Popen) -> None:
    """Stop the workbench process (and wait for it)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


__all__ = ["CHROMIUM", "CHROMIUM_FLAGS", "start_ui", "stop_ui"]
