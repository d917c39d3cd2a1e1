"""Services hosted on providers' machines, coordinator side: hosts, the services placed on them, and what a host
caught answering wrong loses.

A host (`aib provider serve`) signs in like any provider and registers where the gateway reaches it and its price
per 1k calls. `aib serve SERVICE --on-providers` places the service on the cheapest online hosts: each hosting gets
the service's bundle sealed (AES-GCM, key handed to that host alone over its authenticated channel) and a secret
the gateway calls it with. The gateway (runtime/protocol/gateway.py) alone checks API keys and meters calls: a host
never reports usage, so it cannot bill a call the gateway did not forward and see answered.
"""

from __future__ import annotations

import hashlib
import io
import logging
import secrets
import tarfile
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from runtime.db import Host, Hosting, Service, Usage, utcnow
from runtime.protocol import leases as L
from runtime.protocol.blobs import BlobStore

HOST_HEARTBEAT_DEADLINE = timedelta(seconds=30)
MIN_REPUTATION = 0.5  # a host below this gets no new hosting
CAUGHT_FACTOR = 0.5  # what a wrong answer does to a host's reputation
HOSTED_UNIT = "hosted-call"
LIVE = ("assigned", "ready")  # a hosting the host is to serve; "dropped" (it failed) and "caught" (it lied) end it


def host_id(wallet: str, name: str) -> str:
    """A stable id per wallet and name (a stranger cannot take over another wallet's host)."""
    return "host-" + hashlib.sha256(f"{wallet}|{name}".encode()).hexdigest()[:10]


def register_host(s: Session, *, wallet: str, name: str, url: str, call_price_wei: int, hardware: dict) -> Host:
    """Record (or renew) the host of `wallet` named `name` as online."""
    if call_price_wei % 1000:
        raise L.LeaseError("the price per 1k calls must be a whole multiple of 1000 wei (0.000000000000001 AIC)", 422)
    row = s.get(Host, host_id(wallet, name)) or Host(id=host_id(wallet, name), reputation=1.0)
    row.name, row.wallet, row.url, row.call_price_wei, row.hardware = name, wallet, url, call_price_wei, hardware
    row.status, row.heartbeat_at = "online", utcnow()
    s.add(row)
    return row


def owned(s: Session, model: Any, key: str, wallet: str, what: str) -> Any:
    """The `what` (host, store) `key` if `wallet` owns it; 404 otherwise (the same answer as for one that does not
    exist, so ids cannot be probed)."""
    row = s.get(model, key)
    if row is None or row.wallet != wallet:
        raise L.LeaseError(f"there is no {what} {key} of this wallet", 404)
    return row


def heard_within(row: Any, deadline: timedelta) -> bool:
    """Online, and its last heartbeat within `deadline`."""
    return row.status == "online" and row.heartbeat_at is not None and utcnow() - row.heartbeat_at < deadline


def own_host(s: Session, host: str, wallet: str) -> Host:
    """The host `host` if `wallet` owns it; 404 otherwise."""
    return owned(s, Host, host, wallet, "host")


def host_online(row: Host) -> bool:
    """Online and heard from within the deadline."""
    return heard_within(row, HOST_HEARTBEAT_DEADLINE)


def beat(s: Session, host: Host, ready: list[str]) -> list[dict[str, Any]]:
    """The host is alive and serves `ready` (service ids it has loaded); what it must host now (each with its
    bundle entry and the gateway's secret)."""
    host.heartbeat_at, host.status = utcnow(), "online"
    rows = list(s.scalars(select(Hosting).where(Hosting.host_id == host.id, Hosting.status.in_(LIVE))))
    for row in rows:
        if row.status == "assigned" and row.service_id in ready:
            row.status, row.ready_at = "ready", utcnow()
        elif row.status == "ready" and row.service_id not in ready:
            row.status = "assigned"  # it restarted: not called until it has loaded the bundle again
    return [{"service_id": r.service_id, "bundle": r.bundle, "secret": r.secret} for r in rows]


def readable(s: Session, host: Host) -> set[str]:
    """The sealed blobs a host may download: the bundles of its hostings that are not dropped."""
    rows = s.scalars(select(Hosting).where(Hosting.host_id == host.id, Hosting.status.in_(LIVE)))
    return {r.bundle["sealed_sha256"] for r in rows}


def bundle_bytes(bundle_dir: Path) -> bytes:
    """A service bundle as one deterministic tar (names sorted, no owners or times): the same bundle, the same hash."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(p for p in bundle_dir.rglob("*") if p.is_file()):
            info = tarfile.TarInfo(path.relative_to(bundle_dir).as_posix())
            info.size, info.mode, info.mtime = path.stat().st_size, 0o600, 0
            with open(path, "rb") as f:
                tar.addfile(info, f)
    return buf.getvalue()


def place(s: Session, service: Service, replicas: int) -> list[Hosting]:
    """The service's live hostings, placing it on more online hosts (cheapest, then best reputation) until
    `replicas` are live. A host caught answering wrong for it is never chosen again for it; one taken off for
    failing (unreachable, errors) may be, once it is back online."""
    rows = {h.host_id: h for h in s.scalars(select(Hosting).where(Hosting.service_id == service.id))}
    live = [h for h in rows.values() if h.status in LIVE and host_online(s.get(Host, h.host_id))]
    if len(live) >= replicas:
        return live
    candidates = [h for h in s.scalars(select(Host)) if host_online(h) and h.reputation >= MIN_REPUTATION
                  and (h.id not in rows or rows[h.id].status == "dropped")]  # fmt: skip
    candidates.sort(key=lambda h: (int(h.call_price_wei), -h.reputation, h.id))
    chosen: list[Host] = []
    for host in candidates:
        if len(live) + len(chosen) >= replicas:
            break
        if _asset_ready(s, host):
            chosen.append(host)
    if chosen:  # sealed only when it goes somewhere (a bundle can be hundreds of MB)
        entry = L.seal_blob(s, BlobStore(), bundle_bytes(Path(service.bundle_dir)))
    for host in chosen:
        row = rows.get(host.id) or Hosting(service_id=service.id, host_id=host.id)
        row.status, row.bundle, row.secret, row.reason = "assigned", entry, secrets.token_hex(32), None
        row.ready_at = None
        s.add(row)
        live.append(row)
    s.flush()
    return live


def _asset_ready(s: Session, host: Host) -> bool:
    """Whether the host can be paid (its asset registered, or payments off); a chain that refuses is said in the
    log and the host is passed over this time (the service is placed elsewhere, or answered by the gateway)."""
    from builder.errors import ChainError

    try:
        _ensure_asset(s, host)
        return True
    except ChainError as exc:
        logging.getLogger("aib.hosting").warning("host %s passed over: its offer asset cannot be registered: %s",
                                                 host.id, exc)  # fmt: skip
        return False


def _ensure_asset(s: Session, host: Host) -> None:
    """With the chain running: the host's offer asset, registered by the coordinator at its first hosting and
    owned by the wallet it proved it holds (settlement pays its served calls there)."""
    from runtime.chain_node import payments_enabled

    if host.asset_id is not None or not payments_enabled():
        return
    from runtime.work_receipts import ensure_offer_asset

    view = SimpleNamespace(id=host.id, name=host.name, tier="serve", hardware=host.hardware,
                           price_wei_per_s=int(host.call_price_wei))  # fmt: skip
    host.asset_id = ensure_offer_asset(view, host.wallet, sender=None)


def ready_hostings(s: Session, service_id: str) -> list[tuple[Hosting, Host]]:
    """The hostings of a service that answer calls now: loaded, and their host online."""
    rows = s.scalars(select(Hosting).where(Hosting.service_id == service_id, Hosting.status == "ready"))
    pairs = [(h, s.get(Host, h.host_id)) for h in rows]
    return [(h, host) for h, host in pairs if host is not None and host_online(host)]


def drop(s: Session, hosting_id: int, reason: str, *, caught: bool) -> int:
    """Take a service off a host with `reason` ("dropped"; it may be placed there again once back online).
    `caught` (it answered wrong; "caught", never placed there again): its reputation is cut and its calls not yet
    paid are not paid (their hosting amount is set to 0); how many calls it forfeited."""
    row = s.get(Hosting, hosting_id)
    if row is None or row.status not in LIVE:
        return 0
    row.status, row.reason = ("caught" if caught else "dropped"), reason
    if not caught:
        return 0
    host = s.get(Host, row.host_id)
    host.reputation = round(host.reputation * CAUGHT_FACTOR, 6)
    forfeited = s.execute(
        update(Usage)
        .where(Usage.service_id == row.service_id, Usage.unit == HOSTED_UNIT, Usage.provider == row.host_id,
               Usage.batch_id.is_(None))
        .values(amount_wei=0)
    ).rowcount  # fmt: skip
    return int(forfeited or 0)


def host_rows(s: Session) -> list[dict[str, Any]]:
    """Every host with what it serves (`aib providers list --json`'s hosts)."""
    out = []
    for h in s.scalars(select(Host).order_by(Host.id)):
        services = {r.service_id: r.status for r in s.scalars(select(Hosting).where(Hosting.host_id == h.id))}
        out.append({"id": h.id, "name": h.name, "wallet": h.wallet, "url": h.url,
                    "price_per_1k_calls_wei": int(h.call_price_wei), "reputation": h.reputation,
                    "online": host_online(h), "asset_id": h.asset_id, "services": services})  # fmt: skip
    return out


__all__ = ["HOSTED_UNIT", "beat", "bundle_bytes", "drop", "host_id", "host_online", "host_rows", "own_host", "place",
           "readable", "ready_hostings", "register_host"]  # fmt: skip
