"""Rented training over the provider protocol, on the coordinator: `fit` hands a training step to a provider.

The coordinator runs every other step itself (data, digitizing, evaluation, export): only the training loop leaves,
as sealed digitized tensors and a training program, never the raw data. Each attempt is a lease on the provider the
Resource Allocator picks (data locality: offers report the shards they hold). The coordinator follows the lease;
when it ends, the checkpoints that arrived whole become the step's committed work here (what the verifier replays
and where the next provider resumes), and the provider is billed on the coordinator's own clock: completed or
preempted work is paid, a vanished or failed lease is not.
"""

from __future__ import annotations

import copy
import io
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from builder.errors import RunError
from builder.files import atomic_write_bytes
from runtime.db import Lease, ProviderRow, Run, session_factory, utcnow
from runtime.protocol import leases as L
from runtime.protocol import storage as S
from runtime.protocol.blobs import BlobStore

MAX_LEASES = 5  # a step preempted or lost this many times in a row fails rather than chase providers forever
CLAIM_SECONDS = 120.0  # an offered lease nobody claims in this long goes to another provider
POLL_SECONDS = 0.25


def _npy(t: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    np.save(buf, t.detach().cpu().numpy(), allow_pickle=False)
    return buf.getvalue()


@dataclass
class RemoteTraining:
    """Leases a run's training steps to protocol providers (never one in `exclude`); `first`: the provider the run
    was placed on, used for the first lease."""

    run_id: str
    plan: Any
    exclude: set[str] = field(default_factory=set)
    first: str | None = None
    tier: str = "cpu"
    memory_gb: float = 0.0
    max_price_wei_per_s: int | None = None
    leases: list[str] = field(default_factory=list)

    def train(self, ctx: Any, module: torch.nn.Module, opt: torch.optim.Optimizer, data: tuple, *, epochs: int,
              batch_size: int, seed: int, loss_fn: Any, score: Any) -> dict[str, Any]:  # fmt: skip
        """Have providers train `module` as `fit` would; the final training state (weights, optimiser, loss)."""
        from runtime.training import _recorded_layout, segments_per_epoch
        from runtime.verification import state_bytes

        x, y, ex, ey = data
        store = BlobStore()
        # The program carries the architecture, constants (buffers) and optimiser settings; its weights are zeroed
        # (they come from the starting checkpoint), so the same model trained again (another seed, more epochs) is
        # the same blob, which a provider holds already.
        skeleton, skeleton_opt = copy.deepcopy((module, opt))
        with torch.no_grad():
            for p in skeleton.parameters():
                p.zero_()
        program = io.BytesIO()
        torch.save({"module": skeleton.cpu(), "optimizer": skeleton_opt, "loss_fn": loss_fn, "score": score}, program)
        Session = session_factory()
        with Session.begin() as s:
            inputs = {"program": L.seal_blob(s, store, program.getvalue())}
            for name, t in (("x", x), ("y", y), ("ex", ex), ("ey", ey)):
                inputs[name] = L.seal_blob(s, store, _npy(t))
        layout = _recorded_layout(ctx)
        layout = ctx.segment_batches if layout is None else layout
        segments = epochs * segments_per_epoch(len(y), batch_size, layout)
        if not (ctx.work_dir / "checkpoint.pt").exists():  # the first lease starts from our own initial state
            ctx.segments_dir.mkdir(parents=True, exist_ok=True)
            initial = state_bytes(module, opt, epoch=0, loss=float("nan"))
            atomic_write_bytes(ctx.work_dir / "checkpoint.pt", initial)
            atomic_write_bytes(ctx.segments_dir / "epoch-0.pt", initial)
            atomic_write_bytes(ctx.segments_dir / "commitments.json", json.dumps([L.sha256_bytes(initial)]).encode())
            atomic_write_bytes(ctx.segments_dir / "layout.json", json.dumps({"segment_batches": layout}).encode())
        data_shards = frozenset(inputs[n]["sha256"] for n in ("x", "y", "ex", "ey"))
        with Session.begin() as s:  # the sealed data shards on storage providers, if any are online
            S.place(s, [inputs[n] for n in ("x", "y", "ex", "ey")])
        failures: list[str] = []
        for _ in range(MAX_LEASES):
            commitments = json.loads((ctx.segments_dir / "commitments.json").read_text())
            if len(commitments) == segments + 1:  # every segment already here (an earlier lease finished it)
                return torch.load(ctx.work_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
            with Session.begin() as s:
                resume = L.seal_blob(s, store, (ctx.work_dir / "checkpoint.pt").read_bytes())
            provider = self._place(ctx, data_shards, failures, [inputs[n] for n in ("x", "y", "ex", "ey")])
            job = {
                "run_id": self.run_id,
                "price_wei_per_s": int(provider.price_wei_per_s),  # what the lease is billed at (leases.bill)
                "inputs": _with_sources(inputs, provider),
                "resume": resume,
                "resume_blobs": [resume],
                "commitments": commitments,
                "start": len(commitments) - 1,
                "layout": layout,
                "segments": segments,
                "epochs": epochs,
                "batch_size": batch_size,
                "seed": seed,
            }
            lease = self._lease(ctx, provider, job)
            status, why = self._follow(ctx, lease)
            self._install(ctx, lease)
            if status == "completed":
                final = torch.load(ctx.work_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
                if int(final.get("epoch", -1)) == epochs:
                    return final
                why = f"its last checkpoint is after epoch {final.get('epoch')}, not {epochs}"
            self.exclude.add(provider.id)
            failures.append(f"{provider.id}: {why}")
            ctx.reporter.progress(ctx.node_id, 0, 1, f"{provider.id} {why}; resuming on another provider")
        raise RunError(f"no provider finished step {ctx.node_id!r} in {MAX_LEASES} leases: {'; '.join(failures)}")

    def _place(self, ctx: Any, shards: frozenset[str], failures: list[str], entries: list[dict]) -> ProviderRow:
        """The provider for the next lease: the run's first placement, then the allocator's choice among online
        protocol offers not excluded (data locality: holding the shards costs no transfer, and a provider in the
        region of the store that holds them costs less than one elsewhere); records it on the run."""
        from runtime.allocator import RunRequest, allocate
        from runtime.providers import offers

        Session = session_factory()
        with Session.begin() as s:
            run = s.get(Run, self.run_id)
            chosen = self.first if self.first and self.first not in self.exclude else None
            reason = run.allocation
            if chosen is None:
                api = {r.id for r in s.query(ProviderRow).filter(ProviderRow.via == "api")}
                candidates = [o for o in offers(s) if o.id in api and o.id not in self.exclude]
                request = RunRequest(id=self.run_id, tier=self.tier, memory_gb=self.memory_gb, datasets=shards,
                                     data_bytes=sum(int(e["sealed_size"]) for e in entries),
                                     storage_region=S.holder_region(s, [e["sealed_sha256"] for e in entries]),
                                     max_price_wei_per_s=self.max_price_wei_per_s)  # fmt: skip
                [assignment] = allocate([request], candidates)
                if assignment.provider_id is None:
                    so_far = f"{'; '.join(failures)}, and then " if failures else ""
                    raise RunError(f"{so_far}no provider: {assignment.reason}")
                chosen, reason = assignment.provider_id, assignment.reason
            self.first = None
            run.provider_id, run.allocation, run.attempt = chosen, reason, (run.attempt or 0) + (1 if failures else 0)
            row = s.get(ProviderRow, chosen)
        _ensure_offer_asset(row)
        return row

    def _lease(self, ctx: Any, provider: ProviderRow, job: dict[str, Any]) -> Lease:
        """Record the lease (offered) and hand it to the provider's work queue."""
        from runtime.distributed import submit_lease

        Session = session_factory()
        with Session.begin() as s:
            attempt = s.query(Lease).filter(Lease.run_id == self.run_id).count() + 1
            lease = Lease(id=L.new_lease_id(), run_id=self.run_id, node_id=ctx.node_id, cache_key=ctx.cache_key,
                          provider_id=provider.id, attempt=attempt, status="offered", job=job, uploads={},
                          commitments=[], progress={}, served={})  # fmt: skip
            s.add(lease)
        flow_run = submit_lease(lease.id, provider.id, provider.tier)
        with Session.begin() as s:
            s.get(Lease, lease.id).flow_run_id = flow_run
        self.leases.append(lease.id)
        return lease

    def _follow(self, ctx: Any, lease: Lease) -> tuple[str, str]:
        """Wait until the lease ends, showing its progress and metric points; (status, why)."""
        from runtime.distributed import flow_run_state
        from runtime.providers import is_online

        Session = session_factory()
        shown, offered_at, checked = 0, time.monotonic(), 0.0
        while True:
            with Session() as s:
                row = s.get(Lease, lease.id)
                provider = s.get(ProviderRow, row.provider_id)
            points = (row.progress or {}).get("points", [])
            for p in points[shown:]:
                ctx.log_metric(p["name"], p["value"], p.get("step", 0))
            shown = len(points)
            if row.progress.get("total"):
                ctx.progress(row.progress["done"] or 0, row.progress["total"], row.progress.get("description", ""))
            if row.status in L.ENDED:
                return row.status, row.reason or row.status
            lost = None
            if L.stale(row):
                lost = ("lost", f"provider {row.provider_id} stopped answering during the lease")
            elif row.status == "offered" and (time.monotonic() - offered_at > CLAIM_SECONDS or not is_online(provider)):
                lost = ("failed", f"provider {row.provider_id} did not take the lease")
            elif time.monotonic() - checked > 5.0:
                checked = time.monotonic()
                state, message = flow_run_state(row.flow_run_id) if row.flow_run_id else ("", "")
                if state in ("CRASHED", "FAILED", "CANCELLED"):
                    lost = ("failed", f"the provider's worker reported {state.lower()}: {message or 'no reason'}")
            if lost is not None:
                with Session.begin() as s:
                    row = s.get(Lease, lease.id)
                    if row.status not in L.ENDED:
                        L.end(row, *lost)
                continue
            time.sleep(POLL_SECONDS)

    def _install(self, ctx: Any, lease: Lease) -> None:
        """Make the lease's accepted checkpoints this step's committed work here, and bill its time."""
        from runtime.ledger import add_compute_usage

        store = BlobStore()
        Session = session_factory()
        with Session.begin() as s:
            row = s.get(Lease, lease.id)
            got = L.accepted(row)
            have = json.loads((ctx.segments_dir / "commitments.json").read_text())
            for k in range(len(have), len(got)):
                atomic_write_bytes(ctx.segments_dir / f"epoch-{k}.pt", store.read(got[k]))
            if len(got) > len(have):
                atomic_write_bytes(ctx.work_dir / "checkpoint.pt", (ctx.segments_dir / f"epoch-{len(got) - 1}.pt")
                                   .read_bytes())  # fmt: skip
                atomic_write_bytes(ctx.segments_dir / "commitments.json", json.dumps(got).encode())
            if row.status in ("completed", "preempted", "released") and len(got) > len(have):
                provider = s.get(ProviderRow, row.provider_id)
                seconds, price = L.bill(row, int(provider.price_wei_per_s))
                compute = asdict(self.plan.compute)
                compute["provider"] = provider.id
                compute["price"] = {**compute["price"], "amount_wei": price}
                add_compute_usage(s, run_id=self.run_id, node_id=ctx.node_id, compute=compute, seconds=seconds,
                                  attempt=row.attempt)  # fmt: skip
            if row.status in L.ENDED:  # what stores sent it (the coordinator's count), paid by `aib settle storage`
                S.record_served(s, row)
            row.finished_at = row.finished_at or utcnow()


def _with_sources(inputs: dict[str, dict], provider: ProviderRow) -> dict[str, dict]:
    """The job's inputs, each data shard the provider does not hold already naming the store it fetches it from
    (the nearest that holds it; none: from the coordinator)."""
    held = set(provider.datasets or [])
    out = {}
    with session_factory()() as s:
        for name, entry in inputs.items():
            store = None if name == "program" or entry["sha256"] in held else \
                S.source_for(s, entry["sealed_sha256"], provider.region or "")  # fmt: skip
            out[name] = {**entry, "source": {"store_id": store.id, "url": store.url}} if store else dict(entry)
    return out


def _ensure_offer_asset(row: ProviderRow) -> None:
    """With the chain running: the offer's compute-offer asset, registered by the coordinator the first time the
    offer is placed on work, owned by the wallet it proved it holds (settlement pays its compute there)."""
    from runtime.chain_node import payments_enabled

    if row.asset_id is not None or not row.wallet or not payments_enabled():
        return
    from runtime.work_receipts import ensure_offer_asset

    asset = ensure_offer_asset(row, row.wallet, sender=None)
    with session_factory().begin() as s:
        s.get(ProviderRow, row.id).asset_id = asset
    row.asset_id = asset


__all__ = ["RemoteTraining"]
