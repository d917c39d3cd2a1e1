"""Settlement gas: one batched RunEscrow.settle vs one ERC20 transfer per usage record (in-process EVM).

Usage: python bench/settlement.py [--quick]
Payees are already funded (they hold AIC before the settlement), as providers do after their first payout.
Figures (last line, JSON): gas_per_payee_at_N (settle gas above a 0-payee settle, per payee),
transfer_gas_per_record (the baseline), and settle_transactions_per_run (always 1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import print_figures, print_table

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
        return send(escrow.functions.settle(rid, asset_ids[:n], amounts, AIC)).gasUsed

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
    figures["quick"] = args.quick
    print_figures(figures)


if __name__ == "__main__":
    main()
