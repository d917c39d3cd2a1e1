"""The drag-and-drop canvas (streamlit-flow-component, i.e. React Flow) kept in step with the Draft.

The Draft is the truth: the canvas is rebuilt from it whenever it changes elsewhere (a form, the YAML),
and every change made on the canvas (a node moved, an edge drawn or deleted, a node deleted) is applied
to the Draft. An edge whose ports do not fit is refused with the reason and disappears from the canvas.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from builder.ui.common import flash
from builder.ui.draft import Draft, DraftError, block_of, connect, disconnect, node_edges, remove_block

OK_STYLE = {"border": "1px solid #8a8a8a", "borderRadius": "8px", "padding": "6px", "background": "#ffffff"}
BAD_STYLE = {**OK_STYLE, "border": "2px solid #d62728", "background": "#fff2f2"}


def build_state(draft: Draft, bad_nodes: set[str]) -> Any:
    """A fresh canvas state showing `draft` (nodes with problems outlined in red)."""
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
                data={"content": f"**{node_id}**\n\n`{ref}`{ports}"},
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


def show(draft: Draft, bad_nodes: set[str]) -> bool:
    """Draw the canvas and apply what the user did on it to `draft`; True when the draft changed."""
    from streamlit_flow import streamlit_flow

    version = st.session_state.get("canvas_version", 0)
    if st.session_state.get("flow_version") != version or "flow" not in st.session_state:
        st.session_state["flow"] = build_state(draft, bad_nodes)
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
    if new is shown or new.timestamp < shown.timestamp:
        # The browser has not drawn the state we just sent yet: what it returns predates our edit.
        return False
    st.session_state["flow"] = new
    changed = False
    for node in new.nodes:  # positions: kept in the YAML's layout, rounded so the file stays tidy
        pos = [round(node.position["x"]), round(node.position["y"])]
        if node.id in draft.blocks and draft.layout.get(node.id) != pos:
            draft.layout[node.id] = pos
    shown_nodes = {n.id for n in new.nodes}
    for node_id in [n for n in draft.blocks if n not in shown_nodes]:
        remove_block(draft, node_id)  # deleted on the canvas
        changed = True
    ours = {(src, dst) for _, src, dst in node_edges(draft)}
    theirs = {(e.source, e.target) for e in new.edges}
    for src, dst in ours - theirs:
        if src in shown_nodes and dst in shown_nodes:
            disconnect(draft, src, dst)  # deleted on the canvas
            changed = True
    for src, dst in theirs - ours:
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
