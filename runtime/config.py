"""Where things live: everything the product writes goes under AIB_HOME (default ./.aib)."""

from __future__ import annotations

import os
import tempfile
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
        secret = path.read_bytes()
    except FileNotFoundError:
        # Written whole under a name of its own, then published by a hard link, which fails if another process or
        # thread published first: a reader never sees the file half written. (Created in place, a thread that lost the
        # race to create it read it empty: two providers signing in at once got a 500.)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(32))
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another one published first: every caller uses that one
        finally:
            os.unlink(tmp)
        secret = path.read_bytes()
    if len(secret) != 32:
        raise RuntimeError(f"{path} is damaged (not 32 bytes); delete it to make a new one")
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


def template_files() -> list[Path]:
    """The templates' pipeline files, by name (so a template comes just before its variants: faq-chatbot, then
    faq-chatbot-fast)."""
    return sorted(templates_dir().glob("*.yaml"), key=lambda p: p.stem)


__all__ = ["Settings", "get_settings", "local_secret", "private_home", "template_files", "templates_dir",
           "ui_servers_dir"]  # fmt: skip
