"""Runs: every run with its state; one run's live progress, metric charts, log, cost, payouts and artifacts."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st
from sqlalchemy import select

from builder.ui import actions
from builder.ui.common import aic, db, goto, setup

setup("Runs", "runs")
if "notice" in st.session_state:
    st.success(st.session_state.pop("notice"))

from runtime.db import MetricPoint, Step  # noqa: E402
from runtime.runs import get_run, list_runs, reap_stale_runs, run_summary  # noqa: E402

with db() as s:
    reap_stale_runs(s)  # a run whose process died is shown as failed, with the reason
    runs = [(r.id, r.name, r.status, r.created_at, (r.metrics or {}).get("accuracy")) for r in list_runs(s)]

wanted = st.session_state.get("selected_run")
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

table = pd.DataFrame(runs, columns=["run", "pipeline", "state", "started", "accuracy"])
st.dataframe(table, hide_index=True, width="stretch")
ids = [r[0] for r in runs]
run_id = st.selectbox("Run", ids, index=ids.index(wanted) if wanted in ids else 0, key="run-select")
st.session_state["selected_run"] = run_id


def _progress(run_id: str) -> str:
    with db() as s:
        run = get_run(s, run_id)
        summary = run_summary(s, run)
        steps = list(s.scalars(select(Step).where(Step.run_id == run_id).order_by(Step.position)))
        points = list(s.scalars(select(MetricPoint).where(MetricPoint.run_id == run_id).order_by(MetricPoint.id)))
    status = summary["status"]
    st.subheader(f"{summary['pipeline']} · {status}")
    if summary["error"]:
        st.error(f"The run failed: {summary['error']}")
    if summary.get("allocation"):
        st.info(f"Runs on rented compute — the Resource Allocator chose {summary['allocation']}")
    for step in steps:
        label = f"{step.node_id} ({step.block_id}) · {step.status}" + (" · cached" if step.cached else "")
        if step.seconds is not None:
            label += f" · {step.seconds:.1f} s"
        done = 1.0 if step.status == "succeeded" else float(step.progress or 0.0)
        st.progress(min(max(done, 0.0), 1.0), text=label)
    if points:
        frame = pd.DataFrame(
            [(p.node_id, p.name, p.step, p.value) for p in points], columns=["node", "metric", "step", "value"]
        )
        for (node, metric), group in frame.groupby(["node", "metric"]):
            if len(group) > 1:
                st.caption(f"{node} · {metric}")
                st.line_chart(group.set_index("step")["value"], height=160)
    metrics = {k: v for k, v in summary["metrics"].items() if not isinstance(v, (list, dict))}
    if metrics:
        cols = st.columns(min(4, len(metrics)))
        for i, (name, value) in enumerate(sorted(metrics.items())):
            cols[i % len(cols)].metric(name, f"{value:.3f}" if isinstance(value, float) else str(value))
    for node, found in (summary["metrics"].get("verification") or {}).items():
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
    matrix = summary["metrics"].get("confusion_matrix")
    if isinstance(matrix, list) and matrix:
        st.caption("Confusion matrix on the evaluation split (rows: true class, columns: predicted)")
        st.dataframe(pd.DataFrame(matrix), width="content")
    return status


running = False
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
    if actions.cancel_run(run_id):
        st.warning("Cancelling: the run stops after the current step's checkpoint.")
    else:
        st.info("The run is not running any more.")

with db() as s:
    summary = run_summary(s, get_run(s, run_id))

tab_cost, tab_pay, tab_files, tab_log = st.tabs(["Cost", "Payouts", "Artifacts", "Log"])
with tab_cost:
    st.metric("Total", aic(summary["cost"]["total_wei"]), help=f"quoted {aic(summary['cost']['quote_wei'])}")
    if summary["usage"]:
        usage = pd.DataFrame(summary["usage"])
        by_block = usage.groupby(["block_id", "provider", "unit"], as_index=False).agg(
            quantity=("quantity", "sum"), amount_wei=("amount_wei", "sum")
        )
        by_block["amount"] = by_block["amount_wei"].map(aic)
        st.dataframe(by_block[["block_id", "provider", "quantity", "unit", "amount"]], hide_index=True)
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
        rows = [
            {
                "block": p["block_ref"],
                "asset": p["asset_id"],
                "payee": p.get("payee"),
                "amount": aic(p["amount_wei"]),
                "tx": p["tx"],
            }
            for p in pay["payouts"]
        ]
        st.dataframe(pd.DataFrame(rows), hide_index=True)
with tab_files:
    if summary["artifacts"]:
        st.dataframe(pd.DataFrame(summary["artifacts"]), hide_index=True)
    else:
        st.caption("No artifacts (yet).")
with tab_log:
    log = actions.run_log(run_id)
    st.code(log[-20000:] if log else "No log: this run was not started from the browser.", language=None)

if summary["service_id"] and st.button("Open the service", key="open-service"):
    st.session_state["selected_service"] = summary["service_id"]
    goto("services")
