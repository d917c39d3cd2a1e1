"""Closing Proof-of-Value epochs against the contract on an in-process EVM, with a private database: what is
counted, what is left out, and every way a close can go wrong (crash after sending, a race, an empty pool, a
chain that disagrees) without paying twice or losing counted usage."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from web3.logs import DISCARD

from builder.errors import ChainError
from runtime.db import ProviderRow, RewardEpoch, Run, Settlement, session_factory
from runtime.rewards import RewardsChain, claim, close_epoch, draft_epoch
from tests.chain.conftest import tx

AIC = 10**18
HASH = bytes.fromhex("ab" * 32)


@pytest.fixture()
def db(tmp_path):
    return session_factory(f"sqlite:///{tmp_path / 'aib.db'}")


@pytest.fixture()
def rc(chain):
    r = chain.roles
    tx(chain.w3, chain.token.functions.approve(chain.rewards.address, 10**9 * AIC), r.ecosystem)
    return RewardsChain(
        chain.w3, chain.token, chain.registry, chain.rewards, r.settler, r.ecosystem, chain.escrow.address, {}
    )


def register(chain, owner, uri: str, content: bytes = HASH) -> int:
    receipt = tx(chain.w3, chain.registry.functions.register(owner, 0, content, uri, 1), owner)
    return chain.registry.events.AssetRegistered().process_receipt(receipt, errors=DISCARD)[0].args.assetId


def settled(db, chain, run_id: str, payouts: list[tuple[str, int, int]], escrow: str | None = None) -> None:
    """A run settled through the escrow: (ref, asset id, wei) paid."""
    with db() as s:
        s.add(
            Settlement(
                id=run_id, chain_id=chain.w3.eth.chain_id, escrow=escrow or chain.escrow.address,
                onchain_id="0x" + "00" * 32, payer=chain.roles.payer, status="settled", deposit_wei=0,
                payouts=[{"block_ref": ref, "asset_id": a, "amount_wei": w} for ref, a, w in payouts],
            )
        )  # fmt: skip
        s.commit()


def add_run(db, run_id: str, plan: dict, metrics: dict, status="succeeded", provider_id=None, error=None) -> None:
    with db() as s:
        s.add(
            Run(
                id=run_id, name=run_id, status=status, pipeline_yaml="", pipeline_hash="h", plan=plan, plan_hash="p",
                quote_wei=0, metrics=metrics, provider_id=provider_id, error=error,
            )
        )  # fmt: skip
        s.commit()


def test_an_epoch_counts_each_settlement_once_and_pays_pro_rata(chain, rc, db):
    r = chain.roles
    a, b = register(chain, r.marketing, "uri-a"), register(chain, r.advisors, "uri-b", bytes.fromhex("cd" * 32))
    settled(db, chain, "run-1", [("a@1", a, 3 * AIC), ("b@1", b, 1 * AIC)])
    settled(db, chain, "run-2", [("a@1", a, 0)])
    settled(db, chain, "run-other-escrow", [("a@1", a, 50 * AIC)], escrow="0x" + "11" * 20)  # another chain's
    with db() as s:
        row = close_epoch(s, rc, 100 * AIC)
    assert isinstance(row, RewardEpoch) and row.number == 1 and row.status == "closed"
    assert {p["asset_id"]: int(p["amount_wei"]) for p in row.report["paid"]} == {a: 75 * AIC, b: 25 * AIC}
    assert row.report["settlements"] == ["run-1", "run-2"]
    with db() as s:
        counted = {x.id: x.reward_epoch_id for x in s.scalars(select(Settlement))}
        assert counted == {"run-1": row.id, "run-2": row.id, "run-other-escrow": None}
        again = close_epoch(s, rc, 100 * AIC)  # nothing new: no epoch, nothing sent
    assert not isinstance(again, RewardEpoch) and not again.candidates
    assert rc.rewards.functions.epochCount().call() == 1
    with db() as s:
        paid = claim(s, rc, 1)
        assert {p["asset_id"]: p["outcome"] for p in paid} == {a: "paid", b: "paid"}
        assert {p["outcome"] for p in claim(s, rc, 1)} == {"claimed already"}


def test_a_crash_after_sending_is_finished_from_the_chain_and_a_second_closer_does_not_pay_again(
    chain, rc, db, monkeypatch
):
    a = register(chain, chain.roles.marketing, "uri-a")
    settled(db, chain, "run-1", [("a@1", a, AIC)])
    real = rc.send

    def send_and_die(call, sender=None):
        real(call, sender)
        raise SystemExit("killed after the transaction was sent")

    monkeypatch.setattr(rc, "send", send_and_die)
    pool = rc.token.functions.balanceOf(rc.pool).call()
    with pytest.raises(SystemExit), db() as s:
        close_epoch(s, rc, 10 * AIC)
    monkeypatch.undo()
    with db() as s:
        assert s.scalar(select(RewardEpoch.status)) == "pending"
    settled(db, chain, "run-2", [("a@1", a, AIC)])  # usage after the crash waits for the next epoch
    with db() as s:
        row = close_epoch(s, rc, 999 * AIC)  # the pending epoch is finished as written, whatever the new amount
    assert row.number == 1 and row.status == "closed" and row.total_wei == 10 * AIC
    assert rc.token.functions.balanceOf(rc.pool).call() == pool - 10 * AIC  # pulled once
    with db() as s:
        assert s.get(Settlement, "run-2").reward_epoch_id is None
        second = close_epoch(s, rc, 5 * AIC)
    assert second.number == 2 and second.report["settlements"] == ["run-2"]


def test_an_empty_pool_refuses_the_epoch_and_writes_nothing(chain, rc, db):
    a = register(chain, chain.roles.marketing, "uri-a")
    settled(db, chain, "run-1", [("a@1", a, AIC)])
    tx(chain.w3, chain.token.functions.approve(chain.rewards.address, AIC), chain.roles.ecosystem)
    with pytest.raises(ChainError, match=r"the incentive pool .* can give 1 AIC but the epoch needs 10 AIC"), db() as s:
        close_epoch(s, rc, 10 * AIC)
    with db() as s:
        assert s.scalar(select(RewardEpoch.id)) is None and s.get(Settlement, "run-1").reward_epoch_id is None
    assert rc.rewards.functions.epochCount().call() == 0
    with pytest.raises(ChainError, match="more than 0 AIC"), db() as s:
        close_epoch(s, rc, 0)


def test_a_chain_that_closed_epochs_this_database_does_not_know_is_refused(chain, rc, db):
    from chain.merkle import build_tree

    a = register(chain, chain.roles.marketing, "uri-a")
    tree = build_tree(1, {a: AIC})
    tx(chain.w3, chain.rewards.functions.closeEpoch(1, tree.root, AIC, b"\0" * 32), chain.roles.settler)
    settled(db, chain, "run-1", [("a@1", a, AIC)])
    with pytest.raises(ChainError, match="has closed 1 epoch.* but this database knows 0"), db() as s:
        close_epoch(s, rc, AIC)


def test_a_pending_epoch_whose_number_was_taken_with_another_root_is_not_recorded_as_ours(chain, rc, db, monkeypatch):
    from chain.merkle import build_tree

    a = register(chain, chain.roles.marketing, "uri-a")
    settled(db, chain, "run-1", [("a@1", a, AIC)])

    def another_operator_first(call, sender=None):
        other = build_tree(1, {a: 2 * AIC})
        tx(chain.w3, chain.rewards.functions.closeEpoch(1, other.root, 2 * AIC, b"\0" * 32), chain.roles.settler)
        raise ChainError("reverted")

    monkeypatch.setattr(rc, "send", another_operator_first)
    with pytest.raises(ChainError), db() as s:
        close_epoch(s, rc, 10 * AIC)
    monkeypatch.undo()
    with pytest.raises(ChainError, match="closed on chain with another root"), db() as s:
        close_epoch(s, rc, 10 * AIC)
    with db() as s:
        assert s.scalar(select(RewardEpoch.status)) == "pending"  # kept for an operator to look at, never "closed"


def test_junk_is_left_out_with_its_reason(chain, rc, db):
    r = chain.roles
    original = register(chain, r.marketing, "aib://datasets/ds-original")
    copy = register(chain, r.team, "aib://datasets/ds-copy")  # the same bytes under another listing
    bad_data = register(chain, r.advisors, "aib://blocks/data.noise@1", bytes.fromhex("01" * 32))
    offer = register(chain, r.company, "aib://offers/cheat", bytes.fromhex("02" * 32))
    good = register(chain, r.payer, "aib://blocks/model@1", bytes.fromhex("03" * 32))
    step = {"kind": "data", "block_id": "data.noise", "version": "1", "royalties": []}
    add_run(db, "run-noise-1", {"steps": [step]}, {"accuracy": 0.30, "baseline_accuracy": 0.34})
    add_run(db, "run-noise-2", {"steps": [step]}, {"accuracy": 0.33, "baseline_accuracy": 0.34})
    with db() as s:
        s.add(ProviderRow(id="cheat", name="cheat", tier="cpu", price_wei_per_s=1, memory_gb=1, slots=1, region="",
                          hardware={}, datasets=[], reputation=0.5, status="online", asset_id=offer))  # fmt: skip
        s.commit()
    add_run(db, "run-cheat", {"steps": []}, {}, status="failed", provider_id="cheat",
            error="verification failed: step 'classifier': epoch 3 …")  # fmt: skip
    settled(db, chain, "run-1", [("dataset:ds-copy@1", copy, AIC), ("data.noise@1", bad_data, AIC),
                                 ("offer:cheat", offer, AIC), ("model@1", good, AIC)])  # fmt: skip
    with db() as s:
        draft = draft_epoch(s, rc, 8 * AIC)
    assert draft.excluded == {
        copy: f"a duplicate of asset {original} (the same content hash)",
        bad_data: "none of the 2 model(s) trained on it beat the trivial baseline "
        "(best accuracy 0.33 vs baseline 0.34)",
        offer: "its provider cheat was caught cheating (run run-cheat)",
    }
    assert draft.shares == {good: 8 * AIC}  # the junk's share goes to the asset really used


def test_an_asset_slashed_on_chain_is_left_out(chain, rc, db):
    import hashlib

    r = chain.roles
    offer = tx(chain.w3, chain.registry.functions.register(r.payer, 2, HASH, "aib://offers/x", 1), r.payer)
    offer = chain.registry.events.AssetRegistered().process_receipt(offer, errors=DISCARD)[0].args.assetId
    hashes = [hashlib.sha256(bytes([i])).digest() for i in range(3)]
    rid = hashlib.sha256(b"run").digest()
    tx(chain.w3, chain.rewards.functions.submitReceipt(rid, offer, hashes), r.payer)
    tx(chain.w3, chain.rewards.functions.slash(rid, offer, hashes, 1, b"\x09" * 32), r.settler)
    settled(db, chain, "run-1", [("offer:x", offer, AIC)])
    with db() as s:
        draft = draft_epoch(s, rc, AIC)
    assert draft.excluded == {offer: "slashed on chain for proven cheating"} and not draft.shares
    with db() as s:
        nothing = close_epoch(s, rc, AIC)
    assert not isinstance(nothing, RewardEpoch) and rc.rewards.functions.epochCount().call() == 0
