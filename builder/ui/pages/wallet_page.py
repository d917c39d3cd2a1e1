"""Wallet: the paying wallet's AIC balance, deposits and refunds of runs, and what each provider received."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from sqlalchemy import select

from builder.ui.common import aic, batches_table, chain_or_none, db, setup

setup("Wallet", "wallet")

from runtime.db import ServiceBatch, Settlement  # noqa: E402

chain = chain_or_none()
if chain is None:
    st.info("No chain is running, so runs are not paid on chain. Start the local chain to pay providers in AIC.")
    if st.button("Start the local chain", key="start-chain", type="primary"):
        from builder.errors import AibError
        from chain.node import start_local
        from runtime.processes import free_port, port_free

        try:
            with st.spinner("Starting Anvil and deploying the contracts (first time: a few seconds)…"):
                start_local(8545 if port_free("127.0.0.1", 8545) else free_port())
            st.rerun()
        except AibError as exc:
            st.error(str(exc))
    st.stop()

balance = chain.token.functions.balanceOf(chain.payer).call()
c1, c2 = st.columns(2)
c1.metric("Your balance", aic(balance))
c2.write(f"Wallet `{chain.payer}`")

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
            [(d[0], d[1], aic(d[2]), aic(d[3]), aic(d[4]), d[6] or d[5]) for d in deposits],
            columns=["run", "status", "deposit", "refund", "fee", "tx"],
        ),
        hide_index=True,
    )
else:
    st.caption("No run was paid on chain yet.")

st.subheader("Served calls paid")
if batches:
    batches_table(batches)
else:
    st.caption("No service batch was paid yet (`aib settle services`).")

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
                (who, aic(amount), aic(chain.token.functions.balanceOf(who).call()))
                for who, amount in sorted(received.items())
            ],
            columns=["provider", "received here", "balance now"],
        ),
        hide_index=True,
    )
else:
    st.caption("Nothing paid out yet.")
