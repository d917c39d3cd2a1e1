"""The Easy AI Builder workbench: a Streamlit multipage app (`aib ui`, or `make run`).

Streamlit's own chrome is off: the launcher (builder/cli/launch.py) sets the toolbar to minimal (no Deploy button,
no developer menu, no running figure with its Stop button) and the theme; this file sets our favicon and page
titles, and answers an unknown address with our own not-found page instead of Streamlit's dialog.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from builder.ui.common import PAGE_REGISTRY

PAGES = Path(__file__).resolve().parent / "pages"
FAVICON = Path(__file__).resolve().parent / "static" / "favicon.svg"
PRODUCT = "Easy AI Builder"
HOME = "templates"  # the first page

st.set_page_config(page_title=PRODUCT, page_icon=str(FAVICON), layout="wide")
PAGE_REGISTRY.update(
    {
        # The first page lives at "/" alone, so that "/templates" is free for the redirect below.
        name: st.Page(
            PAGES / f"{name}_page.py",
            url_path=name if name != HOME else "",
            title=title,
            icon=icon,
            default=name == HOME,
        )
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


def unknown_address() -> str | None:
    """The address the browser opened when no page has it, else None.

    Streamlit would run the first page under a "page does not seem to exist" dialog; answering that address with a
    hidden page of its own name shows ours instead. (The requested name is only in the script run's page manager.)
    """
    ctx = get_script_run_ctx()
    manager = getattr(ctx, "pages_manager", None)
    if manager is None or manager.intended_page_script_hash:  # a click in the sidebar names a page by its hash
        return None
    name = (manager.intended_page_name or "").strip("/")
    return name if name and "/" not in name and name not in PAGE_REGISTRY else None


def not_found() -> None:
    """Our page for an address the workbench does not have."""
    st.title("Page not found")
    # The address is not echoed: whoever wrote the link chose it, and the page would render it as Markdown.
    st.write("The workbench has no page at this address. Pick a page on the left, or start from the templates.")
    st.page_link(PAGE_REGISTRY[HOME], label="Open the templates", icon=":material/library_books:")


def to_home() -> None:
    """/templates: the first page, at its own address."""
    st.switch_page(PAGE_REGISTRY[HOME])


unknown = unknown_address()
hidden = [st.Page(to_home, title="Opening the templates", url_path=HOME, visibility="hidden")]
if unknown:
    hidden.append(st.Page(not_found, title="Page not found", url_path=unknown, visibility="hidden"))
navigation = st.navigation(
    {
        "Build": [PAGE_REGISTRY[n] for n in (HOME, "builder", "marketplace")] + hidden,
        "Operate": [PAGE_REGISTRY[n] for n in ("runs", "services")],
        "Money": [PAGE_REGISTRY[n] for n in ("wallet", "provide")],
    }
)
st.set_page_config(page_title=f"{navigation.title} · {PRODUCT}")
navigation.run()
