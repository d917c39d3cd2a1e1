"""Marketplace: every block with its provider, price, licence, how much it is used, and its asset NFT."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from sqlalchemy import func, select

from builder.ui.common import aic, chain_or_none, db, sample_table, setup
from builder.ui.draft import palette
from builder.ui.names import details, directory

setup("Marketplace", "marketplace")
st.caption("Blocks offered by independent providers. Each is an asset on the chain; its owner is paid when it is used.")

from runtime.db import Usage  # noqa: E402

query = st.text_input("Search", key="market-search", placeholder="e.g. speech, classifier, csv")
with db() as s:
    runs_using = dict(
        s.execute(
            select(Usage.block_id, func.count(func.distinct(Usage.run_id)))
            .where(Usage.run_id.is_not(None))
            .group_by(Usage.block_id)
        ).all()
    )
    calls = dict(
        s.execute(
            select(Usage.block_id, func.sum(Usage.quantity)).where(Usage.unit == "call").group_by(Usage.block_id)
        ).all()
    )

chain = chain_or_none()
names = directory(you=chain.payer if chain is not None else None)
owners: dict[str, tuple[int, str]] = {}
if chain is not None:
    from runtime.wallet import asset_owners

    found = asset_owners(list(chain.asset_of.values()))
    owners = {ref: (asset_id, found[asset_id]) for ref, asset_id in chain.asset_of.items()}

rows = []
for domain, blocks in palette(query).items():
    for b in blocks:
        asset = owners.get(b.ref())
        rows.append(
            {
                "block": b.ref(),
                "domain": domain,
                "kind": str(b.kind),
                "price": f"{aic(b.price.amount_wei)} / {b.price.unit}",
                "per 1k calls": aic(b.call_price.amount_wei) if b.call_price else "",
                "licence": b.license,
                "runs": runs_using.get(b.id, 0),
                "owner (paid)": names.who(asset[1] if asset else b.provider),
            }
        )
from runtime.datasets import list_datasets  # noqa: E402

q = query.strip().lower()
datasets = [d for d in list_datasets() if not q or q in f"{d.name} {d.id} {d.block} {d.description}".lower()]
if datasets:
    st.subheader("Datasets")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "dataset": d.name,
                    "id": d.id,
                    "for block": d.block,
                    "price": f"{aic(d.price_wei)} / run",
                    "runs": runs_using.get(f"dataset:{d.id}", 0),
                    "owner (paid)": names.who(d.owner),
                    "description": d.description,
                }
                for d in datasets
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    st.caption("Use one from the Builder: select its data block, then “Use a published dataset”.")
    st.subheader("Blocks")
if not rows:
    st.info("No block matches the search.")
    st.stop()
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
if chain is None:
    st.caption("Without a chain running, each block shows its provider; with it, whoever owns its asset now.")

ref = st.selectbox("Details", [r["block"] for r in rows], key="market-detail")
from builder.registry import get_block  # noqa: E402

block = get_block(*ref.split("@"))
st.write(block.description)
asset = owners.get(ref)
details(
    {
        "asset number": asset[0] if asset else None,
        "owner's wallet": asset[1] if asset else None,
        "provider's wallet": block.provider,
    }
)
c1, c2 = st.columns(2)
c1.markdown("**Inputs**\n" + ("\n".join(f"- `{p.name}` ({p.type}) {p.description}" for p in block.inputs) or "none"))
c2.markdown("**Outputs**\n" + ("\n".join(f"- `{p.name}` ({p.type}) {p.description}" for p in block.outputs) or "none"))
st.markdown("**Parameters**")
schema = block.Params.model_json_schema().get("properties", {})
st.dataframe(
    pd.DataFrame(
        [{"name": k, "default": str(v.get("default", "")), "help": v.get("description", "")} for k, v in schema.items()]
    ),
    hide_index=True,
)
if block.id in calls:
    st.caption(f"Served calls billed: {int(calls[block.id])}")
if hasattr(block, "preview"):
    from builder.ui.actions import preview
    from builder.ui.draft import DraftError, from_yaml
    from runtime.config import template_files

    # A data block is previewed on the sample data of a template that uses it.
    for path in template_files():
        try:
            sample_draft = from_yaml(path.read_text(encoding="utf-8"), path.parent)
        except DraftError:
            continue
        node = next((n for n, b in sample_draft.blocks.items() if b.get("use") == block.ref()), None)
        if node is None:
            continue
        st.markdown(f"**Random sample** (from the {path.stem} template's data)")
        seed = st.session_state.setdefault("market-seed", 0)
        try:
            sample_table(preview(sample_draft, node, rows=5, seed=seed))
        except DraftError as exc:
            st.warning(str(exc))
        if st.button("Another sample", key="market-reseed"):
            st.session_state["market-seed"] = seed + 1
            st.rerun()
        break
