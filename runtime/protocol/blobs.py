"""The artifact store: content-addressed blobs (sha256), checked on the way in and on the way out.

The default backend is a folder of the coordinator's own disk (AIB_HOME/blobs), reached by providers only through
the coordinator API. For scale, AIB_BLOB_STORE names any fsspec URL, in particular `s3://bucket/prefix` on an
S3-compatible object store (s3fs; endpoint and credentials from the usual AWS_* environment). Uploads arrive in
chunks into a staging file of the coordinator, so a cut connection resumes where it stopped; a blob enters the
store only once its bytes hash to the name it was announced under.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from builder.errors import AibError
from runtime.config import get_settings

SHA256 = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20


class BlobError(AibError):
    """A blob that is missing, malformed, or whose bytes do not match its hash."""


def check_digest(digest: str) -> str:
    """`digest` when it is a lower-case sha256 hex digest; BlobError otherwise (it becomes part of a path)."""
    if not isinstance(digest, str) or not SHA256.match(digest):
        raise BlobError(f"{str(digest)[:80]!r} is not a sha256 digest (64 lower-case hex digits)")
    return digest


def sha256_bytes(data: bytes) -> str:
    """sha256 hex digest of `data`."""
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    """Blobs under `<url>/<first two hex digits>/<sha256>`; a local folder or any fsspec URL."""

    def __init__(self, url: str | None = None) -> None:
        url = url or os.environ.get("AIB_BLOB_STORE") or str(get_settings().home / "blobs")
        self.url = url.rstrip("/")
        self.local: Path | None = None
        if "://" not in url or url.startswith("file://"):
            self.local = Path(url.removeprefix("file://"))
            self.fs = None
        else:
            import fsspec

            self.fs, self.root = fsspec.core.url_to_fs(self.url)

    def _key(self, digest: str) -> str:
        check_digest(digest)
        return f"{digest[:2]}/{digest}"

    def has(self, digest: str) -> bool:
        """Whether the blob is stored."""
        if self.local is not None:
            return (self.local / self._key(digest)).is_file()
        return bool(self.fs.exists(f"{self.root}/{self._key(digest)}"))

    def size(self, digest: str) -> int:
        """Bytes of a stored blob; BlobError when absent."""
        try:
            if self.local is not None:
                return (self.local / self._key(digest)).stat().st_size
            return int(self.fs.size(f"{self.root}/{self._key(digest)}"))
        except (FileNotFoundError, OSError):
            raise BlobError(f"blob {digest} is not in the store") from None

    def put_bytes(self, data: bytes) -> str:
        """Store `data` under its sha256 (once); the digest."""
        digest = sha256_bytes(data)
        if self.has(digest):
            return digest
        if self.local is not None:
            dest = self.local / self._key(digest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".in-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, dest)  # a reader sees the whole blob or none
        else:
            self.fs.pipe_file(f"{self.root}/{self._key(digest)}", data)
        return digest

    def put_file(self, path: Path, digest: str) -> None:
        """Store the file at `path` as blob `digest` after checking its bytes hash to it (moved when local)."""
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
        if h.hexdigest() != check_digest(digest):
            raise BlobError(f"the bytes received hash to {h.hexdigest()}, not to the announced {digest}")
        if self.local is not None:
            dest = self.local / self._key(digest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
        else:
            self.fs.put_file(str(path), f"{self.root}/{self._key(digest)}")
            path.unlink(missing_ok=True)

    def read(self, digest: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes [start, end) of a stored blob (the whole blob by default), checked against its hash when whole."""
        try:
            if self.local is not None:
                with open(self.local / self._key(digest), "rb") as f:
                    f.seek(start)
                    data = f.read() if end is None else f.read(end - start)
            else:
                data = self.fs.cat_file(f"{self.root}/{self._key(digest)}", start=start, end=end)
        except (FileNotFoundError, OSError):
            raise BlobError(f"blob {digest} is not in the store") from None
        if start == 0 and end is None and sha256_bytes(data) != digest:
            raise BlobError(f"blob {digest} is corrupt in the store (its bytes hash to something else)")
        return data

    def stream(self, digest: str, start: int = 0) -> Iterator[bytes]:
        """The blob's bytes from `start`, in chunks."""
        total = self.size(digest)
        for offset in range(start, total, CHUNK):
            yield self.read(digest, offset, min(offset + CHUNK, total))


class Staging:
    """Uploads in progress: one file per (lease, digest), appended at the offset the client says it resumes from."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or get_settings().home / "uploads"

    def path(self, lease_id: str, digest: str) -> Path:
        """The staging file of an upload."""
        return self.root / lease_id / check_digest(digest)

    def received(self, lease_id: str, digest: str) -> int:
        """Bytes received so far for an upload (0 when none)."""
        try:
            return self.path(lease_id, digest).stat().st_size
        except FileNotFoundError:
            return 0

    def append(self, lease_id: str, digest: str, offset: int, data: bytes, limit: int) -> int:
        """Write `data` at `offset` (which must be what was received so far); the new total. BlobError when the
        offset is not where the upload stands or the upload would pass `limit` bytes."""
        have = self.received(lease_id, digest)
        if offset != have:
            raise BlobError(f"the upload of {digest} stands at byte {have}; resume from there, not from {offset}")
        if have + len(data) > limit:
            raise BlobError(f"the upload of {digest} would pass {limit} bytes, the most a lease may send in one blob")
        path = self.path(lease_id, digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            f.write(data)
        return have + len(data)

    def discard(self, lease_id: str, digest: str | None = None) -> None:
        """Forget an upload (or every upload of a lease)."""
        import shutil

        if digest is None:
            shutil.rmtree(self.root / lease_id, ignore_errors=True)
        else:
            self.path(lease_id, digest).unlink(missing_ok=True)


__all__ = ["BlobError", "BlobStore", "Staging", "check_digest", "sha256_bytes"]
