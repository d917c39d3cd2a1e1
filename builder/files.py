"""Files as the pipeline core sees them: content hashes (a step's cache key covers its data files) and writes that
readers never see half done."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def data_roots(base_dir: Path) -> list[Path]:
    """The folders a pipeline in `base_dir` may read data from: its own folder, the published datasets
    (AIB_HOME/datasets; AIB_HOME as runtime.config resolves it) and the folders named in AIB_DATA_DIRS."""
    home = Path(os.environ.get("AIB_HOME") or ".aib").expanduser()
    named = [Path(p).expanduser() for p in os.environ.get("AIB_DATA_DIRS", "").split(os.pathsep) if p.strip()]
    return [p.resolve() for p in (base_dir, home / "datasets", *named)]


def outside_roots(value: str, base_dir: Path) -> bool:
    """Whether data path `value` (absolute, or relative to `base_dir`) leads outside `data_roots` once `..` and
    symbolic links are followed."""
    target = (base_dir / value).resolve()
    return not any(target.is_relative_to(root) for root in data_roots(base_dir))


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on file `path` (made if missing) across processes for the block; released when the
    file closes, also if the process dies."""
    import fcntl

    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_tree(root: Path) -> str:
    """Hex sha256 over every file of a folder (relative paths and contents), independent of walk order."""
    h = hashlib.sha256()
    for p in sorted(x for x in root.rglob("*") if x.is_file()):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(sha256_file(p).encode() + b"\0")
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers see the old file or the whole new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["atomic_write_bytes", "data_roots", "exclusive_lock", "outside_roots", "sha256_file", "sha256_tree"]
