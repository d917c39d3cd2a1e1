"""RunEscrow: deposit, settle exactly once, refund, reclaim after a timeout; every revert path."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import Web3
from web3.logs import DISCARD

from chain.artifacts import load_artifact
from tests.chain.conftest import FEE_BPS, TIMEOUT, deploy, reverts, tx

HASH = bytes.fromhex("cd" * 32)
ZERO = "0x" + "0" * 40
AIC = 10**18


def run_id(name: str) -> bytes:
    return Web3.keccak(text=name)


def register(chain, owner) -> int:
    receipt = tx(chain.w3, chain.registry.functions.register(owner, 1, HASH, "uri", 1), owner)
    return chain.registry.events.AssetRegistered().process_receipt(receipt, errors=DISCARD)[0].args.assetId


def deposit(chain, rid: bytes, amount: int, payer: str | None = None) -> None:
    payer = payer or chain.roles.payer
    tx(chain.w3, chain.token.functions.approve(chain.escrow.address, amount), payer)
    tx(chain.w3, chain.escrow.functions.deposit(rid, amount), payer)


def balance(chain, who: str) -> int:
    return chain.token.functions.balanceOf(who).call()


def fee_on(amount: int) -> int:
    return amount * FEE_BPS // 10_000


def settle(chain, rid, asset_ids, amounts, refund, sender=None, payer=None):
    call = chain.escrow.functions.settle(payer or chain.roles.payer, rid, asset_ids, amounts, refund)
    return tx(chain.w3, call, sender or chain.roles.settler)


def deposit_of(chain, rid: bytes, payer: str | None = None) -> tuple:
    """(payer, depositedAt, closed, feeBps, amount) of `payer`'s entry under `rid`."""
    return tuple(chain.escrow.functions.depositOf(payer or chain.roles.payer, rid).call())


def test_settle_pays_owners_fee_and_refund_in_one_transaction(chain):
    r = chain.roles
    data, model = register(chain, r.marketing), register(chain, r.advisors)
    rid = run_id("run-1")
    amounts = [3 * AIC, 5 * AIC]
    total = sum(amounts) + fee_on(sum(amounts)) + 2 * AIC
    before = {who: balance(chain, who) for who in (r.payer, r.marketing, r.advisors, r.treasury)}
    deposit(chain, rid, total)
    receipt = settle(chain, rid, [data, model], amounts, 2 * AIC)
    assert balance(chain, r.marketing) - before[r.marketing] == 3 * AIC
    assert balance(chain, r.advisors) - before[r.advisors] == 5 * AIC
    assert balance(chain, r.treasury) - before[r.treasury] == fee_on(8 * AIC)
    assert before[r.payer] - balance(chain, r.payer) == total - 2 * AIC
    assert balance(chain, chain.escrow.address) == 0
    paid = chain.escrow.events.Paid().process_receipt(receipt, errors=DISCARD)
    assert [(e.args.assetId, e.args.payee, e.args.amount) for e in paid] == [
        (data, r.marketing, 3 * AIC),
        (model, r.advisors, 5 * AIC),
    ]
    settled = chain.escrow.events.Settled().process_receipt(receipt, errors=DISCARD)[0].args
    assert (settled.payouts, settled.fee, settled.refund) == (8 * AIC, fee_on(8 * AIC), 2 * AIC)
    d = deposit_of(chain, rid)
    assert d[0] == r.payer and d[2] is True and d[3] == FEE_BPS and d[4] == total


def test_settle_twice_reverts(chain):
    asset = register(chain, chain.roles.team)
    rid = run_id("twice")
    deposit(chain, rid, AIC + fee_on(AIC))
    settle(chain, rid, [asset], [AIC], 0)
    assert reverts(lambda: settle(chain, rid, [asset], [AIC], 0)) == f"RunEscrowAlreadyClosed(runId=0x{rid.hex()})"


def test_settle_by_a_stranger_reverts(chain):
    rid = run_id("stranger")
    deposit(chain, rid, AIC)
    error = reverts(lambda: settle(chain, rid, [], [], AIC, sender=chain.roles.stranger))
    assert error.startswith(f"AccessControlUnauthorizedAccount(account={chain.roles.stranger}")


@pytest.mark.parametrize(("amount", "refund"), [(AIC, 1), (AIC - 1, 0)], ids=["one-wei-too-much", "one-wei-short"])
def test_amounts_that_do_not_add_up_to_the_deposit_revert(chain, amount, refund):
    asset = register(chain, chain.roles.team)
    rid = run_id(f"mismatch-{amount}-{refund}")
    deposit_total = AIC + fee_on(AIC)
    deposit(chain, rid, deposit_total)
    asked = amount + fee_on(amount) + refund
    assert asked != deposit_total
    assert (
        reverts(lambda: settle(chain, rid, [asset], [amount], refund))
        == f"RunEscrowAmountMismatch(deposit={deposit_total}, total={asked})"
    )


def test_payouts_exceeding_the_deposit_revert(chain):
    asset = register(chain, chain.roles.team)
    rid = run_id("exceed")
    deposit(chain, rid, AIC)
    assert reverts(lambda: settle(chain, rid, [asset], [2 * AIC], 0)).startswith("RunEscrowAmountMismatch(")


def test_length_mismatch_unknown_asset_and_unknown_run_revert(chain):
    asset = register(chain, chain.roles.team)
    rid = run_id("lengths")
    deposit(chain, rid, AIC + fee_on(AIC))
    assert (
        reverts(lambda: settle(chain, rid, [asset, asset], [AIC], 0))
        == "RunEscrowLengthMismatch(assetIds=2, amounts=1)"
    )
    assert reverts(lambda: settle(chain, rid, [999], [AIC], 0)) == "RunEscrowUnknownAsset(assetId=999)"
    other = run_id("never-deposited")
    assert reverts(lambda: settle(chain, other, [], [], 0)) == f"RunEscrowUnknownRun(runId=0x{other.hex()})"


def test_deposit_rules(chain):
    rid = run_id("deposit")
    assert (
        reverts(lambda: chain.escrow.functions.deposit(rid, 0).transact({"from": chain.roles.payer}))
        == "RunEscrowZeroAmount()"
    )
    deposit(chain, rid, AIC)
    assert reverts(lambda: deposit(chain, rid, AIC)) == f"RunEscrowDepositExists(runId=0x{rid.hex()})"
    poor = chain.roles.stranger  # holds no AIC
    tx(chain.w3, chain.token.functions.approve(chain.escrow.address, AIC), poor)
    error = reverts(lambda: chain.escrow.functions.deposit(run_id("poor"), AIC).transact({"from": poor}))
    assert error.startswith("ERC20InsufficientBalance(")


def test_reclaim_only_by_the_payer_and_only_after_the_timeout(chain):
    rid = run_id("reclaim")
    deposit(chain, rid, AIC)
    before = balance(chain, chain.roles.payer)
    assert (  # the stranger's own entry under this id: there is none
        reverts(lambda: chain.escrow.functions.reclaim(rid).transact({"from": chain.roles.stranger}))
        == f"RunEscrowUnknownRun(runId=0x{rid.hex()})"
    )
    assert reverts(lambda: chain.escrow.functions.reclaim(rid).transact({"from": chain.roles.payer})).startswith(
        "RunEscrowTooEarly("
    )
    now = chain.w3.eth.get_block("latest").timestamp
    chain.w3.provider.ethereum_tester.time_travel(now + TIMEOUT + 1)
    tx(chain.w3, chain.escrow.functions.reclaim(rid), chain.roles.payer)
    assert balance(chain, chain.roles.payer) == before + AIC
    assert reverts(lambda: settle(chain, rid, [], [], AIC)) == f"RunEscrowAlreadyClosed(runId=0x{rid.hex()})"
    assert (
        reverts(lambda: chain.escrow.functions.reclaim(rid).transact({"from": chain.roles.payer}))
        == f"RunEscrowAlreadyClosed(runId=0x{rid.hex()})"
    )


def test_settled_deposit_cannot_be_reclaimed(chain):
    rid = run_id("settled-then-reclaim")
    deposit(chain, rid, AIC)
    settle(chain, rid, [], [], AIC)
    now = chain.w3.eth.get_block("latest").timestamp
    chain.w3.provider.ethereum_tester.time_travel(now + TIMEOUT + 1)
    assert (
        reverts(lambda: chain.escrow.functions.reclaim(rid).transact({"from": chain.roles.payer}))
        == f"RunEscrowAlreadyClosed(runId=0x{rid.hex()})"
    )


def test_revenue_follows_the_current_owner_of_the_asset(chain):
    r = chain.roles
    asset = register(chain, r.team)
    tx(chain.w3, chain.registry.functions.transferFrom(r.team, r.company, asset), r.team)
    rid = run_id("sold")
    deposit(chain, rid, AIC + fee_on(AIC))
    before = balance(chain, r.company), balance(chain, r.team)
    settle(chain, rid, [asset], [AIC], 0)
    assert (balance(chain, r.company), balance(chain, r.team)) == (before[0] + AIC, before[1])


def test_fee_cap_and_admin_only_settings(chain):
    e = chain.escrow.functions
    assert (
        reverts(lambda: e.setFee(1001).transact({"from": chain.roles.admin}))
        == "RunEscrowFeeTooHigh(feeBps=1001, maxFeeBps=1000)"
    )
    assert reverts(lambda: e.setFee(10).transact({"from": chain.roles.stranger})).startswith(
        "AccessControlUnauthorizedAccount("
    )
    assert reverts(lambda: e.setTreasury(ZERO).transact({"from": chain.roles.admin})) == "RunEscrowZeroAddress()"
    tx(chain.w3, e.setFee(1000), chain.roles.admin)
    assert e.feeBps().call() == 1000


def test_constructor_refuses_zero_addresses_and_a_fee_above_the_cap(chain):
    r, art = chain.roles, load_artifact("RunEscrow")
    t, g = chain.token.address, chain.registry.address
    assert (
        reverts(lambda: deploy(chain.w3, art, t, g, r.treasury, 1001, TIMEOUT, r.admin, r.settler))
        == "RunEscrowFeeTooHigh(feeBps=1001, maxFeeBps=1000)"
    )
    for args in [(ZERO, g, r.treasury), (t, ZERO, r.treasury), (t, g, ZERO)]:
        assert (
            reverts(lambda a=args: deploy(chain.w3, art, *a, 0, TIMEOUT, r.admin, r.settler))
            == "RunEscrowZeroAddress()"
        )


def test_reentrant_token_cannot_reclaim_during_settlement(chain, test_artifacts):
    r = chain.roles
    evil = deploy(chain.w3, test_artifacts["ReentrantToken"], sender=r.admin)
    escrow = deploy(
        chain.w3, load_artifact("RunEscrow"), evil.address, chain.registry.address, r.treasury, 0, 0, r.admin, r.settler
    )  # timeout 0: reclaim would otherwise be allowed at once
    asset = register(chain, r.team)
    rid = run_id("reentrancy")
    tx(chain.w3, evil.functions.transfer(evil.address, 10 * AIC), r.admin)
    tx(chain.w3, evil.functions.depositAsPayer(escrow.address, rid, 10 * AIC), r.admin)
    tx(chain.w3, escrow.functions.settle(evil.address, rid, [asset], [10 * AIC], 0), r.settler)
    assert evil.functions.attacked().call() is True
    assert evil.functions.attackSucceeded().call() is False
    from chain.errors import decode_revert

    assert decode_revert(evil.functions.attackError().call()) == "ReentrancyGuardReentrantCall()"
    assert evil.functions.balanceOf(r.team).call() == 10 * AIC
    assert evil.functions.balanceOf(escrow.address).call() == 0


ledgers = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10**24)), min_size=0, max_size=8)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ledger=ledgers, refund=st.integers(0, 10**24))
def test_any_ledger_pays_each_payee_exactly_its_share(chain, ledger, refund):
    r = chain.roles
    owners = [r.team, r.company, r.marketing, r.advisors]
    if not hasattr(chain, "prop_assets"):  # registered once; each example is rolled back to this point
        chain.prop_assets = [register(chain, o) for o in owners]
    asset_ids = chain.prop_assets
    tester = chain.w3.provider.ethereum_tester
    snap = tester.take_snapshot()
    try:
        ids = [asset_ids[k] for k, _ in ledger]
        amounts = [a for _, a in ledger]
        total = sum(amounts) + fee_on(sum(amounts)) + refund
        if total == 0:
            return
        rid = run_id(f"prop-{len(ledger)}-{total}")
        before = {w: balance(chain, w) for w in [*owners, r.treasury, r.payer]}
        deposit(chain, rid, total)
        settle(chain, rid, ids, amounts, refund)
        owed = {o: sum(a for (k, a) in ledger if owners[k] == o) for o in owners}
        for o in owners:
            assert balance(chain, o) - before[o] == owed[o]
        assert balance(chain, r.treasury) - before[r.treasury] == fee_on(sum(amounts))
        assert before[r.payer] - balance(chain, r.payer) == total - refund
        assert balance(chain, chain.escrow.address) == 0
        assert sum(owed.values()) + fee_on(sum(amounts)) + refund == total
    finally:
        tester.revert_to_snapshot(snap)


# --- settleBatch: served API calls, paid by the payer directly, exactly once ---------------------------


def settle_batch(chain, bid, asset_ids, amounts, payer=None, approve=True, fee_bps=FEE_BPS):
    payer = payer or chain.roles.payer
    if approve:
        total = sum(amounts) + fee_on(sum(amounts))
        tx(chain.w3, chain.token.functions.approve(chain.escrow.address, total), payer)
    return tx(chain.w3, chain.escrow.functions.settleBatch(bid, asset_ids, amounts, fee_bps), payer)


def test_settle_batch_pays_owners_and_fee_from_the_payer_in_one_transaction(chain):
    r = chain.roles
    model, service = register(chain, r.marketing), register(chain, r.advisors)
    bid = run_id("svc-1:batch:1")
    amounts = [3 * AIC, 7 * AIC]
    before = {who: balance(chain, who) for who in (r.payer, r.marketing, r.advisors, r.treasury)}
    receipt = settle_batch(chain, bid, [model, service], amounts)
    assert balance(chain, r.marketing) - before[r.marketing] == 3 * AIC
    assert balance(chain, r.advisors) - before[r.advisors] == 7 * AIC
    assert balance(chain, r.treasury) - before[r.treasury] == fee_on(10 * AIC)
    assert before[r.payer] - balance(chain, r.payer) == 10 * AIC + fee_on(10 * AIC)
    assert balance(chain, chain.escrow.address) == 0  # nothing is held
    settled = chain.escrow.events.Settled().process_receipt(receipt, errors=DISCARD)[0].args
    assert (settled.runId, settled.payouts, settled.fee, settled.refund) == (bid, 10 * AIC, fee_on(10 * AIC), 0)
    deposited = chain.escrow.events.Deposited().process_receipt(receipt, errors=DISCARD)[0].args
    assert (deposited.payer, deposited.amount) == (r.payer, 10 * AIC + fee_on(10 * AIC))
    paid = chain.escrow.events.Paid().process_receipt(receipt, errors=DISCARD)
    assert [(e.args.assetId, e.args.payee, e.args.amount) for e in paid] == [
        (model, r.marketing, 3 * AIC),
        (service, r.advisors, 7 * AIC),
    ]
    payer, _at, closed, fee_bps, amount = deposit_of(chain, bid)
    assert (payer, closed, fee_bps, amount) == (r.payer, True, FEE_BPS, 10 * AIC + fee_on(10 * AIC))


def test_a_batch_is_paid_once_and_never_collides_with_a_run(chain):
    r = chain.roles
    asset = register(chain, r.team)
    bid = run_id("svc-1:batch:2")
    settle_batch(chain, bid, [asset], [AIC])
    paid = balance(chain, r.team)
    assert reverts(lambda: settle_batch(chain, bid, [asset], [AIC])) == f"RunEscrowDepositExists(runId=0x{bid.hex()})"
    tx(chain.w3, chain.token.functions.approve(chain.escrow.address, AIC), r.payer)
    assert reverts(lambda: tx(chain.w3, chain.escrow.functions.deposit(bid, AIC), r.payer)).startswith(
        "RunEscrowDepositExists"
    )
    assert reverts(lambda: settle(chain, bid, [asset], [AIC], 0)).startswith("RunEscrowAlreadyClosed")
    assert reverts(lambda: tx(chain.w3, chain.escrow.functions.reclaim(bid), r.payer)).startswith(
        "RunEscrowAlreadyClosed"
    )
    rid = run_id("run-x")
    deposit(chain, rid, 2 * AIC)
    assert reverts(lambda: settle_batch(chain, rid, [asset], [AIC])).startswith("RunEscrowDepositExists")
    assert balance(chain, r.team) == paid


def test_settle_batch_rejects_bad_arguments_and_moves_nothing(chain):
    r = chain.roles
    asset = register(chain, r.team)
    before = balance(chain, r.payer)
    bid = run_id("svc-1:batch:bad")
    assert (
        reverts(lambda: settle_batch(chain, bid, [asset], [AIC, AIC]))
        == "RunEscrowLengthMismatch(assetIds=1, amounts=2)"
    )
    assert reverts(lambda: settle_batch(chain, bid, [], [])) == "RunEscrowZeroAmount()"
    assert reverts(lambda: settle_batch(chain, bid, [asset], [0])) == "RunEscrowZeroAmount()"
    assert reverts(lambda: settle_batch(chain, bid, [asset, 999], [AIC, AIC])) == "RunEscrowUnknownAsset(assetId=999)"
    tx(chain.w3, chain.token.functions.approve(chain.escrow.address, 0), r.payer)
    assert reverts(lambda: settle_batch(chain, bid, [asset], [AIC], approve=False)).startswith(
        "ERC20InsufficientAllowance"
    )
    assert reverts(lambda: settle_batch(chain, bid, [asset], [AIC], payer=r.stranger)).startswith(
        "ERC20InsufficientBalance"
    )
    assert balance(chain, r.payer) == before
    assert deposit_of(chain, bid)[0] == ZERO  # the id is still free


def test_reentrant_token_cannot_pay_another_batch_during_a_batch(chain, test_artifacts):
    r = chain.roles
    evil = deploy(chain.w3, test_artifacts["ReentrantToken"], sender=r.admin)
    escrow = deploy(
        chain.w3, load_artifact("RunEscrow"), evil.address, chain.registry.address, r.treasury, 0, 0, r.admin, r.settler
    )
    asset = register(chain, r.team)
    tx(chain.w3, evil.functions.transfer(evil.address, 10 * AIC), r.admin)
    tx(chain.w3, evil.functions.settleBatchAsPayer(escrow.address, run_id("b1"), [asset], [4 * AIC]), r.admin)
    assert evil.functions.attacked().call() is True
    assert evil.functions.attackSucceeded().call() is False
    from chain.errors import decode_revert

    assert decode_revert(evil.functions.attackError().call()) == "ReentrancyGuardReentrantCall()"
    assert evil.functions.balanceOf(r.team).call() == 4 * AIC
    assert escrow.functions.depositOf(evil.address, Web3.keccak(text="another batch")).call()[0] == ZERO


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ledger=ledgers)
def test_any_batch_pays_each_payee_exactly_its_share(chain, ledger):
    r = chain.roles
    owners = [r.team, r.company, r.marketing, r.advisors]
    if not hasattr(chain, "prop_assets"):
        chain.prop_assets = [register(chain, o) for o in owners]
    tester = chain.w3.provider.ethereum_tester
    snap = tester.take_snapshot()
    try:
        ids = [chain.prop_assets[k] for k, _ in ledger]
        amounts = [a for _, a in ledger]
        if sum(amounts) == 0:
            return
        before = {w: balance(chain, w) for w in [*owners, r.treasury, r.payer]}
        settle_batch(chain, run_id(f"batch-{len(ledger)}-{sum(amounts)}"), ids, amounts)
        owed = {o: sum(a for (k, a) in ledger if owners[k] == o) for o in owners}
        for o in owners:
            assert balance(chain, o) - before[o] == owed[o]
        assert balance(chain, r.treasury) - before[r.treasury] == fee_on(sum(amounts))
        assert before[r.payer] - balance(chain, r.payer) == sum(amounts) + fee_on(sum(amounts))
        assert balance(chain, chain.escrow.address) == 0
    finally:
        tester.revert_to_snapshot(snap)


# --- strangers: ids are predictable, payers are not settlers, the fee is the one quoted (issue 19, items 1, 2, 5) ---


def test_a_stranger_who_takes_a_batch_id_first_neither_blocks_nor_stands_in_for_the_payers_batch(chain):
    r = chain.roles
    mine, junk = register(chain, r.team), register(chain, r.stranger)
    bid = run_id("svc-public:batch:1")  # the service id is public, the batch number predictable
    tx(chain.w3, chain.token.functions.transfer(r.stranger, AIC), r.payer)
    settle_batch(chain, bid, [junk], [1], payer=r.stranger)  # squats the id for 1 wei, to its own asset
    assert deposit_of(chain, bid)[0] == ZERO  # the payer's entry under the id is untouched
    before = balance(chain, r.team)
    settle_batch(chain, bid, [mine], [3 * AIC])  # the payer's own batch still goes through, in full
    assert balance(chain, r.team) - before == 3 * AIC
    assert deposit_of(chain, bid, r.stranger)[4] == 1 + fee_on(1) and deposit_of(chain, bid)[4] == 3 * AIC + fee_on(
        3 * AIC
    )
    rid = run_id("run-public")
    tx(chain.w3, chain.token.functions.approve(chain.escrow.address, 1), r.stranger)
    tx(chain.w3, chain.escrow.functions.deposit(rid, 1), r.stranger)  # a run id taken by a stranger's deposit
    deposit(chain, rid, AIC + fee_on(AIC))
    settle(chain, rid, [mine], [AIC], 0)  # settles the payer's deposit, never the stranger's
    assert deposit_of(chain, rid, r.stranger)[2] is False and deposit_of(chain, rid)[2] is True


def test_a_payer_cannot_settle_its_own_deposit_nor_another_payers(chain):
    r = chain.roles
    mine = register(chain, r.payer)
    own, others = run_id("payer-own"), run_id("payer-others")
    deposit(chain, own, AIC + fee_on(AIC))
    tx(chain.w3, chain.token.functions.transfer(r.stranger, 2 * AIC), r.payer)
    deposit(chain, others, AIC + fee_on(AIC), payer=r.stranger)  # another payer's open deposit
    before = balance(chain, r.payer)
    for rid, payer in ((own, r.payer), (others, r.stranger)):
        error = reverts(lambda rid=rid, payer=payer: settle(chain, rid, [mine], [AIC], 0, sender=r.payer, payer=payer))
        assert error.startswith(f"AccessControlUnauthorizedAccount(account={r.payer}")
    assert balance(chain, r.payer) == before
    assert not deposit_of(chain, own)[2] and not deposit_of(chain, others, r.stranger)[2]
    assert chain.escrow.functions.hasRole(chain.escrow.functions.SETTLER_ROLE().call(), r.payer).call() is False


def test_a_fee_raised_between_deposit_and_settle_is_not_charged_to_that_deposit(chain):
    r = chain.roles
    asset = register(chain, r.team)
    rid = run_id("fee-quoted")
    deposit(chain, rid, 10 * AIC + fee_on(10 * AIC))
    tx(chain.w3, chain.escrow.functions.setFee(1000), r.admin)  # 10 %, after the payer was quoted 2.5 %
    before = balance(chain, r.treasury)
    assert reverts(lambda: settle(chain, rid, [asset], [9 * AIC], AIC)).startswith("RunEscrowAmountMismatch(")
    settle(chain, rid, [asset], [10 * AIC], 0)  # the deposit's own rate balances it
    assert balance(chain, r.treasury) - before == fee_on(10 * AIC)
    # A batch priced at the old rate is refused, never charged the new one.
    assert (
        reverts(lambda: settle_batch(chain, run_id("fee-batch"), [asset], [AIC]))
        == f"RunEscrowFeeChanged(quotedFeeBps={FEE_BPS}, feeBps=1000)"
    )
