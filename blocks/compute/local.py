"""compute.local: the embedded tier — this machine's GPU when present, else its CPU."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from blocks import COMPUTE_PROVIDER
from builder.errors import RunError
from builder.ports import Port, PortType
from builder.registry import register_block
from builder.spec import Block, BlockParams, Kind, Price, PriceUnit


class LocalComputeParams(BlockParams):
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto uses CUDA when a GPU is present")
    threads: int = Field(0, ge=0, le=256, description="CPU threads for torch; 0 keeps torch's default")


def resolve_device(params: LocalComputeParams) -> str:
    """The torch device string for these params; refuses `cuda` on a machine without a GPU."""
    if params.device == "cuda" and not torch.cuda.is_available():
        raise RunError("the pipeline asks for device 'cuda' but this machine has no usable GPU; use 'auto' or 'cpu'")
    if params.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return params.device


@register_block
class LocalCompute(Block):
    id = "compute.local"
    version = "1.0.0"
    kind = Kind.COMPUTE
    domain = "compute"
    outputs = (Port("tier", PortType.COMPUTE_TIER, "the device steps run on"),)
    Params = LocalComputeParams
    price = Price(10**12, PriceUnit.DEVICE_SECOND)  # 0.000001 AIC per device second
    provider = COMPUTE_PROVIDER
    license = "proprietary"
    description = "This machine: its CUDA GPU when present, otherwise its CPU cores."
