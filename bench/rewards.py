"""Proof-of-Value epochs: gas of paying N assets with one Merkle root (closeEpoch + one claim per asset) against
the baseline of pushing N token transfers from the pool, measured in the same run on an in-process EVM.

    python bench/rewards.py           # 10, 100, 1,000 and 10,000 assets
    python bench/rewards.py --quick   # 10, 100 and 1,000 assets

The operator pays closeEpoch alone (`operator_gas_ratio_vs_push`: its gas ÷ N transfers); claims are paid by
whoever claims (owners, or anybody on their behalf) and are measured on a sample of 20 leaves, extrapolated.
closeEpoch's gas does not depend on N (its small differences between rows come from storage slots going from zero
to non-zero: the first epoch, or the contract's token balance after an epoch fully claimed). Also: building the
tree and all proofs in Python (`tree_seconds_10k`).
"""

from __future__ import annotations

import argparse
import random
import time

from common import print_figures, print_table

AIC = 10**18


def deploy(w3, name, *args, sender):
    from chain.artifacts import load_artifact

    art = load_artifact(name)
    c = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    receipt = w3.eth.wait_for_transaction_receipt(c.constructor(*args).transact({"from": sender}))
    return w3.eth.contract(address=receipt.contractAddress, abi=art["abi"])


def setup():
    from web3 import Web3
    from web3.providers.eth_tester import EthereumTesterProvider

    w3 = Web3(EthereumTesterProvider())
    a = w3.eth.accounts
    op, pool, owner = a[0], a[3], a[4]
    token = deploy(w3, "AICToken", a[1], a[2], pool, a[5], a[6], a[7], sender=op)
    registry = deploy(w3, "AssetRegistry", sender=op)
    rewards = deploy(w3, "ContributionRewards", token.address, registry.address, pool, 30 * 86400, 86400, 5000,
                     op, op, sender=op)  # fmt: skip
    w3.eth.wait_for_transaction_receipt(token.functions.approve(rewards.address, 2**256 - 1).transact({"from": pool}))
    for _ in range(20):  # the sampled claims need real assets to pay
        registry.functions.register(owner, 0, b"\x01" * 32, "bench", 1).transact({"from": op})
    return w3, token, rewards, op, pool, owner


def gas(w3, tx_hash) -> int:
    return w3.eth.wait_for_transaction_receipt(tx_hash).gasUsed


def measure(n: int, epoch: int, ctx) -> list:
    from chain.merkle import build_tree

    w3, token, rewards, op, pool, owner = ctx
    rng = random.Random(n)
    amounts = {i: rng.randrange(1, 10**6) * 10**12 for i in range(1, n + 1)}
    tree = build_tree(epoch, amounts)
    close = gas(w3, rewards.functions.closeEpoch(epoch, tree.root, sum(amounts.values()), b"\x02" * 32)
                .transact({"from": op}))  # fmt: skip
    sample = list(range(1, min(n, 20) + 1))
    claims = [gas(w3, rewards.functions.claim(epoch, i, amounts[i], tree.proof(i)).transact({"from": op}))
              for i in sample]  # fmt: skip
    claim_mean = sum(claims) / len(claims)
    # Baseline: the pool pushes every payment itself, one ERC20 transfer per asset (to a fresh-ish address).
    pushes = [gas(w3, token.functions.transfer(w3.to_checksum_address(f"0x{0xB0000 + i:040x}"), amounts[i])
                  .transact({"from": pool})) for i in sample]  # fmt: skip
    push_mean = sum(pushes) / len(pushes)
    return [n, close, round(claim_mean), round(push_mean * n), round(close / (push_mean * n), 6),
            len(tree.proof(sample[0]))]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="up to 1,000 assets")
    args = parser.parse_args()
    sizes = [10, 100, 1_000] if args.quick else [10, 100, 1_000, 10_000]
    ctx = setup()
    rows = [measure(n, k + 1, ctx) for k, n in enumerate(sizes)]
    print_table(
        "Proof-of-Value epoch gas (in-process EVM, same run)",
        ["assets", "closeEpoch gas", "gas per claim", "push baseline gas", "operator ratio", "proof length"],
        [[*r[:4], f"1/{round(1 / r[4])}", r[5]] for r in rows],
    )
    from chain.merkle import build_tree

    started = time.perf_counter()
    build_tree(99, {i: i for i in range(1, 10_001)})
    tree_s = time.perf_counter() - started
    print(f"\nbuilding the tree and all proofs for 10,000 assets: {tree_s:.3f} s")
    largest = rows[-1]
    print_figures(
        {
            "assets": largest[0],
            "close_epoch_gas": largest[1],
            "claim_gas": largest[2],
            "push_baseline_gas": largest[3],
            "operator_gas_ratio_vs_push": largest[4],
            "tree_seconds_10k": round(tree_s, 3),
            "quick": args.quick,
        }
    )


if __name__ == "__main__":
    main()
