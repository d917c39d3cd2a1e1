"""The workbench never leaves an API server it gave up on, or one its killed launcher left, running."""

from __future__ import annotations

import json
import subprocess

import pytest

from builder.ui import actions
from builder.ui.draft import DraftError


def test_a_server_that_does_not_answer_in_time_is_stopped_and_reported(monkeypatch):
    seen = []

    def never_ready(proc, url, *args, **kwargs):
        seen.append(proc)
        return False  # as if 60 s passed without an answer, while the process still runs

    import runtime.processes

    monkeypatch.setattr(runtime.processes, "wait_for_http", never_ready)
    with pytest.raises(DraftError, match="did not answer within 60 s and was stopped; its log is"):
        actions.start_server("svc-never-ready")
    assert seen and seen[0].poll() is not None  # the child is gone, not left holding the port
    assert actions.server_of("svc-never-ready") is None


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen(["sleep", "120"])


@pytest.mark.parametrize("launcher_alive", [False, True])
def test_a_server_whose_launcher_was_killed_is_stopped_while_its_dying_workbench_still_runs(
    launcher_alive, monkeypatch, tmp_path
):
    """A killed `aib ui` takes its workbench with it, but not at once: the next `aib ui` must not wait for that to stop
    the API servers the pair left behind; a server whose workbench and launcher both run belongs to a live workbench."""
    import runtime.config
    from builder.cli.launch import stop_orphaned_servers
    from runtime.processes import pid_alive, process_started

    monkeypatch.setattr(runtime.config, "ui_servers_dir", lambda: tmp_path)
    server, workbench, launcher = _sleeper(), _sleeper(), _sleeper()
    try:
        record = {
            "pid": server.pid,
            "started": process_started(server.pid),
            "workbench": {"pid": workbench.pid, "started": process_started(workbench.pid)},
            "launcher": {"pid": launcher.pid, "started": process_started(launcher.pid)},
        }
        (tmp_path / "svc-left.json").write_text(json.dumps(record))
        if not launcher_alive:
            launcher.kill()
            launcher.wait()
        stop_orphaned_servers()
        assert (server.poll() is None) is launcher_alive
        assert pid_alive(workbench.pid)  # the workbench is its launcher's to stop, never signalled from here
        assert (tmp_path / "svc-left.json").exists() is launcher_alive
    finally:
        for proc in (server, workbench, launcher):
            proc.kill()
            proc.wait()
