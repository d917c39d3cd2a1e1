"""Storage providers, coordinator side: stores, the sealed shards placed on them, spot checks, and what they are owed.

A store (`aib provider start --coordinator URL --storage GB --price-gb-month P`) signs in like any provider and
registers where its blobs are fetched from, its region, capacity and prices. When a run's training is leased, its
sealed data shards are placed on `AIB_STORAGE_REPLICAS` stores (default 2; distinct regions first, then cheapest);
each store downloads them from the coordinator and says it holds them. A leased provider is sent each shard from
the nearest store that holds it (its own region first), and from the coordinator when none can.

What a store is paid is the coordinator's own count, never the store's word:
- **held**: GB-months for each replica, up to its last passed **spot check** (the coordinator fetched the blob
  whole from the store and it hashed right). A replica that fails a check is ended: the time since its last passed
  check is never paid, the store's reputation halves, and the shard is placed on another store;
- **served**: GB of the shards a lease was directed to fetch from it, when the coordinator did not send them itself.
Both are usage records (`gb-month`, `gb-served`) paid by `aib settle storage` in one settleBatch transaction.
"""

from __future__ import annotations

import hashlib
import os
import random
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from runtime.db import Replica, Store, Usage, utcnow
from runtime.protocol.hosting import heard_within, owned

STORE_HEARTBEAT_DEADLINE = timedelta(seconds=30)
MIN_REPUTATION = 0.5
CAUGHT_FACTOR = 0.5
GB = 10**9
MONTH_SECONDS = 30 * 24 * 3600
HELD_UNIT, SERVED_UNIT = "gb-month", "gb-served"
LIVE = ("assigned", "held")  # a replica the store is to hold
CHECK_TIMEOUT = httpx.Timeout(60.0, connect=3.0)


def replicas_wanted() -> int:
    """How many stores each sealed shard is placed on (AIB_STORAGE_REPLICAS, default 2)."""
    try:
        return max(1, int(os.environ.get("AIB_STORAGE_REPLICAS", "2")))
    except ValueError:
        return 2


def store_id(wallet: str, name: str) -> str:
    """A stable id per wallet and name (a stranger cannot take over another wallet's store)."""
    return "store-" + hashlib.sha256(f"{wallet}|{name}".encode()).hexdigest()[:10]


def register_store(s: Session, *, wallet: str, name: str, url: str, region: str, capacity_bytes: int,
                   price_gb_month_wei: int, price_gb_served_wei: int) -> Store:  # fmt: skip
    """Record (or renew) the store of `wallet` named `name` as online."""
    row = s.get(Store, store_id(wallet, name)) or Store(id=store_id(wallet, name), reputation=1.0)
    row.name, row.wallet, row.url, row.region, row.capacity_bytes = name, wallet, url, region, capacity_bytes
    row.price_gb_month_wei, row.price_gb_served_wei = price_gb_month_wei, price_gb_served_wei
    row.status, row.heartbeat_at = "online", utcnow()
    s.add(row)
    return row


def own_store(s: Session, store: str, wallet: str) -> Store:
    """The store `store` if `wallet` owns it; 404 otherwise."""
    return owned(s, Store, store, wallet, "store")


def store_online(row: Store) -> bool:
    """Online and heard from within the deadline."""
    return heard_within(row, STORE_HEARTBEAT_DEADLINE)


def beat(s: Session, store: Store, held: list[str]) -> list[dict[str, Any]]:
    """The store is alive and holds `held` (sealed hashes); what it must hold now."""
    store.heartbeat_at, store.status = utcnow(), "online"
    rows = list(s.scalars(select(Replica).where(Replica.store_id == store.id, Replica.status.in_(LIVE))))
    have = set(held)
    for row in rows:
        if row.status == "assigned" and row.sealed_sha256 in have:
            row.status, row.held_at = "held", utcnow()
    return [{"sealed_sha256": r.sealed_sha256, "size": r.size} for r in rows]


def readable(s: Session, store: Store) -> set[str]:
    """The sealed blobs a store may download from the coordinator: those placed on it and not ended."""
    rows = s.scalars(select(Replica.sealed_sha256).where(Replica.store_id == store.id, Replica.status.in_(LIVE)))
    return set(rows)


def _used_bytes(s: Session, store: Store) -> int:
    rows = s.scalars(select(Replica.size).where(Replica.store_id == store.id, Replica.status.in_(LIVE)))
    return sum(rows)


def place(s: Session, entries: list[dict[str, Any]], factor: int | None = None) -> int:
    """Place each sealed blob (job entries: sealed_sha256, size) on stores until `factor` live replicas hold or will
    hold it: online stores with room and a good reputation, other regions than its holders' first, then cheapest;
    never twice on one store, never again on a store it failed on. How many replicas were added."""
    factor = factor or replicas_wanted()
    stores = [x for x in s.scalars(select(Store)) if store_online(x) and x.reputation >= MIN_REPUTATION]
    added = 0
    for entry in entries:
        digest, size = entry["sealed_sha256"], int(entry.get("sealed_size") or entry["size"])
        rows = list(s.scalars(select(Replica).where(Replica.sealed_sha256 == digest)))
        # Replicas on stores offline now do not count: the shard is placed elsewhere meanwhile.
        live = [r for r in rows if r.status in LIVE and store_online(s.get(Store, r.store_id))]
        tried = {r.store_id for r in rows}  # a store that failed a shard's check never holds it again
        regions = {s.get(Store, r.store_id).region for r in live}
        free = [x for x in stores if x.id not in tried and _used_bytes(s, x) + size <= int(x.capacity_bytes)]
        free.sort(key=lambda x: (x.region in regions, int(x.price_gb_month_wei), -x.reputation, x.id))
        for store in free[: max(0, factor - len(live))]:
            s.add(Replica(store_id=store.id, sealed_sha256=digest, size=size, status="assigned", checks=0))
            regions.add(store.region)
            added += 1
        s.flush()
    return added


def ensure_asset(store: Store) -> int:
    """The store's offer asset, registered by the coordinator the first time it is paid (so that placing shards,
    which any signed-in store may get, costs no transaction), owned by the wallet it proved it holds."""
    from runtime.work_receipts import ensure_offer_asset

    if store.asset_id is not None:
        return store.asset_id

    view = SimpleNamespace(id=store.id, name=store.name, tier="storage", hardware={"region": store.region},
                           price_wei_per_s=int(store.price_gb_month_wei))  # fmt: skip
    store.asset_id = ensure_offer_asset(view, store.wallet, sender=None)
    return store.asset_id


def source_for(s: Session, sealed_sha256: str, region: str) -> Store | None:
    """The store a lease in `region` fetches a sealed blob from: one holding it (its last check passed, or not yet
    checked), online, in the same region first, then the best reputation and the cheapest to serve."""
    rows = s.scalars(select(Replica).where(Replica.sealed_sha256 == sealed_sha256, Replica.status == "held"))
    stores = [x for x in (s.get(Store, r.store_id) for r in rows) if x is not None and store_online(x)]
    stores.sort(key=lambda x: (x.region != region, -x.reputation, int(x.price_gb_served_wei), x.id))
    return stores[0] if stores else None


def holder_region(s: Session, sealed: list[str]) -> str:
    """Where the shards really are, for the allocator's data locality: the region of the store holding most of
    them ("" when no store holds any: they are at the coordinator)."""
    count: dict[str, int] = {}
    for digest in sealed:
        for r in s.scalars(select(Replica).where(Replica.sealed_sha256 == digest, Replica.status == "held")):
            store = s.get(Store, r.store_id)
            if store is not None and store_online(store):
                count[store.region] = count.get(store.region, 0) + 1
    return max(sorted(count), key=lambda k: count[k]) if count else ""


def record_served(s: Session, lease: Any) -> int:
    """GB-served records for the shards `lease` was directed to fetch from stores and did not get from the
    coordinator (its bytes sent by the coordinator are counted per blob); how many were written."""
    written = 0
    if lease.claimed_at is None:  # never claimed: nothing was fetched
        return 0
    for name, entry in (lease.job.get("inputs") or {}).items():
        source = entry.get("source")
        if not source or (lease.served or {}).get(entry["sealed_sha256"], 0):
            continue
        store = s.get(Store, source["store_id"])
        if store is None:
            continue
        size = int(entry.get("sealed_size") or entry["size"])
        amount = int(store.price_gb_served_wei) * size // GB
        key = f"store:{store.id}:served:{lease.id}:{entry['sealed_sha256']}"
        if s.scalar(select(Usage.id).where(Usage.bill_key == key)) is None:
            s.add(Usage(bill_key=key, run_id=None, node_id=name, block_id="storage", version="1", provider=store.id,
                        quantity=size / GB, unit=SERVED_UNIT, amount_wei=amount))  # fmt: skip
            written += 1
    return written


def accrue_held(s: Session) -> int:
    """GB-month records for what each replica held up to its last passed spot check and was not yet billed; how
    many were written. A replica's time after its last passed check is billed only once a later check passes."""
    written = 0
    for r in s.scalars(select(Replica).where(Replica.checked_at.is_not(None))):
        start, end = r.billed_until or r.held_at or r.created_at, r.checked_at
        if end <= start:  # nothing proven since it was last billed
            continue
        store = s.get(Store, r.store_id)
        seconds = (end - start).total_seconds()
        amount = int(store.price_gb_month_wei) * r.size * int(seconds) // (GB * MONTH_SECONDS)
        key = f"store:{store.id}:held:{r.id}:{start.isoformat()}"
        s.add(Usage(bill_key=key, run_id=None, block_id="storage", version="1", provider=store.id,
                    quantity=r.size / GB * seconds / MONTH_SECONDS, unit=HELD_UNIT, amount_wei=amount))  # fmt: skip
        r.billed_until = end
        written += 1
    return written


def check_one(s: Session, replica: Replica, http: httpx.Client | None = None) -> str | None:
    """Spot-check a replica: fetch the blob whole from its store and hash it. Passed: None (it is paid up to now);
    failed: why (it is ended, the store's reputation halves, and the shard is placed on another store)."""
    if replica.status != "held":  # ended meanwhile (another check, or taken off)
        return None
    if http is None:
        with httpx.Client(timeout=CHECK_TIMEOUT) as client:
            return check_one(s, replica, client)
    store = s.get(Store, replica.store_id)
    why = None
    try:
        r = http.get(f"{store.url}/blobs/{replica.sealed_sha256}")
        if r.status_code != 200:
            why = f"it answered HTTP {r.status_code} for a blob it holds"
        elif hashlib.sha256(r.content).hexdigest() != replica.sealed_sha256:
            why = "the blob it returned does not match its hash"
    except httpx.HTTPError as exc:
        why = f"it could not be reached ({type(exc).__name__})"
    if why is None:
        replica.checked_at, replica.checks = utcnow(), replica.checks + 1
        return None
    replica.status, replica.reason = "failed", f"spot check failed: {why}"
    store.reputation = round(store.reputation * CAUGHT_FACTOR, 6)
    s.flush()
    place(s, [{"sealed_sha256": replica.sealed_sha256, "size": replica.size}])
    return why


def check_some(s: Session, count: int = 1, rng: random.Random | None = None) -> list[tuple[int, str | None]]:
    """Spot-check `count` held replicas picked at random among the half checked longest ago (a store cannot tell
    which is next, and none waits much longer than the others): (id, failure)."""
    rng = rng or random.SystemRandom()
    held = list(s.scalars(select(Replica).where(Replica.status == "held")))
    # A store offline (stopped, or no heartbeat) is not checked: it is not paid for the time since its last
    # passed check either way, and is not sent to leases meanwhile.
    held = [r for r in held if store_online(s.get(Store, r.store_id))]
    held.sort(key=lambda r: (r.checked_at is not None, r.checked_at or r.created_at, r.id))
    oldest = held[: max(count, (len(held) + 1) // 2)]
    picked = rng.sample(oldest, min(count, len(oldest)))
    with httpx.Client(timeout=CHECK_TIMEOUT) as http:
        return [(r.id, check_one(s, r, http)) for r in picked]


def store_rows(s: Session) -> list[dict[str, Any]]:
    """Every store with what it holds (`aib providers stores --json`)."""
    out = []
    for x in s.scalars(select(Store).order_by(Store.id)):
        reps = list(s.scalars(select(Replica).where(Replica.store_id == x.id)))
        held = [r for r in reps if r.status == "held"]
        out.append({"id": x.id, "name": x.name, "wallet": x.wallet, "url": x.url, "region": x.region,
                    "capacity_bytes": int(x.capacity_bytes), "held_bytes": sum(r.size for r in held),
                    "replicas": {st: sum(1 for r in reps if r.status == st) for st in ("assigned", "held", "failed")},
                    "price_gb_month_wei": int(x.price_gb_month_wei), "price_gb_served_wei": int(x.price_gb_served_wei),
                    "reputation": x.reputation, "online": store_online(x), "asset_id": x.asset_id})  # fmt: skip
    return out


__all__ = ["GB", "HELD_UNIT", "SERVED_UNIT", "accrue_held", "beat", "check_one", "check_some", "ensure_asset",
           "holder_region",
           "own_store", "place", "readable", "record_served", "register_store", "replicas_wanted", "source_for",
           "store_id", "store_online", "store_rows"]  # fmt: skip
