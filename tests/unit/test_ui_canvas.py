"""Canvas ↔ Draft sync: what the browser sends is applied only when it is about the current draft.

The browser component is replaced by a function returning what a browser would send (the real component is
driven in tests/integration/test_ui_browser.py); Streamlit's session state works outside a server run.
"""

from __future__ import annotations

import pytest
import streamlit as st
import streamlit_flow
from streamlit_flow.elements import StreamlitFlowEdge
from streamlit_flow.state import StreamlitFlowState

from builder.ui import canvas
from builder.ui.draft import add_block, connect, disconnect, new_draft, node_edges


@pytest.fixture()
def browser(monkeypatch, tmp_path):
    """Set `browser.value` to what the component returns on the next draw (None: nothing sent yet)."""

    class Browser:
        value = None

    def component(key, state, **kwargs):
        return state if Browser.value is None else Browser.value

    monkeypatch.setattr(streamlit_flow, "streamlit_flow", component)
    for k in list(st.session_state.keys()):
        del st.session_state[k]
    st.session_state["canvas_version"] = 0
    return Browser


def draft_with(tmp_path, *refs):
    d = new_draft("t", tmp_path)
    for ref in refs:
        add_block(d, ref)
    return d


def bump():
    st.session_state["canvas_version"] += 1


def test_a_late_value_about_an_older_draft_changes_nothing_and_the_canvas_is_redrawn(browser, tmp_path):
    d = draft_with(tmp_path)
    assert canvas.show(d, set()) is False
    empty = st.session_state["flow"]
    add_block(d, "chat.faq-csv@1.0.0")  # the palette adds a block…
    bump()
    # …while the browser's layout pass of the empty canvas finishes, stamped later than our new state.
    browser.value = StreamlitFlowState([], [], timestamp=empty.timestamp + 10_000)
    assert canvas.show(d, set()) is True  # redraw asked for
    assert list(d.blocks) == ["faq-csv"]  # the block is not dropped
    resent = st.session_state["flow"]
    assert [n.id for n in resent.nodes] == ["faq-csv"] and resent.timestamp > browser.value.timestamp
    # The browser now takes the resent state; until it answers, its old value is ignored.
    assert canvas.show(d, set()) is False and list(d.blocks) == ["faq-csv"]


def test_an_edge_drawn_on_the_current_draft_is_connected_and_a_bad_one_refused(browser, tmp_path):
    d = draft_with(tmp_path, "chat.faq-csv@1.0.0", "chat.minilm-encoder@1.0.0", "service.api@1.0.0")
    canvas.show(d, set())
    shown = st.session_state["flow"]
    drawn = StreamlitFlowEdge("faq-csv->minilm-encoder", "faq-csv", "minilm-encoder")
    browser.value = StreamlitFlowState(shown.nodes, [drawn], timestamp=shown.timestamp + 1)
    assert canvas.show(d, set()) is True
    assert [(s, t) for _, s, t in node_edges(d)] == [("faq-csv", "minilm-encoder")]
    assert st.session_state["flash"][1:] == ("success", "connected faq-csv.examples -> minilm-encoder.examples")

    canvas.show(d, set())  # redrawn at the new version
    shown = st.session_state["flow"]
    bad = StreamlitFlowEdge("faq-csv->api", "faq-csv", "api")
    browser.value = StreamlitFlowState(shown.nodes, [drawn, bad], timestamp=shown.timestamp + 1)
    assert canvas.show(d, set()) is True
    assert [(s, t) for _, s, t in node_edges(d)] == [("faq-csv", "minilm-encoder")]
    _, kind, text = st.session_state["flash"]
    assert kind == "error" and "faq-csv gives examples (TextPairs)" in text


def test_a_value_without_an_edge_removed_elsewhere_does_not_bring_it_back(browser, tmp_path):
    d = draft_with(tmp_path, "chat.faq-csv@1.0.0", "chat.minilm-encoder@1.0.0")
    connect(d, "faq-csv", "minilm-encoder")
    canvas.show(d, set())
    old = st.session_state["flow"]
    disconnect(d, "faq-csv", "minilm-encoder")  # the Remove button
    bump()
    canvas.show(d, set())
    # The browser still reports the old canvas (with the edge), stamped later.
    browser.value = StreamlitFlowState(old.nodes, old.edges, timestamp=st.session_state["flow"].timestamp + 5)
    assert canvas.show(d, set()) is True
    assert node_edges(d) == []


def test_moves_and_selection_on_the_current_draft_are_kept(browser, tmp_path):
    d = draft_with(tmp_path, "chat.faq-csv@1.0.0")
    canvas.show(d, set())
    shown = st.session_state["flow"]
    node = shown.nodes[0]
    node.position = {"x": 123.4, "y": -7.6}
    browser.value = StreamlitFlowState([node], [], selected_id="faq-csv", timestamp=shown.timestamp + 1)
    assert canvas.show(d, set()) is False  # nothing structural changed
    assert d.layout["faq-csv"] == [123, -8] and st.session_state["selected_node"] == "faq-csv"


def test_an_edge_drawn_just_before_a_redraw_reached_the_browser_is_still_connected(browser, tmp_path):
    d = draft_with(tmp_path, "chat.faq-csv@1.0.0", "chat.minilm-encoder@1.0.0")
    canvas.show(d, set())
    current = st.session_state["flow"]
    # A late value about an older draft makes us redraw the canvas (stamped later than anything the browser
    # sent so far)…
    browser.value = StreamlitFlowState([], [], timestamp=current.timestamp + 10)
    assert canvas.show(d, set()) is True
    assert st.session_state["flow"].timestamp > current.timestamp + 10
    # …but the user had already drawn an edge on the current draft, stamped before the redraw.
    drawn = StreamlitFlowEdge("faq-csv->minilm-encoder", "faq-csv", "minilm-encoder")
    browser.value = StreamlitFlowState(current.nodes, [drawn], timestamp=current.timestamp + 5)
    assert canvas.show(d, set()) is True
    assert [(s, t) for _, s, t in node_edges(d)] == [("faq-csv", "minilm-encoder")]
    # The same value, returned again on the next run, is not applied twice (no second message).
    st.session_state["flash"] = None
    assert canvas.show(d, set()) is False and st.session_state["flash"] is None
