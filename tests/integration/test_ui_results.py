"""What the Runs and Services pages show of a run and a service, in words (issue 22, items 4 and 5): labelled
charts and confusion matrix, an honest note on how accuracy was measured, the Try-it answer card, live progress
of a real run with a Cancel that stops it, and usage counts that update without a reload."""

from __future__ import annotations

import csv
import json
import re
import time
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
from sqlalchemy import select

from tests.conftest import TEMPLATES
from tests.integration.test_ui_pages import page as app_page
from tests.integration.test_ui_pages import texts

ANSWER = "We are open 7am to 6pm every day except Sunday and public holidays."
SLUG = "we-are-open-7am-to-6pm-every-day-except"


# The value of the metric labelled exactly "Calls" (the "Paid on chain" metric's value also says "calls").
CALLS_SHOWN = """() => {
  const m = [...document.querySelectorAll('[data-testid=stMetric]')]
    .find(m => m.querySelector('[data-testid=stMetricLabel]').innerText.trim() === 'Calls');
  return m ? m.querySelector('[data-testid=stMetricValue]').innerText.trim() : null;
}"""


def _add_run(run_id: str, metrics: dict, *, service_dir: Path | None = None, points: int = 0) -> None:
    from runtime.db import MetricPoint, Run, Service, session_factory, utcnow

    with session_factory()() as s:
        s.add(Run(id=run_id, name="shop-bot", status="succeeded", pipeline_yaml="", pipeline_hash="h", overrides=[],
                  plan={}, plan_hash="p", quote_wei=0, created_at=utcnow(), metrics=metrics,
                  service_id=f"svc-{run_id}" if service_dir else None))  # fmt: skip
        s.flush()
        if service_dir:  # created long ago: the Services page lists the newest first, and tests pick the newest
            s.add(Service(id=f"svc-{run_id}", name="shop-bot", run_id=run_id, bundle_dir=str(service_dir),
                          plan_hash="p", block_id="service.api", version="1.0.0", provider="0x0", call_price_wei=0,
                          created_at=utcnow() - timedelta(days=3650)))  # fmt: skip
        for k in range(1, points + 1):
            s.add(MetricPoint(run_id=run_id, node_id="classifier", name="loss", step=k, value=1 / k))
        s.commit()


def _charts(at) -> list[tuple[dict, list]]:
    """Each Vega-Lite chart on the page: (its spec, the rows of its data)."""
    found = []
    for chart in at.get("vega_lite_chart"):
        rows = []
        for ds in chart.proto.datasets:
            rows += pa.ipc.open_stream(ds.data.data).read_all().to_pylist()
        found.append((json.loads(chart.proto.spec), rows))
    return found


def _axes(spec: dict) -> list[tuple[str, str | None]]:
    """(channel, title) of every x and y encoding in a chart spec, layers included."""
    out = []
    for part in [spec, *spec.get("layer", [])]:
        for channel in ("x", "y"):
            if channel in part.get("encoding", {}):
                out.append((channel, part["encoding"][channel].get("title")))
    return out


def test_confusion_matrix_names_the_classes_as_written_and_every_chart_has_axis_titles(tmp_path):
    (tmp_path / "manifest.json").write_text(
        json.dumps({"labels": [SLUG, "order_status", "_silence_"], "answers": {SLUG: ANSWER, "order_status": "Track"}})
    )
    _add_run("run-matrix-ui", {"accuracy": 0.75, "confusion_matrix": [[3, 1, 0], [0, 4, 0], [1, 0, 2]],
                               "eval_split": "heldout"}, service_dir=tmp_path, points=3)  # fmt: skip
    at = app_page("runs", selected_run="run-matrix-ui")
    charts = _charts(at)
    matrix = next((spec, rows) for spec, rows in charts if "layer" in spec)
    really = {r["truth_full"] for r in matrix[1]}
    assert really == {ANSWER, "order_status", "(silence)"}  # the answer's text, not its slug; the user's own intent
    assert not any(SLUG in json.dumps(spec) for spec, _ in charts)
    assert len(charts) == 2  # the loss per training round, and the matrix
    for spec, _ in charts:
        titles = dict(_axes(spec))
        assert titles.get("x") and titles.get("y"), spec
    assert ("x", "What the model said") in _axes(matrix[0]) and ("y", "What it really was") in _axes(matrix[0])
    assert any(m.label == "Accuracy" and m.value == "75.0%" for m in at.metric)
    assert any("separate file of test questions" in c for c in texts(at.caption))
    assert not texts(at.warning)


def test_an_old_run_measured_on_its_training_data_is_flagged_and_a_new_runs_note_is_shown():
    _add_run("run-old-ui", {"accuracy": 1.0, "eval_split": "train", "eval_examples": 30})
    at = app_page("runs", selected_run="run-old-ui")
    assert any("measured on the same examples the model learned from" in w and "cannot be trusted" in w
               for w in texts(at.warning))  # fmt: skip
    note = "Measured by cross-validation: 5 rounds, each answer tested on questions it did not learn from."
    _add_run("run-cv-ui", {"accuracy": 0.9, "eval_split": "cross-validation", "cv_folds": 5, "metric_note": note})
    at = app_page("runs", selected_run="run-cv-ui")
    assert note in texts(at.caption) and not texts(at.warning)


def test_try_it_shows_an_answer_card_and_i_dont_know_is_neutral(trained):
    at = app_page("services", selected_service=trained["service_id"])
    at.text_area(key="try-text").input("I forgot my password, help")
    at.button(key="FormSubmitter:try-it-Ask").click().run()
    # Other tests train services of the same pipeline within the same minute: the box must keep the one chosen.
    assert at.session_state["service-select"] == trained["service_id"]
    assert any(s.startswith("Click 'Forgot password'") for s in texts(at.success)), texts(at.success)
    at.text_area(key="try-text").input("Which planet has the most moons in the solar system?")
    at.button(key="FormSubmitter:try-it-Ask").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(m.startswith("**I don't know**") for m in texts(at.markdown)), texts(at.markdown)
    assert "Sorry, I don't know that yet." in texts(at.markdown)  # the fallback answer, in the neutral card
    assert not texts(at.success)  # never a green success box
    assert not any(re.search(r"\b[a-z0-9]+(-[a-z0-9]+){3,}\b", c) for c in texts(at.caption))  # no slug shown
    # "Did you mean…?": the closest FAQ questions as buttons; a click shows that question's own answer.
    suggested = [b for b in at.button if b.key and b.key.startswith("try-suggestion-")]
    assert 2 <= len(suggested) <= 3, [b.key for b in at.button]
    question = suggested[0].label
    suggested[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    faq = {r["question"]: r for r in csv.DictReader((TEMPLATES / "data" / "faq.csv").open(encoding="utf-8"))}
    first_of_intent = {r["intent"]: r["answer"] for r in faq.values() if r["answer"]}
    assert texts(at.success) == [first_of_intent[faq[question]["intent"]]]
    assert at.session_state["try-text"] == question


def test_a_real_run_shows_its_epoch_and_elapsed_time_and_cancel_stops_it(tmp_path):
    from builder.ui import actions
    from runtime.db import Run, Step, session_factory
    from runtime.processes import pid_alive
    from tests.conftest import TEMPLATES

    draft = actions.open_template(TEMPLATES / "digit-reader.yaml")
    draft.blocks["cnn"]["params"]["epochs"] = 1000  # far longer than the test: it must be stopped
    run_id = actions.start_run(draft)
    pid = int((draft.base_dir / f"{run_id}.pid").read_text())
    deadline = time.monotonic() + 180  # a new Python process imports torch and Prefect before it records its run
    while time.monotonic() < deadline:
        with session_factory()() as s:
            step = s.scalar(select(Step).where(Step.run_id == run_id, Step.node_id == "cnn"))
            run = s.get(Run, run_id)
            epochs = _epochs_logged(s, run_id)
        if run is not None and run.status != "running":
            raise AssertionError(f"the run ended before it was cancelled: {run.status} {run.error}")
        if step is not None and step.status == "running" and epochs >= 2:
            break
        assert pid_alive(pid), (draft.base_dir / f"{run_id}.log").read_text()
        time.sleep(0.5)
    at = app_page("runs", selected_run=run_id)
    bars = [p.proto.text for p in at.get("progress")]
    training = next(b for b in bars if b.startswith("Training the image reader"))
    assert " of 1000" in training and "so far" in training and "left" in training, bars
    assert any(c.startswith("Running for ") for c in texts(at.caption))
    at.button(key="cancel").click().run(timeout=60)
    assert not at.exception, [e.value for e in at.exception]
    assert not pid_alive(pid)  # the process is gone, not just asked to stop
    with session_factory()() as s:
        assert s.get(Run, run_id).status == "cancelled"
        assert s.scalar(select(Step.status).where(Step.run_id == run_id, Step.node_id == "cnn")) == "cancelled"
    assert any(s.endswith("· cancelled") for s in texts(at.subheader)), texts(at.subheader)
    assert any("cancelled" in w for w in texts(at.warning))


def _epochs_logged(s, run_id: str) -> int:
    from sqlalchemy import func

    from runtime.db import MetricPoint

    return s.scalar(
        select(func.coalesce(func.max(MetricPoint.step), 0)).where(
            MetricPoint.run_id == run_id, MetricPoint.name == "loss"
        )
    )


def test_usage_counts_update_without_a_reload(trained, page):  # noqa: F811 - the browser page fixture
    from builder.ui import actions
    from runtime.bundle import load_bundle
    from runtime.db import Service, session_factory

    with session_factory()() as s:
        bundle = s.get(Service, trained["service_id"]).bundle_dir
    # The service's own address: other tests may have trained newer services, which the page would show first.
    page.goto(f"{page.base}/services?service={trained['service_id']}")
    page.get_by_role("heading", name="Services", exact=True).wait_for()
    page.get_by_role("tab", name="Usage").click()
    page.get_by_text("Owed to providers").wait_for()
    before = int(page.evaluate(CALLS_SHOWN))
    actions.try_service(load_bundle(bundle), trained["service_id"], {"text": "Where is my parcel?"})
    actions.try_service(load_bundle(bundle), trained["service_id"], {"text": "How do I reset my password?"})
    page.wait_for_function(f"() => ({CALLS_SHOWN})() === '{before + 2}'", timeout=15_000)  # no reload, no click
