"""The browser's pipeline model: YAML round trips, typed connections, problems mapped to nodes, uploads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from builder.datasets import MAX_UPLOAD_BYTES
from builder.pipeline import parse_pipeline
from builder.ui import actions
from builder.ui.draft import (
    DraftError,
    add_block,
    connect,
    from_yaml,
    new_draft,
    node_edges,
    palette,
    remove_block,
    to_yaml,
    validate,
)
from tests.conftest import TEMPLATES

TEMPLATE = TEMPLATES / "faq-chatbot.yaml"


def template_draft():
    return from_yaml(TEMPLATE.read_text(encoding="utf-8"), TEMPLATES)


def test_yaml_round_trips_without_loss_and_keeps_the_header():
    d = template_draft()
    d.layout["faq"] = [10, 20]
    text = to_yaml(d)
    again = from_yaml(text, TEMPLATES)
    assert again.data == d.data and to_yaml(again) == text
    assert text.startswith("# A customer-service chatbot")
    original = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))
    assert {k: v for k, v in again.data.items() if k != "layout"} == original
    pipeline = parse_pipeline(text, TEMPLATES)  # layout never changes what runs
    assert list(pipeline.nodes) == ["faq", "encoder", "classifier", "api"]


def test_not_yaml_or_not_a_mapping_is_one_sentence():
    with pytest.raises(DraftError, match=r"the file is not valid YAML \(line \d+\)"):
        from_yaml("a: 1\nb: [\n", Path("."))
    with pytest.raises(DraftError, match="must be a YAML mapping"):
        from_yaml("- a\n- b\n", Path("."))


def test_blocks_are_added_with_unique_ids_defaults_and_a_position():
    d = new_draft("p", TEMPLATES)
    assert add_block(d, "chat.intent-classifier@1.0.0") == "intent-classifier"
    assert add_block(d, "chat.intent-classifier@1.0.0") == "intent-classifier-2"
    assert d.blocks["intent-classifier"]["params"]["epochs"] > 0
    assert set(d.layout) == {"intent-classifier", "intent-classifier-2"}
    assert add_block(d, "compute.local@1.0.0") == "compute" and d.data["compute"] == "compute.local@1.0.0"


def test_connecting_picks_the_port_pair_of_the_same_type_and_refuses_others_with_the_reason():
    d = new_draft("p", TEMPLATES)
    faq, enc, clf, api = (
        add_block(d, r)
        for r in (
            "chat.faq-csv@1.0.0",
            "chat.minilm-encoder@1.0.0",
            "chat.intent-classifier@1.0.0",
            "service.api@1.0.0",
        )
    )
    assert connect(d, faq, enc) == "faq-csv.examples -> minilm-encoder.examples"
    with pytest.raises(DraftError) as exc:
        connect(d, faq, api)
    assert str(exc.value) == "faq-csv gives examples (TextPairs) but api takes model (Model): no port types match"
    with pytest.raises(DraftError, match="already connected"):
        connect(d, faq, enc)
    with pytest.raises(DraftError, match="cannot feed itself"):
        connect(d, enc, enc)
    connect(d, enc, clf)
    connect(d, clf, api)
    d.blocks[faq]["params"]["path"] = "data/faq.csv"
    assert validate(d) == ([], {})
    remove_block(d, enc)
    assert [src for _, src, _ in node_edges(d)] == [clf]


def test_problems_are_mapped_to_the_nodes_they_concern():
    d = template_draft()
    d.data["edges"] = [e for e in d.edges if not e.startswith("encoder.")]
    d.blocks["classifier"]["params"]["epochs"] = -1
    problems, by_node = validate(d)
    assert len(problems) >= 2
    assert any("not connected" in m for m in by_node["classifier"])
    assert any("epochs" in p.path for p in problems)
    d.layout["ghost"] = [0, 0]
    _, by_node = validate(d)
    assert by_node["ghost"] == ["no block node 'ghost' in this pipeline"]


def test_palette_search_filters_and_groups_by_domain():
    assert {"chat", "compute", "service"} <= set(palette())
    found = palette("classifier")
    assert [b.id for bs in found.values() for b in bs] == ["chat.intent-classifier"]
    assert palette("no-such-thing") == {}


def test_an_upload_is_checked_by_the_block_and_stored_only_when_good(tmp_path):
    d = actions.open_template(TEMPLATE)
    before = to_yaml(d)
    files_before = sorted(p.name for p in (d.base_dir / "data").iterdir())
    for name, data, reason in [
        ("faq.txt", b"x", "is not a CSV or XLSX file"),
        ("faq.csv", b"", "is empty"),
        ("faq.csv", b"a,b\n1,2\n", "faq.csv needs columns"),
        ("big.csv", b"x" * (MAX_UPLOAD_BYTES + 1), "the limit is 20 MB"),
    ]:
        with pytest.raises(DraftError, match=reason):
            actions.store_upload(d, "faq", "path", name, data)
    assert to_yaml(d) == before and sorted(p.name for p in (d.base_dir / "data").iterdir()) == files_before
    rows = ["question,answer"] + [f"how do I pay invoice {i}?,Use the billing page." for i in range(3)]
    rows += [f"where is my parcel {i}?,Track it on the orders page." for i in range(3)]
    rel, note = actions.store_upload(d, "faq", "path", "my faq.csv", ("\n".join(rows) + "\n").encode())
    assert rel == "data/my_faq.csv" and (d.base_dir / rel).exists()
    assert "held-out file did not match" in note and "heldout_path" not in d.blocks["faq"]["params"]
    assert validate(d) == ([], {})
    assert (d.base_dir / "pipeline.yaml").read_text() == to_yaml(d)
    sample = actions.preview(d, "faq", rows=3, seed=1)
    assert len(sample) == 3 and set(sample[0]) == {"question", "answer"}


def test_a_data_block_without_its_file_says_which_setting_it_needs_to_be_previewed():
    d = new_draft("no-file", TEMPLATES)
    node = add_block(d, "chat.faq-csv@1.0.0")  # as dropped on the canvas: no file chosen yet
    with pytest.raises(DraftError) as caught:
        actions.preview(d, node)
    assert str(caught.value) == f"{node} cannot be previewed yet: path: missing required parameter"


def test_an_invalid_draft_is_not_started():
    d = actions.open_template(TEMPLATE)
    d.data["edges"] = []
    with pytest.raises(DraftError, match=r"the pipeline has \d+ problem\(s\); the first:"):
        actions.start_run(d)


def test_a_malformed_layout_is_a_problem_but_never_changes_the_plan():
    from builder.plan import compile_plan

    d = template_draft()
    d.layout["faq"] = ["left", 3]
    problems, by_node = validate(d)
    assert [str(p) for p in problems] == ["layout.faq (line 35): must be [x, y] (two numbers), got ['left', 3]"]
    d.layout["faq"] = [1, 2]
    with_layout = compile_plan(parse_pipeline(to_yaml(d), TEMPLATES)).plan_hash
    d.data.pop("layout")
    assert compile_plan(parse_pipeline(to_yaml(d), TEMPLATES)).plan_hash == with_layout
