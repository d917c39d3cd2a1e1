"""web3.py access to a chain: connect, send a transaction and await its receipt, read the address book."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from builder.errors import ChainError
from chain.errors import describe_revert

RECEIPT_TIMEOUT_S = 60
POLL_S = 0.1


def connect(url: str) -> Any:
    """A Web3 connected to `url`; ChainError naming the URL when nothing answers there."""
    from web3 import Web3
    from web3.middleware import ExtraDataToPOAMiddleware

    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 10}))
    w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
    try:
        w3.eth.chain_id  # noqa: B018 - a cheap call that proves the node answers
    except Exception as exc:
        raise ChainError(f"no Ethereum node answers at {url} ({type(exc).__name__})") from None
    return w3


def send(w3: Any, call: Any, sender: str) -> Any:
    """Estimate gas, send `call` from `sender` (an account the node holds) and await a successful receipt."""
    try:
        gas = call.estimate_gas({"from": sender})
        tx_hash = call.transact({"from": sender, "gas": int(gas * 1.2) + 10_000})
    except Exception as exc:
        raise ChainError(describe_revert(exc)) from None
    try:
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S, poll_latency=POLL_S)
    except Exception as exc:  # node gone or too slow: the transaction may still be mined later
        raise ChainError(
            f"no receipt for transaction {tx_hash.to_0x_hex()} ({type(exc).__name__}); it may still be mined, "
            "and retrying the settlement finds out without paying twice"
        ) from None
    if receipt.status != 1:
        raise ChainError(f"transaction {tx_hash.to_0x_hex()} reverted")
    return receipt


@contextmanager
def node_errors(url: str) -> Iterator[None]:
    """Turn a node that stops answering mid-way into one ChainError sentence naming `url`."""
    import requests

    try:
        yield
    except requests.exceptions.RequestException as exc:
        raise ChainError(
            f"the Ethereum node at {url} stopped answering ({type(exc).__name__}); what was not finished stays "
            "pending and is completed by running the command again"
        ) from None


def address_book_path() -> Path:
    """AIB_ADDRESS_BOOK (the deployment on another network) or the embedded chain's address book."""
    override = os.environ.get("AIB_ADDRESS_BOOK")
    if override:
        return Path(override).expanduser()
    from chain.node import chain_paths

    return chain_paths().book


def address_book() -> dict[str, Any]:
    """The contracts, roles and block assets of the chain in use; ChainError when there is none."""
    path = address_book_path()
    if not path.exists():
        if os.environ.get("AIB_ADDRESS_BOOK"):
            raise ChainError(f"there is no address book at {path} (AIB_ADDRESS_BOOK)")
        raise ChainError("the local chain has not been started; run `aib chain start`")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise ChainError(f"the address book {path} is not readable JSON") from None


def write_address_book(book: dict[str, Any]) -> None:
    """Replace the address book atomically."""
    from runtime.store import atomic_write_bytes

    atomic_write_bytes(address_book_path(), json.dumps(book, indent=2, sort_keys=True).encode())


def record_asset(ref: str, asset_id: int) -> None:
    """Name asset `asset_id` as `ref` (a block or dataset) in the address book, re-read first so that assets
    added meanwhile by another writer are kept."""
    book = address_book()
    book.setdefault("assets", {})[ref] = asset_id
    write_address_book(book)


def registered_asset(registry: Any, uri: str, content: bytes | None = None) -> tuple[int, str] | None:
    """(asset id, tx hash) of the first asset registered under `uri` (and `content`, when given), from the
    registry's events: a registration that died after minting is adopted rather than minted twice."""
    for event in registry.events.AssetRegistered().get_logs(from_block=0):
        if event.args.metadataURI == uri and (content is None or event.args.contentHash == content):
            return event.args.assetId, event.transactionHash.to_0x_hex()
    return None


def contract(w3: Any, name: str, book: dict[str, Any]) -> Any:
    """The deployed contract `name` from the address book."""
    from chain.artifacts import load_artifact

    return w3.eth.contract(address=book["contracts"][name], abi=load_artifact(name)["abi"])


__all__ = [
    "address_book",
    "address_book_path",
    "connect",
    "contract",
    "node_errors",
    "record_asset",
    "registered_asset",
    "send",
    "write_address_book",
]
