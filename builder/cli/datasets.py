"""`aib datasets publish|list`: providers sell data files as Dataset assets paid per run that reads them."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from builder.cli.base import JsonFlag, _fail, _print_json, _table, app, out
from builder.money import format_aic, parse_amount

datasets_app = typer.Typer(no_args_is_help=True, help="Publish data files as Dataset assets, paid per run.")
app.add_typer(datasets_app, name="datasets")


def _default_owner() -> str | None:
    """The wallet in use (AIB_KEYSTORE, else the local chain's user), when there is one."""
    from builder.errors import AibError
    from runtime.chain_node import current_wallet

    try:
        return current_wallet()[0]
    except AibError:  # no chain and no keystore: the owner must then be given
        return None


@datasets_app.command("publish")
def datasets_publish(
    file: Annotated[Path, typer.Argument(help="The data file (CSV or XLSX)")],
    block: Annotated[str, typer.Option("--block", help="The data block it is for, e.g. chat.faq-csv")],
    price: Annotated[str, typer.Option("--price", help="Paid per run that reads it, e.g. '0.01 AIC'")],
    owner: Annotated[
        str | None, typer.Option("--owner", help="Address paid (default: your wallet or the local provider)")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Name shown in the marketplace")] = None,
    description: Annotated[str, typer.Option("--description", help="One line for buyers")] = "",
    json_: JsonFlag = False,
) -> None:
    """Check FILE with the block, store it by checksum and register it as a Dataset asset NFT."""
    from runtime.datasets import publish

    if not file.is_file():
        _fail(f"{file} is not a file")
    try:
        price_wei = parse_amount(price)
    except ValueError as exc:
        _fail(f"--price: {exc}")
    owner = owner or _default_owner()
    if not owner:
        _fail("give --owner ADDRESS: there is no wallet (AIB_KEYSTORE) and no local chain to take it from")
    ds = publish(
        file.name, file.read_bytes(), block=block, price_wei=price_wei, owner=owner, name=name, description=description
    )
    if json_:
        _print_json({**asdict(ds), "ref": ds.ref, "path": str(ds.path)})
        return
    asset = f"asset {ds.asset_id}" if ds.asset_id is not None else "no asset yet (payments are off)"
    out.print(
        f"published {ds.id} ({ds.name}) for {ds.block} at {format_aic(ds.price_wei)} per run, owner {ds.owner}; "
        f"{asset}\nuse it: set the data block's {ds.param} to {ds.path}",
        highlight=False,
        soft_wrap=True,
    )


@datasets_app.command("list")
def datasets_list(json_: JsonFlag = False) -> None:
    """Published datasets: id, name, block, price per run, owner and asset id."""
    from runtime.datasets import list_datasets

    rows = [{**asdict(d), "ref": d.ref, "path": str(d.path)} for d in list_datasets()]
    if json_:
        _print_json(rows)
        return
    if not rows:
        out.print("no dataset is published yet; `aib datasets publish FILE --block … --price …` publishes one")
        return
    _table(
        ["id", "name", "block", "price", "owner", "asset"],
        [{**r, "price": format_aic(r["price_wei"]), "asset": r["asset_id"]} for r in rows],
    )
