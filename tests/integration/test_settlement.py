"""Paying runs on a real Anvil: deposit before, settle after, refusal when unaffordable, crash recovery."""

from __future__ import annotations

import json
import os

import pytest
from sqlalchemy import select

from builder.errors import ChainError
from tests.conftest import TEMPLATES
from tests.integration.conftest import aib, run_pipeline

WATCHED = ("chat.faq-csv@1.0.0", "compute.local@1.0.0")


def payees(chain) -> dict[str, str]:
    """The current owner of each watched block's asset: who must be paid (other tests may have sold one)."""
    from chain.client import contract
    from runtime.chain_node import address_book

    registry = contract(chain.w3, "AssetRegistry", address_book())
    return {ref: registry.functions.ownerOf(chain.asset_of[ref]).call() for ref in WATCHED}


def balances(chain, addresses) -> dict[str, int]:
    return {a: chain.token.functions.balanceOf(a).call() for a in addresses}


def test_a_paid_run_pays_every_provider_once_and_refunds_the_rest(paid_chain):
    providers = payees(paid_chain)
    watched = [paid_chain.payer, *providers.values()]
    before = balances(paid_chain, watched)
    r = aib("run", str(TEMPLATES / "faq-chatbot.yaml"), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    s = summary["settlement"]
    assert s["status"] == "settled" and s["settle_tx"].startswith("0x") and s["deposit_tx"].startswith("0x")
    payouts = {p["block_ref"]: p for p in s["payouts"]}
    assert set(payouts) == {
        "chat.faq-csv@1.0.0",
        "chat.minilm-encoder@1.0.0",
        "chat.intent-classifier@1.0.0",
        "service.api@1.0.0",
        "compute.local@1.0.0",
    }
    after = balances(paid_chain, watched)
    for ref, address in providers.items():
        assert after[address] - before[address] == payouts[ref]["amount_wei"]
        assert payouts[ref]["payee"] == address
    paid = sum(p["amount_wei"] for p in s["payouts"])
    assert paid == summary["cost"]["total_wei"] and s["shortfall_wei"] == 0
    assert before[paid_chain.payer] - after[paid_chain.payer] == paid + s["fee_wei"]
    assert paid + s["fee_wei"] + s["refund_wei"] == s["deposit_wei"]
    assert paid_chain.token.functions.balanceOf(paid_chain.escrow.address).call() == 0
    assert all(u["settled_tx"] == s["settle_tx"] for u in summary["usage"])
    shown = json.loads(aib("payouts", summary["run_id"], "--json").stdout)
    assert shown["payouts"] == [{**p, "tx": s["settle_tx"]} for p in s["payouts"]]
    again = aib("settle", summary["run_id"])  # idempotent: nothing is sent twice
    assert again.returncode == 0 and s["settle_tx"] in again.stdout
    assert balances(paid_chain, watched) == after


def test_an_unaffordable_run_is_refused_before_any_work(paid_chain):
    from runtime.db import Run, session_factory

    spare = paid_chain.w3.eth.accounts[6]
    held = paid_chain.token.functions.balanceOf(paid_chain.payer).call()
    paid_chain.send(paid_chain.token.functions.transfer(spare, held), paid_chain.payer)  # empty the wallet
    try:
        with session_factory()() as s:
            runs_before = len(list(s.scalars(select(Run.id))))
        r = aib("run", str(TEMPLATES / "faq-chatbot.yaml"), "--json")
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert f"error: the wallet {paid_chain.payer} holds 0 AIC but this run needs a deposit of" in r.stderr
        with session_factory()() as s:
            assert len(list(s.scalars(select(Run.id)))) == runs_before  # nothing started, nothing recorded
    finally:
        paid_chain.send(paid_chain.token.functions.transfer(paid_chain.payer, held), spare)


def _finished_run_with_deposit(chain) -> str:
    """A finished run (real Prefect run) whose quote was deposited in the escrow."""
    from builder.pipeline import load_pipeline
    from builder.plan import compile_plan
    from runtime import settlement as pay
    from runtime.db import session_factory

    summary = run_pipeline(TEMPLATES / "faq-chatbot.yaml")
    assert summary["status"] == "succeeded"
    amount = pay.deposit_amount(chain, compile_plan(load_pipeline(TEMPLATES / "faq-chatbot.yaml")))
    with session_factory()() as s:
        pay.deposit(s, chain, summary["run_id"], amount)
    return summary["run_id"]


def test_crash_after_sending_settle_is_reconciled_without_paying_twice(paid_chain, monkeypatch):
    from runtime import settlement as pay
    from runtime.db import Settlement, session_factory

    run_id = _finished_run_with_deposit(paid_chain)
    watched = list(payees(paid_chain).values())
    before = balances(paid_chain, watched)

    def crash(*args, **kwargs):
        raise SystemExit("the process died after the settle transaction was sent")

    monkeypatch.setattr(pay, "_record_settled", crash)
    with pytest.raises(SystemExit), session_factory()() as s:
        pay.settle_run(s, paid_chain, run_id)
    monkeypatch.undo()
    with session_factory()() as s:
        assert s.get(Settlement, run_id).status == "settle_pending"  # on chain it is paid; locally not recorded
    paid_once = balances(paid_chain, watched)
    assert all(paid_once[a] > before[a] for a in watched)

    r = aib("settle", "--pending")
    assert r.returncode == 0 and f"{run_id}: settled" in r.stdout, r.stdout + r.stderr
    assert balances(paid_chain, watched) == paid_once  # reconciled from the chain's events: not paid again
    with session_factory()() as s:
        row = s.get(Settlement, run_id)
        assert row.status == "settled" and row.settle_tx and all(p["payee"] for p in row.payouts)


def test_node_down_mid_settlement_stays_pending_then_settles_once(paid_chain, monkeypatch):
    from runtime import settlement as pay
    from runtime.db import Settlement, session_factory

    run_id = _finished_run_with_deposit(paid_chain)
    port = paid_chain.w3.provider.endpoint_uri.rsplit(":", 1)[1]
    real_send = pay.Chain.send

    def node_dies(self, call, sender):
        if call.fn_name == "settle":
            assert aib("chain", "stop").returncode == 0  # the node goes away just as we send
        return real_send(self, call, sender)

    monkeypatch.setattr(pay.Chain, "send", node_dies)
    with pytest.raises(ChainError), session_factory()() as s:
        pay.settle_run(s, paid_chain, run_id)
    monkeypatch.undo()
    down = aib("settle", "--pending")
    assert down.returncode == 2 and "the local chain is not running" in down.stderr
    with session_factory()() as s:
        assert s.get(Settlement, run_id).status == "settle_pending"

    assert aib("chain", "start", "--port", port).returncode == 0  # state reloaded from disk
    providers = payees(paid_chain)
    before = balances(paid_chain, list(providers.values()))
    r = aib("settle", "--pending")
    assert r.returncode == 0 and f"{run_id}: settled" in r.stdout, r.stdout + r.stderr
    after = balances(paid_chain, list(providers.values()))
    with session_factory()() as s:
        row = s.get(Settlement, run_id)
        paid = {p["block_ref"]: p["amount_wei"] for p in row.payouts}
    for ref, address in providers.items():
        assert after[address] - before[address] == paid[ref]
    assert aib("settle", "--pending").stdout.strip() == "nothing pending"


def test_a_killed_paid_run_settles_its_compute_and_refunds_the_rest(paid_chain, tmp_path):
    import shutil
    import signal
    import time

    from tests.integration.test_cli import _start_and_wait_for_checkpoint

    shutil.copytree(TEMPLATES, tmp_path / "t")
    overrides = ["classifier.epochs=150", "classifier.batch_size=4", f"classifier.seed={time.time_ns() % 10**6}"]
    proc, _ = _start_and_wait_for_checkpoint(tmp_path / "t" / "faq-chatbot.yaml", overrides)
    os.killpg(proc.pid, signal.SIGKILL)  # the machine dies mid-training, after the deposit
    proc.wait()
    r = aib("settle", "--pending")
    assert r.returncode == 0, r.stderr
    runs = json.loads(aib("runs", "list", "--json").stdout)
    killed = runs[0]
    assert killed["status"] == "failed" and f"{killed['run_id']}: settled" in r.stdout
    s = json.loads(aib("payouts", killed["run_id"], "--json").stdout)
    assert {p["block_ref"] for p in s["payouts"]} == {"compute.local@1.0.0"}  # no per-run fees for a failed run
    usage = json.loads(aib("usage", "--run", killed["run_id"], "--json").stdout)
    interrupted = [u for u in usage if u["node_id"] == "classifier"]
    assert len(interrupted) == 1 and interrupted[0]["quantity"] > 0  # the killed step's device time is billed
    assert s["refund_wei"] > 0.9 * s["deposit_wei"]
    assert sum(p["amount_wei"] for p in s["payouts"]) + s["fee_wei"] + s["refund_wei"] == s["deposit_wei"]
