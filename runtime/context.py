"""What a running step sees: its device, its work folder (checkpoints), and hooks to report progress."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from runtime.config import Settings
from runtime.shards import ShardStore


class Reporter(Protocol):
    """Receives live progress of a run (CLI progress bar, database rows for the UI)."""

    def step_started(self, node_id: str, cached: bool) -> None: ...

    def progress(self, node_id: str, done: float, total: float, description: str) -> None: ...

    def metric(self, node_id: str, name: str, value: float, step: int) -> None: ...

    def step_finished(self, node_id: str, status: str) -> None: ...


class NullReporter:
    """A reporter that ignores everything."""

    def step_started(self, node_id: str, cached: bool) -> None:
        pass

    def progress(self, node_id: str, done: float, total: float, description: str) -> None:
        pass

    def metric(self, node_id: str, name: str, value: float, step: int) -> None:
        pass

    def step_finished(self, node_id: str, status: str) -> None:
        pass


def work_dir(settings: Settings, cache_key: str) -> Path:
    """The folder private to a step's cache key: its resume checkpoint and, on rented compute, its segments."""
    return settings.cache_dir / "work" / cache_key


def segments_dir(settings: Settings, cache_key: str) -> Path:
    """Where a rented step's per-segment checkpoints, commitments and layout live (beside its resume checkpoint)."""
    return work_dir(settings, cache_key) / "segments"


@dataclass
class StepContext:
    """Everything a block's `run` may use besides its inputs and params."""

    run_id: str
    node_id: str
    cache_key: str
    device: str
    base_dir: Path
    settings: Settings
    plan: dict[str, Any]
    reporter: Reporter = field(default_factory=NullReporter)
    # Rented (untrusted) compute: keep every epoch's checkpoint and its sha256 (the work's commitments).
    keep_segments: bool = False
    # Optimiser steps per committed segment on rented compute; 0: one segment per epoch.
    segment_batches: int = 0
    # Verification replay on a trusted node: the segments to replay from the provider's checkpoints (cut as the
    # provider's work was, recorded beside them); findings go to `verification`.
    verify_epochs: list[int] | None = None
    verification: dict[str, Any] = field(default_factory=dict)
    # Rented compute over the provider protocol: `fit` hands the training to a provider through this
    # (runtime.protocol.remote.RemoteTraining); None: train here.
    remote: Any = None

    @property
    def work_dir(self) -> Path:
        """A folder private to this step's cache key: checkpoints survive a crash and are resumed."""
        path = work_dir(self.settings, self.cache_key)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def shared_cache_dir(self) -> Path:
        """A folder shared by every run, for content-addressed caches such as text embeddings."""
        path = self.settings.cache_dir / "shared"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def shards(self) -> ShardStore:
        """The digitized-data cache shared by every run (preprocessed tensors by raw data and transform)."""
        return ShardStore(self.settings.cache_dir / "shards")

    @property
    def segments_dir(self) -> Path:
        """Where this step's per-segment checkpoints and commitments live (see `segments_dir`)."""
        return segments_dir(self.settings, self.cache_key)

    def progress(self, done: float, total: float, description: str = "") -> None:
        """Report that `done` of `total` units of this step's work are finished."""
        self.reporter.progress(self.node_id, done, total, description)

    def log_metric(self, name: str, value: float, step: int = 0) -> None:
        """Record one point of a metric series (e.g. loss per epoch)."""
        self.reporter.metric(self.node_id, name, float(value), step)


__all__ = ["NullReporter", "Reporter", "StepContext", "segments_dir", "work_dir"]
