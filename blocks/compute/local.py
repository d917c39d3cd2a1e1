"""compute.local: the embedded tier — this machine's GPU when present, else its CPU."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from blocks import COMPUTE_PROVIDER
from builder.ports import Port, PortType
from builder.registry import register_block
from builder.spec import Block, BlockParams, Kind, Price, PriceUnit


class LocalComputeParams(BlockParams):
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto uses CUDA when a GPU is present")
    threads: int = Field(0, ge=0, le=256, description="CPU threads for torch; 0 keeps torch's default")


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

    def device_request(self, params: LocalComputeParams) -> str:
        """The device named in the pipeline (`auto`: CUDA when a GPU is present)."""
        return params.device
