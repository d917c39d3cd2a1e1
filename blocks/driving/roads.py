"""driving.synthetic-roads: procedural camera frames of a road with the steering angle that keeps the lane."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from blocks import DATA_PROVIDER
from blocks.vision.digits import png_data_uri
from builder.ports import Port, PortType
from builder.registry import register_block
from builder.spec import Block, BlockParams, Kind, Price, PriceUnit

if TYPE_CHECKING:
    from runtime.context import StepContext


@dataclass
class DrivingFrames:
    """Greyscale frames (n, height, width) in [0, 1] with steering angles in [-1, 1]; held-out scenes as test."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.train_x.shape[1]), int(self.train_x.shape[2])


def steering_angle(curvature: float, offset: float, heading: float) -> float:
    """The angle that keeps the lane: follow the bend, steer back to the centre, undo the heading error.

    `offset` > 0: the car is right of the lane centre; `heading` > 0: it points right; both steer left (< 0).
    """
    return float(np.clip(0.6 * curvature - 0.4 * offset - 0.5 * heading, -1.0, 1.0))


def render(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, float, dict[str, float]]:
    """One frame: (pixels, steering angle, the scene's parameters)."""
    scene = {
        "curvature": float(rng.uniform(-1, 1)),
        "offset": float(rng.uniform(-0.5, 0.5)),
        "heading": float(rng.uniform(-0.3, 0.3)),
        "lane_width": float(rng.uniform(0.8, 1.2)),
        "light": float(rng.uniform(0.6, 1.2)),
        "noise": float(rng.uniform(0.0, 0.08)),
    }
    horizon = int(height * 0.35)
    rows = np.arange(height, dtype=np.float32)[:, None]
    cols = np.arange(width, dtype=np.float32)[None, :]
    t = np.clip((rows - horizon) / (height - 1 - horizon), 0.0, 1.0)  # 0 at the horizon, 1 at the bonnet
    half = scene["lane_width"] * width * 0.42 * np.maximum(t, 0.02)
    far = 1.0 - t
    centre = (
        width / 2
        - scene["offset"] * half
        + scene["curvature"] * far**2 * width * 0.6
        + scene["heading"] * far * width * 0.5
    )
    dist = np.abs(cols - centre)
    line = np.maximum(1.0, 2.0 * t)
    img = np.where(dist < half, 0.4, 0.2).astype(np.float32)  # asphalt between the lines, verge outside
    img = np.where(np.abs(dist - half) < line, 0.9, img)  # the lane lines
    img = np.where(rows < horizon, 0.7, img)  # sky
    img *= scene["light"]
    if rng.random() < 0.5:  # a shadow across the road (a tree, a bridge)
        x0, x1 = sorted(rng.uniform(0, width, 2))
        y0 = rng.uniform(horizon, height)
        img = np.where((cols >= x0) & (cols <= x1) & (rows >= y0) & (rows <= y0 + height * 0.25), img * 0.5, img)
    img = img + rng.normal(0.0, scene["noise"], img.shape)
    angle = steering_angle(scene["curvature"], scene["offset"], scene["heading"])
    return np.clip(img, 0.0, 1.0).astype(np.float32), angle, scene


class RoadsParams(BlockParams):
    scenes: int = Field(3000, ge=20, le=200_000, description="Frames to generate, each from a different road")
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="Share of the scenes held out for testing")
    height: int = Field(32, ge=16, le=256, description="Frame height in pixels")
    width: int = Field(64, ge=16, le=512, description="Frame width in pixels")
    seed: int = Field(0, ge=0, description="The same seed gives the same frames")


@register_block
class SyntheticRoads(Block):
    id = "driving.synthetic-roads"
    version = "1.0.0"
    kind = Kind.DATA
    domain = "driving"
    inputs = ()
    outputs = (Port("frames", PortType.DRIVING_FRAMES, "camera frames with steering angles; held-out test scenes"),)
    Params = RoadsParams
    price = Price(10**15, PriceUnit.RUN)  # 0.001 AIC per run
    provider = DATA_PROVIDER
    license = "CC0-1.0"
    description = "Procedural road frames (curvature, lane width, lighting, shadows, noise) with the steering angle."

    def fingerprint(self, params: BlockParams, base_dir: Path) -> str:
        return "synthetic-roads-v1"  # the generator's version: the frames follow from the parameters

    def estimate_seconds(self, params: BlockParams) -> float:
        assert isinstance(params, RoadsParams)
        return 0.0002 * params.scenes

    def generate(self, params: RoadsParams) -> DrivingFrames:
        """Render every scene (deterministic by seed) and hold out the last share of scenes for testing."""
        rng = np.random.default_rng(params.seed)
        frames, angles = [], []
        for _ in range(params.scenes):
            img, angle, _ = render(rng, params.height, params.width)
            frames.append(img)
            angles.append(angle)
        x = np.stack(frames)
        y = np.asarray(angles, dtype=np.float32)
        cut = len(y) - max(1, round(len(y) * params.test_fraction))
        return DrivingFrames(
            x[:cut], y[:cut], x[cut:], y[cut:], {"generator": "synthetic-roads-v1", "seed": params.seed}
        )

    def preview(self, params: RoadsParams, base_dir: Path, rows: int = 5, seed: int | None = None) -> list[dict]:
        """A few random frames with their steering angle."""
        rng = np.random.default_rng(random.Random(seed).randrange(2**32))
        out = []
        for _ in range(rows):
            img, angle, _ = render(rng, params.height, params.width)
            out.append({"image": png_data_uri(img, scale=2), "steering_angle": round(angle, 3)})
        return out

    def run(self, ctx: StepContext, inputs: dict[str, Any], params: BlockParams) -> dict[str, Any]:
        assert isinstance(params, RoadsParams)
        data = self.generate(params)
        ctx.log_metric("train_frames", len(data.train_y))
        ctx.log_metric("test_frames", len(data.test_y))
        return {"frames": data}
