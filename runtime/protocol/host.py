"""A provider's machine that hosts services (`aib provider serve`), provider side: the models it was given, loaded
from sealed bundles, answering the coordinator's gateway alone.

The host never sees an API key or writes usage: the gateway (runtime/protocol/gateway.py) checks the client's key,
forwards the call here with the hosting's secret, and meters it once the answer is back. A call to this server
without that secret is refused, so nobody but the gateway spends the host's machine.
"""

from __future__ import annotations

import base64
import hmac
import io
import json
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from builder.errors import AibError, BadItem
from runtime.config import get_settings

BYTES_KEY = "$bytes"  # how a bytes value of an item (an uploaded file) travels in JSON


def pack_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items as JSON-ready data (bytes values base64-encoded)."""
    return [{k: {BYTES_KEY: base64.b64encode(v).decode()} if isinstance(v, bytes | bytearray) else v
             for k, v in item.items()} for item in items]  # fmt: skip


def unpack_items(items: list[Any]) -> list[dict[str, Any]]:
    """`pack_items` undone; BadItem for anything that is not a list of objects."""
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise BadItem("items must be a list of objects")
    out = []
    for item in items:
        row = {}
        for k, v in item.items():
            if isinstance(v, dict) and set(v) == {BYTES_KEY}:
                try:
                    v = base64.b64decode(v[BYTES_KEY], validate=True)
                except ValueError:
                    raise BadItem(f"{k}: not base64") from None
            row[k] = v
        out.append(row)
    return out


def answer(predictor: Any, items: list[dict[str, Any]]) -> list[Any]:
    """A bundle's answers to raw items: decoded first when its predictor needs it (images, audio), as `aib serve`."""
    prepare = getattr(predictor, "prepare", None)
    return predictor.predict([prepare(item) for item in items] if prepare is not None else items)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@dataclass
class Hosted:
    """A service this host answers for: its predictor and the secret the gateway calls it with."""

    predictor: Any
    secret: str
    bundle_sha256: str


class HostServer:
    """The host's HTTP server: POST /v1/hosted/{service_id}/predict {"items": [...]} → {"results": [...]}."""

    def __init__(self) -> None:
        self.hosted: dict[str, Hosted] = {}  # written by the heartbeat loop, read by the server: item by item
        self.app = self._app()

    def _app(self) -> FastAPI:
        app = FastAPI(title="Easy AI Builder host", version="1",
                      description="Answers the coordinator's gateway for the services placed here.")  # fmt: skip

        @app.get("/health")
        def health() -> dict[str, Any]:
            return {"ok": True, "services": sorted(self.hosted)}

        @app.post("/v1/hosted/{service_id}/predict")
        async def predict(service_id: str, request: Request,
                          authorization: str | None = Header(default=None)) -> JSONResponse:  # fmt: skip
            hosted = self.hosted.get(service_id)
            given = (authorization or "").removeprefix("Bearer ").strip()
            if hosted is None or not hmac.compare_digest(given.encode(), hosted.secret.encode()):
                # The same answer for a service not hosted here and a wrong secret: nothing to probe.
                return JSONResponse({"error": "only the coordinator's gateway calls this host"}, status_code=401)
            try:
                items = unpack_items(json.loads(await request.body()).get("items"))
                results = await run_in_threadpool(answer, hosted.predictor, items)
            except (BadItem, ValueError, AttributeError) as exc:
                return JSONResponse({"error": str(exc) or "the request cannot be read"}, status_code=422)
            return Response(json.dumps({"results": results}, default=_jsonable), media_type="application/json")

        return app

    def ready(self) -> list[str]:
        """The services loaded and answering."""
        return sorted(self.hosted)

    def sync(self, hostings: list[dict[str, Any]], fetch: Any, say: Any) -> None:
        """Host exactly `hostings` (from the coordinator's heartbeat answer): load those new or changed (`fetch`
        gives a bundle's plaintext from its entry), unload those no longer placed here."""
        from runtime.bundle import load_bundle

        wanted = {h["service_id"]: h for h in hostings}
        for service_id in [s for s in self.hosted if s not in wanted]:
            self.hosted.pop(service_id, None)
            say(f"service {service_id} was taken off this host")
        for service_id, h in wanted.items():
            have = self.hosted.get(service_id)
            if have is not None and have.bundle_sha256 == h["bundle"]["sha256"]:
                have.secret = h["secret"]
                continue
            try:
                folder = unpack_bundle(fetch(h["bundle"]), hosted_dir() / service_id)
                predictor = load_bundle(folder)
            except (AibError, OSError, tarfile.TarError) as exc:
                say(f"service {service_id} cannot be hosted here: {exc}")
                continue
            self.hosted[service_id] = Hosted(predictor, h["secret"], h["bundle"]["sha256"])
            say(f"hosting service {service_id}")


def hosted_dir() -> Path:
    """Where this host keeps the bundles it serves (its own home)."""
    return get_settings().home / "hosted"


def unpack_bundle(data: bytes, folder: Path) -> Path:
    """A bundle tar (runtime/protocol/hosting.bundle_bytes) unpacked into `folder`, replacing what was there; no
    member may leave the folder (tarfile's "data" filter)."""
    tmp = folder.with_name(folder.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        tar.extractall(tmp, filter="data")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


__all__ = ["HostServer", "Hosted", "answer", "hosted_dir", "pack_items", "unpack_bundle", "unpack_items"]
