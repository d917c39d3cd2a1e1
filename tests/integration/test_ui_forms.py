"""The settings form of every registered block, on the real Builder page (Streamlit AppTest): it shows each setting's
current value, leaves the pipeline file byte-identical when nothing is changed, and a change to one setting changes
exactly that setting in the file; a value that is not valid is refused beside its box, never saved, and Run waits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from streamlit.testing.v1 import AppTest

from builder.registry import all_blocks, load_blocks
from builder.spec import Block, Kind
from builder.ui import actions, forms
from builder.ui.draft import add_block, new_draft

PAGE = Path(__file__).resolve().parents[2] / "builder" / "ui" / "pages" / "builder_page.py"


def every_block_pipeline() -> tuple[Any, dict[str, type[Block]]]:
    """A saved pipeline holding one node of every registered block, on the rented compute tier (it has settings)."""
    load_blocks()
    draft = new_draft("every block", actions.new_workspace("every block"))
    nodes: dict[str, type[Block]] = {}
    for block in all_blocks():
        if block.kind == Kind.COMPUTE:
            continue
        nodes[add_block(draft, block.ref())] = block
    rented = next(b for b in all_blocks() if b.id == "compute.rented")
    draft.data["compute"] = rented.ref()
    nodes["compute"] = rented
    actions.save(draft)
    return draft, nodes


def open_builder(draft, node: str) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=60)
    at.session_state["draft"] = draft
    at.session_state["selected_node"] = node
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def widget(at: AppTest, node: str, name: str):
    """The widget of setting `name` of `node` (keyed `p-<node>-<version>:<name>` by the page)."""
    matches = [
        w for w in at.main if getattr(w, "key", None) and w.key.startswith(f"p-{node}-") and w.key.endswith(f":{name}")
    ]
    assert len(matches) == 1, (node, name, [getattr(w, "key", None) for w in at.main])
    return matches[0]


def a_valid_change(block: type[Block], s: forms.Setting, stored: Any) -> tuple[str | bool, Any] | None:
    """(what a user puts in the box, the value the file must then hold) for a different valid value; the block's own
    Params decides what is valid, the test never asks the form."""
    current = stored if stored is not None else s.default
    if s.widget == "choice":
        options = [o for o in s.options if o != current]
        candidates = [(o, o) for o in options]
    elif s.widget == "switch":
        candidates = [(not bool(current), not bool(current))]
    elif s.widget == "whole":
        base = int(current or 0)
        candidates = [(str(v), v) for v in (base + 1, base - 1, base + 10, 1, 8, 16, 100)]
    elif s.widget == "number":
        base = float(current or 0.0)
        candidates = [(f"{v:g}", v) for v in (base / 2, base + 0.05, base * 2, 0.1, 0.3, 1.0, 50.0) if v != base]
    elif s.widget == "list":
        items = list(current or [])
        extra = (max(items) + 1 if items else 1) if s.item_kind != "text" else "extra"
        candidates = [("\n".join(str(v) for v in [*items, extra]), [*items, extra])]
        if len(items) > 1:
            candidates.append(("\n".join(str(v) for v in items[:-1]), items[:-1]))
    else:
        candidates = [("data/other-file.csv", "data/other-file.csv"), ("something else", "something else")]
    for typed, value in candidates:
        if value == current:
            continue
        try:
            block.Params(**{**_required_filled(block), s.name: value})
        except Exception:
            continue
        return typed, value
    return None


def _required_filled(block: type[Block]) -> dict[str, Any]:
    """Values for a block's required settings, so that one setting can be checked on its own."""
    out: dict[str, Any] = {}
    for s in forms.settings_of(block):
        if s.required:
            out[s.name] = ["yes", "no"] if s.widget == "list" else "data/x.csv"
    return out


def set_widget(w, typed) -> None:
    if isinstance(typed, bool):
        w.set_value(typed)
    elif hasattr(w, "select") and not hasattr(w, "input"):
        w.select(typed)
    else:
        w.input(typed)


def params_in_file(path: Path, node: str) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    if node == "compute":
        return (data["compute"].get("params") or {}) if isinstance(data["compute"], dict) else {}
    return data["blocks"][node].get("params") or {}


def test_every_block_form_shows_its_values_saves_nothing_unchanged_and_exactly_one_setting_per_change():
    draft, nodes = every_block_pipeline()
    path = draft.base_dir / "pipeline.yaml"
    checked = 0
    for node, block in nodes.items():
        at = open_builder(draft, node)
        before = path.read_bytes()
        stored = params_in_file(path, node)
        for s in forms.settings_of(block):
            shown = widget(at, node, s.name).value
            assert shown == forms.shown(s, stored.get(s.name)), (node, s.name, shown)
            if s.default not in (None, [], "") and s.widget in ("list", "whole", "number"):
                assert shown not in ("", None), f"{node}.{s.name} shows nothing although it has a default"
            # Applying the form unchanged: every box read back as the user left it changes nothing in the file.
            unchanged, reason = forms.apply_edit(block, stored, s.name, shown)
            assert (unchanged, reason) == (stored, ""), (node, s.name, reason)
        assert path.read_bytes() == before
        for s in forms.settings_of(block):
            change = a_valid_change(block, s, params_in_file(path, node).get(s.name))
            if change is None:
                continue
            typed, value = change
            old = yaml.safe_load(path.read_text())
            set_widget(widget(at, node, s.name), typed)
            at.run()
            assert not at.exception, [e.value for e in at.exception]
            new = yaml.safe_load(path.read_text())
            got = params_in_file(path, node)
            assert got.get(s.name) == value, (node, s.name, got.get(s.name), value)
            # Exactly that setting changed: put the old value back in the new file's data and they are equal.
            old_params = params_in_file_data(old, node)
            expected = {**old_params, s.name: value}
            assert got == expected, (node, s.name)
            assert {k: v for k, v in new.items() if k not in ("blocks", "compute")} == {
                k: v for k, v in old.items() if k not in ("blocks", "compute")
            }
            checked += 1
    assert checked >= 60, checked  # nearly every setting of every block was changed once


def params_in_file_data(data: dict[str, Any], node: str) -> dict[str, Any]:
    if node == "compute":
        return (data["compute"].get("params") or {}) if isinstance(data["compute"], dict) else {}
    return data["blocks"][node].get("params") or {}


@pytest.mark.parametrize(
    ("node", "name", "typed", "reason"),
    [
        ("classifier", "epochs", "0", "must be at least 1"),
        ("classifier", "lr", "fast", "'fast' is not a number"),
    ],
)
def test_a_value_that_is_not_valid_is_refused_beside_its_box_not_saved_and_run_waits(node, name, typed, reason):
    at = AppTest.from_file(str(PAGE.parent / "templates_page.py"), default_timeout=60)
    at.run()
    at.button(key="use-faq-chatbot").click().run()
    draft = at.session_state["draft"]
    path = draft.base_dir / "pipeline.yaml"
    before = path.read_bytes()
    at = open_builder(draft, node)
    assert not at.button(key="run").disabled
    set_widget(widget(at, node, name), typed)
    at.run()
    assert any(reason in e.value and "not saved" in e.value for e in at.error), [e.value for e in at.error]
    assert path.read_bytes() == before  # nothing saved
    assert at.button(key="run").disabled
    assert not any(s.value == "The pipeline is valid." for s in at.success)
    set_widget(widget(at, node, name), "7" if name == "epochs" else "0.01")  # fixed: saved, Run enabled again
    at.run()
    assert not any("not saved" in e.value for e in at.error)
    assert params_in_file(path, node)[name] == (7 if name == "epochs" else 0.01)
    assert not at.button(key="run").disabled


def test_the_voice_template_first_block_lists_show_their_defaults_and_take_one_word_a_line_or_commas():
    at = AppTest.from_file(str(PAGE.parent / "templates_page.py"), default_timeout=60)
    at.run()
    at.button(key="use-voice-commands").click().run()
    draft = at.session_state["draft"]
    path = draft.base_dir / "pipeline.yaml"
    at = open_builder(draft, "speech")
    words = widget(at, "speech", "words")
    assert words.value.splitlines()[:3] == ["yes", "no", "up"]  # the defaults, shown
    set_widget(widget(at, "speech", "voices"), "12")  # changing only voices saves only voices
    at.run()
    assert params_in_file(path, "speech") == {
        "engines": ["espeak-ng", "festival"],
        "voices": 12,
        "test_voices": 0.25,
        "copies": 1,
        "unknown_distinct_copies": True,
        "seed": 0,
    }
    set_widget(widget(at, "speech", "words"), "yes, no, up")
    at.run()
    assert params_in_file(path, "speech")["words"] == ["yes", "no", "up"]
    assert widget(at, "speech", "words").value == "yes, no, up"  # the box keeps what was typed, and it was saved
