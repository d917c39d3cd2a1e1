"""Builder: My pipelines, the canvas, the block palette, the selected block's settings and data, check, price, Run.

Each pipeline has its own address (`/builder?pipeline=<folder>`): a reload, a bookmark or a shared link opens it
again. Every edit is saved to the pipeline's file as it is made (see builder/ui/forms.py).
"""

from __future__ import annotations

import time

import streamlit as st

from builder.datasets import kinds_text, upload_types
from builder.spec import Kind
from builder.ui import actions, canvas, forms, own_voice, saved
from builder.ui.common import (
    aic,
    bump_canvas,
    choice_box,
    current_draft,
    distinct_labels,
    flash,
    goto,
    keep_address,
    sample_table,
    set_draft,
    setup,
    show_flash,
    start_and_open_run,
    take_address,
)
from builder.ui.draft import (
    DraftError,
    add_block,
    block_of,
    compute_block,
    connect,
    disconnect,
    from_yaml,
    new_draft,
    node_edges,
    palette,
    remove_block,
    to_yaml,
    validate,
)
from builder.ui.progress import estimate_text
from builder.ui.words import block_name, humanize, param_words, with_article

setup("Builder", "builder")


def _sync_address() -> None:
    """Open the pipeline the address names when the user arrived with it (reload, bookmark, shared link);
    otherwise make the address name the pipeline being edited."""
    open_now = current_draft()
    take_address("pipeline", "pipeline-wanted", lambda w: open_now is None or open_now.base_dir.name != w)
    wanted = st.session_state.pop("pipeline-wanted", None)
    if wanted:
        try:
            set_draft(saved.open_saved(wanted))
        except DraftError as exc:
            flash("error", f"{str(exc)[:1].upper()}{str(exc)[1:]}.")
            st.query_params.pop("pipeline", None)
    draft = current_draft()
    if draft is not None:
        keep_address("pipeline", draft.base_dir.name)
    else:
        st.session_state["pipeline-address"] = None


def _ago(when: float) -> str:
    seconds = max(0, time.time() - when)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "just now"


def _open(workspace: str) -> None:
    try:
        set_draft(saved.open_saved(workspace))
    except DraftError as exc:
        flash("error", str(exc))


def _new(name_key: str) -> None:
    name = st.session_state.get(name_key, "").strip()
    if not name:
        st.session_state["new-error"] = "Give the pipeline a name."
        return
    d = new_draft(name, actions.new_workspace(name))
    actions.save(d)
    set_draft(d)


def _start_screen() -> None:
    show_flash()
    kept = saved.my_pipelines()
    st.subheader("My pipelines")
    if not kept:
        st.caption("Nothing here yet: start a pipeline below or from a template. Everything you build is kept here.")
    for p in kept:
        with st.container(border=True):
            c1, c2 = st.columns([5, 1], vertical_alignment="center")
            c1.markdown(f"**{p.name}** · {p.blocks} block{'s' if p.blocks != 1 else ''} · changed {_ago(p.modified)}")
            if p.description:
                c1.caption(p.description[:160] + ("…" if len(p.description) > 160 else ""))
            c2.button("Open", key=f"open-{p.workspace}", on_click=_open, args=(p.workspace,))
    st.subheader("Start something new")
    c1, c2 = st.columns(2)
    with c1, st.form("new-pipeline"):
        st.text_input("Pipeline name", value="my-pipeline", key="new-name")
        st.form_submit_button("Start an empty pipeline", type="primary", on_click=_new, args=("new-name",))
        if "new-error" in st.session_state:
            st.error(st.session_state.pop("new-error"))
    with c2:
        if st.button("Browse templates"):
            goto("templates")
        upload = st.file_uploader("…or open a pipeline YAML file", type=["yaml", "yml"], key="open-yaml")
        if upload is not None:
            try:
                set_draft(actions.open_yaml(upload.getvalue().decode("utf-8")))
                st.rerun()
            except (DraftError, UnicodeDecodeError) as exc:
                st.error(f"{upload.name}: {exc if isinstance(exc, DraftError) else 'not UTF-8 text'}")


# Edits are button and widget callbacks: they run before the page script, so a rerun the canvas asks for at the
# same moment cannot swallow them (a click handled in the script body can be cut off by such a rerun).
def _add(draft, ref: str) -> None:
    node_id = add_block(draft, ref)
    actions.save(draft)
    bump_canvas()
    st.session_state["selected_node"] = node_id
    flash("success", f"Added {with_article(block_name(ref))} as {node_id}.")


def _remove(draft, node_id: str) -> None:
    remove_block(draft, node_id)
    actions.save(draft)
    bump_canvas()
    flash("success", f"removed {node_id}")


def _disconnect(draft, src: str, dst: str) -> None:
    disconnect(draft, src, dst)
    actions.save(draft)
    bump_canvas()
    flash("success", f"removed the connection {src} -> {dst}")


def _connect(draft) -> None:
    src, dst = st.session_state["connect-from"], st.session_state["connect-to"]
    try:
        edge = connect(draft, src, dst)
    except DraftError as exc:
        flash("error", f"Cannot connect {src} to {dst}: {exc}")
        return
    actions.save(draft)
    flash("success", f"connected {edge}", bump_canvas())


def _rename(draft) -> None:
    try:
        saved.rename(draft, st.session_state["pipeline-name"])
    except DraftError as exc:
        flash("error", f"{str(exc)[:1].upper()}{str(exc)[1:]}.")
        return
    flash("success", f"Renamed to {draft.data['name']}.")


def _params_of(draft, node_id: str) -> dict:
    if node_id == "compute":
        raw = draft.data.get("compute")
        return dict(raw.get("params") or {}) if isinstance(raw, dict) else {}
    return dict(draft.blocks[node_id].get("params") or {})


def _store_params(draft, node_id: str, params: dict) -> None:
    if node_id == "compute":
        raw = draft.data.get("compute")
        ref = raw.get("use") if isinstance(raw, dict) else raw
        draft.data["compute"] = {"use": ref, "params": params} if params else ref
    elif params or "params" in draft.blocks[node_id]:
        draft.blocks[node_id]["params"] = params


def _edited(draft, node_id: str, form_key: str, name: str) -> None:
    """A setting changed: save it when valid, else keep the reason beside it (and Run disabled)."""
    block = compute_block(draft) if node_id == "compute" else block_of(draft, node_id)
    stored = _params_of(draft, node_id)
    new, reason = forms.apply_edit(block, stored, name, st.session_state.get(f"{form_key}:{name}"))
    pending = _pending(node_id)
    if new is None:
        pending[name] = reason
    else:
        pending.pop(name, None)
        if new != stored:
            _store_params(draft, node_id, new)
            actions.save(draft)
            flash("success", f"{param_words(block.id, name)[0]} of {node_id} saved.")
    st.session_state["pending"] = (node_id, st.session_state.get("canvas_version", 0), pending)


def _pending(node_id: str) -> dict[str, str]:
    """Settings of `node_id` whose box holds a value that is not valid (so not saved): name -> reason."""
    item = st.session_state.get("pending")
    if item and item[0] == node_id and item[1] == st.session_state.get("canvas_version", 0):
        return dict(item[2])
    return {}


def _unsaved() -> dict[str, str]:
    """The not-valid, not-saved settings of the block whose form is open."""
    return _pending(st.session_state.get("selected_node", ""))


def _use_dataset(draft, node_id: str, choice_key: str) -> None:
    try:
        note = actions.use_dataset(draft, node_id, st.session_state[choice_key])
    except DraftError as exc:
        flash("error", str(exc), bump_canvas())
        return
    flash("success", note, bump_canvas())


def _keep_upload(draft, node_id: str, name: str, key: str) -> None:
    up = st.session_state.pop(key, None)
    if up is None:
        return
    try:
        rel, note = actions.store_upload(draft, node_id, name, up["name"], up["data"])
    except DraftError as exc:
        flash("error", str(exc))
        return
    flash("success", f"{up['name']} stored as {rel}" + (f"; {note}" if note else ""), bump_canvas())


def _start_run(draft, tune: bool = False) -> None:
    if _unsaved():
        st.session_state["run_error"] = "Some settings are not valid (marked in red); fix them before running."
        return
    start_and_open_run(draft, "run_error", int(st.session_state.get("tune-trials", 8)) if tune else 0)


def _close() -> None:
    set_draft(None)
    st.session_state["pipeline-address"] = None
    st.query_params.pop("pipeline", None)


_sync_address()
draft = current_draft()
if draft is None:
    _start_screen()
    st.stop()

show_flash()

# --- palette (sidebar): search, grouped by domain, "Add" puts the block on the canvas ----------------
with st.sidebar:
    st.header("Blocks")
    st.caption("Drag blocks from the canvas's own list, or add them here.")
    query = st.text_input("Search blocks", key="palette-search", placeholder="e.g. csv, classifier, gpu")
    groups = palette(query)
    if not groups:
        st.caption("No block matches.")
    for domain, blocks in groups.items():
        st.subheader(humanize(domain))
        for b in blocks:
            with st.expander(f"{block_name(b.id)} · {b.kind}"):
                st.caption(b.description)
                st.caption(
                    "takes: "
                    + (", ".join(p.description or p.name for p in b.inputs) or "nothing")
                    + "  ·  gives: "
                    + (", ".join(p.description or p.name for p in b.outputs) or "nothing")
                )
                st.caption(f"{aic(b.price.amount_wei)} per {b.price.unit} · licence {b.license}")
                # The label names the block: while a search reruns the page, the previous result's button can
                # still stand where this one will appear, and a click on it must not add the wrong block.
                st.button(
                    f"Add {block_name(b.id)} to the canvas", key=f"add-{b.ref()}", on_click=_add, args=(draft, b.ref())
                )

problems, by_node = validate(draft)
top1, top2 = st.columns([4, 1], vertical_alignment="bottom")
if st.session_state.get("pipeline-name-of") != draft.base_dir.name:
    st.session_state["pipeline-name"] = str(draft.data.get("name") or "")
    st.session_state["pipeline-name-of"] = draft.base_dir.name
top1.text_input(
    "Pipeline name", key="pipeline-name", on_change=_rename, args=(draft,), help="Every change is saved as you make it."
)
top2.button("My pipelines", key="close", on_click=_close, help="This pipeline stays saved there.")
if canvas.show(draft, set(by_node)):
    actions.save(draft)
    st.rerun()
actions.save(draft)  # node positions

left, right = st.columns([3, 2], gap="large")

# --- the selected block: its settings, data upload and preview ---------------------------------------
with right:
    node_ids = list(draft.blocks)
    if not node_ids:
        st.info("Add blocks from the palette, then connect them on the canvas.")
    else:
        options = [*node_ids, "compute"]
        plain = {n: n for n in node_ids} | {"compute": "compute (where it runs)"}
        names = {n: ("⚠ " if n in by_node else "") + text for n, text in plain.items()}
        selected = choice_box("Selected block", options, names, "selected-block", "selected_node")  # follows the canvas
        block = compute_block(draft) if selected == "compute" else block_of(draft, selected)
        for message in by_node.get(selected, []):
            st.error(message)
        if block is None:
            st.warning(f"{selected} uses an unknown block; fix its `use:` in the YAML tab.")
        else:
            st.caption(block.description)
            if block.kind == Kind.DATA:
                kinds = upload_types(block)
                for name in [n for n in block.Params.model_fields if n.endswith("path")]:
                    held = f"upload-{selected}-{name}"
                    up = st.file_uploader(
                        f"Replace {param_words(block.id, name)[0].lower()} ({kinds_text(kinds)})",
                        type=[k.lstrip(".") for k in kinds],
                        key=f"up-{selected}-{name}",
                    )
                    if up is not None and st.session_state.get(f"seen-{held}") != up.file_id:
                        st.session_state[f"seen-{held}"] = up.file_id
                        st.session_state[held] = {"name": up.name, "data": up.getvalue()}
                    if held in st.session_state:
                        pending_up = st.session_state[held]
                        try:
                            pv = actions.preview_upload(draft, selected, name, pending_up["name"], pending_up["data"])
                        except DraftError as exc:
                            st.error(str(exc))
                            st.session_state.pop(held)
                        else:
                            with st.container(border=True):
                                count = f" · {pv.total_rows} rows" if pv.total_rows is not None else ""
                                st.markdown(f"**{pending_up['name']}** · read as {pv.description}{count}")
                                if pv.rows:
                                    st.dataframe(pv.rows, hide_index=True)
                                c1, c2 = st.columns(2)
                                c1.button(
                                    "Use this file",
                                    key=f"keep-{held}",
                                    type="primary",
                                    on_click=_keep_upload,
                                    args=(draft, selected, name, held),
                                )
                                c2.button(
                                    "Cancel", key=f"drop-{held}", on_click=lambda k=held: st.session_state.pop(k, None)
                                )
                from runtime.datasets import list_datasets

                offered = [d for d in list_datasets() if d.block.split("@")[0] == block.id]
                if offered:
                    choice = f"dataset-{selected}"
                    st.selectbox(
                        "…or use a published dataset (paid per run to its owner)",
                        [d.id for d in offered],
                        format_func=distinct_labels(
                            {d.id: f"{d.name} · {aic(d.price_wei)} per run" for d in offered}
                        ).get,
                        key=choice,
                    )
                    st.button(
                        "Use this dataset", key=f"use-{selected}", on_click=_use_dataset, args=(draft, selected, choice)
                    )
            voice = own_voice.task_for(draft, selected) if selected != "compute" else None
            if voice is not None:  # a keyword model trained on spoken words, or the words it is trained on
                with st.container(border=True):
                    own_voice.show(draft, voice, f"voice-{draft.base_dir.name}")
                    own_voice.use_button(
                        draft, voice, f"voice-{draft.base_dir.name}", lambda note: flash("success", note, bump_canvas())
                    )
            st.markdown("**Settings**")
            form_key = f"p-{selected}-{st.session_state.get('canvas_version', 0)}"
            forms.render(
                block,
                _params_of(draft, selected),
                form_key,
                on_change=lambda name, n=selected, k=form_key: _edited(draft, n, k, name),
                errors=_pending(selected),
            )
            if hasattr(block, "preview") and selected != "compute":
                st.markdown("**Random sample of the data**")
                seed = st.session_state.setdefault(f"seed-{selected}", 0)
                try:
                    sample_table(actions.preview(draft, selected, rows=5, seed=seed))
                except DraftError as exc:
                    st.warning(str(exc))
                if st.button("Another sample", key=f"reseed-{selected}"):
                    st.session_state[f"seed-{selected}"] = seed + 1
                    st.rerun()
            if selected != "compute":
                st.button(f"Remove {selected}", key=f"remove-{selected}", on_click=_remove, args=(draft, selected))

# --- connections, validation, price, run, YAML -------------------------------------------------------
with left:
    tab_check, tab_edges, tab_yaml = st.tabs(["Check & run", "Connections", "YAML"])
    unsaved = _unsaved()
    with tab_check:
        if problems:
            st.error(f"{len(problems)} problem(s) to fix before running:")
            for p in problems:
                st.markdown(f"- `{p.path or 'pipeline'}`" + (f" (line {p.line})" if p.line else "") + f": {p.message}")
        elif unsaved:
            st.error("A setting of the selected block is not valid (marked in red); fix it before running.")
        else:
            st.success("The pipeline is valid.")
            quote = actions.quote(draft)
            st.metric("Quoted price", aic(quote), help="Blocks' run prices plus the planned compute time")
            estimate = estimate_text(draft)
            if estimate:
                st.caption(f":material/schedule: {estimate}")
        # A callback runs before the page script, so the canvas's own reruns cannot interrupt it half-way;
        # the page switch it asks for is completed by `setup` at the top of the next run.
        st.button(
            "Run", type="primary", disabled=bool(problems or unsaved), key="run", on_click=_start_run, args=(draft,)
        )
        with st.expander("Tune it: try other settings of the model automatically"):
            trials = st.number_input("Trials", min_value=2, max_value=50, value=8, step=1, key="tune-trials")
            if not problems:
                st.caption(
                    f"Each trial is a real run, billed: up to {aic(actions.quote(draft) * trials)} in all. The first "
                    "trial is the pipeline as it is, so the best found is never worse; poor trials stop early."
                )
            st.button("Tune", key="tune", disabled=bool(problems or unsaved), on_click=_start_run, args=(draft, True))
        if "run_error" in st.session_state:
            st.error(st.session_state.pop("run_error"))
    with tab_edges:
        for text, src, dst in node_edges(draft):
            c1, c2 = st.columns([4, 1])
            c1.code(text, language=None)
            c2.button("Remove", key=f"disconnect-{text}", on_click=_disconnect, args=(draft, src, dst))
        if len(draft.blocks) >= 2:
            with st.form("connect"):
                ids = list(draft.blocks)
                c1, c2 = st.columns(2)
                c1.selectbox("From", ids, key="connect-from")
                c2.selectbox("To", ids, index=min(1, len(ids) - 1), key="connect-to")
                st.form_submit_button("Connect", on_click=_connect, args=(draft,))
    with tab_yaml:
        text = to_yaml(draft)
        st.download_button("Download pipeline.yaml", text, file_name="pipeline.yaml", mime="application/x-yaml")
        edited = st.text_area(
            "Edit the YAML (the canvas follows)",
            value=text,
            height=360,
            key=f"yaml-{st.session_state.get('canvas_version', 0)}",
        )
        if st.button("Apply YAML", key="apply-yaml"):
            try:
                new = from_yaml(edited, draft.base_dir)
                actions.save(new)
                set_draft(new)
                st.rerun()
            except DraftError as exc:
                st.error(str(exc))
