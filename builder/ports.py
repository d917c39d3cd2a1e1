"""Port types: the closed set of kinds of value that flow along a pipeline's edges."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PortType(StrEnum):
    """What travels along an edge; an edge must join two ports of the same type."""

    AUDIO_CLIPS = "AudioClips"
    TEXT_PAIRS = "TextPairs"
    IMAGE_SET = "ImageSet"
    DRIVING_FRAMES = "DrivingFrames"
    TENSOR_SHARDS = "TensorShards"
    MODEL = "Model"
    METRICS = "Metrics"
    SERVICE_BUNDLE = "ServiceBundle"
    COMPUTE_TIER = "ComputeTier"


@dataclass(frozen=True)
class Port:
    """A named, typed input or output of a block."""

    name: str
    type: PortType
    description: str = ""
    optional: bool = False


__all__ = ["Port", "PortType"]
