"""web3.py access to a chain by URL: connect, send a transaction and await its receipt, JSON-RPC calls."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
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


def send(w3: Any, call: Any, sender: str, lock: Callable[[str], AbstractContextManager] | None = None) -> Any:
    """Estimate gas, send `call` from `sender` (an account the node holds, or one signed here) and await a
    successful receipt. `lock(sender)`, when given, is held from the estimate until the node has the transaction:
    a transaction signed here takes the sender's next nonce from the node's pending count, so two processes
    sending from one wallet at once must not both read it."""
    try:
        with lock(sender) if lock is not None else nullcontext():
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


def registered_asset(registry: Any, uri: str, content: bytes | None = None) -> tuple[int, str] | None:
    """(asset id, tx hash) of the first asset registered under `uri` (and `content`, when given), from the
    registry's events: a registration that died after minting is adopted rather than minted twice."""
    for event in registry.events.AssetRegistered().get_logs(from_block=0):
        if event.args.metadataURI == uri and (content is None or event.args.contentHash == content):
            return event.args.assetId, event.transactionHash.to_0x_hex()
    return None


def rpc_call(url: str, method: str, params: list | None = None, timeout: float = 2.0) -> Any:
    """One JSON-RPC call; ChainError with the URL when the node cannot be reached or answers an error."""
    import httpx

    try:
        r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}, timeout=timeout)
        body = r.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ChainError(f"no Ethereum node answers at {url} ({type(exc).__name__})") from None
    if "error" in body:
        raise ChainError(f"the node at {url} refused {method}: {body['error'].get('message', body['error'])}")
    return body["result"]


def checked_address(value: str) -> str:
    """The checksummed form of `value`; ChainError with one sentence when it is not an address."""
    from eth_utils import is_address, to_checksum_address

    if not is_address(value):
        raise ChainError(f"{value!r} is not an Ethereum address (0x followed by 40 hex digits)")
    return to_checksum_address(value)


def contract(w3: Any, name: str, book: dict[str, Any]) -> Any:
    """The deployed contract `name` from the address book."""
    from chain.artifacts import load_artifact

    return w3.eth.contract(address=book["contracts"][name], abi=load_artifact(name)["abi"])


__all__ = [
    "checked_address",
    "connect",
    "contract",
    "node_errors",
    "registered_asset",
    "rpc_call",
    "send",
]
