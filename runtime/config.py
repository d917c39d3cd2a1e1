"""Where things live: everything the product writes goes under AIB_HOME (default ./.aib)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Resolved locations of the embedded defaults (data dir, SQLite database, content store)."""

    home: Path
    database_url: str

    @property
    def store_dir(self) -> Path:
        return self.home / "store"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def bundles_dir(self) -> Path:
        return self.home / "bundles"


def get_settings() -> Settings:
    """Settings from the environment: AIB_HOME (default ./.aib) and AIB_DATABASE_URL (default SQLite there)."""
    home = Path(os.environ.get("AIB_HOME") or ".aib").expanduser().resolve()
    url = os.environ.get("AIB_DATABASE_URL") or f"sqlite:///{home / 'aib.db'}"
    return Settings(home=home, database_url=url)


def templates_dir() -> Path:
    """The folder of shipped pipeline templates (AIB_TEMPLATES overrides it)."""
    env = os.environ.get("AIB_TEMPLATES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "templates"


__all__ = ["Settings", "get_settings", "templates_dir"]
