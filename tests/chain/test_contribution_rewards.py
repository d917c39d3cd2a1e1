"""ContributionRewards: epochs closed in one transaction, claims with Merkle proofs, sweeps, stakes, receipts and
slashing; every revert path, including adversarial claims and slashes."""

from __future__ import annotations

import hashlib

import pytest
from web3.logs import DISCARD

from chain.merkle import build_tree
from tests.chain.conftest import CLAIM_WINDOW, SLASH_BPS, UNSTAKE_DELAY, reverts, tx

AIC = 10**18
HASH = bytes.fromhex("ab" * 32)
REPORT = hashlib.sha256(b"report").digest()


def register(chain, owner, kind=0, content=HASH) -> int:
    receipt = tx(chain.w3, chain.registry.functions.register(owner, kind, content, "uri", 1), owner)
    return chain.registry.events.AssetRegistered().process_receipt(receipt, errors=DISCARD)[0].args.assetId


def balance(chain, who: str) -> int:
    return chain.token.functions.balanceOf(who).call()


def approve_pool(chain, amount: int) -> None:
    tx(chain.w3, chain.token.functions.approve(chain.rewards.address, amount), chain.roles.ecosystem)


def close(chain, epoch, tree, total=None, sender=None):
    total = sum(tree.amounts.values()) if total is None else total
    return tx(
        chain.w3, chain.rewards.functions.closeEpoch(epoch, tree.root, total, REPORT), sender or chain.roles.settler
    )


def claim(chain, tree, asset_id, amount=None, proof=None, sender=None):
    amount = tree.amounts[asset_id] if amount is None else amount
    proof = tree.proof(asset_id) if proof is None else proof
    return tx(
        chain.w3, chain.rewards.functions.claim(tree.epoch, asset_id, amount, proof), sender or chain.roles.stranger
    )


def now(chain) -> int:
    return chain.w3.eth.get_block("latest").timestamp


def travel(chain, seconds: int) -> None:
    chain.w3.provider.ethereum_tester.time_travel(now(chain) + seconds)


@pytest.mark.parametrize("n_assets", [1, 2, 3, 5, 8])
def test_an_epoch_pays_every_asset_its_share_to_the_current_owner(chain, n_assets):
    r = chain.roles
    owners = [r.marketing, r.advisors, r.company, r.team, r.payer, r.treasury, r.marketing, r.advisors]
    ids = [register(chain, owners[i]) for i in range(n_assets)]
    amounts = {asset: (i + 1) * AIC + i for i, asset in enumerate(ids)}
    tree = build_tree(1, amounts)
    total = sum(amounts.values())
    approve_pool(chain, total)
    pool_before = balance(chain, r.ecosystem)
    close(chain, 1, tree)
    assert balance(chain, r.ecosystem) == pool_before - total
    assert balance(chain, chain.rewards.address) == total
    before = {who: balance(chain, who) for who in set(owners)}
    for asset in ids:
        receipt = claim(chain, tree, asset)
        event = chain.rewards.events.Claimed().process_receipt(receipt, errors=DISCARD)[0].args
        assert (event.epoch, event.assetId, event.amount) == (1, asset, amounts[asset])
    gained = {who: balance(chain, who) - before[who] for who in set(owners)}
    expected: dict[str, int] = {}
    for i, asset in enumerate(ids):
        expected[owners[i]] = expected.get(owners[i], 0) + amounts[asset]
    assert {w: g for w, g in gained.items() if g} == expected
    assert balance(chain, chain.rewards.address) == 0
    epoch = chain.rewards.functions.epochOf(1).call()
    assert (epoch[0], epoch[1], epoch[2], epoch[3]) == (tree.root, REPORT, total, total)


def test_the_asset_owner_at_claim_time_is_paid(chain):
    r = chain.roles
    asset = register(chain, r.marketing)
    tree = build_tree(1, {asset: 5 * AIC})
    approve_pool(chain, 5 * AIC)
    close(chain, 1, tree)
    tx(chain.w3, chain.registry.functions.transferFrom(r.marketing, r.company, asset), r.marketing)
    before = balance(chain, r.company), balance(chain, r.marketing)
    claim(chain, tree, asset)
    assert balance(chain, r.company) - before[0] == 5 * AIC
    assert balance(chain, r.marketing) == before[1]


def test_closing_costs_one_transaction_whatever_the_number_of_assets(chain):
    approve_pool(chain, 10**9 * AIC)
    close(chain, 1, build_tree(1, {1: AIC}))  # the first close also pays for fresh storage slots
    gas_one = close(chain, 2, build_tree(2, {1: AIC})).gasUsed
    gas_2000 = close(chain, 3, build_tree(3, {i: AIC + i for i in range(1, 2001)})).gasUsed
    assert abs(gas_2000 - gas_one) < 1_000, (gas_one, gas_2000)  # calldata bytes differ, nothing else
    assert gas_2000 < 200_000


def test_a_claim_cannot_be_made_twice_or_for_another_amount_asset_or_epoch(chain):
    r = chain.roles
    a, b = register(chain, r.marketing), register(chain, r.advisors)
    tree = build_tree(1, {a: 3 * AIC, b: 4 * AIC})
    approve_pool(chain, 100 * AIC)
    close(chain, 1, tree)
    assert reverts(lambda: claim(chain, tree, a, amount=4 * AIC)) == f"RewardsInvalidProof(epoch=1, assetId={a})"
    assert reverts(lambda: claim(chain, tree, a, proof=tree.proof(b))) == f"RewardsInvalidProof(epoch=1, assetId={a})"
    assert reverts(lambda: claim(chain, tree, a, proof=[])) == f"RewardsInvalidProof(epoch=1, assetId={a})"
    claim(chain, tree, a)
    assert reverts(lambda: claim(chain, tree, a)) == f"RewardsAlreadyClaimed(epoch=1, assetId={a})"
    assert chain.rewards.functions.isClaimed(1, a).call() and not chain.rewards.functions.isClaimed(1, b).call()
    # The same leaf values under another epoch number are a different leaf.
    tree2 = build_tree(2, {a: 3 * AIC, b: 4 * AIC})
    close(chain, 2, tree2)
    replayed = chain.rewards.functions.claim(2, a, 3 * AIC, tree.proof(a))  # epoch 1's proof under epoch 2
    assert reverts(lambda: tx(chain.w3, replayed, r.stranger)) == f"RewardsInvalidProof(epoch=2, assetId={a})"
    unknown = build_tree(3, {a: AIC})
    assert reverts(lambda: claim(chain, unknown, a)) == "RewardsUnknownEpoch(epoch=3)"


def test_a_root_whose_leaves_exceed_its_total_cannot_drain_other_epochs(chain):
    r = chain.roles
    a, b = register(chain, r.marketing), register(chain, r.advisors)
    honest = build_tree(1, {a: 10 * AIC})
    approve_pool(chain, 100 * AIC)
    close(chain, 1, honest)
    bad = build_tree(2, {a: 6 * AIC, b: 6 * AIC})
    close(chain, 2, bad, total=6 * AIC)
    claim(chain, bad, a)
    assert reverts(lambda: claim(chain, bad, b)) == "RewardsOverclaim(epoch=2)"
    claim(chain, honest, a)  # epoch 1's tokens are still all there
    assert balance(chain, chain.rewards.address) == 0


def test_epochs_close_in_order_once_only_by_the_operator_and_only_when_funded(chain):
    r = chain.roles
    tree = build_tree(1, {1: AIC})
    assert reverts(lambda: close(chain, 1, tree)).startswith("ERC20InsufficientAllowance(")
    approve_pool(chain, 10 * AIC)
    assert reverts(lambda: close(chain, 1, tree, sender=r.stranger)).startswith(
        f"AccessControlUnauthorizedAccount(account={r.stranger}"
    )
    assert reverts(lambda: close(chain, 2, build_tree(2, {1: AIC}))) == "RewardsEpochOutOfOrder(expected=1, given=2)"
    assert reverts(lambda: close(chain, 1, tree, total=0)) == "RewardsEmptyEpoch()"
    close(chain, 1, tree)
    assert reverts(lambda: close(chain, 1, tree)) == "RewardsEpochOutOfOrder(expected=2, given=1)"
    assert chain.rewards.functions.epochCount().call() == 1


def test_unclaimed_rewards_go_back_to_the_pool_after_the_claim_window(chain):
    r = chain.roles
    a, b = register(chain, r.marketing), register(chain, r.advisors)
    tree = build_tree(1, {a: 3 * AIC, b: 4 * AIC})
    approve_pool(chain, 7 * AIC)
    close(chain, 1, tree)
    claim(chain, tree, a)
    assert reverts(lambda: tx(chain.w3, chain.rewards.functions.sweep(1), r.stranger)).startswith(
        "RewardsClaimWindow(epoch=1"
    )
    travel(chain, CLAIM_WINDOW + 10)
    assert reverts(lambda: claim(chain, tree, b)).startswith("RewardsClaimWindow(epoch=1")
    pool = balance(chain, r.ecosystem)
    receipt = tx(chain.w3, chain.rewards.functions.sweep(1), r.stranger)
    assert chain.rewards.events.Swept().process_receipt(receipt, errors=DISCARD)[0].args.amount == 4 * AIC
    assert balance(chain, r.ecosystem) - pool == 4 * AIC
    assert reverts(lambda: tx(chain.w3, chain.rewards.functions.sweep(1), r.stranger)) == "RewardsAlreadySwept(epoch=1)"
    assert reverts(lambda: tx(chain.w3, chain.rewards.functions.sweep(9), r.stranger)) == "RewardsUnknownEpoch(epoch=9)"


def test_a_claim_for_an_asset_that_does_not_exist_reverts(chain):
    tree = build_tree(1, {777: AIC})
    approve_pool(chain, AIC)
    close(chain, 1, tree)
    assert reverts(lambda: claim(chain, tree, 777)) == "RewardsUnknownAsset(assetId=777)"


# ------------------------------------------------------------------ stakes


def stake(chain, asset, amount, who):
    tx(chain.w3, chain.token.functions.approve(chain.rewards.address, amount), who)
    return tx(chain.w3, chain.rewards.functions.stake(asset, amount), who)


def test_stake_unstake_after_the_delay(chain):
    r = chain.roles
    offer = register(chain, r.payer, kind=2)
    before = balance(chain, r.payer)
    stake(chain, offer, 100 * AIC, r.payer)
    stake(chain, offer, 50 * AIC, r.payer)
    assert chain.rewards.functions.stakeOf(offer).call()[:2] == [r.payer, 150 * AIC] or tuple(
        chain.rewards.functions.stakeOf(offer).call()[:2]
    ) == (r.payer, 150 * AIC)
    withdraw = chain.rewards.functions.withdrawStake(offer)
    assert reverts(lambda: tx(chain.w3, withdraw, r.payer)) == f"RewardsTooEarly(assetId={offer}, availableAt=0)"
    assert reverts(lambda: tx(chain.w3, chain.rewards.functions.requestUnstake(offer), r.stranger)) == (
        f"RewardsNoStake(assetId={offer})"
    )
    tx(chain.w3, chain.rewards.functions.requestUnstake(offer), r.payer)
    assert reverts(lambda: tx(chain.w3, withdraw, r.payer)).startswith(f"RewardsTooEarly(assetId={offer}")
    assert reverts(lambda: tx(chain.w3, withdraw, r.stranger)) == f"RewardsNoStake(assetId={offer})"
    travel(chain, UNSTAKE_DELAY + 1)
    tx(chain.w3, withdraw, r.payer)
    assert balance(chain, r.payer) == before
    assert reverts(lambda: tx(chain.w3, withdraw, r.payer)) == f"RewardsNoStake(assetId={offer})"


def test_only_the_offer_owner_stakes_and_a_new_owner_cannot_take_over_a_stake(chain):
    r = chain.roles
    offer = register(chain, r.payer, kind=2)
    tx(chain.w3, chain.token.functions.transfer(r.stranger, 10 * AIC), r.payer)
    assert reverts(lambda: stake(chain, offer, AIC, r.stranger)) == (
        f"RewardsNotOwner(assetId={offer}, caller={r.stranger})"
    )
    assert reverts(lambda: stake(chain, offer, 0, r.payer)) == "RewardsZeroAmount()"
    stake(chain, offer, AIC, r.payer)
    tx(chain.w3, chain.registry.functions.transferFrom(r.payer, r.stranger, offer), r.payer)
    assert reverts(lambda: stake(chain, offer, AIC, r.stranger)) == (
        f"RewardsStakeHeldByOther(assetId={offer}, staker={r.payer})"
    )


# ------------------------------------------------------------------ receipts and slashing


def commitments(n: int, tag: str = "w") -> list[bytes]:
    return [hashlib.sha256(f"{tag}{i}".encode()).digest() for i in range(n + 1)]


def run_id(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def submit(chain, rid, offer, hashes, who):
    chain.last_offer = offer  # the offer a test's slash refers to, unless it names one
    return tx(chain.w3, chain.rewards.functions.submitReceipt(rid, offer, hashes), who)


def slash(chain, rid, hashes, segment, replayed, sender=None, offer=None):
    offer = offer if offer is not None else chain.last_offer
    call = chain.rewards.functions.slash(rid, offer, hashes, segment, replayed)
    return tx(chain.w3, call, sender or chain.roles.settler)


def test_a_proven_cheat_loses_part_of_its_stake_and_its_rewards(chain):
    r = chain.roles
    offer = register(chain, r.payer, kind=2)
    other = register(chain, r.marketing)
    stake(chain, offer, 100 * AIC, r.payer)
    hashes, rid = commitments(10), run_id("run-1")
    receipt = submit(chain, rid, offer, hashes, r.payer)
    event = chain.rewards.events.ReceiptSubmitted().process_receipt(receipt, errors=DISCARD)[0].args
    assert (event.offerAssetId, event.provider, event.segments) == (offer, r.payer, 10)
    # The provider may not ask to unstake its way out: a pending withdrawal is still slashable.
    tx(chain.w3, chain.rewards.functions.requestUnstake(offer), r.payer)
    tree = build_tree(1, {offer: 2 * AIC, other: AIC})
    approve_pool(chain, 3 * AIC)
    close(chain, 1, tree)
    pool = balance(chain, r.ecosystem)
    replayed = hashlib.sha256(b"honest replay").digest()
    receipt = slash(chain, rid, hashes, 4, replayed)
    event = chain.rewards.events.Slashed().process_receipt(receipt, errors=DISCARD)[0].args
    lost = 100 * AIC * SLASH_BPS // 10_000
    assert (event.segment, event.committed, event.replayed, event.amount) == (4, hashes[4], replayed, lost)
    assert balance(chain, r.ecosystem) - pool == lost
    assert chain.rewards.functions.excluded(offer).call()
    assert reverts(lambda: claim(chain, tree, offer)) == f"RewardsAssetExcluded(assetId={offer})"
    claim(chain, tree, other)  # others are unaffected
    assert reverts(lambda: slash(chain, rid, hashes, 4, replayed)) == f"RewardsAlreadySlashed(runId=0x{rid.hex()})"
    travel(chain, UNSTAKE_DELAY + 1)
    before = balance(chain, r.payer)
    tx(chain.w3, chain.rewards.functions.withdrawStake(offer), r.payer)
    assert balance(chain, r.payer) - before == 100 * AIC - lost


def test_slashing_needs_the_verifier_the_signed_commitments_a_real_segment_and_a_real_difference(chain):
    r = chain.roles
    offer = register(chain, r.payer, kind=2)
    stake(chain, offer, 10 * AIC, r.payer)
    hashes, rid = commitments(5), run_id("run-2")
    submit(chain, rid, offer, hashes, r.payer)
    other = hashlib.sha256(b"x").digest()
    assert reverts(lambda: slash(chain, rid, hashes, 2, other, sender=r.stranger)).startswith(
        f"AccessControlUnauthorizedAccount(account={r.stranger}"
    )
    forged = list(hashes)
    forged[2] = other
    assert reverts(lambda: slash(chain, rid, forged, 2, hashes[2])) == (
        f"RewardsCommitmentsMismatch(runId=0x{rid.hex()})"
    )
    assert reverts(lambda: slash(chain, rid, hashes, 0, other)) == f"RewardsBadSegment(runId=0x{rid.hex()}, segment=0)"
    assert reverts(lambda: slash(chain, rid, hashes, 6, other)) == f"RewardsBadSegment(runId=0x{rid.hex()}, segment=6)"
    assert (
        reverts(lambda: slash(chain, rid, hashes, 3, hashes[3])) == f"RewardsNotACheat(runId=0x{rid.hex()}, segment=3)"
    )
    unknown = run_id("never")
    assert reverts(lambda: slash(chain, unknown, hashes, 1, other)) == f"RewardsUnknownReceipt(runId=0x{unknown.hex()})"
    assert not chain.rewards.functions.excluded(offer).call()
    assert chain.rewards.functions.stakeOf(offer).call()[1] == 10 * AIC


def test_receipts_are_signed_once_by_the_offer_owner(chain):
    r = chain.roles
    offer = register(chain, r.payer, kind=2)
    rid = run_id("run-3")
    assert reverts(lambda: submit(chain, rid, offer, commitments(3), r.stranger)) == (
        f"RewardsNotOwner(assetId={offer}, caller={r.stranger})"
    )
    assert reverts(lambda: submit(chain, rid, offer, commitments(0), r.payer)) == (
        f"RewardsNoSegments(runId=0x{rid.hex()})"
    )
    submit(chain, rid, offer, commitments(3), r.payer)
    assert reverts(lambda: submit(chain, rid, offer, commitments(3, "other"), r.payer)) == (
        f"RewardsReceiptExists(runId=0x{rid.hex()})"
    )
    stored = chain.rewards.functions.receiptOf(rid, offer).call()
    assert stored[0] == r.payer and stored[1] == 3 and stored[4] == offer
    # A slash of an offer with no stake still excludes it from rewards (nothing to take).
    slash(chain, rid, commitments(3), 1, HASH)
    assert chain.rewards.functions.excluded(offer).call()


# ------------------------------------------------------------------ strangers (issue 19, item 3)


def test_a_receipt_another_offer_signs_first_under_a_run_id_never_blocks_the_real_one(chain):
    r = chain.roles
    offer = register(chain, r.payer, kind=2)
    stake(chain, offer, 10 * AIC, r.payer)
    junk = register(chain, r.stranger, kind=2)  # any account can own an offer
    hashes, rid = commitments(5), run_id("predictable-run/classifier/attempt-1")
    submit(chain, rid, junk, commitments(5, "junk"), r.stranger)  # first, under the run id the provider will use
    submit(chain, rid, offer, hashes, r.payer)  # the provider's own receipt still goes in
    assert chain.rewards.functions.receiptOf(rid, offer).call()[0] == r.payer
    slash(chain, rid, hashes, 2, HASH, offer=offer)  # and the provider can still be slashed for its own work
    assert chain.rewards.functions.stakeOf(offer).call()[1] == 10 * AIC - 10 * AIC * SLASH_BPS // 10_000
    assert not chain.rewards.functions.excluded(junk).call()  # the squatter's receipt was never the one checked


def test_a_stake_cannot_leave_while_a_receipt_of_its_offer_can_still_be_challenged(chain):
    r = chain.roles
    offer = register(chain, r.payer, kind=2)
    stake(chain, offer, 10 * AIC, r.payer)
    tx(chain.w3, chain.rewards.functions.requestUnstake(offer), r.payer)
    travel(chain, UNSTAKE_DELAY - 60)
    hashes, rid = commitments(5), run_id("late")
    signed = submit(chain, rid, offer, hashes, r.payer)  # a minute before the stake could have left
    until = chain.w3.eth.get_block(signed.blockNumber).timestamp + UNSTAKE_DELAY
    travel(chain, 120)  # the unstake delay has passed, the receipt's window has not
    withdraw = chain.rewards.functions.withdrawStake(offer)
    assert reverts(lambda: tx(chain.w3, withdraw, r.payer)) == f"RewardsTooEarly(assetId={offer}, availableAt={until})"
    slash(chain, rid, hashes, 3, HASH)  # the verifier still gets to it
    lost = 10 * AIC * SLASH_BPS // 10_000
    travel(chain, UNSTAKE_DELAY)
    before = balance(chain, r.payer)
    tx(chain.w3, withdraw, r.payer)
    assert balance(chain, r.payer) - before == 10 * AIC - lost


def test_a_receipt_past_its_challenge_window_cannot_be_slashed(chain):
    r = chain.roles
    offer = register(chain, r.payer, kind=2)
    stake(chain, offer, 10 * AIC, r.payer)
    hashes, rid = commitments(3), run_id("old work")
    signed = submit(chain, rid, offer, hashes, r.payer)
    until = chain.w3.eth.get_block(signed.blockNumber).timestamp + UNSTAKE_DELAY
    travel(chain, UNSTAKE_DELAY + 1)
    assert reverts(lambda: slash(chain, rid, hashes, 1, HASH)) == (
        f"RewardsChallengeClosed(runId=0x{rid.hex()}, closedAt={until})"
    )
