"""Content-addressed storage (sha256) and the step-output cache keyed by a Plan step's cache key."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

from builder.errors import RunError
from builder.files import atomic_write_bytes, sha256_file, sha256_tree
from runtime.config import local_secret

log = logging.getLogger(__name__)


class StepCache:
    """Outputs of finished steps, stored by cache key and signed (HMAC-SHA256 over key and content) with a secret
    of this installation: an entry is un-pickled only once its signature holds, so a file planted or swapped in
    the cache folder (which providers' work writes to) can never run code here."""

    MAGIC = b"AIBSC1\n"

    def __init__(self, root: Path, secret: bytes | None = None) -> None:
        self.root = root
        self.secret = secret if secret is not None else local_secret("step-cache")

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.pkl"

    def _sign(self, key: str, payload: bytes) -> bytes:
        return hmac.new(self.secret, key.encode() + b"\0" + payload, hashlib.sha256).hexdigest().encode()

    def _verified(self, key: str, raw: bytes) -> bytes | None:
        """The payload of stored bytes `raw` of entry `key` when they carry this installation's signature, else None."""
        n = len(self.MAGIC)
        head, signature, payload = raw[:n], raw[n : n + 64], raw[n + 64 :]
        return payload if head == self.MAGIC and hmac.compare_digest(signature, self._sign(key, payload)) else None

    def discard(self, key: str) -> None:
        """Remove the entry stored under `key`, if any."""
        self._path(key).unlink(missing_ok=True)

    def has(self, key: str) -> bool:
        """Whether an entry signed here is stored under `key` (its content is not loaded)."""
        path = self._path(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return False
        return self._verified(key, raw) is not None

    def get(self, key: str) -> dict[str, Any] | None:
        """The outputs stored under `key`, or None when absent, not signed here, or pointing at vanished files."""
        path = self._path(key)
        if not path.exists():
            return None
        payload = self._verified(key, path.read_bytes())
        if payload is None:
            path.unlink(missing_ok=True)  # corrupt, older, swapped or planted: recompute rather than trust it
            log.warning(
                "step cache entry %s is not signed by this installation; it was removed and the step is computed again",
                key,
            )
            return None
        try:
            outputs = pickle.loads(payload)  # signed here: written by this installation's own code
        except Exception:  # an entry written by an incompatible version: recompute
            path.unlink(missing_ok=True)
            return None
        for value in outputs.values():
            intact = getattr(value, "is_intact", None)
            if intact is not None and not intact():
                return None
        return outputs

    def put(self, key: str, outputs: dict[str, Any]) -> None:
        """Store `outputs` under `key` atomically, signed."""
        try:
            payload = pickle.dumps(outputs, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise RunError(f"a step's outputs cannot be cached: {exc}") from exc
        atomic_write_bytes(self._path(key), self.MAGIC + self._sign(key, payload) + payload)


def publish_dir(staging: Path, dest_root: Path) -> Path:
    """Move a finished folder into `dest_root/<sha256 of its content>` (dedup) and return its path."""
    digest = sha256_tree(staging)
    dest = dest_root / digest
    if dest.exists():
        shutil.rmtree(staging, ignore_errors=True)
        return dest
    dest_root.mkdir(parents=True, exist_ok=True)
    os.replace(staging, dest)
    return dest


__all__ = ["StepCache", "atomic_write_bytes", "publish_dir", "sha256_file", "sha256_tree"]
