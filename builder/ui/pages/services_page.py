"""Services: try a trained service, run its HTTP API, get API keys and ready-made snippets, see its usage."""

from __future__ import annotations

import json

import altair as alt
import pandas as pd
import streamlit as st
from sqlalchemy import select

from builder.ui import actions, own_voice
from builder.ui.common import (
    aic,
    batches_table,
    choice_box,
    current_draft,
    db,
    keep_address,
    setup,
    start_and_open_run,
    take_address,
)
from builder.ui.draft import DraftError
from builder.ui.results import answer_card, bundle_manifest, picked_suggestion

setup("Services", "services")
USAGE_REFRESH_S = 2.0  # how often the Usage tab is redrawn

from runtime.db import Service, ServiceBatch, Usage  # noqa: E402
from runtime.keys import create_key, list_keys, revoke_key  # noqa: E402

with db() as s:
    services = [
        (svc.id, svc.name, svc.run_id, svc.created_at, svc.call_price_wei, svc.bundle_dir)
        for svc in s.scalars(select(Service).order_by(Service.created_at.desc()))
    ]
if not services:
    st.info("No trained services yet: a pipeline that ends in a service block creates one when its run succeeds.")
    st.stop()

ids = [x[0] for x in services]
# Each service has its own address (/services?service=<id>): a reload or a shared link shows it again.
take_address("service", "selected_service", lambda value: value in ids)
names = {x[0]: f"{x[1]} · trained {x[3]:%d %b %H:%M:%S}" for x in services}
service_id = choice_box("Service", ids, names, "service-select", "selected_service")
keep_address("service", service_id)
_, name, run_id, created, price_1k, bundle_dir = next(x for x in services if x[0] == service_id)
st.caption(f"{name} · trained by run {run_id} · {aic(price_1k)} per 1,000 calls")


@st.cache_resource(show_spinner="Loading the model…")
def predictor_for(bundle_dir: str):
    """One ONNX session per bundle for this UI process (checksums verified on load)."""
    from runtime.bundle import load_bundle

    return load_bundle(bundle_dir)


def _create_key(service_id: str) -> None:
    """A callback, so the new key is known before the API tab's snippets are drawn in the same run."""
    with db() as s:
        secret, _record = create_key(s, service_id)
    st.session_state[f"new-key-{service_id}"] = secret
    st.session_state["key-just-created"] = service_id


def _train_with_voice(draft, task: own_voice.VoiceTask) -> None:
    """Point the pipeline at the user's recordings and start its run; the Runs page opens on it."""
    try:
        own_voice.use(draft, task)
    except DraftError as exc:
        st.session_state["voice-error"] = str(exc)
        return
    start_and_open_run(draft, "voice-error")


def teach_your_voice(run_id: str) -> None:
    """Record the words of a keyword service in the user's voice, for the pipeline it was trained from, and train
    that pipeline again."""
    from runtime.db import Run

    with db() as s:
        run = s.get(Run, run_id)
        path = run.pipeline_path if run is not None else None
    draft = own_voice.trained_pipeline(path, current_draft())
    task = own_voice.task_for(draft) if draft is not None else None
    st.divider()
    if draft is None:
        st.caption(
            f"To teach it your voice, open the pipeline it was trained from ({path or 'not known'}) in the Builder "
            "(My pipelines → open a pipeline YAML file) and record the words there."
        )
    if draft is None or task is None:
        return
    key = f"voice-{draft.base_dir.name}"
    own_voice.show(draft, task, key)
    reason = own_voice.not_ready(draft, task)
    st.button(
        "Train it again with my voice",
        key=f"{key}-train",
        type="primary",
        disabled=bool(reason),
        on_click=_train_with_voice,
        args=(draft, task),
        help=f"Runs {draft.data.get('name') or 'its pipeline'} again, now also on your recordings.",
    )
    if reason:
        st.caption(reason)
    if "voice-error" in st.session_state:
        st.error(st.session_state.pop("voice-error"))


tab_try, tab_api, tab_keys, tab_usage, tab_versions = st.tabs(["Try it", "API", "API keys", "Usage", "Versions"])

with tab_try:
    try:
        predictor = predictor_for(bundle_dir)
    except Exception as exc:  # a damaged or missing bundle: say which, never a traceback
        st.error(f"The service's files cannot be loaded: {exc}")
        predictor = None
    if predictor is not None:
        what, types = getattr(predictor, "upload", ("Image (PNG or JPEG)", ["png", "jpg", "jpeg"]))
        sound = getattr(predictor, "accepts_file", False) and ("wav" in types or "flac" in types)
        with st.form("try-it"):
            values: dict = {}
            if getattr(predictor, "accepts_file", False):
                # The browser records a WAV file: what the service takes, like an upload.
                recorded = st.audio_input("Record it", key="try-record") if sound else None
                upload = st.file_uploader(f"…or upload a file: {what}" if sound else what, type=types, key="try-file")
                if upload is not None:
                    values["file"] = upload.getvalue()
                    try:
                        if sound:
                            st.audio(upload.getvalue(), format="audio/wav")
                        else:
                            st.image(upload.getvalue(), width=96)
                    except Exception:  # not what it claims to be: the answer below says so in one sentence
                        pass
                if recorded is not None:
                    values["file"] = recorded.getvalue()
                if sound:
                    st.caption("When there is both a recording and a file, the recording is sent.")
            else:  # the label stays the field's name: it is what the API takes (the help says it in words)
                for field_name, field in predictor.Request.model_fields.items():
                    values[field_name] = st.text_area(field_name, help=field.description, key=f"try-{field_name}")
            asked = st.form_submit_button("Ask", type="primary")
        picked_suggestion()
        if asked and getattr(predictor, "accepts_file", False) and "file" not in values:
            st.error("Record something or choose a file first." if sound else "Choose a file first.")
        elif asked:
            try:
                result = actions.try_service(predictor, service_id, values)
                answer_card(result, bundle_manifest(bundle_dir))
                if "audio_base64" in result:
                    import base64

                    st.audio(base64.b64decode(result["audio_base64"]), format="audio/wav")
                with st.expander("What the API returns"):
                    shown = {k: (v[:60] + "…" if isinstance(v, str) and len(v) > 80 else v) for k, v in result.items()}
                    st.json(shown)
                st.caption("Billed as one call, like an API call.")
            except DraftError as exc:
                st.error(str(exc))
        if bundle_manifest(bundle_dir).get("type") == "audio-classifier":
            teach_your_voice(run_id)

with tab_api:
    server = actions.server_of(service_id)
    if server:
        st.success(f"The API is running at {server['url']} — documentation: {server['url']}/docs")
        if st.button("Stop the API server", key="stop-server"):
            actions.stop_server(service_id)
            st.rerun()
    else:
        st.info("The API is not running from this workbench.")
        if st.button("Start the API server", key="start-server", type="primary"):
            try:
                with st.spinner("Starting…"):
                    actions.start_server(service_id)
                st.rerun()
            except DraftError as exc:
                st.error(str(exc))
    url = server["url"] if server else "http://127.0.0.1:8000"
    key = st.session_state.get(f"new-key-{service_id}", "YOUR_API_KEY")
    body = json.dumps({"text": "How do I reset my password?"})
    st.markdown("**curl**")
    st.code(
        f"curl -s -X POST {url}/v1/predict -H 'Content-Type: application/json' -H 'X-API-Key: {key}' -d '{body}'",
        language="bash",
    )
    st.markdown("**Python**")
    st.code(
        f'import httpx\n\nr = httpx.post("{url}/v1/predict", json={body}, headers={{"X-API-Key": "{key}"}})\n'
        "print(r.json())",
        language="python",
    )
    if server is None:
        st.caption(f"Or serve it from a terminal: `aib serve {service_id} --port 8000`.")

with tab_keys:
    st.button("Create an API key", key="create-key", on_click=_create_key, args=(service_id,))
    if st.session_state.pop("key-just-created", None) == service_id:
        st.warning("Copy this key now: it is shown only once (only its hash is stored).")
        st.code(st.session_state[f"new-key-{service_id}"], language=None)
    with db() as s:
        keys = [(k.id, k.created_at, k.revoked_at) for k in list_keys(s, service_id)]
    for key_id, created_at, revoked_at in keys:
        c1, c2 = st.columns([4, 1])
        c1.write(f"`{key_id}` · created {created_at:%Y-%m-%d %H:%M}" + (" · **revoked**" if revoked_at else ""))
        if revoked_at is None and c2.button("Revoke", key=f"revoke-{key_id}"):
            with db() as s:
                revoke_key(s, key_id)
            st.rerun()


@st.fragment(run_every=USAGE_REFRESH_S)
def usage(service_id: str) -> None:
    """The service's calls and what they owe, redrawn every few seconds: API calls show up without a reload."""
    with db() as s:
        rows = list(s.scalars(select(Usage).where(Usage.service_id == service_id).order_by(Usage.id)))
        # A call answered on a provider's machine has a second record, what its host is owed (unit "hosted-call").
        calls = [(u.created_at, u.quantity, u.amount_wei, u.settled_tx) for u in rows if u.unit == "call"]
        owed = sum(u.amount_wei for u in rows)
        batches = [
            (b.id, b.status, b.calls, b.payouts_wei, b.fee_wei, b.settle_tx)
            for b in s.scalars(select(ServiceBatch).where(ServiceBatch.service_id == service_id))
        ]
    total_calls = int(sum(c[1] for c in calls))
    paid_calls = int(sum(c[1] for c in calls if c[3]))
    c1, c2, c3 = st.columns(3)
    c1.metric("Calls", total_calls)
    c2.metric("Owed to providers", aic(owed))
    c3.metric("Paid on chain", f"{paid_calls} calls")
    if calls:
        frame = pd.DataFrame(calls, columns=["time", "calls", "amount_wei", "tx"])
        per_minute = frame.set_index(pd.to_datetime(frame["time"]))["calls"].resample("1min").sum().reset_index()
        chart = (
            alt.Chart(per_minute)
            .mark_bar()
            .encode(
                x=alt.X("time:T", title="Minute"),
                y=alt.Y("calls:Q", title="Calls", axis=alt.Axis(tickMinStep=1)),
                tooltip=[alt.Tooltip("time:T", title="Minute"), alt.Tooltip("calls:Q", title="Calls")],
            )
            .properties(height=200, title="Calls per minute")
        )
        st.altair_chart(chart, width="stretch")
    if batches:
        batches_table(batches)
    st.caption("Unpaid calls are paid to every block's owner with `aib settle services` (one transaction per batch).")
    server_health(service_id)


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f} ms"


def server_health(service_id: str) -> None:
    """The running API server's own figures, from its /metrics: how fast it answers and how often it fails."""
    st.subheader("API server")
    figures = actions.server_metrics(service_id)
    if figures is None:
        st.caption(
            "Start the API server (API tab) to see here how fast it answers and how often calls fail; a server "
            "started elsewhere shows the same at its /metrics (Prometheus format)."
        )
        return
    latency = figures["latency_ms"]
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Latency p50", _ms(latency["p50"]), help="Half the prediction calls were answered faster than this.")
    c2.metric("Latency p95", _ms(latency["p95"]), help="95 in 100 prediction calls were answered faster than this.")
    c3.metric("Latency p99", _ms(latency["p99"]), help="99 in 100 prediction calls were answered faster than this.")
    c4.metric(
        "Failed calls",
        f"{figures['predict_error_rate']:.1%}",
        help="Share of prediction calls answered with an error (a missing or wrong key, a bad input, …).",
    )
    codes = ", ".join(f"{code} × {n:,}" for code, n in figures["errors_by_code"].items())
    st.caption(
        f"Since it started: {figures['requests']:,} requests, {figures['predict_requests']:,} of them prediction "
        f"calls; {figures['billed_calls']:,} calls billed in {figures['usage_records_written']:,} usage records."
        + (f" Errors by status code: {codes}." if codes else "")
    )


with tab_usage:
    usage(service_id)


def _make_live(name: str, number: int, live_number: int) -> None:
    from runtime.versions import switch

    try:
        with db() as s:
            done = switch(s, name, str(number), "rollback" if number < live_number else "promote")
        st.session_state["versions-notice"] = (
            f"Version {done['version']} is live: `aib serve {name}` servers switch to it within a second; calls "
            "already being answered finish on the old one."
        )
    except Exception as exc:  # AibError: one sentence (a damaged bundle, another kind of model)
        st.session_state["versions-error"] = str(exc)


def versions_tab(name: str) -> None:
    """Every version of the service, which one its stable endpoint serves, and two versions compared."""
    from runtime.versions import compare, describe

    with db() as s:
        rows = describe(s, name)
    live_number = next(r["version"] for r in rows if r["live"])
    st.caption(
        f"Every run of {name} adds a version. `aib serve {name}` (its stable endpoint) serves the live one; making "
        "another live switches it with no downtime."
    )
    table = pd.DataFrame([
        {
            "Version": r["version"],
            "Live": "● live" if r["live"] else "",
            "Trained": r["created_at"].replace("T", " "),
            "Accuracy": r["metrics"].get("accuracy"),
            "Mean error": r["metrics"].get("mae"),
            "Run": r["run_id"],
            "Service id": r["service_id"],
        }
        for r in rows
    ]).dropna(axis=1, how="all")  # fmt: skip
    st.dataframe(table, hide_index=True)
    numbers = [r["version"] for r in rows]
    c1, c2 = st.columns([2, 1])
    chosen = c1.selectbox("Version", numbers, index=numbers.index(live_number), key=f"version-pick-{name}")
    c2.button(
        "Make it live",
        key=f"make-live-{name}",
        disabled=chosen == live_number,
        on_click=_make_live,
        args=(name, chosen, live_number),
        help="Older than the live one: a rollback; newer: a promotion.",
    )
    if "versions-notice" in st.session_state:
        st.success(st.session_state.pop("versions-notice"))
    if "versions-error" in st.session_state:
        st.error(st.session_state.pop("versions-error"))
    if len(numbers) < 2:
        return
    st.markdown("**Compare two versions**")
    c1, c2 = st.columns(2)
    a = c1.selectbox("This version", numbers, index=len(numbers) - 2, key=f"compare-a-{name}")
    b = c2.selectbox("with", numbers, index=len(numbers) - 1, key=f"compare-b-{name}")
    with db() as s:
        found = compare(s, name, str(a), str(b))
    keys = sorted(set(found["a"]["metrics"]) | set(found["b"]["metrics"]))
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "Figure": k,
                    f"Version {a}": found["a"]["metrics"].get(k),
                    f"Version {b}": found["b"]["metrics"].get(k),
                }
                for k in keys
            ]  # fmt: skip
        ).astype(str),
        hide_index=True,
    )
    if found["changed"] is None:
        st.caption(f"Answers not compared: {found['changed_note']}.")
        return
    st.caption(
        f"{found['changed_count']} of {found['compared']} held-out examples changed their answer: "
        f"{found['fixed']} fixed, {found['broken']} broken (matched {found['matched']})."
    )
    if found["changed"]:
        st.dataframe(
            pd.DataFrame(found["changed"]).rename(
                columns={"example": "Example", "true": "Right answer", "a": f"Version {a}", "b": f"Version {b}"}
            ),
            hide_index=True,
        )


with tab_versions:
    versions_tab(name)
