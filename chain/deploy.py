"""Deploy the contracts on a chain and register blocks as assets; the caller keeps the address book."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from web3.logs import DISCARD

from builder.errors import ChainError
from chain.artifacts import load_artifact
from chain.client import send

FEE_BPS = 250  # 2.5 % protocol fee
RECLAIM_TIMEOUT_S = 24 * 3600
LOCAL_USER_FUNDS = 1_000 * 10**18  # AIC given to the local user account at first start
CLAIM_WINDOW_S = 30 * 24 * 3600  # an epoch's rewards stay claimable for 30 days, then go back to the pool
UNSTAKE_DELAY_S = 7 * 24 * 3600  # a provider's stake stays slashable for a week after it asks to withdraw
SLASH_BPS = 5_000  # a proven cheat loses half its stake
UNLIMITED = 2**256 - 1
ASSET_KINDS = {"data": 0, "transform": 1, "model": 1, "compute": 2, "service": 3}


def _deploy(w3: Any, name: str, sender: str, *args: Any) -> str:
    artifact = load_artifact(name)
    contract = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = send(w3, contract.constructor(*args), sender)
    return receipt.contractAddress


def local_roles(accounts: list[str]) -> dict[str, str]:
    """Which of the node's development accounts plays which role on the embedded chain."""
    if len(accounts) < 10:
        raise ChainError(f"the local node has {len(accounts)} unlocked accounts; 10 are needed")
    return {
        "operator": accounts[0],  # deployer, admin, settlement operator and the local user's wallet
        "investors": accounts[5],
        "team": accounts[6],
        "ecosystem": accounts[7],
        "marketing": accounts[8],
        "advisors": accounts[8],
        "company": accounts[9],
        "treasury": accounts[9],
    }


def deploy_contracts(w3: Any, url: str) -> dict[str, Any]:
    """Deploy AICToken, AssetRegistry, RunEscrow and ContributionRewards with the node's development accounts in
    their roles; the address book without its assets (the caller registers the catalog and keeps the book)."""
    roles = local_roles(w3.eth.accounts)
    op = roles["operator"]
    token = _deploy(
        w3,
        "AICToken",
        op,
        roles["investors"],
        roles["team"],
        roles["ecosystem"],
        roles["marketing"],
        roles["advisors"],
        roles["company"],
    )
    registry = _deploy(w3, "AssetRegistry", op)
    aic = w3.eth.contract(address=token, abi=load_artifact("AICToken")["abi"])
    send(w3, aic.functions.transfer(op, LOCAL_USER_FUNDS), roles["company"])
    contracts = {"AICToken": token, "AssetRegistry": registry}
    contracts["RunEscrow"] = deploy_escrow(w3, contracts, roles)
    contracts["ContributionRewards"] = deploy_rewards(w3, contracts, roles)
    return {
        "chain_id": w3.eth.chain_id,
        "rpc_url": url,
        "contracts": contracts,
        "roles": roles,
        "assets": {},
        "builds": {name: artifact_hash(name) for name in ("RunEscrow", "ContributionRewards")},
    }


def artifact_hash(name: str) -> str:
    """SHA-256 of a contract's compiled bytecode: tells a deployment made from another build of it."""
    return hashlib.sha256(load_artifact(name)["bytecode"].encode()).hexdigest()


def deploy_escrow(w3: Any, contracts: dict[str, str], roles: dict[str, str]) -> str:
    """Deploy RunEscrow over the token and registry; the operator is its admin and its only settler."""
    op = roles["operator"]
    args = (contracts["AICToken"], contracts["AssetRegistry"], roles["treasury"], FEE_BPS, RECLAIM_TIMEOUT_S, op, op)
    return _deploy(w3, "RunEscrow", op, *args)


def deploy_rewards(w3: Any, contracts: dict[str, str], roles: dict[str, str]) -> str:
    """Deploy ContributionRewards paying from the ecosystem-incentive pool, which approves it; its address."""
    op = roles["operator"]
    rewards = _deploy(
        w3,
        "ContributionRewards",
        op,
        contracts["AICToken"],
        contracts["AssetRegistry"],
        roles["ecosystem"],
        CLAIM_WINDOW_S,
        UNSTAKE_DELAY_S,
        SLASH_BPS,
        op,
        op,
    )
    aic = w3.eth.contract(address=contracts["AICToken"], abi=load_artifact("AICToken")["abi"])
    # The contract only pulls from the pool in closeEpoch, which only the operator may call, for the root's total.
    send(w3, aic.functions.approve(rewards, UNLIMITED), roles["ecosystem"])
    return rewards


def register_block_asset(w3: Any, registry: Any, block: Any, owner: str, sender: str) -> tuple[int, Any]:
    """Register `block` as an asset NFT owned by `owner`; returns (asset id, receipt)."""
    spec = json.dumps(block.spec_dict(), sort_keys=True).encode()
    call = registry.functions.register(
        owner,
        ASSET_KINDS[str(block.kind)],
        hashlib.sha256(spec).digest(),
        f"aib://blocks/{block.ref()}",
        block.price.amount_wei,
    )
    receipt = send(w3, call, sender)
    return registry.events.AssetRegistered().process_receipt(receipt, errors=DISCARD)[0].args.assetId, receipt


def register_catalog(w3: Any, registry: str, sender: str, blocks: list[Any]) -> dict[str, int]:
    """Register each of `blocks` as an asset owned by its provider; block ref → asset id."""
    reg = w3.eth.contract(address=registry, abi=load_artifact("AssetRegistry")["abi"])
    return {block.ref(): register_block_asset(w3, reg, block, block.provider, sender)[0] for block in blocks}


__all__ = [
    "FEE_BPS",
    "artifact_hash",
    "deploy_escrow",
    "deploy_rewards",
    "deploy_contracts",
    "local_roles",
    "register_block_asset",
    "register_catalog",
]
