"""Wallet and asset services for the shells: balances, local funding, keystores, asset NFTs.

The CLI and the workbench call these; only the runtime talks to `chain/` (see docs/architecture.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from builder.errors import ChainError
from chain.accounts import create_keystore, keystore_path, read_password, use_signer
from chain.client import checked_address, connect, contract, node_errors
from runtime.chain_node import address_book, rpc_url, send


def balance(address: str | None = None) -> dict[str, Any]:
    """AIC balance of `address` (default: the wallet that pays): {address, balance_wei}."""
    w3 = connect(rpc_url())  # first: an unreachable node is the one thing to report
    book = address_book()
    who = checked_address(address) if address else use_signer(w3, book)
    return {"address": who, "balance_wei": contract(w3, "AICToken", book).functions.balanceOf(who).call()}


def signer_address() -> str:
    """The address transactions are sent from (the AIB_KEYSTORE account or the local operator)."""
    return use_signer(connect(rpc_url()), address_book())


def fund(address: str, wei: int) -> str:
    """Send `wei` AIC from the company allocation to `address` (local chain only); the tx hash."""
    who = checked_address(address)
    book = address_book()
    w3 = connect(rpc_url())
    token = contract(w3, "AICToken", book)
    return send(w3, token.functions.transfer(who, wei), book["roles"]["company"]).transactionHash.to_0x_hex()


def create_wallet(path: Path) -> str:
    """A new account in an encrypted keystore at `path` (password asked on the terminal); its address."""
    password = read_password("a password for the new keystore", confirm=True)
    return create_keystore(path.expanduser(), password)


def _registry() -> tuple[Any, dict[str, Any], Any]:
    w3 = connect(rpc_url())
    book = address_book()
    return w3, book, contract(w3, "AssetRegistry", book)


def asset_rows() -> list[dict[str, Any]]:
    """Every named asset of the address book: block, asset id, current owner (the payee), price, content hash."""
    _, book, registry = _registry()
    rows = []
    for ref, asset_id in sorted(book.get("assets", {}).items()):
        record = registry.functions.assetOf(asset_id).call()
        rows.append(
            {
                "block": ref,
                "asset_id": asset_id,
                "owner": registry.functions.ownerOf(asset_id).call(),
                "price_wei": record[2],
                "content_hash": "0x" + record[1].hex(),
            }
        )
    return rows


def asset_owners(asset_ids: list[int]) -> dict[int, str]:
    """Current owner of each asset id (the address its revenue goes to)."""
    _, _, registry = _registry()
    return {asset_id: registry.functions.ownerOf(asset_id).call() for asset_id in asset_ids}


def transfer_asset(asset_id: int, to: str) -> str:
    """Transfer asset `asset_id` to `to` from its current owner, whose key must be here; the tx hash."""
    who = checked_address(to)
    w3, book, registry = _registry()
    try:
        current = registry.functions.ownerOf(asset_id).call()
    except Exception:
        raise ChainError(f"there is no asset {asset_id}; `aib assets list` shows them") from None
    signer = use_signer(w3, book) if keystore_path() else None
    if current != signer and current not in w3.eth.accounts:
        raise ChainError(f"asset {asset_id} belongs to {current}, whose key is neither in AIB_KEYSTORE nor on the node")
    return send(w3, registry.functions.transferFrom(current, who, asset_id), current).transactionHash.to_0x_hex()


__all__ = [
    "asset_owners",
    "asset_rows",
    "balance",
    "checked_address",
    "create_wallet",
    "fund",
    "node_errors",
    "signer_address",
    "transfer_asset",
]
