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


def private_home() -> Path:
    """AIB_HOME, made (or made again) readable by its user alone: it holds the ledger, keys, logs and data."""
    home = get_settings().home
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    if home.stat().st_mode & 0o077:
        os.chmod(home, 0o700)
    return home


def local_secret(name: str) -> bytes:
    """A 32-byte secret of this installation (AIB_HOME/secrets/NAME.key, 0600 in a 0700 folder), made on first use.

    Only the coordinator's own processes read it: what it signs cannot be forged by whoever can write elsewhere
    under AIB_HOME (a provider writing step outputs, say).
    """
    folder = get_settings().home / "secrets"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    path = folder / f"{name}.key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # only one process ever creates it
    except FileExistsError:
        secret = path.read_bytes()
        if len(secret) != 32:  # a creator died between creating and writing it: nothing was signed with it yet
            raise RuntimeError(f"{path} is damaged (not 32 bytes); delete it to make a new one") from None
        return secret
    secret = os.urandom(32)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
        f.flush()
        os.fsync(f.fileno())
    return secret


def ui_servers_dir() -> Path:
    """Where the workbench records the API servers it started (one JSON file each), so that `aib ui` can stop them."""
    return get_settings().home / "ui" / "servers"


def templates_dir() -> Path:
    """The folder of shipped pipeline templates (AIB_TEMPLATES overrides it)."""
    env = os.environ.get("AIB_TEMPLATES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "templates"


__all__ = ["Settings", "get_settings", "local_secret", "private_home", "templates_dir", "ui_servers_dir"]
