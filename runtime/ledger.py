"""The usage ledger: billable records, written in the same transaction as the state change they bill."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from runtime.db import Usage


def compute_amount(price_per_second_wei: int, seconds: float) -> int:
    """Wei owed for `seconds` of device time, rounded half-up to a whole wei."""
    return int((Decimal(price_per_second_wei) * Decimal(repr(seconds))).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def per_call_amount(price_per_1k_wei: int, calls: int = 1) -> int:
    """Wei owed for `calls` served calls at a per-1k-calls price (prices are multiples of 1000 wei)."""
    return price_per_1k_wei * calls // 1000


def add_usage(
    session: Session,
    *,
    bill_key: str,
    block_id: str,
    version: str,
    provider: str,
    quantity: float,
    unit: str,
    amount_wei: int,
    run_id: str | None = None,
    service_id: str | None = None,
    node_id: str | None = None,
) -> Usage:
    """Add one usage record to `session` (the caller commits it together with the state change it bills); a bill
    key already on record is billed once: that record is returned unchanged (a run redone after a provider's work
    was rejected owes each block its run price once)."""
    existing = session.scalar(select(Usage).where(Usage.bill_key == bill_key))
    if existing is not None:
        return existing
    record = Usage(
        bill_key=bill_key,
        run_id=run_id,
        service_id=service_id,
        node_id=node_id,
        block_id=block_id,
        version=version,
        provider=provider,
        quantity=quantity,
        unit=unit,
        amount_wei=amount_wei,
    )
    session.add(record)
    return record


def add_compute_usage(
    session: Session, *, run_id: str, node_id: str, compute: Mapping[str, Any], seconds: float, attempt: int = 0
) -> Usage:
    """Bill `seconds` of device time of step `node_id` to the plan's compute tier (`compute`: the Plan's step dict);
    a run resumed after a preemption bills each attempt's time separately (each to its own provider)."""
    return add_usage(
        session,
        bill_key=f"run:{run_id}:step:{node_id}:compute" + (f":attempt-{attempt}" if attempt > 1 else ""),
        run_id=run_id,
        node_id=node_id,
        block_id=compute["block_id"],
        version=compute["version"],
        provider=compute["provider"],
        quantity=round(seconds, 6),
        unit=compute["price"]["unit"],
        amount_wei=compute_amount(compute["price"]["amount_wei"], seconds),
    )


def usage_dict(u: Usage) -> dict[str, Any]:
    """A usage record as plain JSON-ready data."""
    return {
        "id": u.id,
        "run_id": u.run_id,
        "service_id": u.service_id,
        "node_id": u.node_id,
        "block_id": u.block_id,
        "version": u.version,
        "provider": u.provider,
        "quantity": u.quantity,
        "unit": u.unit,
        "amount_wei": u.amount_wei,
        "created_at": u.created_at.isoformat() if u.created_at else None,
        "settled_tx": u.settled_tx,
    }


def list_usage(
    session: Session, run_id: str | None = None, service_id: str | None = None, limit: int | None = None
) -> list[Usage]:
    """Usage records, optionally of one run or one service, oldest first."""
    q = select(Usage).order_by(Usage.id)
    if run_id:
        q = q.where(Usage.run_id == run_id)
    if service_id:
        q = q.where(Usage.service_id == service_id)
    if limit:
        q = q.limit(limit)
    return list(session.scalars(q))


__all__ = ["add_compute_usage", "add_usage", "compute_amount", "list_usage", "per_call_amount", "usage_dict"]
