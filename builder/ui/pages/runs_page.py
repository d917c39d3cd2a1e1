"""Runs: every run with its state; one run's live progress in words, charts, log, cost, payouts and artifacts."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import altair as alt
import pandas as pd
import streamlit as st
from sqlalchemy import select

from builder.ui import actions
from builder.ui.common import (
    aic,
    choice_box,
    current_draft,
    db,
    goto,
    keep_address,
    setup,
    start_and_open_run,
    take_address,
)
from builder.ui.draft import DraftError
from builder.ui.evaluation_view import show_evaluation
from builder.ui.names import details, directory
from builder.ui.progress import duration_text, step_view
from builder.ui.results import (
    accuracy_notes,
    bundle_manifest,
    class_names,
    confusion_chart,
    log_lines,
    series_chart,
)
from builder.ui.words import block_name, metric_words, step_words

setup("Runs", "runs")
if "notice" in st.session_state:
    st.success(st.session_state.pop("notice"))

from runtime.db import MetricPoint, Service, Step  # noqa: E402
from runtime.runs import get_run, list_runs, reap_stale_runs, run_summary  # noqa: E402

# Shown first, in this order; the others follow alphabetically. Text-valued metrics are shown as notes instead.
MAIN_METRICS = ("accuracy", "baseline_accuracy", "mae", "baseline_mae", "train_accuracy", "train_mae", "loss")
HIDDEN_METRICS = {"eval_split", "metric_note", "vocabulary", "data_warnings"}
SHARES = {"out_of_scope_rejection", "answered_right", "wrong_answer_target"}  # shown as percentages
RUN_ID = re.compile(r"^run-[A-Za-z0-9-]{1,80}$")

with db() as s:
    reap_stale_runs(s)  # a run whose process died is shown as failed, with the reason
    runs = [(r.id, r.name, r.status, r.created_at, (r.metrics or {}).get("accuracy")) for r in list_runs(s)]

# Each run has its own address (/runs?run=<id>): a reload, a bookmark or a shared link shows that run again.
take_address("run", "selected_run", RUN_ID.match)
wanted = st.session_state.get("selected_run")
if wanted:
    keep_address("run", wanted)  # a run still starting is named by the address too
if wanted and wanted not in [r[0] for r in runs]:
    starting = actions.run_starting(wanted)
    if starting:
        st.info(f"Starting run {wanted}… (loading the pipeline and its blocks)")
        time.sleep(1.0)
        st.rerun()
    elif starting is False:
        st.error(f"Run {wanted} could not start:")
        st.code((actions.run_log(wanted) or "")[-4000:], language=None)
    st.session_state.pop("selected_run", None)
    wanted = None

if not runs:
    st.info("No runs yet. Open a template in the Builder and press Run.")
    st.stop()

table = pd.DataFrame(
    [
        (r[0], r[1], r[2], f"{r[3]:%d %b %H:%M:%S}", f"{r[4]:.1%}" if isinstance(r[4], float | int) else "—")
        for r in runs
    ],
    columns=["Run", "Pipeline", "State", "Started", "Accuracy"],
)
st.dataframe(table, hide_index=True, width="stretch")
ids = [r[0] for r in runs]
names = {r[0]: f"{r[1]} · started {r[3]:%d %b %H:%M:%S}" for r in runs}
run_id = choice_box("Run", ids, names, "run-select", "selected_run")
keep_address("run", run_id)


def _load(run_id: str) -> tuple[dict, list[dict], list[dict], dict, datetime | None]:
    """The run's summary, its steps and metric points as plain data, its plan steps by node, and its start."""
    with db() as s:
        run = get_run(s, run_id)
        summary = run_summary(s, run)
        steps = [
            {c: getattr(x, c) for c in ("node_id", "block_id", "status", "cached", "seconds", "progress", "error")}
            | {"started_at": _utc(x.started_at), "finished_at": _utc(x.finished_at)}
            for x in s.scalars(select(Step).where(Step.run_id == run_id).order_by(Step.position))
        ]
        points = [
            {"node_id": p.node_id, "name": p.name, "step": p.step, "value": p.value, "created_at": _utc(p.created_at)}
            for p in s.scalars(select(MetricPoint).where(MetricPoint.run_id == run_id).order_by(MetricPoint.id))
        ]
        plan_steps = {p.get("node_id"): p for p in (run.plan or {}).get("steps", [])}
        summary["pipeline_path"] = run.pipeline_path
        service = s.get(Service, run.service_id) if run.service_id else None
        summary["bundle_dir"] = service.bundle_dir if service is not None else None
        return summary, steps, points, plan_steps, _utc(run.started_at)


def _utc(when: datetime | None) -> datetime | None:
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when


def _value(name: str, value: object) -> str:
    if isinstance(value, float) and ("accuracy" in name or name in SHARES):
        return f"{value:.1%}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _progress(run_id: str) -> str:
    summary, steps, points, plan_steps, started = _load(run_id)
    status = summary["status"]
    st.subheader(f"{summary['pipeline']} · {status}")
    if status in ("queued", "running") and started is not None:
        st.caption(f"Running for {duration_text((datetime.now(UTC) - started).total_seconds())}.")
    if status == "cancelled":
        st.warning("This run was cancelled. Run the pipeline again to continue from the last finished step.")
    elif summary["error"]:
        st.error(f"The run failed: {summary['error']}")
    if summary.get("allocation"):
        st.info(f"Runs on rented compute — the Resource Allocator chose {summary['allocation']}")
    for step in steps:
        rounds = [p["step"] for p in points if p["node_id"] == step["node_id"] and p["name"] == "loss" and p["step"]]
        view = step_view(step, plan_steps.get(step["node_id"]), max(rounds) if rounds else None)
        st.progress(view.fraction, text=view.text)
    _charts(points, steps)
    _metrics(summary)
    return status


def _charts(points: list[dict], steps: list[dict]) -> None:
    """A chart per metric that has more than one point (per training round), two side by side."""
    if not points:
        return
    frame = pd.DataFrame(points)
    frame = frame[frame["step"] > 0]
    blocks = {s["node_id"]: s["block_id"] for s in steps}
    groups = [(k, g) for k, g in frame.groupby(["node_id", "name"], sort=False) if len(g) > 1]
    if not groups:
        return
    cols = st.columns(2)
    for i, ((node, metric), group) in enumerate(groups):
        with cols[i % 2]:
            st.caption(f"{step_words(blocks.get(node, node))} ({node})")
            st.altair_chart(series_chart(group[["step", "value"]], metric), width="stretch")


NEW_ANSWER = "__new__"


def _fixer(draft):
    """Fix the data from a mistake, when the run came from a pipeline of My pipelines (`draft`, its own copy of the
    data) that reads a FAQ or the user's own folder of images or recordings; else None."""
    from builder.ui import fix_data

    if draft is None:
        return None
    faq, folder = fix_data.faq_node(draft), fix_data.folder_node(draft)
    if faq is not None:
        return _faq_fixer(draft, faq)
    if folder is not None:
        return _folder_fixer(draft, folder)
    return None


def _fixed(fixed, what: str, data: str = "data") -> str:
    """The notice after a fix: what changed, in which new version of the user's `data`."""
    done = [f"added {fixed.added} {what}(s)" if fixed.added else "", f"moved {fixed.moved}" if fixed.moved else ""]
    return (
        f"{' and '.join(d for d in done if d).capitalize()} in {fixed.path.name}, a new version of your {data} (the "
        "old one is kept). Run the pipeline again to train on it."
    )


def _faq_fixer(draft, node: str):
    from builder.ui import fix_data

    def add(item: dict, key: str) -> None:
        state = st.session_state
        choice = state.get(f"{key}-answer")
        answer = state.get(f"{key}-new", "") if choice == NEW_ANSWER else choice
        more = [line for line in (state.get(f"{key}-more") or "").splitlines() if line.strip()]
        try:
            fixed = fix_data.add_questions(draft, node, [item["text"], *more], answer or "")
            state["fix-notice"] = _fixed(fixed, "question", "FAQ")
        except DraftError as exc:
            state["fix-error"] = str(exc)

    def draw(item: dict, key: str) -> None:
        if "text" not in item:
            return
        with st.expander("Fix the data: teach it this question"):
            try:
                answers = fix_data.faq_answers(draft, node)
            except DraftError as exc:
                st.error(str(exc))
                return
            options = [*answers, NEW_ANSWER]
            index = options.index(item["true"]) if item["true"] in answers else 0
            choice = st.selectbox(
                "Its right answer", options, index=index, key=f"{key}-answer",
                format_func=lambda i: "A new answer…" if i == NEW_ANSWER else answers[i][:90],
                help="If your FAQ has this question under another answer, it is moved to the one chosen here.",
            )  # fmt: skip
            if choice == NEW_ANSWER:
                st.text_input("The new answer", key=f"{key}-new", help="Becomes a new answer of your FAQ.")
            st.text_area("More ways to ask it (one per line, optional)", key=f"{key}-more")
            st.button("Add to my FAQ", key=f"{key}-add", on_click=add, args=(item, key))

    return draw


NEW_LABEL = "__new_label__"


def _folder_fixer(draft, node: str):
    from builder.ui import fix_data

    what = fix_data.example_word(draft, node)
    listed: dict[str, dict[str, int]] = {}  # the folder's labels, listed once per page render (not per mistake)

    def chosen(key: str) -> str:
        state = st.session_state
        choice = state.get(f"{key}-label")
        return (state.get(f"{key}-new", "") if choice == NEW_LABEL else choice) or ""

    def move(item: dict, key: str) -> None:
        new = st.session_state.get(f"{key}-label") == NEW_LABEL
        more = (st.session_state.get(f"{key}-newfiles") or []) if new else []
        try:
            fixed = fix_data.relabel(draft, node, item["file"], chosen(key), [(u.name, u.getvalue()) for u in more])
            st.session_state["fix-notice"] = _fixed(fixed, what)
        except DraftError as exc:
            st.session_state["fix-error"] = str(exc)

    def add(item: dict, key: str) -> None:
        uploads = st.session_state.get(f"{key}-files") or []
        try:
            fixed = fix_data.add_examples(draft, node, item["true"], [(u.name, u.getvalue()) for u in uploads])
            st.session_state["fix-notice"] = _fixed(fixed, what)
        except DraftError as exc:
            st.session_state["fix-error"] = str(exc)

    def draw(item: dict, key: str) -> None:
        if "file" not in item:
            return
        with st.expander(f"Fix the data: relabel this {what}, or add more like it"):
            try:
                if "labels" not in listed:
                    listed["labels"] = fix_data.folder_labels(draft, node)
                labels = listed["labels"]
            except DraftError as exc:
                st.error(str(exc))
                return
            st.caption(f"File: {item['file']}")
            # Labelled wrong: most often it is what the model said, so that label is offered first.
            options = [*labels, NEW_LABEL]
            index = options.index(item["predicted"]) if item["predicted"] in labels else len(labels)
            choice = st.selectbox(
                "Its right label, if it is not " + item["true"], options, index=index, key=f"{key}-label",
                format_func=lambda x: "A new label…" if x == NEW_LABEL else f"{x} ({labels[x]} {what}s)",
            )  # fmt: skip
            suffixes = [x.lstrip(".") for x in fix_data.example_suffixes(draft, node)]
            if choice == NEW_LABEL:
                st.text_input("The new label", key=f"{key}-new", help="Becomes a new class sub-folder of your data.")
                st.file_uploader(
                    f"At least one more {what} of the new label (a label needs two)", accept_multiple_files=True,
                    key=f"{key}-newfiles", type=suffixes,
                )  # fmt: skip
            st.button(f"Move this {what} to this label", key=f"{key}-move", on_click=move, args=(item, key))
            # Labelled right: the model needs more examples like it.
            st.file_uploader(
                f"More {what}s of {item['true']} (optional)", accept_multiple_files=True, key=f"{key}-files",
                type=suffixes,
            )  # fmt: skip
            st.button(f"Add these {what}s to {item['true']}", key=f"{key}-add", on_click=add, args=(item, key))

    return draw


def _metrics(summary: dict) -> None:
    from builder.ui import own_voice

    evaluations = summary.get("evaluation") or {}
    # The workbench pipeline the run came from (None for a file outside My pipelines): where data fixes go.
    draft = own_voice.trained_pipeline(summary.get("pipeline_path"), current_draft()) if evaluations else None
    if "fix-notice" in st.session_state:
        st.success(st.session_state.pop("fix-notice"))
        if draft is not None:
            st.button("Run it again", key="fix-rerun", type="primary", on_click=start_and_open_run,
                      args=(draft, "fix-error"))  # fmt: skip
    if "fix-error" in st.session_state:
        st.error(st.session_state.pop("fix-error"))
    metrics = summary["metrics"]
    shown = {k: v for k, v in metrics.items() if not isinstance(v, (list, dict)) and k not in HIDDEN_METRICS}
    warning, note = accuracy_notes(metrics)
    if warning:
        st.warning(warning)
    for data_warning in metrics.get("data_warnings") or []:
        st.warning(data_warning)
    if shown:
        order = [k for k in MAIN_METRICS if k in shown] + sorted(k for k in shown if k not in MAIN_METRICS)
        cols = st.columns(min(4, len(order)))
        for i, name in enumerate(order):
            label, help_text = metric_words(name)
            cols[i % len(cols)].metric(label, _value(name, shown[name]), help=help_text or None)
    if note:
        st.caption(note)
    for node, found in (metrics.get("verification") or {}).items():
        if found.get("ok") is True:
            total = found.get("segments", found.get("epochs"))
            st.success(
                f"Verified {node}: {'epochs' if total == found.get('epochs') else 'segments'} "
                f"{found.get('checked')} of {total} replayed on this machine "
                f"match the provider's committed weights (largest difference {found.get('max_abs_diff', 0):.1e})."
            )
        elif found.get("ok") is False:
            st.error(f"Verification of {node} failed: {found.get('reason')}. The provider is not paid for this run.")
        else:
            st.warning(f"{node} was not verified: {found.get('reason')}.")
    fixer = _fixer(draft)
    for node, evaluation in evaluations.items():
        threshold = metrics.get("threshold")
        show_evaluation(node, evaluation, bundle_manifest(summary.get("bundle_dir")),
                        threshold if isinstance(threshold, (int, float)) else None, fixer)  # fmt: skip
    matrix = metrics.get("confusion_matrix")
    if isinstance(matrix, list) and matrix and not evaluations:  # a run from before evaluations were stored
        names = class_names(bundle_manifest(summary.get("bundle_dir")), len(matrix))
        st.caption("Each row is what an example really was; each column what the model said. The diagonal is right.")
        st.altair_chart(confusion_chart(matrix, names), width="content")


with db() as s:
    running = get_run(s, run_id).status in ("queued", "running")


@st.fragment(run_every=1.0 if running else None)
def live() -> None:
    """Redrawn every second while the run is going; the rest of the page stays usable."""
    status = _progress(run_id)
    if running and status not in ("queued", "running"):
        st.rerun()  # finished: show cost and payouts


live()
if running and st.button("Cancel this run", key="cancel"):
    with st.spinner("Stopping the run…"):
        stopped = actions.cancel_run(run_id)
    st.session_state["notice"] = "The run was cancelled." if stopped else "The run had already finished."
    st.rerun()

summary, steps, points, _, _ = _load(run_id)


def _trials(study: str) -> list[dict]:
    """The runs of one tune (`aib run --tune`), by trial number."""
    from runtime.db import Run

    with db() as s:
        found = [
            (r.id, r.status, r.error, r.metrics or {})
            for r in s.scalars(select(Run).order_by(Run.created_at.desc()).limit(2000))
            if ((r.metrics or {}).get("tune") or {}).get("study") == study
        ]
    return sorted(
        (
            {"run_id": rid, "status": status, "error": error, "metrics": m, **m["tune"]}
            for rid, status, error, m in found
        ),
        key=lambda t: t["trial"],
    )


def tune_view(study: str, planned: int) -> None:
    """Every trial of the tune this run belongs to: a table and a chart, the best marked; redrawn while it searches."""
    trials = _trials(study)
    if not trials:
        return
    objective = "accuracy" if "accuracy" in trials[0]["metrics"] else "mae"
    best = trials[-1].get("best_run")
    st.subheader("Tuning")
    rows = []
    for t in trials:
        pruned = "stopped early by the tuner" in (t["error"] or "")
        rows.append({
            "Trial": t["trial"],
            "State": "stopped early" if pruned else t["status"],
            objective: t["metrics"].get(objective) if t["status"] == "succeeded" else None,
            **t["params"],
            "Best": "★" if t["run_id"] == best else "",
            "Run": t["run_id"],
        })  # fmt: skip
    frame = pd.DataFrame(rows)
    st.caption(
        f"{len(trials)} of {planned} trials ended; trial 0 is the pipeline as written. "
        + ("The best is starred: open its run for its service." if best else "The search is still going.")
    )
    st.dataframe(frame, hide_index=True)
    done = frame.dropna(subset=[objective])
    if not done.empty:
        label, _ = metric_words(objective)
        chart = (
            alt.Chart(done)
            .mark_circle(size=90)
            .encode(
                x=alt.X("Trial:Q", axis=alt.Axis(tickMinStep=1)),
                y=alt.Y(f"{objective}:Q", title=label, scale=alt.Scale(zero=False)),
                color=alt.condition(alt.datum.Best == "★", alt.value("#d62728"), alt.value("#1f77b4")),
                tooltip=list(done.columns),
            )
            .properties(height=200, title=f"{label} of each trial")
        )
        st.altair_chart(chart, width="stretch")


tuned = summary["metrics"].get("tune")
if isinstance(tuned, dict) and tuned.get("study"):
    searching = "best_run" not in tuned  # the tuner names the best in every trial once the search has ended
    st.fragment(run_every=2.0 if searching else None)(tune_view)(tuned["study"], int(tuned.get("planned", 0)))

tab_cost, tab_pay, tab_files, tab_log = st.tabs(["Cost", "Payouts", "Artifacts", "Log"])
with tab_cost:
    st.metric("Total", aic(summary["cost"]["total_wei"]), help=f"quoted {aic(summary['cost']['quote_wei'])}")
    if summary["usage"]:
        usage = pd.DataFrame(summary["usage"])
        by_block = usage.groupby(["block_id", "provider", "unit"], as_index=False).agg(
            quantity=("quantity", "sum"), amount_wei=("amount_wei", "sum")
        )
        by_block["amount"] = by_block["amount_wei"].map(aic)
        by_block["what"] = by_block["block_id"].map(step_words)
        by_block["block_id"] = by_block["block_id"].map(block_name)
        shown = by_block[["what", "block_id", "provider", "quantity", "unit", "amount"]]
        st.dataframe(
            shown.rename(columns={"what": "Step", "block_id": "Block", "provider": "Paid to", "quantity": "Quantity",
                                  "unit": "Unit", "amount": "Amount"}),
            hide_index=True,
        )  # fmt: skip
with tab_pay:
    pay = summary["settlement"]
    if pay is None:
        st.info("This run was not paid on chain (no chain was running).")
    else:
        st.write(
            f"Settlement: **{pay['status']}** · deposit {aic(pay['deposit_wei'])} · "
            f"fee {aic(pay['fee_wei'])} · refund {aic(pay['refund_wei'])}"
        )
        if pay["error"]:
            st.warning(pay["error"])
        who = directory()
        rows = [
            {"For": block_name(p["block_ref"]), "Paid to": who.who(p.get("payee")), "Amount": aic(p["amount_wei"])}
            for p in pay["payouts"]
        ]
        st.dataframe(pd.DataFrame(rows), hide_index=True)
        details(
            {
                f"{block_name(p['block_ref'])} (asset {p['asset_id']})": f"{p.get('payee')} · tx {p['tx']}"
                for p in pay["payouts"]
            }
        )
with tab_files:
    if summary["artifacts"]:
        st.dataframe(pd.DataFrame(summary["artifacts"]), hide_index=True)
    else:
        st.caption("No artifacts (yet).")
with tab_log:
    raw = actions.run_log(run_id)
    st.code("\n".join(log_lines(summary, steps, points, raw)) or "Nothing has happened yet.", language=None)
    if raw:
        with st.expander("Technical output"):
            st.code(raw[-20000:], language="json" if raw.lstrip().startswith("{") else None)

if summary["service_id"] and st.button("Open the service", key="open-service"):
    st.session_state["selected_service"] = summary["service_id"]
    goto("services")
