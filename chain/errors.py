"""Custom Solidity errors decoded by selector into one readable sentence."""

from __future__ import annotations

import ast
import functools
import re
from typing import Any

from eth_abi import decode
from eth_utils import keccak, to_checksum_address

from chain.artifacts import CONTRACTS, load_artifact

PANIC = bytes.fromhex("4e487b71")
ERROR_STRING = bytes.fromhex("08c379a0")


def _signature(entry: dict[str, Any]) -> str:
    return f"{entry['name']}({','.join(i['type'] for i in entry['inputs'])})"


@functools.cache
def error_table() -> dict[bytes, dict[str, Any]]:
    """4-byte selector → error ABI entry, over every compiled contract (OpenZeppelin's errors included)."""
    table: dict[bytes, dict[str, Any]] = {}
    for name in CONTRACTS:
        for entry in load_artifact(name)["abi"]:
            if entry["type"] == "error":
                table[keccak(text=_signature(entry))[:4]] = entry
    return table


def _format(value: Any, abi_type: str) -> str:
    if abi_type == "address":
        return to_checksum_address(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


def decode_revert(data: bytes) -> str | None:
    """`ErrorName(arg=value, …)` for revert data of a known custom error, Error(string) or Panic; else None."""
    if len(data) < 4:
        return None
    selector, body = data[:4], data[4:]
    if selector == ERROR_STRING:
        return decode(["string"], body)[0]
    if selector == PANIC:
        return f"Panic(0x{decode(['uint256'], body)[0]:02x})"
    entry = error_table().get(selector)
    if entry is None:
        return None
    types = [i["type"] for i in entry["inputs"]]
    values = decode(types, body)
    args = ", ".join(f"{i['name']}={_format(v, t)}" for i, v, t in zip(entry["inputs"], values, types, strict=True))
    return f"{entry['name']}({args})"


def revert_data(exc: BaseException) -> bytes | None:
    """The raw revert bytes carried by a web3 or eth-tester exception, when there are any."""
    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    for arg in exc.args:
        if isinstance(arg, bytes):
            return arg
        if isinstance(arg, str):
            m = re.search(r"(b(['\"]).*\2)\s*$", arg, re.DOTALL)  # eth-tester: 'execution reverted: b"..."'
            if m:
                try:
                    return ast.literal_eval(m.group(1))
                except (ValueError, SyntaxError):
                    return None
            m = re.search(r"0x[0-9a-fA-F]{8,}", arg)
            if m:
                return bytes.fromhex(m.group(0)[2:])
    return None


def describe_revert(exc: BaseException) -> str:
    """One sentence for a reverted call: the decoded custom error, or the node's own message."""
    data = revert_data(exc)
    decoded = decode_revert(data) if data else None
    if decoded:
        return f"the contract refused: {decoded}"
    text = str(exc).strip() or type(exc).__name__
    return f"the contract refused: {text.removeprefix('execution reverted: ')}"


__all__ = ["decode_revert", "describe_revert", "error_table", "revert_data"]
