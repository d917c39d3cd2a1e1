"""The canvas: our own Streamlit component (React Flow, bundled from canvas_component/frontend/ into
canvas_component/build/ by `make canvas`), kept in step with the Draft.

The Draft is the truth. Each run sends the component the whole drawing: the blocks with their plain names,
ports and positions, the edges, the selected node, the nodes with problems, and the palette, stamped with
the draft's version (`canvas_version`, which every change bumps). The component draws exactly that. What
the user does there comes back as events: a node clicked (select), nodes dragged (move), a palette entry
dropped or clicked (add), a line drawn from an output to an input (connect). Nothing is drawn before Python
has applied it: an edge appears when Python sends it back, and a refused one never appears.

Each event is applied exactly once. The component's value is the list of its events that Python has not yet
acknowledged, each numbered by a sequence that increases within one loaded frame (`instance`, a random
name; a reloaded frame counts from 1 again under a new name). Streamlit hands the last value to every run
and can replace a value by a newer one before any run has read it; the list keeps the older events in it.
Python keeps the last number it took from the frame (`canvas_seen`), applies only later events in order,
and sends that number back as `ack`, so the frame drops them from its list.

Each event carries the version of the drawing it was made on. One made on an older drawing than the draft
now is (the YAML applied, a block removed with a button, while the user was dragging) is taken but not
applied: it may name blocks that are gone. Versions that the canvas's own events made (a block dropped a
moment before another) do not make the next event stale.

Events are applied in the component's change callback, before the page script runs, so the page is drawn
once, already with the change; `show` applies whatever the callback did not see (the callback is bound to
the previous run), and says when that changed the draft.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from builder.errors import AibError
from builder.ui import actions
from builder.ui.common import bump_canvas, current_draft, flash
from builder.ui.draft import (
    GRID_X,
    Draft,
    DraftError,
    add_block,
    block_of,
    connect,
    fits_between,
    insert_between,
    node_edges,
    palette,
)
from builder.ui.words import block_name, with_article

BUILD_DIR = Path(__file__).resolve().parent / "canvas_component" / "build"
KEY = "canvas"
HEIGHT = 520


def drawing(draft: Draft, bad_nodes: set[str]) -> dict[str, Any]:
    """Everything the component draws, as JSON: nodes, edges, palette, selection, version, acknowledgement."""
    nodes = []
    for i, (node_id, spec) in enumerate(draft.blocks.items()):
        block = block_of(draft, node_id)
        ref = spec.get("use", "") if isinstance(spec, dict) else ""
        x, y = draft.layout.get(node_id, [GRID_X * i, 0])
        nodes.append(
            {
                "id": node_id,
                "name": block_name(block.id) if block else node_id,
                "description": block.description if block else f"unknown block {ref!r}: fix its use: in the YAML",
                "inputs": [p.name for p in block.inputs] if block else [],
                "outputs": [p.name for p in block.outputs] if block else [],
                "x": float(x),
                "y": float(y),
                "bad": node_id in bad_nodes or block is None,
            }
        )
    edges = [
        {"id": text, "source": src, "target": dst, "label": text.split("->")[1].strip().split(".")[-1]}
        for text, src, dst in node_edges(draft)
    ]
    groups = [
        {
            "domain": domain,
            "label": domain.capitalize(),
            "blocks": [{"ref": b.ref(), "name": block_name(b.id), "description": b.description} for b in blocks],
        }
        for domain, blocks in palette().items()
    ]
    instance, seq = st.session_state.get("canvas_seen", (None, 0))
    return {
        "version": st.session_state.get("canvas_version", 0),
        "nodes": nodes,
        "edges": edges,
        "palette": groups,
        "selected": st.session_state.get("selected_node"),
        "ack": {"instance": instance, "seq": seq},
        "height": HEIGHT,
    }


def _changed_by_canvas(draft_version: int, event_version: int) -> bool:
    """Whether every version after `event_version` up to `draft_version` came from the canvas's own events."""
    own = st.session_state.get("canvas_own_versions", set())
    return all(v in own for v in range(event_version + 1, draft_version + 1))


def _bump_own() -> None:
    """Bump the canvas version for a change the canvas itself made (see _changed_by_canvas)."""
    version = bump_canvas()
    own = st.session_state.setdefault("canvas_own_versions", set())
    own.add(version)
    own.difference_update({v for v in own if v < version - 50})


def apply_events(draft: Draft, value: Any) -> bool:
    """Apply the events in the component's `value` that were not applied before; True when the draft changed."""
    if not isinstance(value, dict) or not isinstance(value.get("events"), list):
        return False
    instance = value.get("instance")
    seen_instance, seen = st.session_state.get("canvas_seen", (None, 0))
    last = seen if instance == seen_instance else 0
    events = [e for e in value["events"] if isinstance(e, dict) and isinstance(e.get("seq"), int)]
    changed = False
    for event in sorted(events, key=lambda e: e["seq"]):
        if event["seq"] <= last:
            continue  # applied on an earlier run: the value is handed to every run until a newer one comes
        last = event["seq"]
        st.session_state["canvas_seen"] = (instance, last)
        version = st.session_state.get("canvas_version", 0)
        made_on = event.get("version")
        if not isinstance(made_on, int) or made_on > version or not _changed_by_canvas(version, made_on):
            continue  # made on an older drawing of a draft that has changed since
        changed = _apply(draft, event) or changed
    return changed


def _apply(draft: Draft, event: dict[str, Any]) -> bool:
    """Apply one event; True when the draft changed."""
    kind = event.get("kind")
    if kind == "select":
        if event.get("node") in draft.blocks:
            st.session_state["selected_node"] = event["node"]
        return False
    if kind == "move":
        moved = False
        for node_id, pos in (event.get("positions") or {}).items():
            if node_id in draft.blocks and isinstance(pos, list) and len(pos) == 2:
                rounded = [round(float(pos[0])), round(float(pos[1]))]  # kept in the YAML: whole numbers
                if draft.layout.get(node_id) != rounded:
                    draft.layout[node_id] = rounded
                    moved = True
        return moved
    if kind == "add":
        return _add(draft, str(event.get("ref", "")), event.get("x"), event.get("y"))
    if kind == "connect":
        return _connect(draft, str(event.get("source", "")), str(event.get("target", "")))
    return False


def _add(draft: Draft, ref: str, x: Any, y: Any) -> bool:
    pos = (round(x), round(y)) if isinstance(x, int | float) and isinstance(y, int | float) else None
    try:
        node_id = add_block(draft, ref, pos)
    except AibError:
        flash("error", f"{block_name(ref)} is not in the marketplace any more.")
        return False
    _bump_own()
    st.session_state.pop("fit_offer", None)
    if node_id in draft.blocks:
        st.session_state["selected_node"] = node_id
        flash("success", f"Added {with_article(block_name(ref))} as {node_id}.")
    else:  # a compute block is the pipeline's compute, not a node
        flash("success", f"The pipeline now runs on {block_name(ref)}.")
    return True


def _connect(draft: Draft, src: str, dst: str) -> bool:
    if src not in draft.blocks or dst not in draft.blocks:
        return False
    try:
        edge = connect(draft, src, dst)
    except DraftError as exc:
        flash("error", f"Cannot connect {src} to {dst}: {exc}")
        offers = [b.ref() for b in fits_between(draft, src, dst)]
        if offers:
            st.session_state["fit_offer"] = (src, dst, offers)
            st.session_state["fit_offer_version"] = st.session_state.get("canvas_version", 0)
        else:
            st.session_state.pop("fit_offer", None)
        return False
    _bump_own()
    st.session_state.pop("fit_offer", None)
    flash("success", f"connected {edge}")
    return True


def _on_event() -> None:
    """The component's change callback: apply the new events before the page script runs, and save."""
    draft = current_draft()
    if draft is not None and apply_events(draft, st.session_state.get(KEY)):
        actions.save(draft)


def _insert(draft: Draft, src: str, dst: str, ref: str) -> None:
    """The offer's button: put block `ref` between `src` and `dst`, connected to both."""
    try:
        node_id, _ = insert_between(draft, src, dst, ref)
    except DraftError as exc:
        flash("error", f"Cannot put {with_article(block_name(ref))} between {src} and {dst}: {exc}")
        return
    actions.save(draft)
    st.session_state.pop("fit_offer", None)
    bump_canvas()
    st.session_state["selected_node"] = node_id
    flash("success", f"Put {with_article(block_name(ref))} ({node_id}) between {src} and {dst}.")


def _show_offer(draft: Draft) -> None:
    """Under the canvas, after a refused connection: the blocks that fit between the two, each with a button."""
    offer = st.session_state.get("fit_offer")
    if not offer or st.session_state.get("fit_offer_version") != st.session_state.get("canvas_version", 0):
        return
    src, dst, refs = offer
    if src not in draft.blocks or dst not in draft.blocks:
        return
    with st.container(border=True):
        st.markdown(f"**{src}** cannot feed **{dst}** directly.")
        for ref in refs:
            name = block_name(ref)
            text, button = st.columns([3, 1], vertical_alignment="center")
            phrase = with_article(name)
            text.write(f"{phrase[:1].upper()}{phrase[1:]} fits between them.")
            button.button(f"Insert {name}", key=f"fit-{src}-{dst}-{ref}", on_click=_insert, args=(draft, src, dst, ref))


def show(draft: Draft, bad_nodes: set[str]) -> bool:
    """Draw the canvas (and, after a refused connection, what fits between); apply what the user did there
    that the change callback has not; True when that changed the draft and the page must run again."""
    from streamlit.components.v1 import declare_component

    component = declare_component("canvas", path=str(BUILD_DIR))
    value = component(**drawing(draft, bad_nodes), key=KEY, default=None, on_change=_on_event)
    changed = apply_events(draft, value)
    _show_offer(draft)
    return changed


__all__ = ["apply_events", "drawing", "show"]
