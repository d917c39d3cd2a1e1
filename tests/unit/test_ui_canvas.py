"""The canvas's events: each applied exactly once, none made on an older drawing, and what each one does.

The browser component is replaced by a function that returns what a browser would have sent (the real one
is driven in tests/integration/test_ui_canvas_browser.py); Streamlit's session state works outside a
server run, and the offer's button is pressed in AppTest.
"""

from __future__ import annotations

import pytest
import streamlit as st
import streamlit.components.v1 as components
import yaml
from streamlit.testing.v1 import AppTest

from builder.ui import canvas
from builder.ui.draft import add_block, new_draft, node_edges, to_yaml

FAQ, ENCODER, CLASSIFIER = "chat.faq-csv@1.0.0", "chat.minilm-encoder@1.0.0", "chat.intent-classifier@1.0.0"


class Browser:
    """What the frame has sent so far (its component value), and what the page drew last."""

    def __init__(self, instance: str = "frame-1") -> None:
        self.instance = instance
        self.events: list[dict] = []
        self.drawn: dict = {}
        self.on_change = None

    def send(self, kind: str, version: int | None = None, **data) -> dict:
        """The user does something on the drawing of `version` (the latest drawn, by default)."""
        made_on = self.drawn.get("version", 0) if version is None else version
        seq = (self.events[-1]["seq"] if self.events else 0) + 1
        self.events.append({"seq": seq, "version": made_on, "kind": kind, **data})
        return self.value()

    def value(self) -> dict | None:
        return {"instance": self.instance, "events": list(self.events)} if self.events else None


@pytest.fixture()
def browser(monkeypatch):
    frame = Browser()

    def declare_component(name, path):
        def component(key, default, on_change, **drawing):
            frame.drawn, frame.on_change = drawing, on_change
            return frame.value()

        return component

    monkeypatch.setattr(components, "declare_component", declare_component)
    for k in list(st.session_state.keys()):
        del st.session_state[k]
    st.session_state["canvas_version"] = 0
    return frame


def draft_with(tmp_path, *refs):
    d = new_draft("t", tmp_path)
    for ref in refs:
        add_block(d, ref)
    return d


def edges(d) -> list[tuple[str, str]]:
    return [(s, t) for _, s, t in node_edges(d)]


def test_an_event_is_applied_once_though_every_run_is_handed_the_value(browser, tmp_path):
    d = draft_with(tmp_path)
    assert canvas.show(d, set()) is False
    browser.send("add", ref=FAQ, x=10, y=20)
    assert canvas.show(d, set()) is True
    assert list(d.blocks) == ["faq-csv"]
    st.session_state["flash"] = None
    for _ in range(2):  # the same value comes with each later run
        assert canvas.show(d, set()) is False
    assert list(d.blocks) == ["faq-csv"] and st.session_state["flash"] is None
    assert browser.drawn["ack"] == {"instance": "frame-1", "seq": 1}  # the frame may forget it


def test_events_sent_faster_than_the_page_runs_are_all_applied_in_order(browser, tmp_path):
    d = draft_with(tmp_path)
    canvas.show(d, set())
    browser.send("add", ref=FAQ, x=0, y=0)
    browser.send("add", ref=ENCODER, x=300, y=0)  # dropped before the page drew the first one
    browser.send("connect", source="faq-csv", target="minilm-encoder")
    assert canvas.show(d, set()) is True
    assert list(d.blocks) == ["faq-csv", "minilm-encoder"]
    assert edges(d) == [("faq-csv", "minilm-encoder")]
    canvas.show(d, set())  # the page runs again and draws the new draft
    assert browser.drawn["ack"]["seq"] == 3


def test_an_event_made_on_a_drawing_changed_elsewhere_since_is_not_applied(browser, tmp_path):
    d = draft_with(tmp_path, FAQ, ENCODER)
    canvas.show(d, set())
    made_on = browser.drawn["version"]
    d.blocks.pop("minilm-encoder")  # removed with the page's button while the user drew a line to it
    st.session_state["canvas_version"] += 1
    browser.send("connect", version=made_on, source="faq-csv", target="minilm-encoder")
    browser.send("move", version=made_on, positions={"faq-csv": [500, 500]})
    assert canvas.show(d, set()) is False
    assert edges(d) == [] and d.layout["faq-csv"] != [500, 500]
    canvas.show(d, set())
    assert browser.drawn["ack"]["seq"] == 2  # taken, so the frame stops sending them


def test_a_reloaded_frame_counts_from_one_again_and_is_heard(browser, tmp_path):
    d = draft_with(tmp_path)
    canvas.show(d, set())
    browser.send("add", ref=FAQ, x=0, y=0)
    browser.send("add", ref=ENCODER, x=300, y=0)
    canvas.show(d, set())
    browser.instance, browser.events = "frame-2", []
    browser.send("add", ref=CLASSIFIER, x=600, y=0)
    assert canvas.show(d, set()) is True
    assert list(d.blocks) == ["faq-csv", "minilm-encoder", "intent-classifier"]


def test_a_click_selects_the_block_and_a_drag_moves_it(browser, tmp_path):
    d = draft_with(tmp_path, FAQ, ENCODER)
    canvas.show(d, set())
    browser.send("select", node="minilm-encoder")
    browser.send("move", positions={"minilm-encoder": [123.4, -7.6]})
    canvas.show(d, set())
    assert st.session_state["selected_node"] == "minilm-encoder"
    assert d.layout["minilm-encoder"] == [123, -8]  # whole numbers in the YAML
    canvas.show(d, set())
    assert browser.drawn["selected"] == "minilm-encoder"
    drawn = next(n for n in browser.drawn["nodes"] if n["id"] == "minilm-encoder")
    assert (drawn["x"], drawn["y"]) == (123, -8)


def test_a_dropped_block_lands_where_it_was_dropped_selected(browser, tmp_path):
    d = draft_with(tmp_path)
    canvas.show(d, set())
    browser.send("add", ref=ENCODER, x=412.7, y=-55.2)
    assert canvas.show(d, set()) is True
    assert d.layout["minilm-encoder"] == [413, -55]
    assert st.session_state["selected_node"] == "minilm-encoder"
    assert yaml.safe_load(to_yaml(d))["blocks"]["minilm-encoder"]["use"] == ENCODER
    _, kind, text = st.session_state["flash"]
    assert kind == "success" and text == "Added a MiniLM encoder as minilm-encoder."


def test_the_drawing_names_blocks_in_words_and_marks_those_with_problems(browser, tmp_path):
    d = draft_with(tmp_path, FAQ, ENCODER)
    canvas.show(d, {"minilm-encoder"})
    nodes = {n["id"]: n for n in browser.drawn["nodes"]}
    assert nodes["faq-csv"]["name"] == "FAQ CSV" and nodes["minilm-encoder"]["name"] == "MiniLM encoder"
    assert (nodes["faq-csv"]["bad"], nodes["minilm-encoder"]["bad"]) == (False, True)
    assert nodes["faq-csv"]["outputs"] == ["examples"] and nodes["faq-csv"]["inputs"] == []
    chat = next(g for g in browser.drawn["palette"] if g["domain"] == "chat")
    assert any(b["ref"] == ENCODER and b["name"] == "MiniLM encoder" for b in chat["blocks"])


def test_a_good_edge_is_connected_and_drawn_back(browser, tmp_path):
    d = draft_with(tmp_path, FAQ, ENCODER)
    canvas.show(d, set())
    browser.send("connect", source="faq-csv", target="minilm-encoder")
    assert canvas.show(d, set()) is True
    assert edges(d) == [("faq-csv", "minilm-encoder")]
    assert st.session_state["flash"][1:] == ("success", "connected faq-csv.examples -> minilm-encoder.examples")
    canvas.show(d, set())
    assert [(e["source"], e["target"], e["label"]) for e in browser.drawn["edges"]] == [
        ("faq-csv", "minilm-encoder", "examples")
    ]


def test_a_refused_edge_says_why_and_offers_the_block_that_fits_between(browser, tmp_path):
    d = draft_with(tmp_path, FAQ, CLASSIFIER)
    canvas.show(d, set())
    browser.send("connect", source="faq-csv", target="intent-classifier")
    assert canvas.show(d, set()) is False
    assert edges(d) == []
    _, kind, text = st.session_state["flash"]
    assert kind == "error" and text.startswith("Cannot connect faq-csv to intent-classifier: ")
    # Every encoder of the catalog fits between (the cheaper, MiniLM, first).
    assert st.session_state["fit_offer"] == ("faq-csv", "intent-classifier", [ENCODER, "chat.mpnet-encoder@1.0.0"])


def test_the_change_callback_applies_events_before_the_page_and_the_page_not_again(browser, tmp_path, monkeypatch):
    d = draft_with(tmp_path)
    st.session_state["draft"] = d
    canvas.show(d, set())
    st.session_state[canvas.KEY] = browser.send("add", ref=FAQ, x=0, y=0)
    browser.on_change()  # Streamlit calls it before the page script runs
    assert list(d.blocks) == ["faq-csv"]
    assert "faq-csv" in (tmp_path / "pipeline.yaml").read_text()  # saved
    assert canvas.show(d, set()) is False and list(d.blocks) == ["faq-csv"]


def _offer_page(base_dir: str) -> None:
    from pathlib import Path

    import streamlit as st

    from builder.ui import canvas
    from builder.ui.draft import add_block, new_draft

    if "draft" not in st.session_state:
        d = new_draft("t", Path(base_dir))
        add_block(d, "chat.faq-csv@1.0.0", (0, 0))
        add_block(d, "chat.intent-classifier@1.0.0", (600, 0))
        st.session_state["draft"] = d
        st.session_state["canvas_version"] = 0
        st.session_state["fit_offer"] = ("faq-csv", "intent-classifier", ["chat.minilm-encoder@1.0.0"])
        st.session_state["fit_offer_version"] = 0
    canvas.show(st.session_state["draft"], set())


def test_pressing_the_offer_puts_the_block_between_and_connects_both_sides(tmp_path):
    at = AppTest.from_function(_offer_page, args=(str(tmp_path),), default_timeout=60).run()
    assert not at.exception
    assert any("A MiniLM encoder fits between them." in m.value for m in at.markdown)
    at.button(key="fit-faq-csv-intent-classifier-chat.minilm-encoder@1.0.0").click().run()
    saved = yaml.safe_load((tmp_path / "pipeline.yaml").read_text())
    assert saved["edges"] == [
        "faq-csv.examples -> minilm-encoder.examples",
        "minilm-encoder.features -> intent-classifier.features",
    ]
    assert not at.button  # the offer is gone once taken
