"""The digitized-data cache: preprocessed tensors stored as shards keyed by (raw data hash, transform spec hash).

A transform (log-mel features of a set of clips, say) is computed once; every later run, of this pipeline or of
any other one using the same data and the same transform, reads the shards instead of the raw data. A changed
transform parameter gives another spec hash, so it builds its own shards and leaves the others in place. Each
shard's sha256 is kept in the entry's manifest and checked on every read: a corrupt entry is discarded and
rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SHARD_BYTES = 16 * 1024 * 1024  # large enough to read at disk speed, small enough to verify as it streams in
MANIFEST = "manifest.json"


def spec_hash(spec: dict[str, Any]) -> str:
    """sha256 of a transform's spec (its name, version and every parameter that changes its output)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def arrays_hash(*arrays: np.ndarray) -> str:
    """sha256 over arrays' dtypes, shapes and bytes: the identity of raw data already in memory."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


@dataclass(frozen=True)
class ShardEntry:
    """One stored transform result: where it lives and what its manifest says."""

    raw_hash: str
    spec_hash: str
    path: Path
    manifest: dict[str, Any]

    @property
    def bytes(self) -> int:
        """Bytes of all its shards."""
        return sum(s["bytes"] for a in self.manifest["arrays"].values() for s in a["shards"])


def _manifest_for(path: Path, raw_hash: str, spec: dict[str, Any]) -> bool:
    """Whether `path` holds a whole entry (its manifest is written last) for this raw data and transform."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("raw_hash") == raw_hash and manifest.get("spec") == spec


def _discard(path: Path) -> None:
    """Remove an entry: renamed aside first (atomic), so nobody sees half of it or deletes a newer one."""
    trash = path.parent / f".trash-{uuid.uuid4().hex}"
    try:
        os.replace(path, trash)
    except OSError:
        return  # already gone (another reader or writer discarded it)
    shutil.rmtree(trash, ignore_errors=True)


class ShardStore:
    """Shards under `root/<raw hash>/<spec hash>/`, written atomically (a whole entry or nothing)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, raw_hash: str, spec: dict[str, Any]) -> Path:
        """The folder of the entry for this raw data and transform."""
        return self.root / raw_hash[:32] / spec_hash(spec)[:32]

    def load(self, raw_hash: str, spec: dict[str, Any]) -> dict[str, np.ndarray] | None:
        """The arrays stored for (raw data, transform), or None when absent or corrupt (a corrupt entry is
        removed so that it is rebuilt)."""
        path = self.path(raw_hash, spec)
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        try:
            if manifest.get("spec") != spec or manifest.get("raw_hash") != raw_hash:
                raise ValueError("the manifest is for other data")
            out = {}
            for name, meta in manifest["arrays"].items():
                parts = []
                for shard in meta["shards"]:
                    data = (path / shard["file"]).read_bytes()
                    if hashlib.sha256(data).hexdigest() != shard["sha256"]:
                        raise ValueError(f"{shard['file']} does not match its checksum")
                    parts.append(np.load(io.BytesIO(data), allow_pickle=False))
                array = np.concatenate(parts) if parts else np.zeros(meta["shape"], dtype=meta["dtype"])
                if list(array.shape) != meta["shape"] or array.dtype.str != meta["dtype"]:
                    raise ValueError(f"{name} has shape {array.shape}, not {meta['shape']}")
                out[name] = array
            return out
        except (OSError, ValueError, KeyError, TypeError):
            _discard(path)  # recompute rather than trust it
            return None

    def save(self, raw_hash: str, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
        """Store `arrays` (split along their first axis into shards) for (raw data, transform)."""
        dest = self.path(raw_hash, spec)
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".staging-"))
        try:
            manifest: dict[str, Any] = {"raw_hash": raw_hash, "spec": spec, "created": time.time(), "arrays": {}}
            for name, array in arrays.items():
                array = np.ascontiguousarray(array)
                row_bytes = max(1, array[:1].nbytes)
                rows = max(1, SHARD_BYTES // row_bytes)
                shards = []
                for i, start in enumerate(range(0, len(array), rows)):
                    buf = io.BytesIO()
                    np.save(buf, array[start : start + rows], allow_pickle=False)
                    data = buf.getvalue()
                    file = f"{name}-{i:05d}.npy"
                    (staging / file).write_bytes(data)
                    shards.append(
                        {"file": file, "rows": len(array[start : start + rows]), "bytes": len(data),
                         "sha256": hashlib.sha256(data).hexdigest()}
                    )  # fmt: skip
                manifest["arrays"][name] = {"dtype": array.dtype.str, "shape": list(array.shape), "shards": shards}
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
            # Another writer may store the same entry at the same moment: the content is the same (it is keyed
            # by it), so whoever is first wins and the others discard their copy. An existing entry for other
            # data (a corrupt or foreign manifest) is moved aside whole, never deleted in place under a reader.
            for _ in range(10):
                if _manifest_for(dest, raw_hash, spec):
                    shutil.rmtree(staging, ignore_errors=True)
                    return dest
                if dest.exists():
                    _discard(dest)
                try:
                    os.replace(staging, dest)
                    return dest
                except OSError:  # a writer installed its copy between the check and the rename: look again
                    continue
            raise OSError(f"could not store shards at {dest}: other writers kept replacing it")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return dest

    def get_or_build(
        self, raw_hash: str, spec: dict[str, Any], build: Callable[[], dict[str, np.ndarray]]
    ) -> tuple[dict[str, np.ndarray], bool]:
        """The stored arrays and True, or `build()`'s arrays (then stored) and False."""
        found = self.load(raw_hash, spec)
        if found is not None:
            return found, True
        arrays = build()
        self.save(raw_hash, spec, arrays)
        return arrays, False

    def entries(self) -> list[ShardEntry]:
        """Every readable entry (manifests only; shards are checked when read)."""
        out = []
        for manifest_path in sorted(self.root.glob(f"*/*/{MANIFEST}")):
            try:
                manifest = json.loads(manifest_path.read_text())
            except (OSError, ValueError):
                continue
            raw, spec = manifest.get("raw_hash", ""), manifest.get("spec", {})
            out.append(ShardEntry(raw, spec_hash(spec), manifest_path.parent, manifest))
        return out


__all__ = ["ShardEntry", "ShardStore", "arrays_hash", "spec_hash"]
