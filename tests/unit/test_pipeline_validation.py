"""Validation reports every problem at once, each as `path (line N): message`."""

from pathlib import Path

import pytest

from builder.errors import ValidationError
from builder.pipeline import load_pipeline, parse_pipeline
from builder.plan import compile_plan
from builder.ports import Port, PortType
from builder.registry import register_block
from builder.spec import Block, Kind, Price, PriceUnit

DATA = Path(__file__).resolve().parents[2] / "templates" / "data"

GOOD = f"""\
schema_version: 1
name: demo
blocks:
  faq:
    use: chat.faq-csv@1.0.0
    params:
      path: {DATA / "faq.csv"}
  encoder:
    use: chat.minilm-encoder@1.0.0
  classifier:
    use: chat.intent-classifier@1.0.0
    params:
      epochs: 5
  api:
    use: service.api@1.0.0
edges:
  - faq.examples -> encoder.examples
  - encoder.features -> classifier.features
  - classifier.model -> api.model
compute: compute.local@1.0.0
"""


def problems_of(text: str, overrides=(), base_dir: Path = Path(".")) -> list[str]:
    with pytest.raises(ValidationError) as info:
        compile_plan(parse_pipeline(text, base_dir, "p.yaml", overrides))
    return [str(p) for p in info.value.problems]


def test_good_pipeline_validates():
    p = parse_pipeline(GOOD, Path("."))
    assert list(p.nodes) == ["faq", "encoder", "classifier", "api"]
    assert p.nodes["classifier"].params.epochs == 5


def test_unknown_block_suggests_the_closest_id_with_line():
    errs = problems_of(GOOD.replace("chat.minilm-encoder@1.0.0", "chat.minilm-encodr@1.0.0"))
    assert errs == [
        "blocks.encoder.use (line 9): unknown block 'chat.minilm-encodr'; did you mean 'chat.minilm-encoder'?"
    ]


def test_unknown_version_lists_available_ones():
    errs = problems_of(GOOD.replace("service.api@1.0.0", "service.api@9.9.9"))
    assert errs == ["blocks.api.use (line 15): block 'service.api' has no version '9.9.9'; available: 1.0.0"]


def test_out_of_range_and_missing_params_are_all_reported():
    text = GOOD.replace("epochs: 5", "epochs: 0\n      lr: 7\n      bogus: 1").replace(
        f"path: {DATA / 'faq.csv'}", "eval_fraction: 0.3"
    )
    errs = problems_of(text)
    assert "blocks.faq.params.path (line 6): missing required parameter" in errs
    assert "blocks.classifier.params.epochs (line 13): must be ≥ 1, got 0" in errs
    assert "blocks.classifier.params.lr (line 14): must be ≤ 1.0, got 7" in errs
    assert "blocks.classifier.params.bogus (line 15): unknown parameter" in errs


def test_port_type_mismatch_names_both_ends():
    errs = problems_of(GOOD.replace("classifier.model -> api.model", "classifier.metrics -> api.model"))
    assert errs == ["edges[2] (line 19): port types differ: classifier.metrics gives Metrics but api.model takes Model"]


def test_unknown_port_and_node_in_edges():
    errs = problems_of(GOOD.replace("faq.examples -> encoder.examples", "faq.rows -> encodr.examples"))
    assert "edges[0] (line 17): no block node 'encodr' in this pipeline" in errs
    assert "blocks.encoder (line 8): input 'examples' (TextPairs) is not connected to any output" in errs


@register_block
class Passthrough(Block):
    """A test-only block whose output can feed its own input type, so a cycle type-checks."""

    id = "test.passthrough"
    version = "1.0.0"
    kind = Kind.TRANSFORM
    domain = "test"
    inputs = (Port("examples", PortType.TEXT_PAIRS),)
    outputs = (Port("examples", PortType.TEXT_PAIRS),)
    price = Price(0, PriceUnit.RUN)
    provider = "0x" + "0" * 40
    license = "MIT"
    description = "test block"


def test_cycle_is_reported_with_its_nodes():
    text = """\
schema_version: 1
name: loop
blocks:
  a: {use: test.passthrough@1.0.0}
  b: {use: test.passthrough@1.0.0}
edges:
  - a.examples -> b.examples
  - b.examples -> a.examples
compute: compute.local@1.0.0
"""
    assert problems_of(text) == ["edges (line 6): the edges form a cycle: a -> b -> a"]


def test_cycle_between_two_nodes():
    from builder.pipeline import Edge, find_cycle

    assert find_cycle(["a", "b", "c"], [Edge("a", "x", "b", "y"), Edge("b", "x", "a", "y")]) == ["a", "b"]
    assert find_cycle(["a", "b"], [Edge("a", "x", "b", "y")]) == []


def test_input_fed_twice_is_refused():
    errs = problems_of(GOOD.replace("edges:\n", "edges:\n  - faq.examples -> encoder.examples\n"))
    assert any("encoder.examples is already fed by edges[0]" in e for e in errs), errs


def test_yaml_syntax_error_gives_line_and_column():
    errs = problems_of("name: x\nblocks: [a\n")
    assert errs == [
        "p.yaml (line 3): YAML syntax error at line 3, column 1: expected ',' or ']', but got '<stream end>'"
    ]


def test_missing_pipeline_file(tmp_path):
    with pytest.raises(ValidationError, match="file not found"):
        load_pipeline(tmp_path / "nope.yaml")


def test_schema_version_is_required_and_future_versions_refused():
    assert "schema_version: missing; add `schema_version: 1`" in problems_of(GOOD.replace("schema_version: 1\n", ""))
    errs = problems_of(GOOD.replace("schema_version: 1", "schema_version: 7"))
    assert errs == [
        "schema_version (line 1): this file needs a newer Easy AI Builder (schema_version 7; this one reads up to 1)"
    ]


def test_unknown_top_level_key_and_compute_checks():
    errs = problems_of(GOOD.replace("compute: compute.local@1.0.0", "compute: chat.faq-csv@1.0.0\nbudgt: 3"))
    assert (
        "budgt (line 21): unknown key; expected one of blocks, budget, compute, description, edges, layout, name, "
        "schema_version" in errs
    )
    assert "compute (line 20): chat.faq-csv@1.0.0 is a data block, not a compute tier" in errs


def test_set_override_changes_params_and_unknown_node_is_reported():
    p = parse_pipeline(GOOD, Path("."), overrides=["classifier.epochs=9", "classifier.lr=0.5"])
    assert (p.nodes["classifier"].params.epochs, p.nodes["classifier"].params.lr) == (9, 0.5)
    assert problems_of(GOOD, ["nope.epochs=3"]) == ["--set nope.epochs=3: no block node 'nope' in this pipeline"]
    assert problems_of(GOOD, ["classifier.epochs=-1"]) == [
        "blocks.classifier.params.epochs (line 13): must be ≥ 1, got -1"
    ]


def test_budget_below_quote_is_refused():
    errs = problems_of(GOOD + "budget: 1 wei\n")
    assert len(errs) == 1 and errs[0].startswith("budget: the quoted price") and "exceeds the budget" in errs[0]


def test_bad_data_file_is_reported_at_validation(tmp_path):
    bad = tmp_path / "faq.csv"
    bad.write_text("question,answer\nsame question,yes\nother,yes\nSame  question,no\nfourth,no\n", encoding="utf-8")
    errs = problems_of(GOOD.replace(str(DATA / "faq.csv"), str(bad)), base_dir=tmp_path)
    assert errs == [
        "blocks.faq.params.path (line 7): faq.csv: rows 2 and 4 ask the same question ('Same  question') with "
        "different answers"
    ]
