"""Serving-time predictor of `audio-classifier` bundles: a WAV or FLAC clip in, the spoken command out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from blocks.speech.audio import MAX_SECONDS, decode_audio, fit_length
from builder.registry import register_predictor

MAX_AUDIO_BYTES = 8 * 1024 * 1024


class AudioRequest(BaseModel):
    audio_base64: str = Field(..., min_length=1, description="A WAV or FLAC file (any rate, mono or stereo), base64")


class AudioBatchRequest(BaseModel):
    audios_base64: list[str] = Field(..., min_length=1, description="WAV or FLAC files, in order")


class AudioResponse(BaseModel):
    label: str = Field(description="The recognised command, `_unknown_` or `_silence_`")
    score: float = Field(description="Its probability, 0..1")


class AudioInput:
    """What every predictor taking audio shares: a WAV or FLAC upload (field `file`) or base64 JSON, size-checked
    before decoding, decoded to 16 kHz mono in `prepare` (BadItem, answered with 422, when it is not audio)."""

    Request = AudioRequest
    BatchRequest = AudioBatchRequest
    accepts_file = True
    upload = ("Audio (WAV or FLAC)", ["wav", "flac"])  # what the workbench's Try it asks for

    def items_from_batch(self, batch: BaseModel) -> list[dict[str, Any]]:
        return [{"audio_base64": b} for b in batch.audios_base64]  # type: ignore[attr-defined]

    def check_item(self, item: dict[str, Any]) -> str | None:
        from runtime.bundle import item_too_large

        return item_too_large(item, "audio_base64", MAX_AUDIO_BYTES, "audio")

    def prepare(self, item: dict[str, Any]) -> dict[str, Any]:
        from runtime.bundle import item_bytes

        if "samples" in item:
            return item
        return {"samples": decode_audio(item_bytes(item, "audio_base64"), MAX_SECONDS)}


@register_predictor("audio-classifier")
class AudioClassifierPredictor(AudioInput):
    """One onnxruntime session per process; the graph computes its own log-mel features from the waveform."""

    Response = AudioResponse

    def __init__(self, bundle_dir: Path, manifest: dict[str, Any], threads: int | None = None) -> None:
        from runtime.bundle import onnx_session

        self.manifest = manifest
        self.labels: list[str] = manifest["labels"]
        self.samples = int(manifest["samples"])
        self.session = onnx_session(bundle_dir / manifest["model_file"], threads)

    def prepare(self, item: dict[str, Any]) -> dict[str, Any]:
        """The request's audio fitted to the model's clip length."""
        if "samples" in item and len(item["samples"]) == self.samples:
            return item
        return {"samples": fit_length(super().prepare(item)["samples"], self.samples)}

    def predict_proba(self, items: list[dict[str, Any]]) -> np.ndarray:
        x = np.stack([self.prepare(i)["samples"] for i in items]).astype(np.float32)
        return self.session.run(None, {"waveform": x})[0]

    def predict(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        probs = self.predict_proba(items)
        return [{"label": self.labels[int(r.argmax())], "score": round(float(r.max()), 6)} for r in probs]
