"""Export a trained model into a service bundle and check ONNX ↔ torch parity before publishing it."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from builder.errors import ExportError
from builder.files import sha256_tree
from runtime.bundle import ServiceBundle, load_bundle, write_manifest
from runtime.store import publish_dir

PARITY_MAX_ABS_DIFF = 1e-4


def check_parity(model: Any, predictor: Any, tolerance: float = PARITY_MAX_ABS_DIFF) -> dict[str, Any]:
    """Compare the exported graph with torch on the model's evaluation inputs; ExportError if they differ."""
    items = model.parity_inputs()
    if not items:
        return {"parity_examples": 0, "parity_max_abs_diff": 0.0, "parity_top1_agreement": 1.0}
    ref = np.asarray(model.reference_outputs(items), dtype=np.float64)
    got = np.concatenate(
        [np.asarray(predictor.predict_proba(items[i : i + 64]), dtype=np.float64) for i in range(0, len(items), 64)]
    )
    if ref.shape != got.shape:
        raise ExportError(f"exported model outputs shape {got.shape}, torch gives {ref.shape}")
    diff = float(np.abs(ref - got).max())
    agree = float((ref.argmax(-1) == got.argmax(-1)).mean()) if ref.ndim == 2 else 1.0
    if diff > tolerance or agree < 1.0:
        raise ExportError(
            f"the exported ONNX model disagrees with torch (max abs diff {diff:.2e}, allowed {tolerance:.0e}; "
            f"top-1 agreement {agree:.3f}); the bundle was not published"
        )
    return {"parity_examples": len(items), "parity_max_abs_diff": diff, "parity_top1_agreement": agree}


def write_onnx(module: Any, example: Any, input_name: str, output_name: str, bundle_dir: Path) -> str:
    """Export a one-input torch graph (batch axis dynamic) to bundle_dir/model.onnx; the file name."""
    import io

    import torch

    from builder.files import atomic_write_bytes

    buf = io.BytesIO()
    torch.onnx.export(
        module,
        (example,),
        buf,
        input_names=[input_name],
        output_names=[output_name],
        dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    atomic_write_bytes(bundle_dir / "model.onnx", buf.getvalue())
    return "model.onnx"


def export_bundle(model: Any, bundles_dir: Path, manifest_extra: dict[str, Any]) -> tuple[ServiceBundle, dict]:
    """Export `model` to a staging folder, verify parity, then publish it content-addressed."""
    staging = bundles_dir / f".staging-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        try:
            fields = model.export(staging)
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(f"the model could not be exported to ONNX: {exc}") from exc
        manifest = {**fields, **manifest_extra}
        write_manifest(staging, manifest)
        parity = check_parity(model, load_bundle(staging, verify=False))
        manifest["parity"] = parity
        write_manifest(staging, manifest)
        final = publish_dir(staging, bundles_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ServiceBundle(str(final), sha256_tree(final)), manifest


__all__ = ["PARITY_MAX_ABS_DIFF", "check_parity", "export_bundle", "write_onnx"]
