"""Serving-time predictor of `image-classifier` bundles: Pillow decoding + onnxruntime, no torch needed."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from builder.errors import BadItem
from builder.registry import register_predictor

MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_IMAGE_PIXELS = 4096 * 4096


class ImageRequest(BaseModel):
    image_base64: str = Field(..., min_length=1, description="A PNG or JPEG image, base64-encoded")


class ImageBatchRequest(BaseModel):
    images_base64: list[str] = Field(..., min_length=1, description="Images to classify, in order")


class ImageResponse(BaseModel):
    label: str = Field(description="The most likely class")
    score: float = Field(description="Its probability, 0..1")


def decode_image(data: bytes, size: tuple[int, int], bright_ink: bool) -> np.ndarray:
    """Image bytes → greyscale (h, w) float32 in [0, 1] as the model was trained on; BadItem when not an image."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise BadItem("the image is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise BadItem(f"the image is {len(data)} bytes; the limit is {MAX_IMAGE_BYTES}")
    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_IMAGE_PIXELS:
            raise BadItem(f"the image is {img.width}×{img.height} pixels; the limit is {MAX_IMAGE_PIXELS} pixels")
        img = img.convert("L").resize((size[1], size[0]), Image.BILINEAR)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, BadItem):
            raise
        raise BadItem("the data is not a PNG or JPEG image Pillow can read") from None
    pixels = np.asarray(img, dtype=np.float32) / 255.0
    if bright_ink and pixels.mean() > 0.5:  # dark ink on light paper: flip to the training data's polarity
        pixels = 1.0 - pixels
    return pixels


class ImageInput:
    """What every predictor taking one image shares: JSON base64 or an uploaded file, decoded with Pillow into
    the greyscale `size` the model was trained on (`bright_ink`: invert dark-on-light pictures)."""

    Request = ImageRequest
    BatchRequest = ImageBatchRequest
    accepts_file = True  # /v1/predict also takes a multipart upload in the field `file` (item {"file": bytes})
    upload = ("Image (PNG or JPEG)", ["png", "jpg", "jpeg"])  # what the workbench's Try it asks for
    size: tuple[int, int]
    bright_ink = False

    def items_from_batch(self, batch: BaseModel) -> list[dict[str, Any]]:
        return [{"image_base64": b} for b in batch.images_base64]  # type: ignore[attr-defined]

    def check_item(self, item: dict[str, Any]) -> str | None:
        from runtime.bundle import item_too_large

        return item_too_large(item, "image_base64", MAX_IMAGE_BYTES, "image")

    def prepare(self, item: dict[str, Any]) -> dict[str, Any]:
        """Decode the request's image into the model's input (BadItem, answered with 422, when it is not one)."""
        from runtime.bundle import item_bytes

        if "pixels" in item:
            return item
        return {"pixels": decode_image(item_bytes(item, "image_base64"), self.size, self.bright_ink)}

    def pixels(self, items: list[dict[str, Any]]) -> np.ndarray:
        """The items as one (n, 1, h, w) float32 batch."""
        return np.stack([self.prepare(i)["pixels"] for i in items]).astype(np.float32)[:, None, :, :]


@register_predictor("image-classifier")
class ImageClassifierPredictor(ImageInput):
    """One onnxruntime session per process; images are decoded and resized with Pillow."""

    Response = ImageResponse

    def __init__(self, bundle_dir: Path, manifest: dict[str, Any], threads: int | None = None) -> None:
        from runtime.bundle import onnx_session

        self.manifest = manifest
        self.labels: list[str] = manifest["labels"]
        self.size = (int(manifest["input_size"][0]), int(manifest["input_size"][1]))
        self.bright_ink = bool(manifest.get("bright_ink", False))
        self.session = onnx_session(bundle_dir / manifest["model_file"], threads)

    def predict_proba(self, items: list[dict[str, Any]]) -> np.ndarray:
        """Probabilities (batch, n_labels) for the items' images."""
        return self.session.run(None, {"image": self.pixels(items)})[0]

    def predict(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        probs = self.predict_proba(items)
        return [{"label": self.labels[int(r.argmax())], "score": round(float(r.max()), 6)} for r in probs]
