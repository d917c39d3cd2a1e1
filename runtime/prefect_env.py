"""Prefect settings for the embedded mode; must run before `prefect` is first imported."""

from __future__ import annotations

import os

from runtime.config import get_settings


def configure_prefect() -> None:
    """Keep Prefect's state under AIB_HOME, quiet, and patient with the first ephemeral start."""
    settings = get_settings()
    os.environ.setdefault("PREFECT_HOME", str(settings.home / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")  # Prefect's client-side telemetry notice and events
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "false")
    os.environ.setdefault("PREFECT_UI_ENABLED", "false")


__all__ = ["configure_prefect"]
