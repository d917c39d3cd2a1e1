"""`aib chain …` and `aib wallet …`: the embedded Anvil node and AIC balances."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console

from builder.errors import ChainError
from builder.money import format_aic, parse_amount

chain_app = typer.Typer(no_args_is_help=True, help="The local chain (Anvil) the embedded mode pays through.")
wallet_app = typer.Typer(no_args_is_help=True, help="AIC balances; funding on the local chain.")
out = Console()
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")]


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=str) + "\n")


def rpc_url() -> str:
    """AIB_RPC_URL when set (any EVM node), else the embedded node's URL."""
    url = os.environ.get("AIB_RPC_URL")
    if url:
        return url
    from chain.node import local_status

    status = local_status()
    if not status["running"]:
        raise ChainError("the local chain is not running; start it with `aib chain start`")
    return status["rpc_url"]


def checked_address(value: str) -> str:
    """The checksummed form of `value`; ChainError with one sentence when it is not an address."""
    from eth_utils import is_address, to_checksum_address

    if not is_address(value):
        raise ChainError(f"{value!r} is not an Ethereum address (0x followed by 40 hex digits)")
    return to_checksum_address(value)


@chain_app.command("start")
def chain_start(port: Annotated[int, typer.Option(help="Loopback port")] = 8545, json_: JsonFlag = False) -> None:
    """Start the local Anvil node (state kept under AIB_HOME) and deploy the contracts on first start."""
    if os.environ.get("AIB_RPC_URL"):
        raise ChainError(f"AIB_RPC_URL points at {os.environ['AIB_RPC_URL']}; there is no local node to start")
    from chain.node import start_local

    status = start_local(port)
    if json_:
        _print_json(status)
        return
    out.print(
        f"local chain running at {status['rpc_url']} (chain id {status['chain_id']}, block {status['block_number']})"
    )


@chain_app.command("stop")
def chain_stop() -> None:
    """Stop the local node; its state is saved and reloaded by the next start."""
    from chain.node import stop_local

    out.print("stopped" if stop_local() else "the local chain was not running")


@chain_app.command("status")
def chain_status(json_: JsonFlag = False) -> None:
    """Whether the chain runs, its URL, block height and contract addresses."""
    from chain.node import local_status

    status = local_status()
    if os.environ.get("AIB_RPC_URL"):
        status = {"running": True, "rpc_url": os.environ["AIB_RPC_URL"], "external": True}
    if json_:
        _print_json(status)
        return
    if not status["running"]:
        out.print("the local chain is not running (`aib chain start` starts it)")
        return
    out.print(
        f"running at {status['rpc_url']}" + (f", block {status['block_number']}" if "block_number" in status else "")
    )
    for name, address in (status.get("contracts") or {}).items():
        out.print(f"  {name:<14} {address}")


@wallet_app.command("balance")
def wallet_balance(
    address: Annotated[str | None, typer.Argument(help="Address (default: the local user's wallet)")] = None,
    json_: JsonFlag = False,
) -> None:
    """AIC balance of an address."""
    from chain.client import address_book, connect, contract

    w3 = connect(rpc_url())  # first: an unreachable node is the one thing to report
    book = address_book()
    who = checked_address(address) if address else book["roles"]["operator"]
    wei = contract(w3, "AICToken", book).functions.balanceOf(who).call()
    if json_:
        _print_json({"address": who, "balance_wei": wei, "balance": format_aic(wei)})
        return
    out.print(f"{who}: {format_aic(wei)}")


@wallet_app.command("fund")
def wallet_fund(
    address: Annotated[str, typer.Argument(help="Address to fund")],
    amount: Annotated[str, typer.Argument(help="Amount, e.g. '100 AIC' or a number of wei")],
) -> None:
    """Send AIC from the company allocation to an address (local chain only)."""
    if os.environ.get("AIB_RPC_URL"):
        raise ChainError("`aib wallet fund` works on the local chain only; on a real network, buy or transfer AIC")
    from chain.client import address_book, connect, contract, send

    who = checked_address(address)
    try:
        wei = parse_amount(amount)
    except ValueError as exc:
        raise ChainError(str(exc)) from None
    book = address_book()
    w3 = connect(rpc_url())
    token = contract(w3, "AICToken", book)
    receipt = send(w3, token.functions.transfer(who, wei), book["roles"]["company"])
    out.print(f"sent {format_aic(wei)} to {who} (tx {receipt.transactionHash.to_0x_hex()})")
