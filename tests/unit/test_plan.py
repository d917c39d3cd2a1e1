"""Compilation is pure and deterministic; the plan hash changes exactly when something that matters does."""

import shutil
from pathlib import Path

import yaml

from builder.pipeline import load_pipeline, parse_pipeline
from builder.plan import compile_plan, quote

TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "faq-chatbot.yaml"


def test_same_file_gives_same_plan_hash():
    a, b = compile_plan(load_pipeline(TEMPLATE)), compile_plan(load_pipeline(TEMPLATE))
    assert a.plan_hash == b.plan_hash and a.to_dict() == b.to_dict()


def test_steps_are_topologically_ordered_and_pinned():
    plan = compile_plan(load_pipeline(TEMPLATE))
    assert [s.node_id for s in plan.steps] == ["faq", "encoder", "classifier", "api"]
    assert all(s.version == "1.0.0" for s in plan.steps)
    assert plan.step("classifier").inputs == {"features": "encoder.features"}


def test_block_order_in_file_does_not_change_the_plan():
    data = yaml.safe_load(TEMPLATE.read_text())
    data["blocks"] = dict(reversed(list(data["blocks"].items())))
    data["edges"] = list(reversed(data["edges"]))
    a = compile_plan(load_pipeline(TEMPLATE))
    b = compile_plan(parse_pipeline(yaml.safe_dump(data, sort_keys=False), TEMPLATE.parent))
    assert a.plan_hash == b.plan_hash


def test_param_change_changes_only_downstream_cache_keys():
    base = compile_plan(load_pipeline(TEMPLATE))
    changed = compile_plan(load_pipeline(TEMPLATE, ["classifier.epochs=61"]))
    assert base.plan_hash != changed.plan_hash
    assert base.step("encoder").cache_key == changed.step("encoder").cache_key
    assert base.step("classifier").cache_key != changed.step("classifier").cache_key
    assert base.step("api").cache_key != changed.step("api").cache_key


def test_data_change_changes_the_data_cache_key(tmp_path):
    shutil.copytree(TEMPLATE.parent, tmp_path / "t")
    copy = tmp_path / "t" / "faq-chatbot.yaml"
    before = compile_plan(load_pipeline(copy))
    with open(tmp_path / "t" / "data" / "faq.csv", "a", encoding="utf-8") as f:
        f.write("refund,Money back please?,\n")
    after = compile_plan(load_pipeline(copy))
    assert before.step("faq").cache_key != after.step("faq").cache_key
    assert before.plan_hash != after.plan_hash


def test_quote_is_per_run_prices_plus_planned_compute():
    plan = compile_plan(load_pipeline(TEMPLATE))
    per_run = sum(s.price["amount_wei"] for s in plan.steps)
    seconds = sum(s.estimated_seconds for s in plan.steps)
    assert (
        plan.quote_wei == quote(plan.steps, plan.compute) == per_run + round(plan.compute.price["amount_wei"] * seconds)
    )
