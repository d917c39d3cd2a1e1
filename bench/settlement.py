"""Settlement gas: one batched RunEscrow.settle vs one ERC20 transfer per usage record (in-process EVM).

Usage: python bench/settlement.py [--quick]
Payees are already funded (they hold AIC before the settlement), as providers do after their first payout.
Figures (last line, JSON): gas_per_payee_at_N (settle gas above a 0-payee settle, per payee),
transfer_gas_per_record (the baseline), settle_transactions_per_run (always 1), and for served calls
paid through the real `aib settle services` code path: service_calls_per_batch, service_batch_transactions
(transactions a batch sends once the payer's allowance exists), service_batch_gas, and
service_batch_vs_transfers (gas of one transfer per call and block owner, divided by the batch's gas).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["AIB_HOME"] = tempfile.mkdtemp(prefix="aib-bench-settlement-")  # a fresh ledger for this bench
from common import TEMPLATE, print_figures, print_table  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

AIC = 10**18


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 and 10 payees only")
    args = parser.parse_args()
    sizes = [1, 10] if args.quick else [1, 10, 100]

    from eth_account import Account
    from web3 import Web3
    from web3.logs import DISCARD
    from web3.providers.eth_tester import EthereumTesterProvider

    from chain.artifacts import load_artifact

    w3 = Web3(EthereumTesterProvider())
    a = w3.eth.accounts
    admin = a[0]

    def deploy(name: str, *ctor):
        art = load_artifact(name)
        c = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        r = w3.eth.wait_for_transaction_receipt(c.constructor(*ctor).transact({"from": admin}))
        return w3.eth.contract(address=r.contractAddress, abi=art["abi"])

    def send(fn, sender=admin):
        return w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender}))

    token = deploy("AICToken", admin, admin, admin, admin, admin, admin)
    registry = deploy("AssetRegistry")
    escrow = deploy("RunEscrow", token.address, registry.address, a[9], 250, 3600, admin, admin)
    send(token.functions.approve(escrow.address, 10**9 * AIC))

    owners = [Account.create().address for _ in range(max(sizes))]
    asset_ids = []
    for owner in owners:
        send(token.functions.transfer(owner, 1))  # already funded: the payout updates a non-zero balance
        r = send(registry.functions.register(owner, 1, b"\x01" * 32, "", 1))
        asset_ids.append(registry.events.AssetRegistered().process_receipt(r, errors=DISCARD)[0].args.assetId)

    def settle_gas(n: int, tag: str) -> int:
        rid = Web3.keccak(text=f"{tag}-{n}")
        amounts = [AIC] * n
        total = sum(amounts) + sum(amounts) * 250 // 10_000 + AIC
        send(escrow.functions.deposit(rid, total))
        return send(escrow.functions.settle(admin, rid, asset_ids[:n], amounts, AIC)).gasUsed

    base = settle_gas(0, "empty")
    transfer = send(token.functions.transfer(owners[0], AIC)).gasUsed
    rows, figures = (
        [],
        {"transfer_gas_per_record": transfer, "settle_transactions_per_run": 1, "settle_gas_0_payees": base},
    )
    for n in sizes:
        gas = settle_gas(n, "batch")
        per = (gas - base) / n
        rows.append([n, gas, round(per), transfer * n, round(transfer * n / gas, 2)])
        figures[f"gas_per_payee_at_{n}"] = round(per)
    print_table(
        "settle gas (one transaction) vs one ERC20 transfer per usage record",
        ["payees", "settle gas", "gas/payee", "N transfers gas", "transfers/settle"],
        rows,
    )
    figures.update(service_batches(w3, token, registry, escrow, 1_000 if args.quick else 10_000))
    figures["quick"] = args.quick
    print_figures(figures)


def service_batches(w3, token, registry, escrow, calls: int) -> dict:
    """Pay `calls` served calls of one FAQ bot service twice over, through runtime.service_settlement."""
    from eth_account import Account
    from sqlalchemy import insert
    from web3.logs import DISCARD

    from builder.pipeline import load_pipeline
    from builder.plan import compile_plan
    from runtime.db import Service, Usage, session_factory, utcnow
    from runtime.runs import create_run
    from runtime.service_settlement import settle_services
    from runtime.settlement import Chain
    from runtime.settlement_math import call_price_per_1k, call_royalties

    admin = w3.eth.accounts[0]
    pipeline = load_pipeline(TEMPLATE)
    plan = compile_plan(pipeline)
    steps = plan.to_dict()["steps"]
    asset_of, owners = {}, []
    for ref, _amount in call_royalties(steps, 1):
        owner = Account.create().address
        owners.append(owner)
        w3.eth.wait_for_transaction_receipt(token.functions.transfer(owner, 1).transact({"from": admin}))
        r = w3.eth.wait_for_transaction_receipt(
            registry.functions.register(owner, 2, b"\x02" * 32, "", 1).transact({"from": admin})
        )
        asset_of[ref] = registry.events.AssetRegistered().process_receipt(r, errors=DISCARD)[0].args.assetId
    chain = Chain(w3, token, escrow, admin, admin, asset_of)
    Session = session_factory()
    with Session() as s:
        run = create_run(s, pipeline, plan)
        s.add(
            Service(
                id="svc-bench",
                run_id=run.id,
                name=plan.name,
                bundle_dir="",
                plan_hash=plan.plan_hash,
                block_id="service.api",
                version="1.0.0",
                provider=admin,
                call_price_wei=call_price_per_1k(steps),
            )
        )
        s.commit()
    transfer_gas = w3.eth.wait_for_transaction_receipt(
        token.functions.transfer(owners[0], 10**18).transact({"from": admin})
    ).gasUsed  # to an already-funded owner, as in the batch
    rows = []
    figures = {}
    for round_ in (1, 2):  # the second batch pays only the calls that came after the first
        with Session.begin() as s:
            s.execute(
                insert(Usage),
                [
                    {
                        "bill_key": f"call:bench:{round_}:{i}",
                        "service_id": "svc-bench",
                        "block_id": "service.api",
                        "version": "1.0.0",
                        "provider": admin,
                        "quantity": 1,
                        "unit": "call",
                        "amount_wei": call_price_per_1k(steps) // 1000,
                        "created_at": utcnow(),
                    }
                    for i in range(calls)
                ],
            )
        nonce = w3.eth.get_transaction_count(admin)
        t0 = time.perf_counter()
        with Session() as s:
            batches, errors = settle_services(s, chain, "svc-bench")
            assert not errors and len(batches) == 1 and batches[0].calls == calls, errors
            tx = batches[0].settle_tx
        seconds = time.perf_counter() - t0
        sent = w3.eth.get_transaction_count(admin) - nonce
        gas = w3.eth.get_transaction_receipt(tx).gasUsed
        baseline = transfer_gas * calls * len(asset_of)
        rows.append([round_, calls, sent, gas, baseline, round(baseline / gas), round(seconds, 2)])
        if round_ == 2:
            figures = {
                "service_calls_per_batch": calls,
                "service_batch_transactions": sent,
                "service_batch_gas": gas,
                "service_batch_vs_transfers": round(baseline / gas),
            }
    print_table(
        f"served calls paid in one batch ({len(asset_of)} block owners) vs one transfer per call and owner",
        ["batch", "calls", "txs sent", "batch gas", "transfers gas", "transfers/batch", "seconds"],
        rows,
    )
    return figures


if __name__ == "__main__":
    main()
