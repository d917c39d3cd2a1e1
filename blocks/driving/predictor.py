"""Serving-time predictor of `steering-regressor` bundles: a camera frame in, a steering angle out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from blocks.vision.predictor import ImageInput
from builder.registry import register_predictor


class SteeringResponse(BaseModel):
    steering_angle: float = Field(description="-1 (full left) … 1 (full right)")


@register_predictor("steering-regressor")
class SteeringPredictor(ImageInput):
    """One onnxruntime session per process; frames are decoded and resized with Pillow."""

    Response = SteeringResponse

    def __init__(self, bundle_dir: Path, manifest: dict[str, Any], threads: int | None = None) -> None:
        from runtime.bundle import onnx_session

        self.manifest = manifest
        self.size = (int(manifest["input_size"][0]), int(manifest["input_size"][1]))
        self.session = onnx_session(bundle_dir / manifest["model_file"], threads)

    def predict_proba(self, items: list[dict[str, Any]]) -> np.ndarray:
        """Angles (batch, 1) for the items' frames (the parity check compares these with torch)."""
        return self.session.run(None, {"image": self.pixels(items)})[0]

    def predict(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"steering_angle": round(float(r[0]), 6)} for r in self.predict_proba(items)]
