"""The workbench never leaves an API server it gave up on running."""

from __future__ import annotations

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
