"""Content-addressed storage (sha256) and the step-output cache keyed by a Plan step's cache key."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

from builder.errors import RunError
from builder.files import atomic_write_bytes, sha256_file, sha256_tree


class StepCache:
    """Outputs of finished steps, stored by cache key with a checksum verified on every read."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.pkl"

    def get(self, key: str) -> dict[str, Any] | None:
        """The outputs stored under `key`, or None when absent, corrupt, or pointing at vanished files."""
        path = self._path(key)
        if not path.exists():
            return None
        raw = path.read_bytes()
        digest, payload = raw[:64], raw[64:]
        if hashlib.sha256(payload).hexdigest().encode() != digest:
            path.unlink(missing_ok=True)  # corrupt entry: recompute rather than trust it
            return None
        try:
            outputs = pickle.loads(payload)
        except Exception:  # an entry written by an incompatible version: recompute
            path.unlink(missing_ok=True)
            return None
        for value in outputs.values():
            intact = getattr(value, "is_intact", None)
            if intact is not None and not intact():
                return None
        return outputs

    def put(self, key: str, outputs: dict[str, Any]) -> None:
        """Store `outputs` under `key` atomically."""
        try:
            payload = pickle.dumps(outputs, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise RunError(f"a step's outputs cannot be cached: {exc}") from exc
        atomic_write_bytes(self._path(key), hashlib.sha256(payload).hexdigest().encode() + payload)


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
