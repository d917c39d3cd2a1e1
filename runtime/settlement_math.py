"""Pure settlement arithmetic: from a run's usage records to the escrow's payouts, fee and refund."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

BPS = 10_000


def fee_on(payouts_wei: int, fee_bps: int) -> int:
    """The escrow's protocol fee on `payouts_wei` (rounded down, exactly as RunEscrow.feeOn)."""
    return payouts_wei * fee_bps // BPS


def deposit_for(quote_wei: int, compute_quote_wei: int, fee_bps: int) -> int:
    """What to deposit before a run: the quote, room for twice the planned compute time, and the fee on both."""
    covered = quote_wei + compute_quote_wei  # compute may run up to 2x its estimate without a shortfall
    return covered + fee_on(covered, fee_bps) + 1  # +1: fee rounding never makes a full payout overshoot


@dataclass(frozen=True)
class Payout:
    """What one asset's owner is owed."""

    block_ref: str
    asset_id: int
    amount_wei: int


@dataclass(frozen=True)
class SettlementPlan:
    """Arguments of RunEscrow.settle plus what could not be covered by the deposit."""

    payouts: tuple[Payout, ...]
    fee_wei: int
    refund_wei: int
    shortfall_wei: int  # owed by the ledger but beyond the deposit (the compute tier absorbs it)

    @property
    def payouts_wei(self) -> int:
        return sum(p.amount_wei for p in self.payouts)


class SettlementMathError(ValueError):
    """The ledger cannot be settled (unknown asset, negative amount)."""


def plan_settlement(
    usage: Iterable[tuple[str, int]],
    asset_of: Mapping[str, int],
    deposit_wei: int,
    fee_bps: int,
    overrun_block: str | Sequence[str] | None = None,
) -> SettlementPlan:
    """Group `usage` ((block ref, amount wei) pairs) by asset and fit it into the deposit.

    If the ledger owes more than the deposit can pay (payouts + fee), the payout of `overrun_block` (the compute
    tier, whose time is the only estimated part of a quote) is reduced until it fits; the rest is the shortfall.
    Several blocks (a rented run that moved between providers: the last one first) are cut in the order given.
    """
    owed: dict[str, int] = {}
    for ref, amount in usage:
        if amount < 0:
            raise SettlementMathError(f"usage of {ref} has a negative amount {amount}")
        if ref not in asset_of:
            if ref.startswith("dataset:"):
                raise SettlementMathError(
                    f"the dataset {ref.split(':')[1].split('@')[0]} has no asset on this chain; publish it again "
                    "with the chain running (`aib datasets publish`, or the Provide page) to register it"
                )
            raise SettlementMathError(f"block {ref} has no asset on this chain; register it with `aib assets register`")
        owed[ref] = owed.get(ref, 0) + amount
    total = sum(owed.values())
    shortfall = 0
    if total + fee_on(total, fee_bps) > deposit_wei:
        order = [overrun_block] if isinstance(overrun_block, str) else list(overrun_block or [])
        cut = [b for i, b in enumerate(order) if b in owed and b not in order[:i]]
        if not cut:
            raise SettlementMathError(f"the ledger owes {total} wei plus fee but only {deposit_wei} wei was deposited")
        reducible = sum(owed[b] for b in cut)
        fixed = total - reducible
        # The largest payout p for the overrun blocks with fixed + p + fee(fixed + p) <= deposit.
        # fixed + p + fee(fixed + p) grows with p; the estimate below is within a few wei of the answer (the fee
        # is rounded down), on either side, so step up while the next wei still fits, then down while it does not.
        room = deposit_wei * BPS // (BPS + fee_bps) - fixed
        while fixed + room + 1 + fee_on(fixed + room + 1, fee_bps) <= deposit_wei:
            room += 1
        while room >= 0 and fixed + room + fee_on(fixed + room, fee_bps) > deposit_wei:
            room -= 1
        if room < 0:
            raise SettlementMathError(f"the per-run prices alone ({fixed} wei plus fee) exceed the deposit")
        shortfall = reducible - room
        left = shortfall
        for b in cut:
            take = min(left, owed[b])
            owed[b] -= take
            left -= take
        total = fixed + room
    fee = fee_on(total, fee_bps)
    payouts = tuple(Payout(ref, asset_of[ref], amount) for ref, amount in sorted(owed.items()) if amount > 0)
    return SettlementPlan(payouts=payouts, fee_wei=fee, refund_wei=deposit_wei - total - fee, shortfall_wei=shortfall)


def call_royalties(steps: Iterable[Mapping], calls: int) -> list[tuple[str, int]]:
    """(block ref, wei) owed for `calls` served calls to each plan step that has a per-1k-calls price.

    Prices are whole multiples of 1000 wei (checked when a block registers), so the sum over single calls
    equals the amount for all calls at once: batching never changes what a provider is owed.
    """
    owed = []
    for step in steps:
        price = step.get("call_price")
        if price and price.get("amount_wei"):
            owed.append((f"{step['block_id']}@{step['version']}", int(price["amount_wei"]) * calls // 1000))
    return owed


def call_price_per_1k(steps: Iterable[Mapping]) -> int:
    """A service's price per 1k calls: the sum of its plan steps' call prices."""
    return sum(int((s.get("call_price") or {}).get("amount_wei", 0)) for s in steps)


__all__ = [
    "call_price_per_1k",
    "call_royalties",
    "Payout",
    "SettlementMathError",
    "SettlementPlan",
    "deposit_for",
    "fee_on",
    "plan_settlement",
]
