"""The Easy AI Builder workbench: a Streamlit multipage app (`aib ui`, or `make run`)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).resolve().parent / "pages"

st.set_page_config(page_title="Easy AI Builder", page_icon=":material/account_tree:", layout="wide")
navigation = st.navigation(
    {
        "Build": [
            st.Page(
                PAGES / "templates_page.py",
                url_path="templates",
                title="Templates",
                icon=":material/library_books:",
                default=True,
            ),
            st.Page(PAGES / "builder_page.py", url_path="builder", title="Builder", icon=":material/account_tree:"),
            st.Page(
                PAGES / "marketplace_page.py", url_path="marketplace", title="Marketplace", icon=":material/storefront:"
            ),
        ],
        "Operate": [
            st.Page(PAGES / "runs_page.py", url_path="runs", title="Runs", icon=":material/play_circle:"),
            st.Page(PAGES / "services_page.py", url_path="services", title="Services", icon=":material/api:"),
        ],
        "Money": [
            st.Page(
                PAGES / "wallet_page.py", url_path="wallet", title="Wallet", icon=":material/account_balance_wallet:"
            ),
        ],
    }
)
navigation.run()
