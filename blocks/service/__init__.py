"""Service blocks: turn a trained model into a served, metered API."""

from blocks.service.api import ServiceApi

__all__ = ["ServiceApi"]
