"""Shared pieces of the workbench pages: the draft in the session, database access, money formatting."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import streamlit as st

from builder.money import format_aic
from builder.ui.draft import Draft

PAGES_DIR = Path(__file__).resolve().parent / "pages"
PAGE_REGISTRY: dict[str, Any] = {}  # name -> st.Page, filled by app.py


def setup(title: str, name: str) -> None:
    """Environment every page needs (offline model hub), a pending page switch, then the page title."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    pending = st.session_state.get("goto")
    if pending == name:
        st.session_state.pop("goto")
    elif pending in PAGE_REGISTRY:
        # A switch can be overtaken by a rerun the browser requested at the same moment; finish it now.
        st.switch_page(PAGE_REGISTRY[pending])
    st.title(title)


def current_draft() -> Draft | None:
    """The pipeline being edited in this browser session."""
    return st.session_state.get("draft")


def set_draft(draft: Draft | None) -> None:
    """Replace the pipeline being edited (the canvas redraws from it)."""
    st.session_state["draft"] = draft
    st.session_state["canvas_version"] = st.session_state.get("canvas_version", 0) + 1
    st.session_state.pop("selected_node", None)


def bump_canvas() -> int:
    """Mark the draft as changed outside the canvas, so the canvas is redrawn from it; the new version."""
    st.session_state["canvas_version"] = st.session_state.get("canvas_version", 0) + 1
    return st.session_state["canvas_version"]


def flash(kind: str, text: str, version: int | None = None) -> None:
    """A message shown until the draft changes again (not just until the next rerun: the canvas reruns
    the page on its own, which would otherwise wipe an error before it is read)."""
    st.session_state["flash"] = (
        version if version is not None else st.session_state.get("canvas_version", 0),
        kind,
        text,
    )


def show_flash() -> None:
    """Show the current message, if it belongs to the draft as it is now."""
    item = st.session_state.get("flash")
    if item and item[0] == st.session_state.get("canvas_version", 0):
        {"success": st.success, "error": st.error, "info": st.info}[item[1]](item[2])


@contextmanager
def db() -> Iterator[Any]:
    """A database session (the same database as the CLI's)."""
    from runtime.db import session_factory

    with session_factory()() as s:
        yield s


def aic(wei: int | None) -> str:
    """An amount in AIC, never in wei: up to 6 decimals, or 3 significant digits below a millionth of an AIC."""
    if wei is None:
        return "—"
    wei = int(wei)
    if 0 < wei < 10**12:  # format_aic would give wei here
        tiny = Decimal(wei).scaleb(-18)
        return f"{tiny.quantize(Decimal(1).scaleb(tiny.adjusted() - 2), rounding=ROUND_HALF_UP):f}".rstrip("0") + " AIC"
    whole, _, fraction = format_aic(wei).removesuffix(" AIC").partition(".")
    return f"{int(whole):,}" + (f".{fraction}" if fraction else "") + " AIC"  # 10,000 AIC


def batches_table(batches: list[tuple]) -> None:
    """Service batches as a table, their transactions under it in Details; each row starts (batch id, status,
    calls, paid wei, fee wei, tx)."""
    import pandas as pd

    from builder.ui.names import details

    st.dataframe(
        pd.DataFrame(
            [(b[0], b[1], b[2], aic(b[3]), aic(b[4])) for b in batches],
            columns=["batch", "status", "calls", "paid", "fee"],
        ),
        hide_index=True,
    )
    details({f"{b[0]} transaction": b[5] for b in batches})


def sample_table(rows: list[dict[str, Any]]) -> None:
    """A data sample as a table; image data URIs are shown as images, audio ones as players."""
    import base64

    if rows and "audio" in rows[0]:
        for row in rows:
            st.caption(" · ".join(f"{k}: {v}" for k, v in row.items() if k != "audio"))
            st.audio(base64.b64decode(row["audio"].split(",", 1)[1]), format="audio/wav")
        return
    images = {k: st.column_config.ImageColumn(k) for k in (rows[0] if rows else {}) if k == "image"}
    st.dataframe(rows, hide_index=True, column_config=images or None, row_height=40 if images else None)


def start_button(label: str, key: str, waiting: str, start: Any, port: int, primary: bool = False) -> None:
    """A button that starts a local service (`start(port)`, on `port` or a free one when it is taken) and shows
    the page again; what went wrong is said in one sentence under it."""
    if st.button(label, key=key, type="primary" if primary else "secondary"):
        from builder.errors import AibError
        from runtime.processes import free_port, port_free

        try:
            with st.spinner(waiting):
                start(port if port_free("127.0.0.1", port) else free_port())
            st.rerun()
        except AibError as exc:
            st.error(str(exc))


def start_local_chain(port: int) -> None:
    """Start the local chain (Anvil and the contracts) on `port`."""
    from runtime.chain_node import start_local

    start_local(port)


def take_address(param: str, state_key: str, accept: Any) -> None:
    """When the page's address names an item (`?param=value`) the session has not shown yet — a reload, a bookmark,
    a shared link — and `accept(value)` agrees, make it the chosen item (`state_key`)."""
    value = st.query_params.get(param)
    if value and value != st.session_state.get(f"{param}-address") and accept(value):
        st.session_state[state_key] = value


def keep_address(param: str, value: str) -> None:
    """Make the page's address name `value`, so a reload or a copied link shows it again."""
    st.query_params[param] = st.session_state[f"{param}-address"] = value


def choice_box(label: str, ids: list[str], names: dict[str, str], key: str, state_key: str) -> str:
    """A select box over `ids` (not empty; shown by `names`, made distinct) that follows the item chosen elsewhere
    (`state_key`: the address, another page) and records the user's own choice there; the id chosen."""
    shown = distinct_labels(names)
    wanted = st.session_state.get(state_key)
    wanted = wanted if wanted in ids else ids[0]  # nothing chosen yet, or it is gone: the first
    if st.session_state.get(key) != wanted:
        st.session_state[key] = wanted  # set before the box is drawn: it shows this one
    chosen = st.selectbox(
        label,
        ids,
        key=key,
        format_func=shown.get,
        on_change=lambda: st.session_state.update({state_key: st.session_state[key]}),
    )
    st.session_state[state_key] = chosen
    return chosen


def distinct_labels(labels: dict[str, str]) -> dict[str, str]:
    """`labels` (id -> label) with the id added to every label that two ids share: a select box is sent back
    from the browser by its label, so two equal labels would make one of the items impossible to choose."""
    seen: dict[str, int] = {}
    for label in labels.values():
        seen[label] = seen.get(label, 0) + 1
    return {key: label if seen[label] == 1 else f"{label} ({key})" for key, label in labels.items()}


def goto(page: str) -> None:
    """Open another page (`runs`, `services`, …); when a page runs on its own (AppTest) it is only recorded.

    The request stays pending until that page runs (see `setup`), so a lost switch is retried.
    """
    st.session_state["goto"] = page
    target = PAGE_REGISTRY.get(page)
    if target is not None:
        st.switch_page(target)


def chain_or_none() -> Any:
    """The connected chain when payments are on (local node running or AIB_RPC_URL), else None."""
    from builder.errors import AibError
    from runtime.chain_node import payments_enabled
    from runtime.settlement import Chain

    if not payments_enabled():
        return None
    try:
        return Chain.connect()
    except AibError:
        return None


__all__ = [
    "aic",
    "bump_canvas",
    "chain_or_none",
    "choice_box",
    "current_draft",
    "db",
    "distinct_labels",
    "flash",
    "goto",
    "keep_address",
    "set_draft",
    "setup",
    "sample_table",
    "show_flash",
    "start_button",
    "start_local_chain",
    "take_address",
]


def start_and_open_run(draft: Draft, error_key: str, tune_trials: int = 0) -> None:
    """Start the draft's run (or a tune of `tune_trials` runs) and open the Runs page on it; a refusal goes to
    `st.session_state[error_key]`."""
    from builder.ui import actions
    from builder.ui.draft import DraftError

    try:
        run_id = actions.start_run(draft, tune_trials)  # idempotent for a few seconds: a double click runs once
    except DraftError as exc:
        st.session_state[error_key] = str(exc)
        return
    st.session_state["selected_run"] = run_id
    st.session_state["notice"] = f"run {run_id} started"
    st.session_state["goto"] = "runs"
