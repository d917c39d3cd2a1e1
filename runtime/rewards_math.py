"""Pure Proof-of-Value arithmetic: which assets an epoch pays, which it leaves out as junk and why, and how much.

An epoch counts the verified, paid usage of each asset (what settled runs and service batches paid its owner; a
provider caught cheating was paid 0 for the run, so it counts 0) and splits the epoch's pool pro rata to it.
Junk is left out before the split, so its share goes to the assets that are really used:
- an asset whose content hash equals an older asset's of another listing (a re-upload of somebody else's data
  or model);
- data whose models never beat the trivial baseline (majority class, or the mean for a regression);
- a compute offer whose provider was caught cheating (a failed verification, or slashed on chain).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Candidate:
    """An asset some settled usage paid, with what it was paid (its value this epoch)."""

    asset_id: int
    ref: str
    value_wei: int


def epoch_values(payouts: Iterable[Mapping[str, Any]]) -> dict[int, Candidate]:
    """Sum settled payouts ({asset_id, block_ref, amount_wei}) per asset; assets paid 0 are not candidates."""
    values: dict[int, int] = {}
    refs: dict[int, str] = {}
    for p in payouts:
        amount = int(p["amount_wei"])
        if amount < 0:
            raise ValueError(f"a payout to asset {p['asset_id']} is negative")
        values[int(p["asset_id"])] = values.get(int(p["asset_id"]), 0) + amount
        refs.setdefault(int(p["asset_id"]), str(p.get("block_ref", "")))
    return {a: Candidate(a, refs[a], v) for a, v in sorted(values.items()) if v > 0}


def duplicate_of(assets: Mapping[int, tuple[bytes, str]]) -> dict[int, int]:
    """Asset id → the oldest asset of *another listing* with the same content hash ((content hash, metadata URI)
    per asset), for every asset that copies one. The same listing registered again (same URI: a block re-issued
    to a new owner with `aib assets register`) is not a copy of itself."""
    by_hash: dict[bytes, list[int]] = {}
    for asset_id in sorted(assets):
        by_hash.setdefault(assets[asset_id][0], []).append(asset_id)
    duplicates: dict[int, int] = {}
    for ids in by_hash.values():
        for i, asset_id in enumerate(ids):
            older = next((o for o in ids[:i] if assets[o][1] != assets[asset_id][1]), None)
            if older is not None:
                duplicates[asset_id] = older
    return duplicates


# (metric, its trivial baseline, True when higher is better)
BASELINES = (("accuracy", "baseline_accuracy", True), ("mae", "baseline_mae", False))


def beats_baseline(metrics: Mapping[str, Any]) -> bool | None:
    """Whether a run's model beat its trivial baseline; None when the run measured no baseline."""
    for metric, baseline, higher in BASELINES:
        value, base = metrics.get(metric), metrics.get(baseline)
        if isinstance(value, int | float) and isinstance(base, int | float):
            return value > base if higher else value < base
    return None


def data_verdict(runs_metrics: Iterable[Mapping[str, Any]]) -> str | None:
    """Why data is junk given the metrics of the finished runs that trained on it, or None when it is not: junk
    only when at least one run measured a baseline and no run beat it (no evidence is not evidence of junk)."""
    judged = [m for m in runs_metrics if beats_baseline(m) is not None]
    if not judged or any(beats_baseline(m) for m in judged):
        return None
    metric, baseline, higher = next(b for b in BASELINES if b[0] in judged[0] and b[1] in judged[0])
    values = [m[metric] for m in judged if metric in m]
    best = max(values) if higher else min(values)
    return (
        f"none of the {len(judged)} model(s) trained on it beat the trivial baseline "
        f"(best {metric} {best:g} vs baseline {judged[0][baseline]:g})"
    )


def judge(
    candidates: Mapping[int, Candidate],
    *,
    duplicates: Mapping[int, int],
    data_reasons: Mapping[int, str],
    cheaters: Mapping[int, str],
) -> dict[int, str]:
    """Asset id → why it is left out of the epoch, for every junk candidate (the first reason that applies)."""
    reasons: dict[int, str] = {}
    for asset_id in candidates:
        if asset_id in cheaters:
            reasons[asset_id] = cheaters[asset_id]
        elif asset_id in duplicates:
            reasons[asset_id] = f"a duplicate of asset {duplicates[asset_id]} (the same content hash)"
        elif asset_id in data_reasons:
            reasons[asset_id] = data_reasons[asset_id]
    return reasons


def split_pool(values: Mapping[int, int], pool_wei: int) -> dict[int, int]:
    """Each asset's share of `pool_wei`, pro rata to its value, rounded down (assets whose share rounds to 0 are
    left out); the shares never add up to more than the pool."""
    if pool_wei < 0:
        raise ValueError("the pool cannot be negative")
    total = sum(values.values())
    if total <= 0:
        return {}
    shares = {a: pool_wei * v // total for a, v in values.items()}
    return {a: s for a, s in sorted(shares.items()) if s > 0}


__all__ = [
    "BASELINES",
    "Candidate",
    "beats_baseline",
    "data_verdict",
    "duplicate_of",
    "epoch_values",
    "judge",
    "split_pool",
]
