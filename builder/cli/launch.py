"""Start the workbench (Streamlit) as a child process, and stop it with everything it started: `aib ui`, and
`make run` next to the API.

The workbench owns what its pages start: the API servers (detached, recorded under AIB_HOME/ui/servers), the local
chain node when the Wallet page started it, and runs still training. They are its descendants in the process tree
while it lives; stop_ui freezes it, notes them, stops it and then them. A chain node that ran before is not the
workbench's child and is left running.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from builder.datasets import MAX_UPLOAD_BYTES
from builder.errors import ServeError
from runtime.processes import descendants, same_process, stop_processes, wait_for_http
from runtime.serving import ensure_port_free

APP = Path(__file__).resolve().parent.parent / "ui" / "app.py"  # a file Streamlit runs, never imported here
# The workbench imports every block (torch among them) before it answers: otherwise the first page that lists
# blocks (the Builder) does it, and shows no canvas for as long (10-30 s on a busy machine).
PRELOAD = "from builder.registry import load_blocks; load_blocks()"
# app.py declares its pages with st.navigation. Told so before the first run, Streamlit does not first take ui/pages/
# beside it for an old-style pages folder, which answered the first visit to any address but "/" with its own
# "page not found" dialog.
NO_PAGES_FOLDER = "from streamlit.runtime.pages_manager import PagesManager; PagesManager.uses_pages_directory = False"
# Streamlit runs in its own session, so that a Ctrl-C in the terminal reaches `aib ui` alone, which then stops it
# and what it started in order. On Linux it also gets SIGTERM when its parent dies, even by SIGKILL, so a killed
# `aib ui` never leaves the workbench holding its port (PR_SET_PDEATHSIG = 1).
DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "if sys.platform == 'linux':\n"
    "    ctypes.CDLL(None).prctl(1, signal.SIGTERM)\n"
    "    if os.getppid() != int(os.environ['AIB_UI_PARENT']): sys.exit(0)"
)
# Our look, not Streamlit's: no Deploy button or developer menu, the project's colours (favicon, titles: app.py).
WORKBENCH_LOOK = ["--client.toolbarMode", "minimal", "--theme.base", "light", "--theme.primaryColor", "#1f5fd6"]
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
    stop_orphaned_servers()
    preload = [PRELOAD, NO_PAGES_FOLDER] if script == APP else []
    bootstrap = [DIE_WITH_PARENT, *preload, "from streamlit.web.cli import main; main()"]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "\n".join(bootstrap),
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
            *WORKBENCH_LOOK,
        ],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "AIB_UI_PARENT": str(os.getpid())},
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://{host}:{port}"
    try:
        ready = wait_for_http(proc, f"{url}/_stcore/health")
    except BaseException:  # Ctrl-C while it starts
        stop_ui(proc)
        raise
    if ready:
        return proc, url
    if proc.poll() is not None:
        raise ServeError(f"the workbench stopped while starting (exit code {proc.returncode})")
    stop_ui(proc)
    raise ServeError(f"the workbench did not answer at {url} within 60 s")


@contextmanager
def signals_interrupt() -> Iterator[list[int]]:
    """Within the block, the first SIGINT or SIGTERM raises KeyboardInterrupt (so `finally` clauses clean up);
    later ones are ignored, so a second Ctrl-C cannot cut the cleaning up short. Handlers are restored after."""
    stopping: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        if not stopping:
            stopping.append(signum)
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopping
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_ui(host: str, port: int, announce: Callable[[str], None]) -> int | None:
    """`aib ui`: start the workbench, `announce` its URL, and on Ctrl-C or SIGTERM stop it and all it started.

    None when stopped so, else the exit code of a workbench that stopped by itself (what it started is stopped too).
    """
    proc, code = None, None
    with signals_interrupt() as stopping:
        try:
            proc, url = start_ui(host, port)  # stopped by start_ui itself when interrupted while it starts
            announce(url)
            code = proc.wait()
        except KeyboardInterrupt:
            pass
        finally:
            stopping.append(0)  # from here on a signal is ignored: the stopping below must finish
            if proc is not None:
                stop_ui(proc)
    return code


def stop_ui(proc: subprocess.Popen) -> None:
    """Stop the workbench, the API servers and chain node it started and its runs still training; wait for them."""
    owned: dict[int, str] = {}
    proc.send_signal(signal.SIGSTOP)  # frozen, it starts nothing while its children are noted
    try:
        if proc.poll() is None:
            owned = descendants(proc.pid)
    finally:
        proc.terminate()
        proc.send_signal(signal.SIGCONT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    # With the workbench gone its API servers are orphans: found by their records even where the process tree
    # lost them (it had been killed before, say).
    owned |= _orphaned_servers()
    stop_processes(owned)
    _forget_stopped(owned)


def stop_orphaned_servers() -> None:
    """Stop the API servers left running by a workbench that no longer runs (killed, it could not stop them)."""
    orphans = _orphaned_servers()
    stop_processes(orphans)
    _forget_stopped(orphans)


def _orphaned_servers() -> dict[int, str]:
    """pid -> start time of the running API servers whose workbench, or the `aib ui` that launched it, no longer runs;
    the records of exited servers are dropped. The workbench writes them (builder.ui.actions.start_server)."""
    from runtime.config import ui_servers_dir

    orphans = {}
    for path in sorted(ui_servers_dir().glob("*.json")):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):  # a record damaged by hand: left alone
            info = json.loads(path.read_text())
            if "started" not in info:  # recorded before servers were recorded with their start time: left alone
                continue
            if not same_process(info["pid"], info["started"]):
                path.unlink()
                continue
            owners = [info.get("workbench") or {}, *([info["launcher"]] if "launcher" in info else [])]
            if not all(same_process(owner.get("pid"), owner.get("started")) for owner in owners):
                orphans[info["pid"]] = info["started"]
    return orphans


def _forget_stopped(stopped: dict[int, str]) -> None:
    """Remove the records of stopped processes: API servers, and the local chain's pid file when its node was one."""
    if not stopped:
        return
    _orphaned_servers()  # reading the records drops those whose server has exited
    from runtime.chain_node import chain_paths

    pid_file = chain_paths().pid
    with contextlib.suppress(OSError, ValueError, IndexError):
        if int(pid_file.read_text().split()[0]) in stopped:
            pid_file.unlink()


__all__ = ["CHROMIUM", "CHROMIUM_FLAGS", "run_ui", "signals_interrupt", "start_ui", "stop_orphaned_servers", "stop_ui"]
