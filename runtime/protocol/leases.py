"""Leases, on the coordinator: what a provider may read and write for one leased training step, and what the
coordinator accepts of what it sends back.

Everything here is decided by the coordinator from what it holds and checks: which sealed blobs a lease may read
(those its job names), which uploads count (those whose bytes hash to a checkpoint the provider committed), where
a resumed step starts (the last checkpoint that arrived whole), and how long the provider worked (the
coordinator's own clock, from claim to end). A provider's word is kept for display only (progress, its pid).
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from builder.errors import AibError
from runtime.db import Lease, ProviderRow, SealedBlob, utcnow
from runtime.protocol.blobs import BlobStore, sha256_bytes
from runtime.protocol.sealing import new_key, seal
from runtime.providers import HEARTBEAT_SECONDS

# A claimed lease silent this long is lost (the provider vanished); its provider beats three times in it.
LEASE_HEARTBEAT_DEADLINE = timedelta(seconds=3 * HEARTBEAT_SECONDS)
MAX_UPLOAD_BYTES = 512 * 1024 * 1024  # the largest single blob a lease may send (a checkpoint)
ENDED = ("completed", "preempted", "released", "lost", "failed", "cancelled")


class LeaseError(AibError):
    """A lease request that is refused; `status` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


def new_lease_id() -> str:
    """A fresh, unguessable lease id."""
    return f"lease-{secrets.token_hex(8)}"


def seal_blob(s: Session, store: BlobStore, plain: bytes) -> dict[str, Any]:
    """Seal `plain` (once per content: the same shard is sealed and stored once) and put it in the store; its
    entry for a job manifest: {sha256, sealed_sha256, size, sealed_size, key}."""
    digest = sha256_bytes(plain)
    row = s.get(SealedBlob, digest)
    if row is None or not store.has(row.sealed_sha256):
        key = new_key()
        sealed = seal(plain, key, digest)
        sealed_digest = store.put_bytes(sealed)
        if row is None:
            row = SealedBlob(plain_sha256=digest)
            s.add(row)
        row.sealed_sha256, row.key, row.size, row.sealed_size = sealed_digest, key.hex(), len(plain), len(sealed)
        s.flush()
    return {
        "sha256": digest,
        "sealed_sha256": row.sealed_sha256,
        "size": row.size,
        "sealed_size": row.sealed_size,
        "key": row.key,
    }


def readable(lease: Lease) -> set[str]:
    """The sealed blobs a lease may download: exactly those its job names."""
    job = lease.job or {}
    return {b["sealed_sha256"] for b in [*job.get("inputs", {}).values(), *job.get("resume_blobs", [])]}


def owned_lease(s: Session, lease_id: str, wallet: str, *, lease_scope: str | None) -> Lease:
    """The lease `lease_id` when it is leased to an offer of `wallet` (and, for a lease token, is the token's own
    lease); LeaseError (404 for another's lease, so ids cannot be probed) otherwise."""
    lease = s.get(Lease, lease_id)
    if lease_scope is not None and lease_scope != lease_id:
        raise LeaseError(f"this token is for lease {lease_scope}, not for {lease_id}", 403)
    provider = s.get(ProviderRow, lease.provider_id) if lease is not None else None
    if lease is None or provider is None or provider.wallet != wallet:
        raise LeaseError(f"there is no lease {lease_id} for this wallet", 404)
    return lease


def claim(s: Session, lease: Lease, pid: int | None) -> Lease:
    """The provider takes an offered lease; LeaseError when it was already taken or has ended."""
    if lease.status != "offered":
        raise LeaseError(f"lease {lease.id} is {lease.status}; it can be claimed once, while offered")
    lease.status, lease.claimed_at, lease.heartbeat_at, lease.pid = "claimed", utcnow(), utcnow(), pid
    return lease


def require_claimed(lease: Lease) -> None:
    """LeaseError unless the lease is claimed and running (an ended lease's token reads and writes nothing)."""
    if lease.status != "claimed":
        raise LeaseError(f"lease {lease.id} is {lease.status}; nothing more is accepted for it", 410)


def beat(lease: Lease, progress: dict[str, Any] | None) -> bool:
    """A lease heartbeat with the provider's progress (display only); whether the coordinator asks it to stop."""
    require_claimed(lease)
    lease.heartbeat_at = utcnow()
    if progress is not None:
        lease.progress = {**(lease.progress or {}), **progress}
    return bool((lease.job or {}).get("stop"))


def accept_upload(lease: Lease, digest: str, name: str, size: int) -> None:
    """Record a whole, hash-checked upload for the lease."""
    require_claimed(lease)
    lease.uploads = {**(lease.uploads or {}), digest: {"name": name, "size": size}}


def record_commitments(lease: Lease, commitments: list[str]) -> None:
    """The provider's claimed checkpoint hashes so far (checked against uploads when the lease ends)."""
    require_claimed(lease)
    if len(commitments) > (lease.job or {}).get("segments", 0) + 1:
        raise LeaseError(f"{len(commitments)} commitments for a step of {lease.job['segments']} segments", 422)
    lease.commitments = list(commitments)


def accepted(lease: Lease) -> list[str]:
    """The commitments that count: those the lease resumed from, then each one whose checkpoint arrived whole, up to
    the first gap (a checkpoint that never came can be neither resumed from nor verified). Work that does not start
    from the checkpoint it was given counts for nothing."""
    job = lease.job or {}
    start = int(job.get("start", 0))
    before = list(job.get("commitments", []))[: start + 1]
    claimed = list(lease.commitments or [])
    uploads = lease.uploads or {}
    if before and (len(claimed) <= start or claimed[start] != before[start]):
        return before
    out = list(before)
    for k in range(len(before), len(claimed)):
        if claimed[k] not in uploads:
            break
        out.append(claimed[k])
    return out


def end(lease: Lease, status: str, reason: str | None) -> None:
    """Close the lease (once)."""
    if lease.status in ENDED:
        raise LeaseError(f"lease {lease.id} already ended ({lease.status})", 410)
    lease.status, lease.reason, lease.finished_at = status, reason, utcnow()


def complete(lease: Lease) -> None:
    """The provider says it finished: accepted only when every segment of the step is committed and each of its
    checkpoints arrived (hash-checked); LeaseError naming the first that did not otherwise."""
    require_claimed(lease)
    segments = int(lease.job["segments"])
    claimed = list(lease.commitments or [])
    if len(claimed) != segments + 1:
        raise LeaseError(f"the step has {segments} segments; {max(len(claimed) - 1, 0)} are committed", 422)
    got = accepted(lease)
    if len(got) != segments + 1:
        k = len(got)
        raise LeaseError(f"the checkpoint of segment {k} (sha256 {claimed[k][:12]}…) was not uploaded", 422)
    end(lease, "completed", None)


def worked_seconds(lease: Lease) -> float:
    """The provider's working time on the coordinator's own clock: from its claim to the lease's end."""
    if lease.claimed_at is None or lease.finished_at is None:
        return 0.0
    return max(0.0, (lease.finished_at - lease.claimed_at).total_seconds())


def bill(lease: Lease, offer_price_wei_per_s: int) -> tuple[float, int]:
    """(seconds, wei per second) a lease is billed: its time on the coordinator's clock, at the price its offer had
    when the lease was placed (recorded in the job: an offer re-registered at another price mid-lease changes
    nothing); `offer_price_wei_per_s` only for leases recorded before prices were."""
    return worked_seconds(lease), int((lease.job or {}).get("price_wei_per_s", offer_price_wei_per_s))


def stale(lease: Lease) -> bool:
    """A claimed lease whose provider has not been heard from within the deadline."""
    return lease.status == "claimed" and (
        lease.heartbeat_at is None or utcnow() - lease.heartbeat_at > LEASE_HEARTBEAT_DEADLINE
    )


def job_json(lease: Lease) -> dict[str, Any]:
    """What the provider is told about its lease: the inputs by hash with their keys, the resume state, settings."""
    job = dict(lease.job or {})
    job.pop("stop", None)
    return {"lease_id": lease.id, "node_id": lease.node_id, "cache_key": lease.cache_key, **job}


def canonical(data: Any) -> bytes:
    """Stable JSON bytes (hashed where a manifest is compared)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


__all__ = [
    "ENDED",
    "LEASE_HEARTBEAT_DEADLINE",
    "LeaseError",
    "accept_upload",
    "accepted",
    "beat",
    "claim",
    "complete",
    "end",
    "job_json",
    "new_lease_id",
    "owned_lease",
    "readable",
    "record_commitments",
    "seal_blob",
    "stale",
    "worked_seconds",
]
