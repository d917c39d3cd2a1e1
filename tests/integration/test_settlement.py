"""Paying runs on a real Anvil: deposit before, settle after, refusal when unaffordable, crash recovery."""

from __future__ import annotations

import json
import os
import time

import pytest
from sqlalchemy import select

from builder.errors import ChainError
from tests.conftest import TEMPLATES
from tests.integration.conftest import aib, run_pipeline

WATCHED = ("chat.faq-csv@1.0.0", "compute.local@1.0.0")
FAQ_BLOCKS = (  # the faq-chatbot-fast template's blocks, each priced per run
    "chat.faq-csv@1.0.0",
    "chat.minilm-encoder@1.0.0",
    "chat.intent-classifier@1.0.0",
    "service.api@1.0.0",
)
COMPUTE = "compute.local@1.0.0"  # paid per device second actually used


def asset_owners(chain, refs) -> dict[str, str]:
    """The current owner of each block's asset, read from the AssetRegistry: who must be paid (other tests may
    have sold one)."""
    from chain.client import contract
    from runtime.chain_node import address_book

    registry = contract(chain.w3, "AssetRegistry", address_book())
    return {ref: registry.functions.ownerOf(chain.asset_of[ref]).call() for ref in refs}


def payees(chain) -> dict[str, str]:
    return asset_owners(chain, WATCHED)


def balances(chain, addresses) -> dict[str, int]:
    """AIC balance of each address, read from the token contract."""
    return {a: chain.token.functions.balanceOf(a).call() for a in addresses}


def catalog() -> dict[str, dict]:
    """The block catalog as `aib blocks list --json` shows it to a user: block ref -> spec (prices included)."""
    r = aib("blocks", "list", "--json")
    assert r.returncode == 0, r.stderr
    return {f"{b['id']}@{b['version']}": b for b in json.loads(r.stdout)}


def fee_terms(chain) -> tuple[str, int]:
    """(treasury, fee in basis points of the payouts), as the escrow contract holds them."""
    return chain.escrow.functions.treasury().call(), chain.escrow.functions.feeBps().call()


def test_a_paid_run_pays_every_provider_once_and_refunds_the_rest(paid_chain):
    chain = paid_chain
    listed = catalog()
    price = {ref: listed[ref]["price"]["amount_wei"] for ref in (*FAQ_BLOCKS, COMPUTE)}
    owner = asset_owners(chain, price)
    treasury, fee_bps = fee_terms(chain)
    assert owner[COMPUTE] not in (chain.payer, treasury)  # else its gain below would mix in the fee or the refund
    watched = {chain.payer, treasury, chain.escrow.address, *owner.values()}
    before = balances(chain, watched)
    started = time.monotonic()
    r = aib("run", str(TEMPLATES / "faq-chatbot-fast.yaml"), "--json")
    wall_seconds = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    run_id = json.loads(r.stdout.strip().splitlines()[-1])["run_id"]
    after = balances(chain, watched)
    gained = {a: after[a] - before[a] for a in watched}

    depositor, _at, closed, _fee_bps, deposit = chain.escrow.functions.depositOf(
        chain.payer, chain.onchain_id(run_id)
    ).call()
    assert depositor == chain.payer and closed and gained[chain.escrow.address] == 0  # settled; nothing left behind
    expected = dict.fromkeys(watched, 0)
    for ref in FAQ_BLOCKS:  # each block's owner is paid its listed price, once
        expected[owner[ref]] += price[ref]
    compute = gained[owner[COMPUTE]] - expected[owner[COMPUTE]]
    assert 0 < compute <= wall_seconds * price[COMPUTE]  # device time used, never more than the run took
    expected[owner[COMPUTE]] += compute
    paid = sum(price[ref] for ref in FAQ_BLOCKS) + compute
    fee = paid * fee_bps // 10_000
    expected[treasury] += fee
    expected[chain.payer] -= paid + fee  # the payer lost only this: the rest of the deposit came back
    assert gained == expected
    # Whether anything is left to refund depends on the device time: the deposit covers twice the planned compute,
    # and a machine loaded many times over can use all of it (the compute owner then takes the shortfall).
    assert paid + fee <= deposit

    shown = json.loads(aib("payouts", run_id, "--json").stdout)  # what `aib payouts` shows is what the chain did
    assert {p["block_ref"]: (p["payee"], p["amount_wei"]) for p in shown["payouts"]} == {
        **{ref: (owner[ref], price[ref]) for ref in FAQ_BLOCKS},
        COMPUTE: (owner[COMPUTE], compute),
    }
    assert (shown["deposit_wei"], shown["fee_wei"], shown["refund_wei"]) == (deposit, fee, deposit - paid - fee)
    again = aib("settle", run_id)  # idempotent: nothing is sent twice
    assert again.returncode == 0 and shown["settle_tx"] in again.stdout
    assert balances(chain, watched) == after


def test_an_unaffordable_run_is_refused_before_any_work(paid_chain):
    from runtime.db import Run, session_factory

    spare = paid_chain.w3.eth.accounts[6]
    held = paid_chain.token.functions.balanceOf(paid_chain.payer).call()
    paid_chain.send(paid_chain.token.functions.transfer(spare, held), paid_chain.payer)  # empty the wallet
    try:
        with session_factory()() as s:
            runs_before = len(list(s.scalars(select(Run.id))))
        r = aib("run", str(TEMPLATES / "faq-chatbot-fast.yaml"), "--json")
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

    summary = run_pipeline(TEMPLATES / "faq-chatbot-fast.yaml")
    assert summary["status"] == "succeeded"
    amount = pay.deposit_amount(chain, compile_plan(load_pipeline(TEMPLATES / "faq-chatbot-fast.yaml")))
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

    from tests.integration.test_cli import _start_and_wait_for_checkpoint

    chain = paid_chain
    price_per_second = catalog()[COMPUTE]["price"]["amount_wei"]
    owner = asset_owners(chain, (*FAQ_BLOCKS, COMPUTE))
    treasury, fee_bps = fee_terms(chain)
    assert owner[COMPUTE] not in (chain.payer, treasury)
    watched = {chain.payer, treasury, chain.escrow.address, *owner.values()}
    before = balances(chain, watched)
    started = time.monotonic()
    shutil.copytree(TEMPLATES, tmp_path / "t")
    overrides = ["classifier.epochs=150", "classifier.batch_size=4", f"classifier.seed={time.time_ns() % 10**6}"]
    proc, _ = _start_and_wait_for_checkpoint(tmp_path / "t" / "faq-chatbot-fast.yaml", overrides)
    os.killpg(proc.pid, signal.SIGKILL)  # the machine dies mid-training, after the deposit
    proc.wait()
    wall_seconds = time.monotonic() - started
    r = aib("settle", "--pending")
    assert r.returncode == 0, r.stderr
    killed = json.loads(aib("runs", "list", "--json").stdout)[0]
    assert killed["status"] == "failed" and f"{killed['run_id']}: settled" in r.stdout
    after = balances(chain, watched)
    gained = {a: after[a] - before[a] for a in watched}

    depositor, _at, closed, _fee_bps, deposit = chain.escrow.functions.depositOf(
        chain.payer, chain.onchain_id(killed["run_id"])
    ).call()
    assert depositor == chain.payer and closed and gained[chain.escrow.address] == 0
    compute = gained[owner[COMPUTE]]
    assert 0 < compute <= wall_seconds * price_per_second  # the device time used, never more than the run lived
    fee = compute * fee_bps // 10_000
    expected = dict.fromkeys(watched, 0)  # no per-run prices for a failed run: data and model owners get nothing
    expected[owner[COMPUTE]] += compute
    expected[treasury] += fee
    expected[chain.payer] -= compute + fee
    assert gained == expected
    assert deposit - compute - fee > 0.9 * deposit  # the payer got back nearly all of the deposit
    usage = json.loads(aib("usage", "--run", killed["run_id"], "--json").stdout)
    interrupted = [u for u in usage if u["node_id"] == "classifier"]
    assert len(interrupted) == 1 and interrupted[0]["quantity"] > 0  # the killed step's own device time is in it


def test_eight_paid_runs_started_together_from_one_wallet_all_deposit_and_settle(paid_chain, tmp_path):
    """One wallet, signed here (so this machine picks each transaction's nonce), eight `aib run` started at the same
    moment: every run deposits and settles. Before: an exact `approve` replaced another run's allowance, and two
    processes read the same pending nonce, so some runs failed to deposit."""
    import subprocess
    import sys

    from chain.accounts import create_keystore

    chain = paid_chain
    address = create_keystore(tmp_path / "payer.json", "a long enough password")
    chain.w3.eth.send_transaction({"from": chain.w3.eth.accounts[0], "to": address, "value": 10**18})
    assert aib("wallet", "fund", address, "20 AIC").returncode == 0
    (tmp_path / "pw").write_text("a long enough password\n")
    (tmp_path / "pw").chmod(0o600)  # a password file must be private
    # Torch on one thread each: eight runs share this machine's cores, and a run's second thread only waits on them.
    env = {**os.environ, "AIB_KEYSTORE": str(tmp_path / "payer.json"),
           "AIB_KEYSTORE_PASSWORD_FILE": str(tmp_path / "pw"), "OMP_NUM_THREADS": "1"}  # fmt: skip
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "builder.cli",
                "run",
                str(TEMPLATES / "faq-chatbot-fast.yaml"),
                "--json",
                "--set",
                "classifier.epochs=1",
                "--set",
                f"classifier.seed={900 + i}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )  # fmt: skip
        for i in range(8)
    ]
    ids = []
    for p in runs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
        ids.append(json.loads(out.strip().splitlines()[-1])["run_id"])
    paid = 0
    for run_id in ids:
        payer, _at, closed, _fee_bps, amount = chain.escrow.functions.depositOf(
            address, chain.onchain_id(run_id)
        ).call()
        assert payer == address and closed, run_id  # deposited by this wallet, and settled
        [settled] = chain.escrow.events.Settled.get_logs(
            from_block=0, argument_filters={"runId": chain.onchain_id(run_id), "payer": address}
        )
        assert settled.args.payouts > 0
        # Settled by the coordinator's wallet, never the payer's (a payer holding the settler role could settle
        # other payers' deposits to assets of its choosing).
        assert chain.w3.eth.get_transaction(settled.transactionHash)["from"] == chain.operator != address
        paid += amount - settled.args.refund
    assert chain.token.functions.balanceOf(address).call() == 20 * 10**18 - paid  # each run paid once
