"""The operator's controls on the workbench: closing a Proof-of-Value epoch pays the incentive pool out, so only the
operator may do it.

The workbench has no log-in, so the role belongs to the process: the operator starts it on the coordinating
machine with `AIB_OPERATOR=1 aib ui`, and the wallet it signs with must hold the epoch role of the rewards contract
(the chain's own record of who may close an epoch). Anyone else sees the closed epochs and the preview of the next
one, and the close is refused here, on the server, whatever the browser sends; `aib rewards close-epoch` stays the
operator's other way.
"""

from __future__ import annotations

import os
from typing import Any

OPERATOR_ENV = "AIB_OPERATOR"
NOT_OPERATOR = (
    "Epochs are closed by the operator of Easy AI Builder (the workbench started with AIB_OPERATOR=1, or "
    "`aib rewards close-epoch`)."
)


def operator_refusal(rc: Any) -> str | None:
    """Why this workbench may not close epochs on `rc` (a RewardsChain), in one sentence; None for the operator."""
    if os.environ.get(OPERATOR_ENV, "").strip().lower() not in ("1", "true", "yes"):
        return NOT_OPERATOR
    role = rc.rewards.functions.EPOCH_ROLE().call()
    if not rc.rewards.functions.hasRole(role, rc.operator).call():
        return (
            f"{OPERATOR_ENV} is set, but the wallet this workbench signs with may not close epochs on this chain; "
            "start it with the operator's wallet."
        )
    return None


def close_epoch(rc: Any, pool_wei: int) -> tuple[str, str, dict[str, Any]]:
    """Close the next epoch paying at most `pool_wei` when this workbench is the operator's; (kind, sentence,
    details) where kind is success, info or error and details holds the transaction."""
    from builder.errors import AibError
    from builder.ui.common import aic, db
    from runtime import rewards as pov

    refusal = operator_refusal(rc)
    if refusal is not None:
        return "error", refusal, {}
    try:
        with db() as s:
            row = pov.close_epoch(s, rc, pool_wei)
    except AibError as exc:
        return "error", str(exc), {}
    if isinstance(row, pov.EpochDraft):
        return "info", "Nothing to reward: every asset used since the last epoch is left out.", {}
    paid = len(row.report["paid"])
    return (
        "success",
        f"Epoch {row.number} closed: {aic(row.total_wei)} to {paid} asset(s).",
        {"transaction": row.close_tx},
    )


__all__ = ["NOT_OPERATOR", "OPERATOR_ENV", "close_epoch", "operator_refusal"]
