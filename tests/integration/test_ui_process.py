"""`aib ui` owns what it starts: SIGTERM or Ctrl-C stops the workbench, the API servers and the chain node its pages
started, and leaves no process behind and no port taken; a chain that ran before it is someone else's and runs on.

`aib ui` runs as a real subprocess; a headless browser presses the workbench's own buttons to start an API server
and the local chain. The process tree is read from /proc here, independently of the code under test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from builder.cli.launch import CHROMIUM, CHROMIUM_FLAGS
from runtime.processes import port_free
from tests.conftest import free_port
from tests.integration.conftest import aib

STOP_BUDGET_S = 40  # Streamlit's own shutdown, then each server's: seconds on a busy machine


def tree(root: int) -> dict[int, str]:
    """pid -> start time of `root` and every process below it, read from /proc."""

    def stat(pid: int) -> list[str] | None:
        try:
            return Path(f"/proc/{pid}/stat").read_text(errors="replace").rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            return None

    procs = {int(p.name): s for p in Path("/proc").iterdir() if p.name.isdigit() and (s := stat(int(p.name)))}
    found, frontier = {root: procs[root][19]}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, fields in procs.items():
            if int(fields[1]) == parent and pid not in found:
                found[pid] = fields[19]
                frontier.append(pid)
    return found


def still_running(processes: dict[int, str]) -> dict[int, str]:
    """pid -> command line of the processes of `processes` still alive (a zombie has exited)."""
    left = {}
    for pid, started in processes.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text(errors="replace").rsplit(") ", 1)[1].split()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fields[19] == started and fields[0] != "Z":
            left[pid] = cmdline[:160]
    return left


@pytest.fixture()
def launch():
    """Starts `aib ui` as a user does: launch(folder for its output, port=None) -> (process, port). At the end, what
    is left of those and of the process trees added to launch.seen is killed, whatever the test's outcome."""
    started: list[subprocess.Popen] = []

    def start(folder: Path, port: int | None = None) -> tuple[subprocess.Popen, int]:
        port = port or free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "builder.cli", "ui", "--port", str(port)],
            stdout=open(folder / "ui.out", "wb"),  # noqa: SIM115 - the child writes it
            stderr=open(folder / "ui.err", "wb"),  # noqa: SIM115
            env=os.environ.copy(),
        )
        started.append(proc)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if "Easy AI Builder workbench:" in (folder / "ui.out").read_text():
                return proc, port
            time.sleep(0.2)
        pytest.fail(f"aib ui did not start: {(folder / 'ui.err').read_text()[-2000:]}")

    start.seen = {}
    yield start
    for proc in started:
        if proc.poll() is None:
            start.seen |= tree(proc.pid)
    for pid in still_running(start.seen):
        os.kill(pid, signal.SIGKILL)


def wait_stopped(proc: subprocess.Popen, tmp_path: Path) -> str:
    """Wait for `aib ui` to exit after a signal; its stderr."""
    try:
        proc.wait(timeout=STOP_BUDGET_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"aib ui was still running {STOP_BUDGET_S} s after the signal")
    stderr = (tmp_path / "ui.err").read_text()
    assert proc.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    return stderr


@pytest.fixture()
def page(tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(60_000)
        yield pg
        pg.screenshot(path=str(tmp_path / "last.png"), full_page=True)  # what the page showed at the end
        browser.close()


def open_page(page, title: str) -> None:
    """Open a workbench page from the sidebar, as a user does."""
    page.get_by_role("link", name=title).click()
    page.get_by_role("heading", name=title, exact=True).wait_for()


def start_api_server(page, ui_port: int) -> int:
    """Press Start the API server on the Services page of the workbench at `ui_port`; the port the API answers on."""
    page.goto(f"http://127.0.0.1:{ui_port}")
    open_page(page, "Services")
    page.get_by_role("tab", name="API", exact=True).click()
    page.get_by_role("button", name="Start the API server").click()
    running = page.get_by_text(re.compile(r"^The API is running at http://"))
    running.or_(page.get_by_text(re.compile(r"^the API server of "))).first.wait_for(timeout=90_000)  # app: 60 s
    api_port = int(re.search(r"http://127\.0\.0\.1:(\d+)", running.inner_text()).group(1))
    assert httpx.get(f"http://127.0.0.1:{api_port}/health", timeout=10).status_code == 200
    return api_port


def test_sigterm_stops_the_workbench_its_api_server_and_its_chain(trained, page, launch, tmp_path, aib_home):
    from runtime.chain_node import local_status

    assert not local_status()["running"], "a local chain runs already: this test starts its own from the workbench"
    ui, ui_port = launch(tmp_path)
    api_port = start_api_server(page, ui_port)
    open_page(page, "Wallet")
    page.get_by_role("button", name="Start the local chain").click()
    page.get_by_text("Your balance").wait_for()
    chain = local_status()
    chain_port = int(chain["rpc_url"].rsplit(":", 1)[1])
    (record,) = [json.loads(p.read_text()) for p in (aib_home / "ui" / "servers").glob("*.json")]

    processes = launch.seen = tree(ui.pid)
    assert record["pid"] in processes and chain["pid"] in processes, processes  # what the tree check relies on
    ui.send_signal(signal.SIGTERM)
    wait_stopped(ui, tmp_path)

    assert still_running(processes) == {}
    assert [p for p in (ui_port, api_port, chain_port) if not port_free("127.0.0.1", p)] == []
    assert not local_status()["running"]
    assert list((aib_home / "ui" / "servers").glob("*.json")) == []  # the next workbench shows no server running


def test_ctrl_c_stops_the_workbench_and_leaves_a_chain_it_did_not_start(launch, tmp_path):
    from chain.client import rpc_call

    chain_port = free_port()
    started = aib("chain", "start", "--port", str(chain_port), "--json")
    assert started.returncode == 0, started.stderr
    try:
        ui, ui_port = launch(tmp_path)
        processes = launch.seen = tree(ui.pid)
        assert len(processes) >= 2, processes  # aib ui and its Streamlit
        ui.send_signal(signal.SIGINT)
        wait_stopped(ui, tmp_path)

        assert still_running(processes) == {}
        assert port_free("127.0.0.1", ui_port)
        assert int(rpc_call(f"http://127.0.0.1:{chain_port}", "eth_chainId"), 16) == 31337  # still serving
    finally:
        stopped = aib("chain", "stop")
        assert stopped.returncode == 0, stopped.stderr


def test_after_a_killed_workbench_the_next_one_starts_and_stops_the_api_server_it_left(trained, page, launch, tmp_path):
    killed, ui_port = launch(tmp_path)
    api_port = start_api_server(page, ui_port)
    processes = launch.seen = tree(killed.pid)
    killed.kill()  # SIGKILL: it cannot clean up
    killed.wait()
    deadline = time.monotonic() + STOP_BUDGET_S
    while not port_free("127.0.0.1", ui_port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert port_free("127.0.0.1", ui_port)  # its Streamlit stopped with it
    assert httpx.get(f"http://127.0.0.1:{api_port}/health", timeout=10).status_code == 200  # a server left behind

    (tmp_path / "next").mkdir()
    ui, _ = launch(tmp_path / "next", ui_port)  # on the port the killed one had
    assert port_free("127.0.0.1", api_port)  # stopped before the next workbench opened, dying old one or not
    # The killed one's Streamlit ends by itself (its parent-death signal), in its own time on a busy machine.
    deadline = time.monotonic() + STOP_BUDGET_S
    while still_running(processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert still_running(processes) == {}
    ui.send_signal(signal.SIGTERM)
    wait_stopped(ui, tmp_path / "next")
