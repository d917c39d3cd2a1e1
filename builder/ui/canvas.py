"""The drag-and-drop canvas (streamlit-flow-component, i.e. React Flow) kept in step with the Draft.

The Draft is the truth: the canvas is rebuilt from it whenever it changes elsewhere (a form, the YAML, the
palette), and what the user does on the canvas (a node moved or selected, an edge drawn) is applied to the
Draft. An edge whose ports do not fit is refused with the reason and disappears from the canvas. Deleting
is done with the page's Remove buttons, never on the canvas.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from builder.ui.common import flash
from builder.ui.draft import Draft, DraftError, block_of, connect, node_edges

OK_STYLE = {"border": "1px solid #8a8a8a", "borderRadius": "8px", "padding": "6px", "background": "#ffffff"}
BAD_STYLE = {**OK_STYLE, "border": "2px solid #d62728", "background": "#fff2f2"}


def build_state(draft: Draft, bad_nodes: set[str], version: int = 0) -> Any:
    """A fresh canvas state showing `draft` at canvas `version` (nodes with problems outlined in red)."""
    from streamlit_flow.elements import StreamlitFlowEdge, StreamlitFlowNode
    from streamlit_flow.state import StreamlitFlowState

    nodes = []
    for i, (node_id, spec) in enumerate(draft.blocks.items()):
        block = block_of(draft, node_id)
        ref = spec.get("use", "?") if isinstance(spec, dict) else "?"
        if block is None:
            node_type = "default"
        elif not block.inputs:
            node_type = "input"
        elif not block.outputs:
            node_type = "output"
        else:
            node_type = "default"
        x, y = draft.layout.get(node_id, [260 * i, 0])
        ports = ""
        if block is not None:
            ins = ", ".join(p.name for p in block.inputs)
            outs = ", ".join(p.name for p in block.outputs)
            ports = (
                f"\n\n{('in: ' + ins) if ins else ''}{' · ' if ins and outs else ''}{('out: ' + outs) if outs else ''}"
            )
        nodes.append(
            StreamlitFlowNode(
                id=node_id,
                pos=(float(x), float(y)),
                data={"content": f"**{node_id}**\n\n`{ref}`{ports}", "version": version},
                node_type=node_type,
                source_position="right",
                target_position="left",
                selectable=True,
                connectable=True,
                deletable=False,
                style=dict(BAD_STYLE if node_id in bad_nodes else OK_STYLE),
            )
        )
    edges = [
        StreamlitFlowEdge(
            id=f"{src}->{dst}",
            source=src,
            target=dst,
            label=text.split(" -> ")[1].split(".")[1],
            # Deleting on the canvas is off: the component does not report keyboard deletions back, so
            # canvas and pipeline could differ. Blocks and edges are removed with the page's Remove buttons.
            deletable=False,
        )
        for text, src, dst in node_edges(draft)
    ]
    return StreamlitFlowState(nodes, edges)


def _resend(draft: Draft, bad_nodes: set[str], after: int) -> None:
    """Rebuild the canvas state from `draft`, stamped later than `after` so the browser takes it."""
    state = build_state(draft, bad_nodes, st.session_state.get("canvas_version", 0))
    state.timestamp = max(state.timestamp, after + 1)
    st.session_state["flow"] = state


def _signature(state: Any) -> tuple:
    """What identifies one value the browser sent (the component returns its last value on every run)."""
    nodes = sorted((n.id, n.data.get("version"), n.position["x"], n.position["y"]) for n in state.nodes)
    return state.timestamp, state.selected_id, tuple(nodes), tuple(sorted((e.source, e.target) for e in state.edges))


def show(draft: Draft, bad_nodes: set[str]) -> bool:
    """Draw the canvas and apply what the user did on it to `draft`; True when the page must run again
    (the draft changed, or the canvas showed an older draft and is being redrawn)."""
    from streamlit_flow import streamlit_flow

    version = st.session_state.get("canvas_version", 0)
    if st.session_state.get("flow_version") != version or "flow" not in st.session_state:
        st.session_state["flow"] = build_state(draft, bad_nodes, version)
        st.session_state["flow_version"] = version
    shown = st.session_state["flow"]
    new = streamlit_flow(
        "canvas",
        shown,
        height=460,
        fit_view=True,
        allow_new_edges=True,
        get_node_on_click=True,
        enable_node_menu=False,
        enable_edge_menu=False,
        hide_watermark=True,
    )
    if new is shown or _signature(new) == st.session_state.get("flow_seen"):
        return False  # nothing sent yet, or this value was handled on an earlier run (it is returned on each)
    st.session_state["flow_seen"] = _signature(new)
    # The browser stamps what it sends with its own clock, so a value about an older draft (its layout pass
    # finishing late, say) can carry a newer stamp than our latest state, and the browser would then ignore
    # that state. Each node carries the draft version it was drawn from; a value that is not wholly about
    # the current draft changes nothing, and when it is stamped later than ours the canvas is redrawn.
    drawn_from_now = {n.id for n in new.nodes} == set(draft.blocks) and all(
        n.data.get("version") == version for n in new.nodes
    )
    if not drawn_from_now:
        if new.timestamp >= shown.timestamp:
            _resend(draft, bad_nodes, new.timestamp)
            return True
        return False
    # A value about the current draft counts even when stamped earlier than our latest state (we redrew the
    # canvas just as the user drew an edge): dropping it would lose the edge, and the redraw erases it.
    if new.timestamp >= shown.timestamp:
        st.session_state["flow"] = new
    for node in new.nodes:  # positions: kept in the YAML's layout, rounded so the file stays tidy
        pos = [round(node.position["x"]), round(node.position["y"])]
        if draft.layout.get(node.id) != pos:
            draft.layout[node.id] = pos
    # Nodes and edges cannot be deleted on the canvas (see build_state), so the only structural change a
    # value about the current draft can hold is an edge the user drew.
    ours = {(src, dst) for _, src, dst in node_edges(draft)}
    changed = False
    for src, dst in sorted({(e.source, e.target) for e in new.edges} - ours):
        try:
            edge = connect(draft, src, dst)
            flash("success", f"connected {edge}", version + 1)
        except DraftError as exc:
            flash("error", f"Cannot connect {src} to {dst}: {exc}", version + 1)
        changed = True
    if new.selected_id and new.selected_id in draft.blocks:
        st.session_state["selected_node"] = new.selected_id
    if changed:
        st.session_state["canvas_version"] = version + 1
    return changed


__all__ = ["build_state", "show"]
