"""Compute tiers: what a GPU (or CPU) provider offers."""

from blocks.compute.local import LocalCompute
from blocks.compute.rented import RentedCompute

__all__ = ["LocalCompute", "RentedCompute"]
