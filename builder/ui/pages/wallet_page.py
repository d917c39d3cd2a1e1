"""Wallet: the paying wallet's AIC balance, deposits and refunds of runs, and what each provider received."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from sqlalchemy import select

from builder.ui.common import aic, batches_table, chain_or_none, db, setup, start_button, start_local_chain
from builder.ui.names import details, directory

setup("Wallet", "wallet")

from runtime.db import ServiceBatch, Settlement  # noqa: E402

chain = chain_or_none()
if chain is None:
    st.info("No chain is running, so runs are not paid on chain. Start the local chain to pay providers in AIC.")
    start_button(
        "Start the local chain",
        "start-chain",
        "Starting Anvil and deploying the contracts (first time: a few seconds)…",
        start_local_chain,
        8545,
        primary=True,
    )
    st.stop()

names = directory(you=chain.payer)
balance = chain.token.functions.balanceOf(chain.payer).call()
st.metric("Your balance", aic(balance))
details({"your wallet": chain.payer})

with db() as s:
    deposits = [
        (r.id, r.status, r.deposit_wei, r.refund_wei, r.fee_wei, r.deposit_tx, r.settle_tx, r.payouts)
        for r in s.scalars(select(Settlement).order_by(Settlement.created_at.desc()))
    ]
    batches = [
        (b.id, b.status, b.calls, b.payouts_wei, b.fee_wei, b.settle_tx, b.payouts)
        for b in s.scalars(select(ServiceBatch))
    ]

st.subheader("Runs paid")
if deposits:
    st.dataframe(
        pd.DataFrame(
            [(d[0], d[1], aic(d[2]), aic(d[3]), aic(d[4])) for d in deposits],
            columns=["run", "status", "deposit", "refund", "fee"],
        ),
        hide_index=True,
    )
    details({f"{d[0]} transaction": d[6] or d[5] for d in deposits})
else:
    st.caption("No run was paid on chain yet.")

st.subheader("Served calls paid")
if batches:
    batches_table(batches)
else:
    st.caption("No service batch was paid yet: served calls are paid in batches by the operator.")

st.subheader("Received by providers")
received: dict[str, int] = {}
for payouts in [d[7] for d in deposits if d[1] == "settled"] + [b[6] for b in batches if b[1] == "settled"]:
    for p in payouts:
        if p.get("payee"):
            received[p["payee"]] = received.get(p["payee"], 0) + int(p["amount_wei"])
if received:
    st.dataframe(
        pd.DataFrame(
            [
                (names.who(who), aic(amount), aic(chain.token.functions.balanceOf(who).call()))
                for who, amount in sorted(received.items())
            ],
            columns=["provider", "received here", "balance now"],
        ),
        hide_index=True,
    )
    details({names.who(who): who for who in sorted(received)})
else:
    st.caption("Nothing paid out yet.")

st.subheader("Proof-of-Value rewards")
st.caption(
    "Each epoch, the ecosystem-incentive pool pays every asset its share of the verified, paid usage since the last "
    "epoch. Copies of other assets, data whose models never beat a trivial baseline and providers caught cheating "
    "are left out, and their share goes to the others."
)
from builder.errors import AibError  # noqa: E402
from builder.ui.operator import close_epoch, operator_refusal  # noqa: E402
from runtime import rewards as pov  # noqa: E402

try:
    rc = pov.RewardsChain.connect()
except AibError as exc:
    st.caption(str(exc))
    st.stop()
with db() as s:
    closed = [pov.epoch_dict(r) for r in pov.epochs(s, rc)]
    draft = pov.draft_epoch(s, rc)
if closed:
    st.dataframe(
        pd.DataFrame(
            [(e["epoch"], e["status"], aic(int(e["total_wei"])), e["paid"], e["excluded"]) for e in reversed(closed)],
            columns=["epoch", "status", "paid out", "assets paid", "left out"],
        ),
        hide_index=True,
    )  # fmt: skip
    details({f"epoch {e['epoch']} transaction": e["close_tx"] for e in reversed(closed)})
st.markdown(f"**Next epoch ({draft.number})**, if closed now:")
if not draft.candidates:
    st.caption("No settled usage since the last epoch yet.")
else:
    used = {a: draft.candidates[a] for a in [*draft.shares, *sorted(draft.excluded)]}
    rows = [(names.what(c.ref), aic(c.value_wei), aic(draft.shares.get(a, 0)), draft.excluded.get(a, ""))
            for a, c in used.items()]  # fmt: skip
    st.dataframe(
        pd.DataFrame(rows, columns=["block / dataset / offer", "used (paid)", "reward", "left out because"]),
        hide_index=True,
    )
    details({f"{names.what(c.ref)} asset number": a for a, c in used.items()})


def _close_epoch() -> None:
    # A callback runs before the page is drawn again, so the tables above show the epoch it closed. Only the
    # operator is offered the button; the refusal in close_epoch stands whatever the browser sends.
    kind, text, facts = close_epoch(rc, int(st.session_state["epoch-aic"]) * 10**18)
    st.session_state["rewards-msg"] = (kind, text, facts)


def _claim(number: int) -> None:
    try:
        with db() as s:
            results = pov.claim(s, rc, number)
        paid = [r for r in results if r["outcome"] == "paid"]
        st.session_state["rewards-msg"] = (
            "success",
            f"Epoch {number}: paid {len(paid)} owner(s) "
            f"{aic(sum(int(r['amount_wei']) for r in paid))}; {len(results) - len(paid)} "
            "had been paid already or are excluded.",
            {f"{names.asset(r['asset_id'])} paid to {names.who(r['payee'])}": r["tx"] for r in paid},
        )
    except AibError as exc:
        st.session_state["rewards-msg"] = ("error", str(exc), {})


operator = operator_refusal(rc) is None
if operator:
    st.number_input("AIC the epoch pays out of the pool", min_value=1, value=10_000, step=1_000, key="epoch-aic")
else:
    st.caption("The operator of Easy AI Builder closes each epoch; the table above is what closing it now would pay.")
col1, col2 = st.columns(2)
if operator:
    col1.button(f"Close epoch {draft.number} now", key="close-epoch", disabled=not draft.shares, on_click=_close_epoch)
if closed:
    col2.button(
        f"Pay the owners of epoch {closed[-1]['epoch']}",
        key="claim-epoch",
        on_click=_claim,
        args=(closed[-1]["epoch"],),
    )
message = st.session_state.pop("rewards-msg", None)
if message:
    {"success": st.success, "error": st.error, "info": st.info}[message[0]](message[1])
    details(message[2])
