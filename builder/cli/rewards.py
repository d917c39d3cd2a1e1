"""`aib rewards …`: Proof-of-Value epochs of the ecosystem-incentive pool (close, show, claim)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from builder.cli.base import JsonFlag, _aic_option, _print_json, _session, _table, app, out
from builder.money import format_aic

rewards_app = typer.Typer(
    no_args_is_help=True, help="Proof-of-Value rewards: the incentive pool paid per epoch to the assets really used."
)
app.add_typer(rewards_app, name="rewards")


def _pool_amount(amount: str | None) -> int:
    from runtime.rewards import DEFAULT_EPOCH_POOL_WEI

    return DEFAULT_EPOCH_POOL_WEI if amount is None else _aic_option(amount, "--amount")


def _chain() -> Any:
    from runtime.rewards import RewardsChain

    return RewardsChain.connect()


def _draft_rows(draft: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    paid = [
        {"asset": a, "ref": draft.candidates[a].ref, "used (paid)": format_aic(draft.candidates[a].value_wei),
         "reward": format_aic(amount)}
        for a, amount in draft.shares.items()
    ]  # fmt: skip
    excluded = [
        {"asset": a, "ref": draft.candidates[a].ref, "used (paid)": format_aic(draft.candidates[a].value_wei),
         "why left out": reason}
        for a, reason in sorted(draft.excluded.items())
    ]  # fmt: skip
    return paid, excluded


@rewards_app.command("close-epoch")
def close_epoch_command(
    amount: Annotated[
        str | None, typer.Option("--amount", help="What the epoch pays out of the pool, e.g. '10000 AIC' (default)")
    ] = None,
    json_: JsonFlag = False,
) -> None:
    """Close the next epoch: pay the pool pro rata to each asset's verified, paid usage since the last epoch, junk
    left out, in one transaction (a Merkle root). Finishes an epoch a crash left pending; never pays one twice."""
    from runtime.chain_node import rpc_url
    from runtime.db import RewardEpoch
    from runtime.rewards import close_epoch, epoch_dict
    from runtime.wallet import node_errors

    pool = _pool_amount(amount)
    rc = _chain()
    with _session() as s, node_errors(rpc_url()):
        result = close_epoch(s, rc, pool)
    if isinstance(result, RewardEpoch):
        if json_:
            _print_json({**epoch_dict(result), "report": result.report})
            return
        out.print(
            f"epoch {result.number} closed: {format_aic(result.total_wei)} to {len(result.report['paid'])} asset(s), "
            f"{len(result.report['excluded'])} left out as junk (tx {result.close_tx}). Owners claim with "
            f"`aib rewards claim --epoch {result.number}`.",
            highlight=False,
        )
        return
    draft = result
    if json_:
        _print_json({"epoch": None, "closed": False, "report": draft.report()})
        return
    if not draft.candidates:
        out.print(
            f"nothing to reward: no settled usage since epoch {draft.number - 1}; epoch {draft.number} stays open"
        )
        return
    _, excluded = _draft_rows(draft)
    _table(["asset", "ref", "used (paid)", "why left out"], excluded)
    out.print(f"every asset used since epoch {draft.number - 1} is left out as junk; epoch {draft.number} stays open")


@rewards_app.command("show")
def show_command(
    epoch: Annotated[
        int | None, typer.Option("--epoch", help="One epoch: who was paid, who was left out and why")
    ] = None,
    json_: JsonFlag = False,
) -> None:
    """The closed epochs and what the next one would pay now, or (--epoch N) one epoch in full with its claims."""
    from runtime.chain_node import rpc_url
    from runtime.rewards import draft_epoch, epoch_claims, epoch_dict, epochs, get_epoch
    from runtime.wallet import node_errors

    rc = _chain()
    with _session() as s, node_errors(rpc_url()):
        if epoch is not None:
            row = get_epoch(s, rc, epoch)
            claims = epoch_claims(rc, row)
            if json_:
                _print_json({**epoch_dict(row), "report": row.report, "claims": claims})
                return
            out.print(
                f"epoch {row.number}: {row.status}, {format_aic(row.total_wei)} (root {row.root}, tx {row.close_tx})",
                highlight=False,
            )
            _table(
                ["asset", "ref", "used (paid)", "reward", "claimed", "owner"],
                [
                    {"asset": c["asset_id"], "ref": c["ref"], "used (paid)": format_aic(int(c["value_wei"])),
                     "reward": format_aic(int(c["amount_wei"])), "claimed": "yes" if c["claimed"] else "no",
                     "owner": c["owner"]}
                    for c in claims
                ],
            )  # fmt: skip
            if row.report["excluded"]:
                _table(
                    ["asset", "ref", "why left out"],
                    [{"asset": e["asset_id"], "ref": e["ref"], "why left out": e["reason"]}
                     for e in row.report["excluded"]],
                )  # fmt: skip
            return
        rows = epochs(s, rc)
        draft = draft_epoch(s, rc)
        if json_:
            _print_json({"epochs": [epoch_dict(r) for r in rows], "next": draft.report()})
            return
        if rows:
            _table(
                ["epoch", "status", "total", "paid", "excluded", "tx"],
                [{**epoch_dict(r), "total": format_aic(r.total_wei), "tx": r.close_tx} for r in rows],
            )
        else:
            out.print("no epoch has been closed yet")
        paid, excluded = _draft_rows(draft)
        if not draft.candidates:
            out.print(f"next epoch ({draft.number}): no settled usage yet")
            return
        out.print(f"next epoch ({draft.number}) if closed now, paying {format_aic(draft.pool_wei)}:", highlight=False)
        if paid:
            _table(["asset", "ref", "used (paid)", "reward"], paid)
        if excluded:
            _table(["asset", "ref", "used (paid)", "why left out"], excluded)


@rewards_app.command("claim")
def claim_command(
    epoch: Annotated[int, typer.Option("--epoch", help="The epoch to claim from")],
    asset: Annotated[
        list[int] | None, typer.Option("--asset", help="Only this asset (repeatable); default all")
    ] = None,
    json_: JsonFlag = False,
) -> None:
    """Pay an epoch's rewards to the current owners of its assets (anyone may send a claim; the owner is paid)."""
    from runtime.chain_node import rpc_url
    from runtime.rewards import claim
    from runtime.wallet import node_errors

    rc = _chain()
    with _session() as s, node_errors(rpc_url()):
        results = claim(s, rc, epoch, asset or None)
    if json_:
        _print_json(results)
        return
    for r in results:
        if r["outcome"] == "paid":
            out.print(f"asset {r['asset_id']}: paid {format_aic(int(r['amount_wei']))} to {r['payee']} (tx {r['tx']})",
                      highlight=False)  # fmt: skip
        else:
            out.print(f"asset {r['asset_id']}: {r['outcome']}", highlight=False)


__all__ = ["rewards_app"]
