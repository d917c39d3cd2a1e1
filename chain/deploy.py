"""Deploy the contracts on the embedded chain and keep an address book next to its state."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from web3.logs import DISCARD

from builder.errors import ChainError
from chain.artifacts import load_artifact
from chain.client import connect, send, write_address_book

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


def ensure_deployed(url: str) -> dict[str, Any]:
    """Deploy once per chain state: reuse the address book while its contracts still have code."""
    from chain.node import chain_paths

    w3 = connect(url)
    book_path = chain_paths().book
    if book_path.exists():
        book = json.loads(book_path.read_text())
        escrow = book["contracts"]["RunEscrow"]
        if book.get("chain_id") == w3.eth.chain_id and w3.eth.get_code(escrow):
            if "ContributionRewards" not in book["contracts"]:  # a chain deployed before rewards existed
                book["contracts"]["ContributionRewards"] = deploy_rewards(w3, book["contracts"], book["roles"])
                write_address_book(book)
            return book
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
    escrow = _deploy(w3, "RunEscrow", op, token, registry, roles["treasury"], FEE_BPS, RECLAIM_TIMEOUT_S, op, op)
    aic = w3.eth.contract(address=token, abi=load_artifact("AICToken")["abi"])
    send(w3, aic.functions.transfer(op, LOCAL_USER_FUNDS), roles["company"])
    contracts = {"AICToken": token, "AssetRegistry": registry, "RunEscrow": escrow}
    contracts["ContributionRewards"] = deploy_rewards(w3, contracts, roles)
    book = {
        "chain_id": w3.eth.chain_id,
        "rpc_url": url,
        "contracts": contracts,
        "roles": roles,
        "assets": register_catalog(w3, registry, op),
    }
    write_address_book(book)
    return book


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


def register_provided_block(block: Any, owner: str) -> tuple[int, str]:
    """Register an installed `block` as a new asset owned by `owner` on the chain in use and name it in the
    address book; (asset id, tx hash). From then on the block's revenue goes to that asset's owner."""
    from chain.accounts import use_signer
    from chain.cli import rpc_url
    from chain.client import address_book, connect, contract, record_asset

    w3 = connect(rpc_url())
    book = address_book()
    asset_id, receipt = register_block_asset(
        w3, contract(w3, "AssetRegistry", book), block, owner, use_signer(w3, book)
    )
    record_asset(block.ref(), asset_id)
    return asset_id, receipt.transactionHash.to_0x_hex()


def register_catalog(w3: Any, registry: str, sender: str) -> dict[str, int]:
    """Register every block of the catalog as an asset owned by its provider; block ref → asset id."""
    from builder.registry import all_blocks

    reg = w3.eth.contract(address=registry, abi=load_artifact("AssetRegistry")["abi"])
    return {block.ref(): register_block_asset(w3, reg, block, block.provider, sender)[0] for block in all_blocks()}


__all__ = [
    "FEE_BPS",
    "deploy_rewards",
    "ensure_deployed",
    "local_roles",
    "register_block_asset",
    "register_catalog",
    "register_provided_block",
]
