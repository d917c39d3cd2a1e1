"""Provide: publish a dataset (checked, stored by checksum, priced per run, registered as an asset NFT) and see
what your datasets earn."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from sqlalchemy import select

from builder.ui.common import aic, chain_or_none, db, sample_table, setup, start_button, start_local_chain
from builder.ui.names import details, directory

setup("Provide", "provide")
st.caption(
    "Sell your data: a published dataset is checked by the block it is for, stored with its checksum and "
    "registered as your asset on the chain. Whoever owns the asset is paid its price each time a run reads it."
)

from builder.datasets import DatasetError, kinds_text, upload_types  # noqa: E402
from builder.money import parse_amount  # noqa: E402
from builder.registry import all_blocks  # noqa: E402
from builder.spec import Kind  # noqa: E402
from runtime.datasets import list_datasets, preview, publish  # noqa: E402
from runtime.db import Usage  # noqa: E402

chain = chain_or_none()
names = directory(you=chain.payer if chain is not None else None)
data_blocks = [b for b in all_blocks() if b.kind == Kind.DATA]
OWNER_HELP = "Leave empty to be paid yourself, or paste the wallet address of whoever should be paid."


def _start_distributed(port: int) -> None:
    from runtime.distributed import start_server

    start_server(port)


def start_chain_button(key: str) -> None:
    """A button that starts the local chain (as on the Wallet page), for steps that need one."""
    start_button(
        "Start the local chain", key, "Starting the local chain (first time: a few seconds)…", start_local_chain, 8545
    )


tab_publish, tab_mine, tab_blocks, tab_compute = st.tabs(
    ["Publish a dataset", "Published datasets", "Register a block", "Offer compute"]
)
with tab_publish:
    if chain is None:
        st.info(
            "No chain is running: the dataset is stored and usable, and it is registered as your asset when you "
            "publish it again with the chain running."
        )
        start_chain_button("start-chain-publish")
    with st.form("publish", clear_on_submit=False):
        kinds = tuple(sorted({k for b in data_blocks for k in upload_types(b)}))
        upload = st.file_uploader(
            f"Data file ({kinds_text(kinds)})", type=[k.lstrip(".") for k in kinds], key="provide-file"
        )
        block_ref = st.selectbox(
            "For the data block",
            [b.ref() for b in data_blocks],
            format_func=lambda r: f"{r} · {next(b for b in data_blocks if b.ref() == r).description}",
            help="The file is checked exactly as this block reads it in a run.",
        )
        name = st.text_input("Name", placeholder="e.g. shop FAQ, 300 questions")
        description = st.text_input("Description (one line for buyers)")
        c1, c2 = st.columns(2)
        price = c1.text_input("Price per run", value="0.01 AIC", help="e.g. 0.01 AIC")
        owner = c2.text_input("Owner (paid)", placeholder="You", help=OWNER_HELP)
        submitted = st.form_submit_button("Publish", type="primary")
    if submitted:
        error = None
        if upload is None:
            error = "Choose a data file to publish."
        else:
            try:
                price_wei = parse_amount(price.strip())
            except ValueError as exc:
                error = f"Price: {exc}."
        if error is None:
            try:
                with st.spinner("Checking the file and registering the asset…"):
                    ds = publish(
                        upload.name,
                        upload.getvalue(),
                        block=block_ref,
                        price_wei=price_wei,
                        owner=owner.strip() or (chain.payer if chain is not None else ""),
                        name=name,
                        description=description,
                    )
                asset = (
                    f"registered as an asset of {names.who(ds.owner)}"
                    if ds.asset_id is not None
                    else "not registered yet (no chain)"
                )
                st.success(f"Published {ds.name} as {ds.id} at {aic(ds.price_wei)} per run; {asset}.")
                details({"asset number": ds.asset_id, "owner's wallet": ds.owner, "transaction": ds.register_tx})
                st.markdown(f"Checksum (SHA-256): `{ds.sha256}`")
                st.markdown("**Random sample of the data**")
                sample_table(preview(ds, rows=5))
            except DatasetError as exc:
                error = str(exc)
            except Exception as exc:  # chain errors and the like: one sentence beside the form
                error = f"The dataset could not be published: {exc}"
        if error:
            st.error(error)

with tab_mine:
    datasets = list_datasets()
    if not datasets:
        st.info("No dataset is published yet.")
    else:
        earned: dict[str, tuple[int, int]] = {}  # dataset ref -> (runs, wei); amounts are summed exactly here
        with db() as s:
            for block_id, amount in s.execute(
                select(Usage.block_id, Usage.amount_wei).where(Usage.block_id.like("dataset:%"))
            ).all():
                runs, wei = earned.get(block_id, (0, 0))
                earned[block_id] = (runs + 1, wei + int(amount))
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "name": d.name,
                        "id": d.id,
                        "block": d.block,
                        "price / run": aic(d.price_wei),
                        "runs": earned.get(f"dataset:{d.id}", (0, 0))[0],
                        "earned": aic(earned.get(f"dataset:{d.id}", (0, 0))[1]),
                        "owner (paid)": names.who(d.owner),
                        "size": f"{d.size / 1000:.1f} kB",
                    }
                    for d in datasets
                ]
            ),
            hide_index=True,
            width="stretch",
        )
        chosen = st.selectbox(
            "Details",
            [d.id for d in datasets],
            format_func=lambda i: f"{i} · {next(d.name for d in datasets if d.id == i)}",
        )
        ds = next(d for d in datasets if d.id == chosen)
        if ds.description:
            st.write(ds.description)
        st.markdown(f"Checksum (SHA-256): `{ds.sha256}`")
        details({"asset number": ds.asset_id, "owner's wallet": ds.owner, "stored file": ds.path})
        try:
            sample_table(preview(ds, rows=5))
        except DatasetError as exc:
            st.warning(str(exc))

with tab_blocks:
    st.write(
        "A model, processing step or data source you provide is a block package. Once it is installed on this "
        "machine it is listed here: register it as your asset, and its price is paid to you each time a run or a "
        "served call uses it."
    )
    with st.expander("Installing a block package, or registering from the command line"):
        st.code("pip install your-package\naib assets register BLOCK --owner ADDRESS", language="bash")
    if chain is None:
        st.info("Registering needs the chain running.")
        start_chain_button("start-chain-register")
    else:
        unregistered = [b for b in all_blocks() if b.ref() not in chain.asset_of]
        if not unregistered:
            st.success("Every installed block already has its asset (Marketplace shows the owners).")
        else:
            with st.form("register-block"):
                ref = st.selectbox("Installed block without an asset", [b.ref() for b in unregistered])
                block_owner = st.text_input("Owner (paid)", placeholder="You", help=OWNER_HELP, key="block-owner")
                register_clicked = st.form_submit_button("Register", type="primary")
            if register_clicked:
                from builder.errors import AibError
                from runtime.chain_node import register_provided_block
                from runtime.wallet import checked_address

                cls = next(b for b in unregistered if b.ref() == ref)
                try:
                    who = checked_address(block_owner.strip() or chain.payer)
                    asset_id, tx = register_provided_block(cls, who)
                    st.success(f"{ref} is registered as an asset of {names.who(who)}.")
                    details({"asset number": asset_id, "owner's wallet": who, "transaction": tx})
                except AibError as exc:
                    st.error(str(exc))

with tab_compute:
    import pandas as pd

    from runtime.distributed import server_info
    from runtime.providers import offer_rows

    st.write(
        "A GPU or CPU is offered by running the provider agent **on that machine** (it checks the hardware, runs "
        "a worker for its tier and sends heartbeats); pipelines that rent their compute are then placed on the "
        "cheapest fitting offer. With the chain running, the offer is an asset owned by your wallet and paid for "
        "the compute runs use; a stake shows renters you stand behind your work (half of it is lost if the "
        "verifier catches work you signed but did not do)."
    )
    info = server_info()
    if info is None:
        st.info("The distributed server, which hands rented runs to the offering machines, is not running here.")
        start_button(
            "Start the distributed server",
            "start-server",
            "Starting the distributed server (up to a minute)…",
            _start_distributed,
            4200,
            primary=True,
        )
    else:
        st.success(f"The distributed server is running at {info['api_url']}.")
    coordinator = (info or {}).get("coordinator_url", "http://COORDINATOR:4201")
    with st.expander("On each offering machine (command line)"):
        st.code(
            "# another person's machine: it talks to this coordinator only, never to its database or files\n"
            f"aib provider start --coordinator {coordinator} --tier gpu-small --price 0.36\n"
            "# …or host trained services for this coordinator's gateway (`aib serve SERVICE --on-providers`)\n"
            f"aib provider serve --coordinator {coordinator} --price-per-1k-calls 0.002\n"
            "# …or offer disk for sealed data shards (paid per GB-month held, checked at random)\n"
            f"aib provider start --coordinator {coordinator} --storage 100 --price-gb-month 0.5 --region eu\n"
            "# one of your own machines, sharing this installation\n"
            "aib provider start --tier gpu-small --price 0.36 --stake 100\n"
            "aib server start --host 0.0.0.0    # the button above, reachable from other machines",
            language="bash",
        )
    with db() as s:
        offers = [
            {
                "id": r["id"],
                "name": r["name"],
                "tier": r["tier"],
                "price / hour": aic(r["price_per_hour_wei"]),
                "memory": f"{r['memory_gb']:g} GB",
                "load": f"{r['load']}/{r['slots']}",
                "reputation": round(r["reputation"], 2),
                "owner (paid)": names.who(r["wallet"]) if r["wallet"] else "—",
                "online": r["online"],
                "where": "another machine" if r["via"] == "api" else "this installation",
            }
            for r in offer_rows(s)
        ]
    if offers:
        st.dataframe(pd.DataFrame(offers), hide_index=True, width="stretch")
    else:
        st.caption("No machine has offered compute yet.")
    from runtime.protocol.hosting import host_rows
    from runtime.protocol.storage import store_rows

    with db() as s:
        hosts, stores = host_rows(s), store_rows(s)
    if hosts:
        st.markdown("**Machines hosting services** (paid per call they answer through the gateway)")
        st.dataframe(pd.DataFrame([{
            "id": r["id"], "name": r["name"], "price / 1k calls": aic(r["price_per_1k_calls_wei"]),
            "reputation": round(r["reputation"], 2), "owner (paid)": names.who(r["wallet"]), "online": r["online"],
            "services": ", ".join(f"{k} ({v})" for k, v in r["services"].items()) or "—"} for r in hosts]),
            hide_index=True, width="stretch")  # fmt: skip
    if stores:
        st.markdown("**Machines offering storage** (paid per GB-month held, up to their last passed spot check)")
        st.dataframe(pd.DataFrame([{
            "id": r["id"], "name": r["name"], "region": r["region"] or "—",
            "held": f"{r['held_bytes'] / 1e9:.3f} of {r['capacity_bytes'] / 1e9:g} GB",
            "price / GB-month": aic(r["price_gb_month_wei"]), "reputation": round(r["reputation"], 2),
            "owner (paid)": names.who(r["wallet"]), "online": r["online"]} for r in stores]),
            hide_index=True, width="stretch")  # fmt: skip
