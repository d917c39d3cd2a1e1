"""Compute tiers: what a GPU (or CPU) provider offers."""

from blocks.compute.local import LocalCompute

__all__ = ["LocalCompute"]
