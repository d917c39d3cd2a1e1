"""speech.log-mel: log-mel energies or MFCCs of every clip, in pure torch, stored in the digitized-data cache.

The features are computed once per (clips, feature settings) and kept as checksummed shards
(runtime/shards.py); every later run using the same clips and settings reads them. The model that trains on
them carries the same LogMel module inside its exported graph, so a served model computes exactly these
features from the waveform it is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydantic import Field, model_validator

from blocks import MODEL_PROVIDER
from blocks.speech.audio import DEFAULT_FEATURES, SAMPLE_RATE, LogMel
from blocks.speech.synth import AudioClips
from builder.ports import Port, PortType
from builder.registry import register_block
from builder.spec import Block, BlockParams, Kind, Price, PriceUnit

if TYPE_CHECKING:
    from runtime.context import StepContext
    from runtime.shards import ShardStore

TRANSFORM = "speech.log-mel"
TRANSFORM_VERSION = 1  # raise when the computation changes: every stored shard then misses


@dataclass
class Features:
    """Features of a set of clips: (n, 1, coefficients, frames) float32 for train and test, and their spec."""

    spec: dict[str, Any]
    train: np.ndarray
    test: np.ndarray
    from_cache: bool = False


def feature_spec(settings: dict[str, int]) -> dict[str, Any]:
    """The transform spec whose hash keys the shards: every setting that changes the features."""
    return {"transform": TRANSFORM, "version": TRANSFORM_VERSION, "sample_rate": SAMPLE_RATE, **settings}


def log_mel_module(spec: dict[str, Any]) -> LogMel:
    """The LogMel module computing features of `spec` (also used inside the exported model)."""
    return LogMel(**{k: int(spec[k]) for k in DEFAULT_FEATURES})


def clips_hash(clips: AudioClips) -> str:
    """The raw data hash of a set of clips: their samples, train then test (about 1 s per GB)."""
    from runtime.shards import arrays_hash

    return arrays_hash(clips.train_x, clips.test_x)


def compute_features(
    store: ShardStore,
    clips: AudioClips,
    spec: dict[str, Any],
    device: str = "cpu",
    progress: Callable[[float, float, str], None] | None = None,
    batch: int = 256,
) -> Features:
    """The clips' features for `spec`: read from the shard store, or computed (on `device`) and stored."""
    module = log_mel_module(spec).to(device)

    def run(x: np.ndarray, done: int, total: int) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, len(x), batch):
                out.append(module(torch.from_numpy(x[i : i + batch]).to(device)).cpu().numpy())
                if progress:
                    progress(done + i + len(x[i : i + batch]), total, "computing features (once; then cached)")
        return np.concatenate(out) if out else np.zeros((0, 1, 1, 1), np.float32)

    def build() -> dict[str, np.ndarray]:
        total = len(clips.train_x) + len(clips.test_x)
        return {"train": run(clips.train_x, 0, total), "test": run(clips.test_x, len(clips.train_x), total)}

    arrays, hit = store.get_or_build(clips_hash(clips), spec, build)
    return Features(spec, arrays["train"], arrays["test"], from_cache=hit)


class LogMelParams(BlockParams):
    n_mels: int = Field(40, ge=8, le=128, description="Mel bands")
    window_ms: float = Field(25.0, ge=5.0, le=64.0, description="Analysis window length")
    hop_ms: float = Field(10.0, ge=2.5, le=32.0, description="Step between windows")
    mfcc: int = Field(0, ge=0, le=128, description="0: log-mel energies; n > 0: the first n MFCCs instead")

    @model_validator(mode="after")
    def _consistent(self) -> LogMelParams:
        if self.mfcc > self.n_mels:
            raise ValueError(f"mfcc ({self.mfcc}) cannot exceed n_mels ({self.n_mels})")
        if self.hop_ms > self.window_ms:
            raise ValueError(f"hop_ms ({self.hop_ms}) cannot exceed window_ms ({self.window_ms})")
        return self

    def settings(self) -> dict[str, int]:
        """LogMel's arguments: window and hop in samples, the FFT size the next power of two."""
        win = int(round(SAMPLE_RATE * self.window_ms / 1000))
        return {
            "n_mels": self.n_mels,
            "n_fft": 1 << (win - 1).bit_length(),
            "win": win,
            "hop": int(round(SAMPLE_RATE * self.hop_ms / 1000)),
            "n_mfcc": self.mfcc,
        }


@register_block
class LogMelFeatures(Block):
    id = "speech.log-mel"
    version = "1.0.0"
    kind = Kind.TRANSFORM
    domain = "speech"
    inputs = (Port("clips", PortType.AUDIO_CLIPS, "16 kHz clips"),)
    outputs = (Port("clips", PortType.AUDIO_CLIPS, "the same clips with their log-mel or MFCC features"),)
    Params = LogMelParams
    price = Price(5 * 10**14, PriceUnit.RUN)  # 0.0005 AIC per run
    provider = MODEL_PROVIDER
    license = "Apache-2.0"
    description = "Log-mel energies or MFCCs in pure torch, computed once and kept in the digitized-data cache."
    cacheable = False  # the features live in the shard store (keyed by data and settings), not the step cache

    def estimate_seconds(self, params: BlockParams) -> float:
        return 5.0

    def run(self, ctx: StepContext, inputs: dict[str, Any], params: BlockParams) -> dict[str, Any]:
        assert isinstance(params, LogMelParams)
        clips: AudioClips = inputs["clips"]
        feats = compute_features(ctx.shards, clips, feature_spec(params.settings()), ctx.device, ctx.progress)
        ctx.progress(1, 1, "features read from the cache" if feats.from_cache else "features computed and cached")
        ctx.log_metric("features_from_cache", float(feats.from_cache))
        return {"clips": replace(clips, features=feats)}


DEFAULT_SPEC = feature_spec(dict(DEFAULT_FEATURES))

__all__ = ["DEFAULT_SPEC", "Features", "LogMelFeatures", "clips_hash", "compute_features", "feature_spec"]
