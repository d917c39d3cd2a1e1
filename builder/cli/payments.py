"""Paying runs from the command line: the funds check before a run, the deposit, the settlement after."""

from __future__ import annotations

import os
from typing import Any

from builder.cli.base import _aib, _session, err, out
from builder.errors import AibError
from builder.money import format_aic


def _payment_check(plan: Any) -> tuple[Any, int]:
    """When runs are paid on chain: the chain and the deposit, refused (before any work) if unaffordable."""
    from runtime import settlement as pay
    from runtime.chain_node import payments_enabled

    if not payments_enabled():
        return None, 0
    chain = pay.Chain.connect()
    amount = pay.deposit_amount(chain, plan)
    pay.check_funds(chain, amount)
    return chain, amount


def _start_local_chain_for_payments() -> bool:
    """Start the local chain runs are paid on (unless AIB_PAYMENTS=off); True when this call started it."""
    if os.environ.get("AIB_PAYMENTS", "auto").lower() == "off" or os.environ.get("AIB_RPC_URL"):
        return False
    from runtime.chain_node import local_status, start_local

    if local_status()["running"]:
        return False
    try:
        status = start_local()
    except AibError as exc:
        err.print(f"warning: runs will not be paid on chain: {exc}", highlight=False, markup=False)
        return False
    out.print(f"local chain at {status['rpc_url']}: runs are paid in AIC through the escrow", highlight=False)
    return True


def _pay_deposit(chain: Any, run_id: str, amount: int, quiet: bool) -> None:
    from runtime import settlement as pay
    from runtime.runs import fail_run

    try:
        with _session() as s:
            row = pay.deposit(s, chain, run_id, amount)
    except AibError as exc:
        with _session() as s:
            fail_run(s, run_id, f"the deposit failed, so the run did not start: {exc}")
        raise
    if not quiet:
        out.print(f"deposited {format_aic(amount)} in escrow (tx {row.deposit_tx})", highlight=False)


def _settle_after_run(chain: Any, run_id: str, quiet: bool) -> None:
    from runtime import settlement as pay

    try:
        with _session() as s:
            row = pay.settle_run(s, chain, run_id)
    except AibError as exc:
        err.print(f"settlement pending: {exc}; `{_aib()} settle --pending` retries", highlight=False, markup=False)
        return
    if not quiet:
        out.print(
            f"paid {len(row.payouts)} providers {format_aic(sum(p['amount_wei'] for p in row.payouts))}, "
            f"refunded {format_aic(row.refund_wei or 0)} (tx {row.settle_tx})",
            highlight=False,
        )
