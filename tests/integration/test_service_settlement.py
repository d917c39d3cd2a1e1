"""Paying served API calls on a real Anvil: one settleBatch transaction per batch, exactly once, crash-safe."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import func, select

from tests.integration.conftest import aib


def call(served, n: int) -> None:
    for i in range(n):
        r = httpx.post(
            f"{served.url}/v1/predict",
            json={"text": f"how do I reset my password {i}"},
            headers={"X-API-Key": served.key},
        )
        assert r.status_code == 200
    r = httpx.post(
        f"{served.url}/v1/predict/batch", json={"texts": ["refund please"] * 5}, headers={"X-API-Key": served.key}
    )
    assert r.status_code == 200  # a batch request bills its 5 items


def owners(chain, payouts) -> dict[int, str]:
    from chain.client import contract
    from runtime.chain_node import address_book

    registry = contract(chain.w3, "AssetRegistry", address_book())
    return {p["asset_id"]: registry.functions.ownerOf(p["asset_id"]).call() for p in payouts}


def unpaid_calls(service_id: str) -> int:
    from runtime.db import Usage, session_factory

    with session_factory()() as s:
        q = select(func.coalesce(func.sum(Usage.quantity), 0)).where(
            Usage.service_id == service_id, Usage.batch_id.is_(None)
        )
        return round(s.scalar(q))


def test_served_calls_are_paid_in_one_transaction_to_every_block_owner(paid_chain, served):
    from runtime.db import Usage, session_factory
    from tests.integration.test_settlement import FAQ_BLOCKS, asset_owners, balances, catalog, fee_terms

    chain = paid_chain
    earlier = aib("settle", "services", "--service", served.service_id)  # calls other tests made are paid first
    assert earlier.returncode == 0, earlier.stderr
    call(served, 12)
    calls = 12 + 5  # twelve single calls and one batch of five
    assert unpaid_calls(served.service_id) == calls
    # Every block of the served pipeline with a per-1k-calls price earns it on each call (the catalog's prices).
    listed = catalog()
    price_per_1k = {ref: listed[ref]["call_price"]["amount_wei"] for ref in FAQ_BLOCKS if listed[ref]["call_price"]}
    assert set(price_per_1k) == {"chat.minilm-encoder@1.0.0", "chat.intent-classifier@1.0.0", "service.api@1.0.0"}
    owed = {ref: price * calls // 1000 for ref, price in price_per_1k.items()}
    owner = asset_owners(chain, owed)
    treasury, fee_bps = fee_terms(chain)
    watched = {chain.payer, treasury, chain.escrow.address, *owner.values()}
    before = balances(chain, watched)

    r = aib("settle", "services", "--service", served.service_id, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["errors"] == [] and len(out["batches"]) == 1
    batch = out["batches"][0]
    receipt = chain.w3.eth.get_transaction_receipt(batch["settle_tx"])
    assert receipt.status == 1 and receipt.to == chain.escrow.address  # the payment is this one transaction
    after = balances(chain, watched)
    total = sum(owed.values())
    fee = total * fee_bps // 10_000
    expected = dict.fromkeys(watched, 0)
    for ref, amount in owed.items():
        expected[owner[ref]] += amount
    expected[treasury] += fee
    expected[chain.payer] -= total + fee
    assert {a: after[a] - before[a] for a in watched} == expected

    assert batch["status"] == "settled" and batch["calls"] == calls  # what the CLI reports is what the chain did
    assert (batch["payouts_wei"], batch["fee_wei"]) == (total, fee)
    assert {p["block_ref"]: (p["payee"], p["amount_wei"]) for p in batch["payouts"]} == {
        ref: (owner[ref], amount) for ref, amount in owed.items()
    }
    with session_factory()() as s:
        rows = list(s.scalars(select(Usage).where(Usage.batch_id == batch["batch_id"])))
        assert sum(u.quantity for u in rows) == calls
        assert {u.settled_tx for u in rows} == {batch["settle_tx"]}
    shown = json.loads(aib("payouts", batch["batch_id"], "--json").stdout)
    assert shown == batch

    again = aib("settle", "services", "--service", served.service_id)
    assert again.returncode == 0 and again.stdout.strip() == "no unpaid calls"
    assert balances(chain, watched) == after


def test_a_crash_after_sending_a_batch_is_reconciled_without_paying_twice(paid_chain, served, monkeypatch):
    from runtime import service_settlement as svc
    from runtime.db import ServiceBatch, session_factory

    call(served, 3)

    def crash(*args, **kwargs):
        raise SystemExit("the process died after the batch transaction was sent")

    monkeypatch.setattr(svc, "_record", crash)
    with pytest.raises(SystemExit), session_factory()() as s:
        svc.settle_services(s, paid_chain, served.service_id)
    monkeypatch.undo()
    with session_factory()() as s:
        open_ = list(s.scalars(select(ServiceBatch).where(ServiceBatch.status == "pending")))
        assert len(open_) == 1
        batch_id, payouts = open_[0].id, open_[0].payouts
    payees = owners(paid_chain, payouts)
    paid_once = {a: paid_chain.token.functions.balanceOf(a).call() for a in payees.values()}

    call(served, 2)  # new calls arrive meanwhile: they go into the next batch, not the open one
    r = aib("settle", "services", "--json")
    assert r.returncode == 0, r.stderr
    batches = {b["batch_id"]: b for b in json.loads(r.stdout)["batches"]}
    assert batches[batch_id]["status"] == "settled"  # found paid on chain, recorded, not sent again
    logs = paid_chain.escrow.events.Settled.get_logs(
        from_block=0, argument_filters={"runId": paid_chain.onchain_id(batch_id), "payer": paid_chain.payer}
    )
    assert len(logs) == 1 and logs[0].transactionHash.to_0x_hex() == batches[batch_id]["settle_tx"]
    newer = [b for b in batches.values() if b["batch_id"] != batch_id and b["service_id"] == served.service_id]
    assert len(newer) == 1 and newer[0]["calls"] == 7 and newer[0]["status"] == "settled"
    gained = {a: paid_chain.token.functions.balanceOf(a).call() - paid_once[a] for a in payees.values()}
    # Since the crash, each owner got exactly the batches this settlement sent (other services' calls in the
    # session are settled too) — and nothing for the reconciled batch, which was paid once before.
    sent = [q for b in batches.values() if b["batch_id"] != batch_id for q in b["payouts"]]
    for payee, amount in gained.items():
        assert amount == sum(q["amount_wei"] for q in sent if q["payee"] == payee)
    assert unpaid_calls(served.service_id) == 0


def test_an_unregistered_block_leaves_the_batch_unopened_with_one_sentence(paid_chain, served, monkeypatch):
    from runtime import service_settlement as svc
    from runtime.db import session_factory

    call(served, 1)
    monkeypatch.setattr(paid_chain, "asset_of", {})
    with session_factory()() as s:
        batches, errors = svc.settle_services(s, paid_chain, served.service_id)
    assert batches == [] and len(errors) == 1
    assert "has no asset on this chain; register it with `aib assets register" in errors[0]
    assert unpaid_calls(served.service_id) == 6  # still unbatched: nothing is lost
    r = aib("settle", "services", "--service", "svc-nope")
    assert r.returncode == 2 and r.stderr.startswith("error: no service 'svc-nope'")


def test_a_keystore_wallet_pays_a_batch_by_signing_it_locally(paid_chain, served, tmp_path, monkeypatch):
    from chain.accounts import create_keystore

    address = create_keystore(tmp_path / "payer.json", "a long enough password")
    assert address not in paid_chain.w3.eth.accounts  # Anvil does not hold this key
    paid_chain.w3.eth.send_transaction({"from": paid_chain.w3.eth.accounts[0], "to": address, "value": 10**18})
    assert aib("wallet", "fund", address, "2 AIC").returncode == 0
    (tmp_path / "pw").write_text("a long enough password\n")
    (tmp_path / "pw").chmod(0o600)  # a password file must be private
    monkeypatch.setenv("AIB_KEYSTORE", str(tmp_path / "payer.json"))
    monkeypatch.setenv("AIB_KEYSTORE_PASSWORD_FILE", str(tmp_path / "pw"))
    assert json.loads(aib("wallet", "balance", "--json").stdout) == {
        "address": address,
        "balance_wei": 2 * 10**18,
        "balance": "2 AIC",
    }
    call(served, 4)
    calls = unpaid_calls(served.service_id)
    r = aib("settle", "services", "--service", served.service_id, "--json")
    assert r.returncode == 0, r.stderr
    batch = json.loads(r.stdout)["batches"][0]
    assert batch["status"] == "settled" and batch["payer"] == address and batch["calls"] == calls
    assert paid_chain.w3.eth.get_transaction(batch["settle_tx"])["from"] == address
    left = paid_chain.token.functions.balanceOf(address).call()
    assert left == 2 * 10**18 - batch["payouts_wei"] - batch["fee_wei"]


def test_two_settlements_opening_a_batch_at_once_never_share_or_lose_calls(paid_chain, served):
    from sqlalchemy import event

    from builder.errors import ChainError
    from runtime import service_settlement as svc
    from runtime.db import Service, ServiceBatch, Usage, session_factory, utcnow

    call(served, 2)
    unpaid = unpaid_calls(served.service_id)
    Session = session_factory()
    with Session() as s:
        taken = s.scalar(select(func.count()).where(ServiceBatch.service_id == served.service_id)) + 1

    def other_settlement_wins(session, _ctx, _instances):
        with Session() as other:  # commits the same batch id first, as a second process would
            other.add(
                ServiceBatch(
                    id=f"{served.service_id}:batch:{taken}",
                    service_id=served.service_id,
                    chain_id=1,
                    escrow=paid_chain.escrow.address,
                    onchain_id="0x" + "00" * 32,
                    payer=paid_chain.payer,
                    status="nothing_owed",
                    calls=0,
                    first_usage_id=0,
                    last_usage_id=0,
                    payouts=[],
                    payouts_wei=0,
                    fee_wei=0,
                    created_at=utcnow(),
                )
            )
            other.commit()

    with Session() as s:
        event.listen(s, "before_flush", other_settlement_wins, once=True)
        with pytest.raises(ChainError, match="another settlement is opening a batch of service .* run it again"):
            svc.open_batch(s, paid_chain, s.get(Service, served.service_id))
    assert unpaid_calls(served.service_id) == unpaid  # the loser changed nothing
    with Session() as s:
        batch = svc.open_batch(s, paid_chain, s.get(Service, served.service_id))
        assert batch.id.endswith(f":batch:{taken + 1}") and batch.calls == unpaid
        assert s.scalar(select(func.sum(Usage.quantity)).where(Usage.batch_id == batch.id)) == unpaid


def test_a_stranger_who_pays_the_next_batch_ids_first_takes_nothing_from_the_owners(paid_chain, served):
    """Batch ids are predictable (`SERVICE:batch:N`, the service id is public): another chain account pays the next
    three ids first, 1 wei each to an asset it chose. The owners must still be paid for every call, by us."""
    from runtime.db import ServiceBatch, session_factory
    from tests.integration.test_settlement import FAQ_BLOCKS, asset_owners, balances, catalog, fee_terms

    chain = paid_chain
    assert aib("settle", "services", "--service", served.service_id).returncode == 0  # earlier calls paid first
    call(served, 6)
    calls = 6 + 5
    stranger = chain.w3.eth.accounts[3]  # not one of the deployment's roles
    chain.send(chain.token.functions.transfer(stranger, 10**18), chain.payer)
    chain.send(chain.token.functions.approve(chain.escrow.address, 10**18), stranger)
    with session_factory()() as s:
        taken = s.scalar(select(func.count()).where(ServiceBatch.service_id == served.service_id))
    junk = chain.asset_of["chat.faq-csv@1.0.0"]
    for n in range(taken + 1, taken + 4):
        squat = chain.onchain_id(f"{served.service_id}:batch:{n}")
        chain.send(chain.escrow.functions.settleBatch(squat, [junk], [1], fee_terms(chain)[1]), stranger)

    listed = catalog()
    owed = {ref: listed[ref]["call_price"]["amount_wei"] * calls // 1000
            for ref in FAQ_BLOCKS if listed[ref]["call_price"]}  # fmt: skip
    owner = asset_owners(chain, owed)
    treasury, fee_bps = fee_terms(chain)
    watched = {chain.payer, treasury, *owner.values()}
    before = balances(chain, watched)
    r = aib("settle", "services", "--service", served.service_id, "--json")
    assert r.returncode == 0, r.stderr
    [batch] = json.loads(r.stdout)["batches"]
    after = balances(chain, watched)
    total = sum(owed.values())
    expected = dict.fromkeys(watched, 0)
    for ref, amount in owed.items():
        expected[owner[ref]] += amount
    expected[treasury] += total * fee_bps // 10_000
    expected[chain.payer] -= total + total * fee_bps // 10_000
    assert {a: after[a] - before[a] for a in watched} == expected  # every owner paid by us, in full
    assert chain.w3.eth.get_transaction(batch["settle_tx"])["from"] == chain.payer  # our payment, not the squat's
