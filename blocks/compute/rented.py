"""compute.rented: a tier of rented compute; the Resource Allocator picks the provider that runs the pipeline."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from blocks import COMPUTE_PROVIDER
from builder.ports import Port, PortType
from builder.registry import register_block
from builder.spec import Block, BlockParams, Kind, Price, PriceUnit


class RentedComputeParams(BlockParams):
    tier: Literal["cpu", "gpu-small", "gpu-medium", "gpu-large"] = Field(
        "cpu", description="Smallest tier to run on: cpu, or a GPU with ≥ 8 / 24 / 48 GB"
    )
    memory_gb: float = Field(0.0, ge=0.0, le=1024.0, description="Memory the run needs (GPU memory on GPU tiers)")
    max_price_per_hour: float = Field(
        0.0, ge=0.0, description="Most AIC per device-hour you accept; 0: any price (the cheapest still wins)"
    )
    threads: int = Field(0, ge=0, le=256, description="CPU threads for torch on the provider; 0 keeps the default")
    segment_batches: int = Field(
        0,
        ge=0,
        le=1_000_000,
        description="Optimiser steps per verified segment (finer checks and resumes for long epochs); 0: per epoch",
    )


@register_block
class RentedCompute(Block):
    id = "compute.rented"
    version = "1.0.0"
    kind = Kind.COMPUTE
    domain = "compute"
    outputs = (Port("tier", PortType.COMPUTE_TIER, "a provider's machine, chosen by the allocator"),)
    Params = RentedComputeParams
    # The quote's price per device second; the ledger bills the chosen provider's own price.
    price = Price(10**12, PriceUnit.DEVICE_SECOND)
    provider = COMPUTE_PROVIDER
    license = "per provider"
    description = "Rented GPUs or CPUs from providers (`aib provider start`), placed by the Resource Allocator."
