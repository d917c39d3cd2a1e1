"""The Resource Allocator: tier, memory, price, locality, reputation and load; never below tier, never double-booked."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.allocator import TIERS, Policy, Provider, RunRequest, allocate, tier_rank

GWEI = 10**9


def p(pid, tier="gpu-small", mem=24, price=100, **kw):
    return Provider(pid, tier, mem, price * GWEI, **kw)


def test_the_cheapest_eligible_provider_wins_and_the_reason_says_why():
    providers = [p("a", price=300), p("b", price=100), p("c", tier="cpu", price=1), p("d", mem=8, price=50)]
    [a] = allocate([RunRequest("r1", "gpu-small", memory_gb=16, estimated_seconds=100)], providers)
    assert a.provider_id == "b" and a.eligible == 2  # c is below the tier, d lacks memory
    assert a.cost_wei == 100 * GWEI * 100
    assert a.reason.startswith("b (gpu-small, 24 GB) of 2 eligible provider(s)")
    assert "reputation 1.00" in a.reason


def test_a_higher_tier_may_serve_a_lower_one_never_the_reverse():
    [a] = allocate([RunRequest("r", "gpu-medium")], [p("small", "gpu-small", price=1), p("large", "gpu-large")])
    assert a.provider_id == "large"
    [b] = allocate([RunRequest("r", "cpu")], [p("large", "gpu-large", price=5), p("cpu", "cpu", price=9)])
    assert b.provider_id == "large"  # cheaper, and above the tier


def test_holding_the_data_saves_the_transfer_and_wins():
    run = RunRequest("r", "gpu-small", estimated_seconds=10, datasets=frozenset({"ds-1"}), data_bytes=10**9,
                     storage_region="eu")  # fmt: skip
    holder = p("holder", price=120, datasets=frozenset({"ds-1"}), region="us")
    near = p("near", price=100, region="eu")
    far = p("far", price=100, region="us")
    [a] = allocate([run], [far, near, holder])
    assert a.provider_id == "holder" and a.details["transfer_wei"] == 0 and "already holds the data" in a.reason
    [b] = allocate([run], [far, near])  # nobody holds it: the storage node's region is cheaper to reach
    assert b.provider_id == "near" and "in the storage node's region" in b.reason


def test_equal_offers_tie_break_on_locality_reputation_then_id():
    run = RunRequest("r", "gpu-small", datasets=frozenset({"d"}))
    same = dict(price=100)
    [a] = allocate([run], [p("z", **same), p("y", **same)])
    assert a.provider_id == "y"  # lower id
    [b] = allocate([RunRequest("r", "gpu-small")], [p("a", **same, reputation=0.9), p("b", **same, reputation=0.95)])
    assert b.provider_id == "b"  # a better reputation is worth a little more than the price says


def test_reputation_and_load_weigh_on_the_price():
    # Score = cost / (0.5 + 0.5 rep) × (1 + 0.25 × busy share).
    [a] = allocate([RunRequest("r", "gpu-small")], [p("cheap-bad", price=100, reputation=0.3), p("good", price=120)])
    assert a.provider_id == "good"  # 100 / 0.65 > 120 / 1.0
    busy = p("busy", price=100, slots=2, load=1)
    [b] = allocate([RunRequest("r", "gpu-small")], [busy, p("idle", price=115)])
    assert b.provider_id == "busy"  # half busy: 100 × 1.125 < 115
    [c] = allocate([RunRequest("r", "gpu-small")], [busy, p("idle", price=115)], Policy(load_weight=1.0))
    assert c.provider_id == "idle"  # 100 × 1.5 > 115


def test_runs_fill_slots_in_priority_order_and_wait_when_all_are_busy():
    providers = [p("one", slots=1), p("two", price=200, slots=1)]
    runs = [RunRequest("low", "gpu-small"), RunRequest("high", "gpu-small", priority=5), RunRequest("late", "cpu")]
    got = {a.run_id: a for a in allocate(runs, providers)}
    assert got["high"].provider_id == "one" and got["low"].provider_id == "two"
    assert got["late"].provider_id is None
    assert got["late"].reason == "every such provider is busy; the run waits for a free slot"


@pytest.mark.parametrize(
    ("run", "providers", "reason"),
    [
        (RunRequest("r", "cpu"), [], "no compute provider is registered"),
        (RunRequest("r", "cpu"), [p("a", alive=False)], "no provider is online"),
        (RunRequest("r", "gpu-large"), [p("a")], "no online provider offers tier gpu-large or above"),
        (RunRequest("r", "gpu-small", memory_gb=80), [p("a")], "no such provider has 80 GB of memory"),
        (RunRequest("r", "cpu"), [p("a", reputation=0.1)], "every such provider is below the reputation floor"),
        (
            RunRequest("r", "cpu", max_price_wei_per_s=10),
            [p("a")],
            "every such provider costs more than the run allows",
        ),
    ],
)
def test_a_run_nobody_can_take_says_which_requirement_fails(run, providers, reason):
    [a] = allocate([run], providers)
    assert a.provider_id is None and a.reason == reason


def test_an_unknown_tier_is_an_error_naming_the_tiers():
    with pytest.raises(ValueError, match="unknown compute tier 'tpu'; the tiers are cpu, gpu-small"):
        allocate([RunRequest("r", "tpu")], [])
    assert tier_rank("gpu-large") == len(TIERS) - 1


providers_st = st.lists(
    st.builds(
        Provider,
        id=st.text("abcdefgh", min_size=1, max_size=4),
        tier=st.sampled_from(TIERS),
        memory_gb=st.sampled_from([4.0, 8.0, 24.0, 80.0]),
        price_wei_per_s=st.integers(0, 10**12),
        reputation=st.floats(0, 1),
        slots=st.integers(1, 3),
        load=st.integers(0, 3),
        datasets=st.frozensets(st.sampled_from(["d1", "d2", "d3"])),
        region=st.sampled_from(["", "eu", "us"]),
        alive=st.booleans(),
    ),
    max_size=25,
    unique_by=lambda x: x.id,
)
runs_st = st.lists(
    st.builds(
        RunRequest,
        id=st.uuids().map(str),
        tier=st.sampled_from(TIERS),
        memory_gb=st.sampled_from([0.0, 8.0, 24.0, 48.0]),
        estimated_seconds=st.floats(1, 1e4),
        datasets=st.frozensets(st.sampled_from(["d1", "d2", "d3"])),
        data_bytes=st.integers(0, 10**10),
        storage_region=st.sampled_from(["", "eu", "us"]),
        max_price_wei_per_s=st.none() | st.integers(0, 10**12),
        priority=st.integers(0, 3),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(providers_st, runs_st)
def test_properties_never_below_tier_never_double_booked_and_nobody_idle_while_a_run_waits(providers, runs):
    policy = Policy()
    result = allocate(runs, providers, policy)
    assert [a.run_id for a in result] == [r.id for r in runs]
    by_id = {x.id: x for x in providers}
    placed: dict[str, int] = {}
    for run, a in zip(runs, result, strict=True):
        if a.provider_id is None:
            continue
        prov = by_id[a.provider_id]
        assert tier_rank(prov.tier) >= tier_rank(run.tier)  # never below the tier
        assert prov.memory_gb >= run.memory_gb and prov.alive and prov.reputation >= policy.reputation_floor
        assert run.max_price_wei_per_s is None or prov.price_wei_per_s <= run.max_price_wei_per_s
        placed[prov.id] = placed.get(prov.id, 0) + 1
    for pid, n in placed.items():
        assert by_id[pid].load + n <= by_id[pid].slots  # never double-booked
    # A run left waiting had no eligible provider with a slot left after the runs placed before it.
    order = sorted(range(len(runs)), key=lambda i: (-runs[i].priority, i))
    used: dict[str, int] = {}
    for i in order:
        run, a = runs[i], result[i]
        if a.provider_id is None:
            for prov in providers:
                eligible = (
                    prov.alive
                    and prov.reputation >= policy.reputation_floor
                    and tier_rank(prov.tier) >= tier_rank(run.tier)
                    and prov.memory_gb >= run.memory_gb
                    and (run.max_price_wei_per_s is None or prov.price_wei_per_s <= run.max_price_wei_per_s)
                )
                assert not (eligible and prov.load + used.get(prov.id, 0) < prov.slots)
        else:
            used[a.provider_id] = used.get(a.provider_id, 0) + 1
    assert allocate(runs, providers, policy) == result  # deterministic
