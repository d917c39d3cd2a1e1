"""A leased training step on the provider's machine: what its worker runs for a lease's flow run.

It claims the lease, fetches the sealed inputs it names (digitized tensors and the training program; from the
local cache when held), trains with the ordinary deterministic `fit` in its own work folder, and sends every
committed checkpoint back by hash as it is made, with heartbeats and progress. SIGUSR1 (the agent taking the
machine back) stops it at once: what was sent stays, the lease is released as preempted and the step resumes on
another provider. It reads and writes only through the coordinator API and its own AIB_HOME (it needs no Prefect
credentials: the agent's worker pulled the flow run and started it, runtime/fixed_worker.py).
"""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

from runtime.protocol.client import (
    BlobCache,
    Coordinator,
    CoordinatorError,
    agent_state_dir,
    provider_key,
    read_agent_state,
)

SYNC_SECONDS = 0.5


class _LeaseReporter:
    """Collects progress and metric points for the next heartbeat."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.points: list[dict[str, Any]] = []
        self.done: float | None = None
        self.total: float | None = None
        self.description = ""

    def step_started(self, node_id: str, cached: bool) -> None:
        pass

    def step_finished(self, node_id: str, status: str) -> None:
        pass

    def progress(self, node_id: str, done: float, total: float, description: str) -> None:
        with self.lock:
            self.done, self.total, self.description = done, total, description

    def metric(self, node_id: str, name: str, value: float, step: int) -> None:
        with self.lock:
            self.points.append({"name": name, "value": float(value), "step": int(step)})

    def take(self) -> dict[str, Any]:
        with self.lock:
            out = {"done": self.done, "total": self.total, "description": self.description[:200],
                   "points": self.points}  # fmt: skip
            self.points = []
        return out


class _Sync:
    """Sends what the training committed (checkpoints by hash, then the commitments) and heartbeats."""

    def __init__(self, coord: Coordinator, lease_id: str, token: str, segments: Path, reporter: _LeaseReporter) -> None:
        self.coord, self.lease_id, self.token, self.segments = coord, lease_id, token, segments
        self.reporter = reporter
        self.sent: set[str] = set()
        self.posted: list[str] = []
        self.stop_asked = False

    def once(self) -> None:
        try:
            commitments = json.loads((self.segments / "commitments.json").read_text())
        except (OSError, ValueError):
            commitments = []
        # Commit first, then send: whatever arrives is already claimed, so a machine that dies mid-way leaves the
        # coordinator every checkpoint that arrived, in order, to resume from.
        if commitments != self.posted:
            self.coord.request("POST", f"/v1/leases/{self.lease_id}/commitments", token=self.token,
                               json={"commitments": commitments})  # fmt: skip
            self.posted = commitments
        for k, digest in enumerate(commitments):
            if digest and digest not in self.sent:
                data = (self.segments / f"epoch-{k}.pt").read_bytes()
                if self.coord.upload(self.lease_id, self.token, f"epoch-{k}.pt", data) == digest:
                    self.sent.add(digest)
        beat = self.coord.request("POST", f"/v1/leases/{self.lease_id}/heartbeat", token=self.token,
                                  json=self.reporter.take()).json()  # fmt: skip
        self.token, self.stop_asked = beat["token"], bool(beat["stop"])

    def loop(self, stop: threading.Event) -> None:
        while not stop.wait(SYNC_SECONDS):
            try:
                self.once()
            except CoordinatorError as exc:
                self.coord.say(f"lease {self.lease_id}: {exc}")


def _arrays(blobs: dict[str, bytes]) -> dict[str, Any]:
    import numpy as np
    import torch

    return {name: torch.from_numpy(np.load(io.BytesIO(data), allow_pickle=False)) for name, data in blobs.items()}


def run_lease(lease_id: str) -> str:
    """Claim and run lease `lease_id` here; how it ended (completed, preempted, released or failed)."""
    import torch

    from runtime.config import get_settings
    from runtime.context import StepContext
    from runtime.runner import Preempted, resolve_device
    from runtime.training import fit

    state = read_agent_state()
    coord = Coordinator(state["coordinator"], provider_key())
    got = coord.call("POST", f"/v1/leases/{lease_id}/claim", json={"pid": os.getpid()})
    token, job = got["token"], got["job"]
    pids = agent_state_dir() / "leases"
    pids.mkdir(parents=True, exist_ok=True)
    (pids / f"{lease_id}.pid").write_text(str(os.getpid()))
    reporter = _LeaseReporter()
    settings = get_settings()
    ctx = StepContext(run_id=job["run_id"], node_id=job["node_id"], cache_key=lease_id, device=resolve_device("auto"),
                      base_dir=settings.home, settings=settings, plan={}, reporter=reporter, keep_segments=True,
                      segment_batches=int(job["layout"]))  # fmt: skip
    sync = _Sync(coord, lease_id, token, ctx.segments_dir, reporter)
    stop = threading.Event()

    def preempt(signum: int, frame: Any) -> None:
        raise Preempted()

    previous = signal.signal(signal.SIGUSR1, preempt)
    syncer: threading.Thread | None = None
    outcome, reason = "completed", None
    try:
        cache = BlobCache()
        where = f"/v1/leases/{lease_id}/blobs"
        plain = {name: coord.download(where, token, entry, cache) for name, entry in job["inputs"].items()}
        # The program (the model, its optimiser, loss and score) is the coordinator's own, sealed under a key only it
        # and this lease hold (AES-GCM authenticates it): the provider trusts it as it trusts the coordinator.
        program = torch.load(io.BytesIO(plain.pop("program")), map_location="cpu", weights_only=False)
        data = _arrays(plain)
        if job.get("resume"):
            resume = coord.download(where, token, job["resume"], cache)
            ctx.work_dir.joinpath("checkpoint.pt").write_bytes(resume)
            ctx.segments_dir.mkdir(parents=True, exist_ok=True)
            (ctx.segments_dir / "commitments.json").write_text(json.dumps(job["commitments"]))
            (ctx.segments_dir / "layout.json").write_text(json.dumps({"segment_batches": int(job["layout"])}))
            (ctx.segments_dir / f"epoch-{job['start']}.pt").write_bytes(resume)
            sync.sent.update(job["commitments"])  # the coordinator holds these already
        syncer = threading.Thread(target=sync.loop, args=(stop,), daemon=True)
        syncer.start()
        module = program["module"].to(ctx.device)
        d = ctx.device
        fit(ctx, module, program["optimizer"], (data["x"].to(d), data["y"].to(d), data["ex"].to(d), data["ey"].to(d)),
            epochs=int(job["epochs"]), batch_size=int(job["batch_size"]), seed=int(job["seed"]),
            loss_fn=program.get("loss_fn"), score=program.get("score"))  # fmt: skip
    except Preempted:
        outcome, reason = "preempted", "the provider took its machine back"
    except OSError as exc:
        outcome = "released"
        reason = ("the provider's disk is full" if exc.errno == errno.ENOSPC else f"the provider hit {exc}")[:500]
    except CoordinatorError:
        raise
    except Exception as exc:
        outcome, reason = "failed", f"{type(exc).__name__}: {exc}"[:500]
    finally:
        signal.signal(signal.SIGUSR1, previous)
        stop.set()
        if syncer is not None:
            syncer.join()
    try:
        if outcome != "released":  # a full disk may hold a half-written checkpoint: send nothing more
            sync.once()  # the last checkpoints, commitments and points
        if outcome == "completed":
            coord.request("POST", f"/v1/leases/{lease_id}/complete", token=sync.token)
        else:
            kind = "preempted" if outcome == "preempted" else ("failed" if outcome == "failed" else "released")
            coord.request("POST", f"/v1/leases/{lease_id}/release", token=sync.token,
                          json={"reason": reason, "kind": kind})  # fmt: skip
    finally:
        (pids / f"{lease_id}.pid").unlink(missing_ok=True)
        coord.close()
    return outcome


if __name__ == "__main__":  # a provider's work (runtime/fixed_worker.lease_command): python -m runtime.protocol.worker
    import sys

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run_lease(sys.argv[1])


__all__ = ["run_lease"]
