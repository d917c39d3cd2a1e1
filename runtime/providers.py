"""Provider agents' compute offers: hardware detection, the tier check, registration and heartbeats.

A provider agent (`aib provider start`) detects its hardware, refuses a tier the machine cannot serve, records
its offer here, runs a Prefect worker for its tier and sends a heartbeat every few seconds. The allocator only
considers offers whose heartbeat is fresh.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from builder.errors import AibError
from runtime.allocator import TIERS, Provider
from runtime.db import ProviderRow, Run, utcnow


def _heartbeat_seconds() -> float:
    raw = os.environ.get("AIB_HEARTBEAT_SECONDS") or "5"
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0.5 <= value <= 600:  # (also refuses nan) a process that cannot beat as its peers expect must not start
        raise SystemExit(f"AIB_HEARTBEAT_SECONDS is {raw!r}: set it to a number of seconds from 0.5 to 600 (default 5)")
    return value


# How often an agent says it is alive (AIB_HEARTBEAT_SECONDS, default 5). The deadlines built on it are multiples:
# an offer silent for six beats is offline; a run on it is given up after three more (runtime/distributed.py), a
# leased step silent for three beats is lost (runtime/protocol/leases.py). Tests shorten it to see a provider vanish
# in seconds; every process that judges or sends heartbeats must see the same value.
HEARTBEAT_SECONDS = _heartbeat_seconds()
HEARTBEAT_DEADLINE = timedelta(seconds=6 * HEARTBEAT_SECONDS)  # an offer without a heartbeat for this long is offline
# What each tier needs: a CUDA GPU with at least this much memory (the CPU tier needs nothing).
TIER_GPU_MEMORY_GB = {"cpu": None, "gpu-small": 8.0, "gpu-medium": 24.0, "gpu-large": 48.0}


class OfferError(AibError):
    """A provider's offer that cannot be accepted (bad price, a tier the hardware lacks, …)."""


@dataclass(frozen=True)
class Hardware:
    """What a machine has: CUDA devices (name, GB) or none, CPU cores and RAM."""

    gpus: tuple[tuple[str, float], ...]
    cpu_cores: int
    ram_gb: float

    def to_dict(self) -> dict[str, Any]:
        return {"gpus": [{"name": n, "memory_gb": m} for n, m in self.gpus], "cpu_cores": self.cpu_cores,
                "ram_gb": self.ram_gb}  # fmt: skip

    @property
    def summary(self) -> str:
        gpus = ", ".join(f"{n} ({m:.0f} GB)" for n, m in self.gpus) or "no CUDA GPU"
        return f"{gpus}; {self.cpu_cores} CPU cores, {self.ram_gb:.0f} GB RAM"


def detect_hardware() -> Hardware:
    """This machine's CUDA devices (through torch) and CPU cores and RAM."""
    import torch

    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            gpus.append((props.name, round(props.total_memory / 2**30, 1)))
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return Hardware(tuple(gpus), os.cpu_count() or 1, round(ram, 1))


def check_tier(tier: str, hw: Hardware) -> float:
    """The memory (GB) the offer brings to `tier`; OfferError in one sentence when the hardware lacks it."""
    if tier not in TIER_GPU_MEMORY_GB:
        raise OfferError(f"unknown compute tier {tier!r}; the tiers are {', '.join(TIERS)}")
    need = TIER_GPU_MEMORY_GB[tier]
    if need is None:
        return hw.ram_gb
    if not hw.gpus:
        raise OfferError(f"tier {tier} needs a CUDA GPU with at least {need:g} GB; this machine has none "
                         "(torch sees no CUDA device), so it can offer tier cpu only")  # fmt: skip
    best = max(m for _, m in hw.gpus)
    if best < need:
        raise OfferError(f"tier {tier} needs a CUDA GPU with at least {need:g} GB; the largest here has {best:g} GB")
    return best


def provider_id(name: str, tier: str, owner: str | None = None) -> str:
    """A stable id for an agent's offer: the same name and tier on the same host (or, for a provider speaking the
    protocol, of the same wallet: a stranger cannot take over another's offer) get the same id."""
    digest = hashlib.sha256(f"{owner or socket.gethostname()}|{name}|{tier}".encode()).hexdigest()[:10]
    return f"prov-{digest}"


def register_offer(
    s: Session,
    *,
    name: str,
    tier: str,
    price_wei_per_s: int,
    hardware: Hardware,
    slots: int = 1,
    region: str = "",
    datasets: list[str] | None = None,
    pid: int | None = None,
    status: str = "online",
    owner: str | None = None,
) -> ProviderRow:
    """Record (or renew) an offer as online (or `starting`: not placed on until a heartbeat marks it online);
    OfferError for a tier the hardware cannot serve or a bad price."""
    memory = check_tier(tier, hardware)
    if price_wei_per_s <= 0:
        raise OfferError("the price must be above 0 AIC per device-hour")
    if not 1 <= slots <= 64:
        raise OfferError(f"slots must be between 1 and 64, not {slots}")
    pid_ = provider_id(name, tier, owner)
    row = s.get(ProviderRow, pid_) or ProviderRow(id=pid_, reputation=1.0)
    row.name, row.tier, row.price_wei_per_s, row.memory_gb, row.slots = name, tier, price_wei_per_s, memory, slots
    row.region, row.hardware, row.datasets = region, hardware.to_dict(), sorted(datasets or [])
    row.status, row.pid, row.heartbeat_at = status, pid, utcnow()
    s.add(row)
    return row


def heartbeat(s: Session, pid_: str, datasets: list[str] | None = None) -> None:
    """Mark an offer alive now (and refresh the data it holds)."""
    row = s.get(ProviderRow, pid_)
    if row is not None:
        row.heartbeat_at, row.status = utcnow(), "online"
        if datasets is not None:
            row.datasets = sorted(datasets)


def mark_stopped(s: Session, pid_: str) -> None:
    """The agent has stopped: its offer is no longer placed on."""
    row = s.get(ProviderRow, pid_)
    if row is not None:
        row.status, row.pid = "stopped", None


def is_online(row: ProviderRow) -> bool:
    """Online and heard from within the heartbeat deadline."""
    return row.status == "online" and row.heartbeat_at is not None and utcnow() - row.heartbeat_at < HEARTBEAT_DEADLINE


def busy_runs(s: Session) -> dict[str, int]:
    """Runs queued or running per provider (its current load)."""
    rows = s.execute(select(Run.provider_id).where(Run.provider_id.is_not(None), Run.status.in_(("queued", "running"))))
    load: dict[str, int] = {}
    for (pid_,) in rows:
        load[pid_] = load.get(pid_, 0) + 1
    return load


def offers(s: Session) -> list[Provider]:
    """Every recorded offer as the allocator sees it (offline ones included, marked not alive)."""
    load = busy_runs(s)
    return [
        Provider(
            id=row.id,
            tier=row.tier,
            memory_gb=row.memory_gb,
            price_wei_per_s=int(row.price_wei_per_s),
            reputation=row.reputation,
            slots=row.slots,
            load=load.get(row.id, 0),
            datasets=frozenset(row.datasets or []),
            region=row.region or "",
            alive=is_online(row),
        )
        for row in s.scalars(select(ProviderRow).order_by(ProviderRow.id))
    ]


def offer_rows(s: Session) -> list[dict[str, Any]]:
    """Every offer as plain data (what `aib providers list --json` prints and the Provide page shows)."""
    load = busy_runs(s)
    return [
        {
            "id": r.id,
            "name": r.name,
            "tier": r.tier,
            "price_per_hour_wei": int(r.price_wei_per_s) * 3600,
            "memory_gb": r.memory_gb,
            "slots": r.slots,
            "load": load.get(r.id, 0),
            "reputation": r.reputation,
            "online": is_online(r),
            "hardware": r.hardware,
            "datasets": r.datasets,
            "asset_id": r.asset_id,  # its compute-offer asset on chain (None without a chain)
            "wallet": r.wallet,
            "via": r.via or "local",  # "api": a provider on another machine (the provider protocol)
            "heartbeat_at": r.heartbeat_at.isoformat() if r.heartbeat_at else None,
        }
        for r in s.scalars(select(ProviderRow).order_by(ProviderRow.id))
    ]


def held_datasets(data_dir: str | None) -> list[str]:
    """Content hashes of the data this machine holds: published datasets and digitized shards (locality)."""
    from pathlib import Path

    from runtime.config import get_settings

    found = set()
    roots = [get_settings().home / "datasets"] + ([Path(data_dir)] if data_dir else [])
    for root in roots:
        if root.is_dir():
            found |= {p.name for p in root.iterdir() if p.name.startswith("ds-")}
    shards = get_settings().cache_dir / "shards"
    if shards.is_dir():
        found |= {f"raw-{p.name}" for p in shards.iterdir() if p.is_dir()}
    return sorted(found)


__all__ = [
    "HEARTBEAT_DEADLINE",
    "Hardware",
    "OfferError",
    "check_tier",
    "detect_hardware",
    "heartbeat",
    "held_datasets",
    "is_online",
    "mark_stopped",
    "offer_rows",
    "offers",
    "provider_id",
    "register_offer",
]
