"""Proof-of-Value arithmetic and the epoch Merkle tree: values, junk verdicts, the pool split, proofs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.merkle import build_tree, leaf_hash, verify_proof
from runtime.rewards_math import (
    Candidate,
    beats_baseline,
    data_verdict,
    duplicate_of,
    epoch_values,
    judge,
    split_pool,
)
from runtime.training import baseline_accuracy


def test_epoch_values_sum_payouts_per_asset_and_drop_unpaid_ones():
    payouts = [
        {"asset_id": 3, "block_ref": "a@1", "amount_wei": 5},
        {"asset_id": 3, "block_ref": "a@1", "amount_wei": 7},
        {"asset_id": 4, "block_ref": "offer:p", "amount_wei": 0},  # a cheat's withheld compute
        {"asset_id": 1, "block_ref": "b@1", "amount_wei": 1},
    ]
    assert epoch_values(payouts) == {1: Candidate(1, "b@1", 1), 3: Candidate(3, "a@1", 12)}
    with pytest.raises(ValueError, match="negative"):
        epoch_values([{"asset_id": 1, "amount_wei": -1}])


def test_the_oldest_listing_with_a_content_hash_is_the_original():
    a, b = b"\x01" * 32, b"\x02" * 32
    assets = {5: (a, "aib://datasets/x"), 2: (a, "aib://datasets/y"), 3: (b, "u3"), 9: (a, "aib://datasets/z"),
              4: (b, "u4")}  # fmt: skip
    assert duplicate_of(assets) == {5: 2, 9: 2, 4: 3}
    assert duplicate_of({1: (a, "u1"), 2: (b, "u2")}) == {}
    # A block re-issued to a new owner (`aib assets register`) keeps its URI: not a copy of itself...
    reissued = {1: (a, "aib://blocks/chat.faq-csv@1.0.0"), 7: (a, "aib://blocks/chat.faq-csv@1.0.0")}
    assert duplicate_of(reissued) == {}
    # ...but a copy of it under another listing is, even after the re-issue.
    assert duplicate_of({**reissued, 8: (a, "aib://datasets/ds-1")}) == {8: 1}


def test_baseline_verdicts():
    assert beats_baseline({"accuracy": 0.9, "baseline_accuracy": 0.5}) is True
    assert beats_baseline({"accuracy": 0.5, "baseline_accuracy": 0.5}) is False  # a tie is not beating it
    assert beats_baseline({"mae": 0.1, "baseline_mae": 0.3}) is True
    assert beats_baseline({"mae": 0.4, "baseline_mae": 0.3}) is False
    assert beats_baseline({"accuracy": 0.9}) is None
    assert data_verdict([]) is None  # never trained on: no evidence, not junk
    assert data_verdict([{"accuracy": 0.9}]) is None
    assert (
        data_verdict([{"accuracy": 0.2, "baseline_accuracy": 0.3}, {"accuracy": 0.4, "baseline_accuracy": 0.3}]) is None
    )
    verdict = data_verdict([{"accuracy": 0.2, "baseline_accuracy": 0.3}, {"accuracy": 0.25, "baseline_accuracy": 0.3}])
    assert (
        verdict == "none of the 2 model(s) trained on it beat the trivial baseline (best accuracy 0.25 vs baseline 0.3)"
    )
    assert "best mae 0.5" in data_verdict([{"mae": 0.5, "baseline_mae": 0.4}, {"mae": 0.6, "baseline_mae": 0.4}])


def test_judge_gives_one_reason_per_junk_candidate_cheating_first():
    cands = {i: Candidate(i, f"r{i}", 10) for i in (1, 2, 3, 4)}
    reasons = judge(cands, duplicates={2: 1, 3: 1}, data_reasons={3: "bad data", 4: "bad data"}, cheaters={2: "cheat"})
    assert reasons == {2: "cheat", 3: "a duplicate of asset 1 (the same content hash)", 4: "bad data"}


def test_majority_class_baseline_accuracy():
    import torch

    assert baseline_accuracy(torch.tensor([0, 1, 1, 2]), torch.tensor([1, 1, 0, 2])) == 0.5
    assert baseline_accuracy(torch.tensor([], dtype=torch.long), torch.tensor([1])) == 0.0


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.integers(1, 10**6), st.integers(0, 10**30), max_size=40), st.integers(0, 10**28))
def test_the_pool_split_never_pays_more_than_the_pool_and_is_pro_rata(values, pool):
    shares = split_pool(values, pool)
    assert sum(shares.values()) <= pool
    total = sum(values.values())
    for a, s in shares.items():
        assert s == pool * values[a] // total > 0
    if total:
        assert pool - sum(shares.values()) < max(1, len(values))  # rounding loses under 1 wei per asset


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.integers(1, 2**64), st.integers(1, 10**27), min_size=1, max_size=33), st.integers(1, 50))
def test_every_leaf_proves_and_no_tampered_leaf_does(amounts, epoch):
    tree = build_tree(epoch, amounts)
    for asset_id, amount in amounts.items():
        proof = tree.proof(asset_id)
        assert verify_proof(tree.root, epoch, asset_id, amount, proof)
        assert not verify_proof(tree.root, epoch, asset_id, amount + 1, proof)
        assert not verify_proof(tree.root, epoch + 1, asset_id, amount, proof)
    if len(amounts) == 1:
        ((asset_id, amount),) = amounts.items()
        assert tree.root == leaf_hash(epoch, asset_id, amount)


def test_a_tree_needs_something_to_pay():
    with pytest.raises(ValueError, match="at least one"):
        build_tree(1, {})
    with pytest.raises(ValueError, match="more than 0"):
        build_tree(1, {1: 0})
