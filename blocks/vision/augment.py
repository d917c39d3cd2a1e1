"""vision.augment: more training images by small random rotations, shifts and noise (test images untouched)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from blocks import MODEL_PROVIDER
from blocks.vision.digits import ImageSet
from builder.ports import Port, PortType
from builder.registry import register_block
from builder.spec import Block, BlockParams, Kind, Price, PriceUnit

if TYPE_CHECKING:
    from runtime.context import StepContext


def augment(images: np.ndarray, copies: int, degrees: float, shift: float, noise: float, seed: int) -> np.ndarray:
    """`copies` transformed copies of each (n, h, w) image in [0, 1], in order; the same seed gives the same."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(images).unsqueeze(1).repeat(copies, 1, 1, 1)
    n = len(x)
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(degrees)
    offset = (torch.rand(n, 2, generator=gen) * 2 - 1) * shift * 2  # affine_grid spans [-1, 1]: a width is 2
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, offset[:, 0]], 1), torch.stack([sin, cos, offset[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)
    out = out + torch.randn(out.shape, generator=gen) * noise
    return out.clamp(0.0, 1.0).squeeze(1).numpy().astype(np.float32)


class AugmentParams(BlockParams):
    copies: int = Field(2, ge=1, le=20, description="Transformed copies added per training image")
    degrees: float = Field(10.0, ge=0.0, le=45.0, description="Largest rotation either way")
    shift: float = Field(0.1, ge=0.0, le=0.3, description="Largest shift, as a share of the image size")
    noise: float = Field(0.05, ge=0.0, le=0.5, description="Standard deviation of added pixel noise")
    seed: int = Field(0, ge=0, description="Random seed of the transformations")


@register_block
class Augment(Block):
    id = "vision.augment"
    version = "1.0.0"
    kind = Kind.TRANSFORM
    domain = "vision"
    inputs = (Port("images", PortType.IMAGE_SET, "labelled images"),)
    outputs = (Port("images", PortType.IMAGE_SET, "the same, with augmented copies of the training images"),)
    Params = AugmentParams
    price = Price(5 * 10**14, PriceUnit.RUN)  # 0.0005 AIC per run
    provider = MODEL_PROVIDER
    license = "Apache-2.0"
    description = "Adds rotated, shifted and noisy copies of the training images; the test images stay as they are."

    def run(self, ctx: StepContext, inputs: dict[str, Any], params: BlockParams) -> dict[str, Any]:
        assert isinstance(params, AugmentParams)
        data: ImageSet = inputs["images"]
        extra = augment(data.train_x, params.copies, params.degrees, params.shift, params.noise, params.seed)
        ctx.log_metric("train_images", len(data.train_y) * (1 + params.copies))
        return {
            "images": replace(
                data,
                train_x=np.concatenate([data.train_x, extra]),
                train_y=np.concatenate([data.train_y, np.tile(data.train_y, params.copies)]),
            )
        }
