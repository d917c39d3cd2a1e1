"""Settlement arithmetic: payouts + fee + refund always equal the deposit; nobody is paid twice."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.settlement_math import (
    SettlementMathError,
    call_price_per_1k,
    call_royalties,
    deposit_for,
    fee_on,
    plan_settlement,
)

ASSETS = {"data@1": 1, "model@1": 2, "compute@1": 3, "service@1": 4}


def test_usage_is_grouped_per_asset_and_the_rest_refunded():
    usage = [("data@1", 100), ("compute@1", 7), ("compute@1", 5), ("model@1", 300)]
    plan = plan_settlement(usage, ASSETS, deposit_wei=1_000, fee_bps=250, overrun_block="compute@1")
    assert [(p.block_ref, p.asset_id, p.amount_wei) for p in plan.payouts] == [
        ("compute@1", 3, 12),
        ("data@1", 1, 100),
        ("model@1", 2, 300),
    ]
    assert plan.fee_wei == fee_on(412, 250) == 10
    assert plan.refund_wei == 1_000 - 412 - 10 and plan.shortfall_wei == 0


def test_compute_overrun_beyond_the_deposit_is_cut_from_the_compute_payout():
    usage = [("data@1", 500), ("compute@1", 10_000)]
    plan = plan_settlement(usage, ASSETS, deposit_wei=1_000, fee_bps=250, overrun_block="compute@1")
    assert plan.payouts_wei + plan.fee_wei + plan.refund_wei == 1_000
    assert plan.refund_wei <= 1  # as little as rounding leaves
    assert dict((p.block_ref, p.amount_wei) for p in plan.payouts)["data@1"] == 500
    assert plan.shortfall_wei == 10_000 - dict((p.block_ref, p.amount_wei) for p in plan.payouts)["compute@1"]


def test_a_run_that_moved_between_providers_cuts_its_overrun_from_the_last_provider_first():
    assets = {**ASSETS, "offer:a": 7, "offer:b": 8}
    usage = [("data@1", 500), ("offer:a", 300), ("offer:b", 400)]
    # Room for 1,100 after the 500 of data: B (the last) gives up what does not fit, A keeps all it is owed.
    plan = plan_settlement(usage, assets, deposit_wei=1_100, fee_bps=0, overrun_block=["offer:b", "offer:a"])
    paid = {p.block_ref: p.amount_wei for p in plan.payouts}
    assert paid == {"data@1": 500, "offer:a": 300, "offer:b": 300} and plan.shortfall_wei == 100
    # Less room than B's whole payout: B gets nothing, A is cut too, and the total is exactly the deposit.
    plan = plan_settlement(usage, assets, deposit_wei=700, fee_bps=250, overrun_block=["offer:b", "offer:a"])
    paid = {p.block_ref: p.amount_wei for p in plan.payouts}
    assert "offer:b" not in paid and 0 < paid["offer:a"] < 300 and paid["data@1"] == 500
    assert plan.payouts_wei + plan.fee_wei + plan.refund_wei == 700 and plan.refund_wei <= 1
    assert plan.payouts_wei + plan.shortfall_wei == 1_200
    # The old single-block form still means the same.
    one = plan_settlement(usage, assets, deposit_wei=1_100, fee_bps=0, overrun_block="offer:b")
    assert {p.block_ref: p.amount_wei for p in one.payouts}["offer:b"] == 300


def test_unknown_asset_negative_amount_and_uncoverable_fixed_prices_are_refused():
    with pytest.raises(SettlementMathError, match="block x@1 has no asset on this chain"):
        plan_settlement([("x@1", 1)], ASSETS, 10, 0)
    with pytest.raises(SettlementMathError, match="negative amount"):
        plan_settlement([("data@1", -1)], ASSETS, 10, 0)
    with pytest.raises(SettlementMathError, match="per-run prices alone"):
        plan_settlement([("data@1", 50), ("compute@1", 1)], ASSETS, 10, 0, overrun_block="compute@1")


def test_deposit_covers_the_quote_twice_the_compute_and_the_fee():
    # A quote of 10,000 wei, 2,000 of it compute. Covered: the quote + the compute once more (room for the
    # compute to double) = 12,000; fee 2.5 % of 12,000 = 300; +1 wei for fee rounding: 12,301.
    d = deposit_for(quote_wei=10_000, compute_quote_wei=2_000, fee_bps=250)
    assert d == 12_301

    def settle(compute_wei: int) -> tuple[int, int, int, int, int]:
        usage = [("data@1", 8_000), ("compute@1", compute_wei)]
        plan = plan_settlement(usage, ASSETS, deposit_wei=d, fee_bps=250, overrun_block="compute@1")
        paid = dict((p.block_ref, p.amount_wei) for p in plan.payouts)
        return paid["data@1"], paid["compute@1"], plan.fee_wei, plan.refund_wei, plan.shortfall_wei

    # Compute at twice its estimate is paid in full: 8,000 + 4,000 + fee 300 = 12,300, 1 wei back.
    assert settle(4_000) == (8_000, 4_000, 300, 1, 0)
    # Beyond that, only the rounding wei is left: compute c fits while 8,000 + c + (8,000 + c) // 40 <= 12,301,
    # so c = 4,001 at most; of 4,100 owed, 99 are the compute tier's shortfall.
    assert settle(4_001) == (8_000, 4_001, 300, 0, 0)
    assert settle(4_100) == (8_000, 4_001, 300, 0, 99)


@given(
    usage=st.lists(st.tuples(st.sampled_from(sorted(ASSETS)), st.integers(0, 10**24)), max_size=20),
    deposit=st.integers(0, 10**26),
    fee_bps=st.integers(0, 1000),
)
def test_any_ledger_settles_to_exactly_the_deposit(usage, deposit, fee_bps):
    try:
        plan = plan_settlement(usage, ASSETS, deposit, fee_bps, overrun_block="compute@1")
    except SettlementMathError:
        fixed = sum(a for r, a in usage if r != "compute@1")
        assert fixed + fee_on(fixed, fee_bps) > deposit  # only refused when the fixed prices cannot fit
        return
    assert plan.payouts_wei + plan.fee_wei + plan.refund_wei == deposit
    assert plan.fee_wei == fee_on(plan.payouts_wei, fee_bps) and plan.refund_wei >= 0
    refs = [p.block_ref for p in plan.payouts]
    assert len(refs) == len(set(refs))  # one payout per asset: nobody is paid twice
    owed = {r: sum(a for rr, a in usage if rr == r) for r in ASSETS}
    for p in plan.payouts:
        assert p.amount_wei == owed[p.block_ref] or p.block_ref == "compute@1"
    assert plan.payouts_wei + plan.shortfall_wei == sum(owed.values())


STEPS = [
    {"block_id": "chat.faq-csv", "version": "1.0.0", "call_price": None},
    {"block_id": "chat.minilm-encoder", "version": "1.0.0", "call_price": {"amount_wei": 2 * 10**14}},
    {"block_id": "service.api", "version": "1.0.0", "call_price": {"amount_wei": 10**15}},
]


def test_each_block_with_a_call_price_earns_it_per_call():
    assert call_royalties(STEPS, 10_000) == [("chat.minilm-encoder@1.0.0", 2 * 10**15), ("service.api@1.0.0", 10**16)]
    assert call_price_per_1k(STEPS) == 12 * 10**14
    assert call_royalties(STEPS, 0) == [("chat.minilm-encoder@1.0.0", 0), ("service.api@1.0.0", 0)]


@given(st.lists(st.integers(1, 64), min_size=1, max_size=200), st.integers(1, 10**9))
def test_batching_never_changes_what_a_provider_is_owed(requests, price_per_1k_in_thousands):
    steps = [{"block_id": "b", "version": "1", "call_price": {"amount_wei": price_per_1k_in_thousands * 1000}}]
    one_by_one = sum(call_royalties(steps, n)[0][1] for n in requests)
    assert call_royalties(steps, sum(requests)) == [("b@1", one_by_one)]
