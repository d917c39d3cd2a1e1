"""A provider's machine that offers storage (`aib provider start --coordinator URL --storage GB`), provider side: it
holds the sealed shards the coordinator places on it and sends them to whoever asks (leased providers nearby, and
the coordinator's spot checks).

The shards are sealed (AES-GCM; the keys never reach a store), so a store reads nothing of them, and a provider that
fetches one checks it by hash before opening it: a store can withhold or spoil a shard, never change what a run
trains on. Its folder is its own: `AIB_HOME/store/blobs/<sealed sha256>`.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse, Response, StreamingResponse

from runtime.config import get_settings

CHUNK = 1 << 20


def store_dir() -> Path:
    """Where this store keeps the sealed blobs placed on it."""
    path = get_settings().home / "store" / "blobs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _digest_ok(digest: str) -> bool:
    return len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)


class StoreNode:
    """The store's HTTP server (GET /blobs/{sealed sha256}, `Range: bytes=N-` resumes) and its sync with what the
    coordinator placed on it."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or store_dir()
        self.lock = threading.Lock()
        self.app = self._app()

    def _app(self) -> FastAPI:
        app = FastAPI(title="Easy AI Builder store", version="1",
                      description="Sealed shards placed here by the coordinator, by hash.")  # fmt: skip

        @app.get("/health")
        def health() -> dict[str, Any]:
            return {"ok": True, "blobs": len(self.held())}

        @app.get("/blobs/{digest}")
        def blob(digest: str, range_: str | None = Header(default=None, alias="Range")) -> Response:
            path = self.root / digest
            if not _digest_ok(digest) or not path.is_file():
                return JSONResponse({"error": f"this store holds no blob {digest[:64]}"}, status_code=404)
            total = path.stat().st_size
            start = 0
            if range_:
                try:
                    start = int(range_.removeprefix("bytes=").split("-")[0])
                except ValueError:
                    return JSONResponse({"error": "unreadable Range header; use bytes=N-"}, status_code=416)
                if not 0 <= start <= total:
                    return JSONResponse({"error": f"Range starts past the blob's {total} bytes"}, status_code=416)
            headers = {"Content-Length": str(total - start), "Accept-Ranges": "bytes"}
            if range_:
                headers["Content-Range"] = f"bytes {start}-{total - 1}/{total}"
            return StreamingResponse(_read(path, start), status_code=206 if range_ else 200, headers=headers,
                                     media_type="application/octet-stream")  # fmt: skip

        return app

    def held(self) -> list[str]:
        """The sealed blobs held here (reported in each heartbeat)."""
        return sorted(p.name for p in self.root.iterdir() if p.is_file() and _digest_ok(p.name))

    def sync(self, replicas: list[dict[str, Any]], fetch: Any, say: Any) -> None:
        """Hold exactly `replicas` (the coordinator's heartbeat answer): fetch those missing (`fetch(digest, part)`
        gives the sealed bytes, checked by hash), delete those no longer placed here. A full disk is said in one
        line and the blob is left for the next heartbeat."""
        wanted = {r["sealed_sha256"] for r in replicas if _digest_ok(r["sealed_sha256"])}
        for name in self.held():
            if name not in wanted:
                (self.root / name).unlink(missing_ok=True)
        for digest in sorted(wanted - set(self.held())):
            part = self.root.parent / "partial" / digest
            part.parent.mkdir(parents=True, exist_ok=True)
            try:
                data = fetch(digest, part)
                tmp = self.root / f".{digest}.tmp"
                tmp.write_bytes(data)
                os.replace(tmp, self.root / digest)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    say(f"the disk is full: blob {digest[:12]}… is not held yet")
                    (self.root / f".{digest}.tmp").unlink(missing_ok=True)
                    return
                raise


def _read(path: Path, start: int) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        while chunk := f.read(CHUNK):
            yield chunk


__all__ = ["StoreNode", "store_dir"]
