"""Service bundles: a self-contained folder (manifest.json + ONNX + preprocessing files) and its loader."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel

from builder.errors import BadItem, ServeError
from builder.files import sha256_file, sha256_tree
from builder.registry import predictor_class

MANIFEST = "manifest.json"
BUNDLE_FORMAT = 1


def item_bytes(item: dict[str, Any], field: str) -> bytes:
    """The bytes of a request item: an uploaded file ({"file": bytes}) or base64 text in `field`."""
    import base64
    import binascii

    if "file" in item:
        return item["file"]
    try:
        return base64.b64decode(item[field], validate=True)
    except (binascii.Error, ValueError):
        raise BadItem(f"{field} is not valid base64") from None


def item_too_large(item: dict[str, Any], field: str, limit: int, what: str) -> str | None:
    """Why an item's file or base64 `field` is over `limit` bytes (checked before decoding), else None."""
    size = len(item["file"]) if "file" in item else len(item.get(field) or "") * 3 // 4
    return f"the {what} is about {size} bytes; the limit is {limit}" if size > limit else None


class Predictor(Protocol):
    """What serving needs from a bundle type: request/response models and batched prediction."""

    Request: ClassVar[type[BaseModel]]
    Response: ClassVar[type[BaseModel]]
    BatchRequest: ClassVar[type[BaseModel]]

    manifest: dict[str, Any]

    def items_from_batch(self, batch: BaseModel) -> list[Any]: ...

    def check_item(self, item: Any) -> str | None:
        """None when `item` is acceptable, else why it is too large (answered with 413)."""
        ...

    def predict(self, items: list[Any]) -> list[dict[str, Any]]: ...

    def predict_proba(self, items: list[Any]) -> Any: ...


@dataclass(frozen=True)
class ServiceBundle:
    """The output of a service block: where the exported bundle lives and its content hash."""

    path: str
    sha256: str

    def is_intact(self) -> bool:
        return (Path(self.path) / MANIFEST).exists()


def read_manifest(bundle_dir: Path) -> dict[str, Any]:
    """The bundle's manifest; ServeError when missing or unreadable."""
    path = bundle_dir / MANIFEST
    if not path.exists():
        raise ServeError(f"{bundle_dir} is not a service bundle (no {MANIFEST})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ServeError(f"{path} is unreadable: {exc}") from None


def write_manifest(bundle_dir: Path, manifest: dict[str, Any]) -> None:
    """Write manifest.json, recording the sha256 of every other file for the integrity check on load."""
    files = {
        p.relative_to(bundle_dir).as_posix(): sha256_file(p)
        for p in sorted(bundle_dir.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    manifest = {**manifest, "format": BUNDLE_FORMAT, "files": files}
    (bundle_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")


def verify_bundle(bundle_dir: Path, manifest: dict[str, Any]) -> None:
    """Refuse a bundle whose files were changed or removed since export."""
    for name, digest in (manifest.get("files") or {}).items():
        path = bundle_dir / name
        if not path.exists():
            raise ServeError(f"service bundle {bundle_dir} is missing {name}")
        if sha256_file(path) != digest:
            raise ServeError(f"service bundle {bundle_dir}: {name} does not match its checksum (corrupt or edited)")


def load_bundle(bundle_dir: str | Path, threads: int | None = None, verify: bool = True) -> Predictor:
    """Rebuild the predictor of a bundle exactly as exported (checksums verified)."""
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    if manifest.get("format") != BUNDLE_FORMAT:
        raise ServeError(f"{bundle_dir}: bundle format {manifest.get('format')!r} is not supported")
    if verify:
        verify_bundle(bundle_dir, manifest)
    cls = predictor_class(manifest.get("type", ""))
    if cls is None:
        raise ServeError(f"{bundle_dir}: no predictor for bundle type {manifest.get('type')!r}")
    return cls(bundle_dir, manifest, threads=threads)


def onnx_session(model_path: Path, threads: int | None = None) -> Any:
    """An onnxruntime session tuned for serving: `threads` intra-op threads, none spinning while idle."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # Idle intra-op threads would spin for a while after each run, taking the cores the HTTP event loop
    # and the metering writer need; measured worse end-to-end latency with spinning on 2 cores.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(model_path), opts, providers=onnx_providers())


def onnx_providers() -> list[str]:
    """onnxruntime execution providers: CUDA first when the GPU build and a GPU are present."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


__all__ = [
    "MANIFEST",
    "item_bytes",
    "item_too_large",
    "Predictor",
    "ServiceBundle",
    "load_bundle",
    "onnx_providers",
    "onnx_session",
    "read_manifest",
    "sha256_tree",
    "verify_bundle",
    "write_manifest",
]
