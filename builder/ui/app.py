"""The Easy AI Builder workbench: a Streamlit multipage app (`aib ui`, or `make run`)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from builder.ui.common import PAGE_REGISTRY

PAGES = Path(__file__).resolve().parent / "pages"

st.set_page_config(page_title="Easy AI Builder", page_icon=":material/account_tree:", layout="wide")
PAGE_REGISTRY.update(
    {
        name: st.Page(PAGES / f"{name}_page.py", url_path=name, title=title, icon=icon, default=name == "templates")
        for name, title, icon in [
            ("templates", "Templates", ":material/library_books:"),
            ("builder", "Builder", ":material/account_tree:"),
            ("marketplace", "Marketplace", ":material/storefront:"),
            ("runs", "Runs", ":material/play_circle:"),
            ("services", "Services", ":material/api:"),
            ("wallet", "Wallet", ":material/account_balance_wallet:"),
            ("provide", "Provide", ":material/upload_file:"),
        ]
    }
)
navigation = st.navigation(
    {
        "Build": [PAGE_REGISTRY[n] for n in ("templates", "builder", "marketplace")],
        "Operate": [PAGE_REGISTRY[n] for n in ("runs", "services")],
        "Money": [PAGE_REGISTRY[n] for n in ("wallet", "provide")],
    }
)
navigation.run()
