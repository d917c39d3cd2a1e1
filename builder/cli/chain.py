"""`aib chain …`, `aib wallet …`, `aib assets …`, `aib settle` and `aib payouts`: the chain, AIC and payments."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from builder.cli.base import JsonFlag, _print_json, app, out
from builder.errors import ChainError
from builder.money import format_aic, parse_amount
from runtime import wallet
from runtime.chain_node import rpc_url

chain_app = typer.Typer(no_args_is_help=True, help="The local chain (Anvil) the embedded mode pays through.")
wallet_app = typer.Typer(no_args_is_help=True, help="AIC balances; funding on the local chain.")
assets_app = typer.Typer(no_args_is_help=True, help="Asset NFTs: datasets, models, compute offers, services.")
app.add_typer(chain_app, name="chain")
app.add_typer(wallet_app, name="wallet")
app.add_typer(assets_app, name="assets")


@chain_app.command("start")
def chain_start(port: Annotated[int, typer.Option(help="Loopback port")] = 8545, json_: JsonFlag = False) -> None:
    """Start the local Anvil node (state kept under AIB_HOME) and deploy the contracts on first start."""
    if os.environ.get("AIB_RPC_URL"):
        raise ChainError(f"AIB_RPC_URL points at {os.environ['AIB_RPC_URL']}; there is no local node to start")
    from runtime.chain_node import start_local

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
    from runtime.chain_node import stop_local

    out.print("stopped" if stop_local() else "the local chain was not running")


@chain_app.command("status")
def chain_status(json_: JsonFlag = False) -> None:
    """Whether the chain runs, its URL, block height and contract addresses."""
    from runtime.chain_node import local_status

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
    found = wallet.balance(address)
    who, wei = found["address"], found["balance_wei"]
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
    try:
        wei = parse_amount(amount)
    except ValueError as exc:
        raise ChainError(str(exc)) from None
    tx = wallet.fund(address, wei)
    out.print(f"sent {format_aic(wei)} to {wallet.checked_address(address)} (tx {tx})")


@wallet_app.command("create")
def wallet_create(
    path: Annotated[str, typer.Argument(help="Where to write the encrypted keystore file (never overwritten)")],
) -> None:
    """Create a new account in an encrypted keystore file (for real networks: point AIB_KEYSTORE at it)."""
    address = wallet.create_wallet(Path(path))
    out.print(f"created {address} in {path}; use it with AIB_KEYSTORE={path}", highlight=False, soft_wrap=True)


@wallet_app.command("address")
def wallet_address(json_: JsonFlag = False) -> None:
    """The address that pays and signs: the AIB_KEYSTORE account, or the local user's wallet."""
    from runtime.chain_node import current_wallet

    address, source = current_wallet()
    if json_:
        _print_json({"address": address, "source": source})
        return
    out.print(f"{address} ({source})", highlight=False, soft_wrap=True)


@assets_app.command("list")
def assets_list(json_: JsonFlag = False) -> None:
    """Every block's asset: id, current owner (the payee) and price."""
    rows = wallet.asset_rows()
    if json_:
        _print_json(rows)
        return
    for r in rows:
        out.print(f"{r['asset_id']:>4}  {r['block']:<32} {r['owner']}  {format_aic(r['price_wei'])}")


@assets_app.command("register")
def assets_register(
    block: Annotated[str, typer.Argument(help="Block id, e.g. chat.faq-csv (latest version) or id@version")],
    owner: Annotated[str, typer.Option("--owner", help="Address that owns the asset and receives its revenue")],
) -> None:
    """Register a block as a new asset NFT owned by --owner; the block's revenue goes to that asset from now on."""
    from runtime.chain_node import register_provided_block

    cls = _resolve_block(block)
    who = wallet.checked_address(owner)
    asset_id, tx = register_provided_block(cls, who)
    out.print(f"asset {asset_id}: {cls.ref()} owned by {who} (tx {tx})")


@assets_app.command("transfer")
def assets_transfer(
    asset_id: Annotated[int, typer.Argument(help="Asset id (see `aib assets list`)")],
    to: Annotated[str, typer.Argument(help="New owner: receives the asset's future revenue")],
) -> None:
    """Transfer (sell) an asset NFT; its future revenue goes to the new owner."""
    tx = wallet.transfer_asset(asset_id, to)
    out.print(f"asset {asset_id} now belongs to {wallet.checked_address(to)} (tx {tx})")


def _resolve_block(ref: str) -> Any:
    from builder.errors import BlockError
    from builder.registry import get_block, versions_of

    block_id, _, version = ref.partition("@")
    if not version:
        versions = versions_of(block_id)
        if not versions:
            get_block(block_id, "0.0.0")  # raises with a "did you mean"
        version = versions[-1]
    try:
        return get_block(block_id, version)
    except BlockError as exc:
        raise ChainError(str(exc)) from None


@app.command("settle")
def settle_command(
    run_id: Annotated[
        str | None,
        typer.Argument(
            help="Run to settle, `services` to pay the calls of served APIs, or `storage` to pay the storage providers"
        ),
    ] = None,
    pending: Annotated[bool, typer.Option("--pending", help="Settle (or reconcile) every unsettled run")] = False,
    service: Annotated[str | None, typer.Option("--service", help="With `services`: only this service")] = None,
    json_: JsonFlag = False,
) -> None:
    """Settle a finished run from its usage records, or (`aib settle services`) the calls of served APIs, or
    (`aib settle storage`) what storage providers held (up to their last passed spot check) and sent.

    Idempotent: --pending retries every unsettled run; a service batch left open by a crash is finished
    (or found already paid on chain) before a new one is opened.
    """
    from runtime import settlement as pay
    from runtime.db import session_factory

    if run_id == "services":
        _settle_services(service, json_)
        return
    if run_id == "storage":
        if service is not None:
            raise ChainError("--service goes with `aib settle services`")
        _settle_storage(json_)
        return
    if service is not None:
        raise ChainError("--service goes with `aib settle services`")
    if (run_id is None) == (not pending):
        raise ChainError("give a RUN_ID, `services` or --pending (one of them)")
    from runtime.runs import reap_stale_runs

    chain = pay.Chain.connect()
    with session_factory()() as s, wallet.node_errors(rpc_url()):
        reap_stale_runs(s)  # a killed run is finished (failed): it pays only the compute it consumed
        if pending:
            outcomes = pay.settle_pending(s, chain)
            if json_:
                _print_json([{"run_id": rid, "outcome": outcome} for rid, outcome in outcomes])
                return
            for rid, outcome in outcomes:
                out.print(f"{rid}: {outcome}", highlight=False)
            if not outcomes:
                out.print("nothing pending")
            return
        row = pay.settle_run(s, chain, run_id)
        if json_:
            _print_json(pay.settlement_dict(row))
            return
        out.print(f"{row.id}: {row.status} (tx {row.settle_tx})", highlight=False)


def _settle_services(service_id: str | None, json_: bool) -> None:
    from runtime.db import session_factory
    from runtime.service_settlement import batch_dict, settle_services
    from runtime.settlement import Chain

    chain = Chain.connect()
    with session_factory()() as s, wallet.node_errors(rpc_url()):
        batches, errors = settle_services(s, chain, service_id)
        data = [batch_dict(b) for b in batches]
    if json_:
        _print_json({"batches": data, "errors": errors})
    else:
        for b in data:
            out.print(
                f"{b['batch_id']}: {b['status']}, {b['calls']} calls, {format_aic(b['payouts_wei'])} to "
                f"{len(b['payouts'])} asset owners + fee {format_aic(b['fee_wei'])} (tx {b['settle_tx']})",
                highlight=False,
            )
        if not data and not errors:
            out.print("no unpaid calls")
    if errors:
        raise ChainError("; ".join(errors))


def _settle_storage(json_: bool) -> None:
    from runtime.db import session_factory
    from runtime.service_settlement import batch_dict, settle_storage
    from runtime.settlement import Chain

    chain = Chain.connect()
    with session_factory()() as s, wallet.node_errors(rpc_url()):
        batches, errors = settle_storage(s, chain)
        data = [batch_dict(b) for b in batches]
    if json_:
        _print_json({"batches": data, "errors": errors})
    else:
        for b in data:
            out.print(f"{b['batch_id']}: {b['status']}, {b['calls']} storage records, {format_aic(b['payouts_wei'])} "
                      f"to {len(b['payouts'])} stores + fee {format_aic(b['fee_wei'])} (tx {b['settle_tx']})",
                      highlight=False)  # fmt: skip
        if not data and not errors:
            out.print("no unpaid storage")
    if errors:
        raise ChainError("; ".join(errors))


@app.command("payouts")
def payouts_command(
    run_id: Annotated[str, typer.Argument(help="Run id, or a service batch id from `aib settle services`")],
    json_: JsonFlag = False,
) -> None:
    """Who was paid what for a run (or service batch): per asset the owner, amount in wei and transaction hash."""
    from builder.errors import NotFoundError
    from runtime.db import ServiceBatch, Settlement, StorageBatch, session_factory
    from runtime.service_settlement import batch_dict
    from runtime.settlement import settlement_dict

    with session_factory()() as s:
        batch = s.get(ServiceBatch, run_id) or s.get(StorageBatch, run_id)
        if batch is not None:
            _print_batch(batch_dict(batch), json_)
            return
        row = s.get(Settlement, run_id)
        if row is None:
            raise NotFoundError(
                f"{run_id!r} is neither a run paid on chain nor a service batch (`aib runs list` shows the runs)"
            )
        data = settlement_dict(row)
    if json_:
        _print_json(data)
        return
    out.print(f"{data['run_id']}: {data['status']}, deposit {format_aic(data['deposit_wei'])}", highlight=False)
    for p in data["payouts"]:
        out.print(
            f"  asset {p['asset_id']:>3} {p['block_ref']:<30} {p.get('payee') or '?'}  {format_aic(p['amount_wei'])}",
            highlight=False,
        )
    if data["status"] == "settled":
        out.print(
            f"  fee {format_aic(data['fee_wei'])}, refund {format_aic(data['refund_wei'])}, tx {data['settle_tx']}",
            highlight=False,
        )


def _print_batch(data: dict[str, Any], json_: bool) -> None:
    if json_:
        _print_json(data)
        return
    out.print(f"{data['batch_id']}: {data['status']}, {data['calls']} calls", highlight=False)
    for p in data["payouts"]:
        out.print(
            f"  asset {p['asset_id']:>3} {p['block_ref']:<30} {p.get('payee') or '?'}  {format_aic(p['amount_wei'])}",
            highlight=False,
        )
    out.print(f"  fee {format_aic(data['fee_wei'])}, tx {data['settle_tx']}", highlight=False)
