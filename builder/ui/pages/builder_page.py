"""Builder: the canvas, the block palette, the selected node's parameters and data, validation, price, Run."""

from __future__ import annotations

import streamlit as st

from builder.datasets import kinds_text, upload_types
from builder.spec import Kind
from builder.ui import actions, canvas
from builder.ui.common import aic, bump_canvas, current_draft, flash, goto, sample_table, set_draft, setup, show_flash
from builder.ui.draft import (
    DraftError,
    add_block,
    block_of,
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
from builder.ui.forms import check_params, param_values, param_widgets

setup("Builder", "builder")


def _start_screen() -> None:
    st.write("Build a pipeline from marketplace blocks, or start from a template.")
    c1, c2 = st.columns(2)
    with c1, st.form("new-pipeline"):
        name = st.text_input("Pipeline name", value="my-pipeline")
        if st.form_submit_button("Start an empty pipeline", type="primary"):
            if not name.strip():
                st.error("Give the pipeline a name.")
            else:
                d = new_draft(name.strip(), actions.new_workspace(name))
                actions.save(d)
                set_draft(d)
                st.rerun()
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


# Edits are button callbacks: they run before the page script, so a rerun the canvas asks for at the same
# moment cannot swallow them (a click handled in the script body can be cut off by such a rerun).
def _add(draft, ref: str) -> None:
    node_id = add_block(draft, ref)
    actions.save(draft)
    bump_canvas()
    st.session_state["selected_node"] = node_id
    flash("success", f"added {node_id} ({ref})")


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


def _apply_params(draft, node_id: str, form_key: str) -> None:
    block = block_of(draft, node_id)
    clean, errors = check_params(block, param_values(block, form_key))
    if clean is None:
        st.session_state["param_errors"] = (node_id, st.session_state.get("canvas_version", 0), errors)
        return
    st.session_state.pop("param_errors", None)
    draft.blocks[node_id]["params"] = clean
    actions.save(draft)
    flash("success", f"parameters of {node_id} saved", bump_canvas())


def _connect(draft) -> None:
    src, dst = st.session_state["connect-from"], st.session_state["connect-to"]
    try:
        edge = connect(draft, src, dst)
    except DraftError as exc:
        flash("error", f"Cannot connect {src} to {dst}: {exc}")
        return
    actions.save(draft)
    flash("success", f"connected {edge}", bump_canvas())


def _use_dataset(draft, node_id: str, choice_key: str) -> None:
    try:
        note = actions.use_dataset(draft, node_id, st.session_state[choice_key])
    except DraftError as exc:
        flash("error", str(exc), bump_canvas())
        return
    flash("success", note, bump_canvas())


def _start_run(draft) -> None:
    try:
        run_id = actions.start_run(draft)  # idempotent for a few seconds: a double click runs once
    except DraftError as exc:
        st.session_state["run_error"] = str(exc)
        return
    st.session_state["selected_run"] = run_id
    st.session_state["notice"] = f"run {run_id} started"
    st.session_state["goto"] = "runs"


draft = current_draft()
if draft is None:
    _start_screen()
    st.stop()

show_flash()

# --- palette (sidebar): search, grouped by domain, "Add" puts the block on the canvas ----------------
with st.sidebar:
    st.header("Blocks")
    query = st.text_input("Search blocks", key="palette-search", placeholder="e.g. csv, classifier, gpu")
    groups = palette(query)
    if not groups:
        st.caption("No block matches.")
    for domain, blocks in groups.items():
        st.subheader(domain)
        for b in blocks:
            with st.expander(f"{b.id} · {b.kind}"):
                st.caption(b.description)
                st.caption(
                    "in: "
                    + (", ".join(f"{p.name} ({p.type})" for p in b.inputs) or "—")
                    + "  ·  out: "
                    + (", ".join(f"{p.name} ({p.type})" for p in b.outputs) or "—")
                )
                st.caption(f"{aic(b.price.amount_wei)} per {b.price.unit} · {b.license}")
                # The label names the block: while a search reruns the page, the previous result's button can
                # still stand where this one will appear, and a click on it must not add the wrong block.
                st.button(f"Add {b.id} to canvas", key=f"add-{b.ref()}", on_click=_add, args=(draft, b.ref()))

problems, by_node = validate(draft)
st.caption(f"**{draft.data.get('name', '')}** · saved in `{draft.base_dir / 'pipeline.yaml'}`")
if canvas.show(draft, set(by_node)):
    actions.save(draft)
    st.rerun()
actions.save(draft)  # node positions

left, right = st.columns([3, 2], gap="large")

# --- the selected node: params form, data upload and preview ----------------------------------------
with right:
    node_ids = list(draft.blocks)
    if not node_ids:
        st.info("Add blocks from the palette on the left, then connect them on the canvas.")
    else:
        current = st.session_state.get("selected_node")
        index = node_ids.index(current) if current in node_ids else 0
        selected = st.selectbox(
            "Selected block",
            node_ids,
            index=index,
            format_func=lambda n: f"⚠ {n}" if n in by_node else n,
            key=f"node-select-{st.session_state.get('canvas_version', 0)}",
        )
        st.session_state["selected_node"] = selected
        block = block_of(draft, selected)
        for message in by_node.get(selected, []):
            st.error(message)
        if block is None:
            st.warning(f"{selected} uses an unknown block; fix its `use:` in the YAML tab.")
        else:
            st.caption(f"`{block.ref()}` · {block.description}")
            params = dict(draft.blocks[selected].get("params") or {})
            if block.kind == Kind.DATA:
                kinds = upload_types(block)
                for name in [n for n in block.Params.model_fields if n.endswith("path")]:
                    up = st.file_uploader(
                        f"Replace {name} ({kinds_text(kinds)})",
                        type=[k.lstrip(".") for k in kinds],
                        key=f"up-{selected}-{name}",
                    )
                    if up is not None and st.session_state.get(f"stored-{selected}-{name}") != up.file_id:
                        try:
                            rel, note = actions.store_upload(draft, selected, name, up.name, up.getvalue())
                            st.session_state[f"stored-{selected}-{name}"] = up.file_id
                            bump_canvas()
                            flash("success", f"{up.name} stored as {rel}" + (f"; {note}" if note else ""))
                            st.rerun()
                        except DraftError as exc:
                            st.error(str(exc))
                from runtime.datasets import list_datasets

                offered = [d for d in list_datasets() if d.block.split("@")[0] == block.id]
                if offered:
                    choice = f"dataset-{selected}"
                    st.selectbox(
                        "…or use a published dataset (paid per run to its owner)",
                        [d.id for d in offered],
                        format_func=lambda i: next(
                            f"{d.name} · {aic(d.price_wei)} per run" for d in offered if d.id == i
                        ),
                        key=choice,
                    )
                    st.button(
                        "Use this dataset", key=f"use-{selected}", on_click=_use_dataset, args=(draft, selected, choice)
                    )
            with st.form(f"params-{selected}"):
                form_key = f"p-{selected}-{st.session_state.get('canvas_version', 0)}"
                param_widgets(block, params, key=form_key)
                st.form_submit_button("Apply parameters", on_click=_apply_params, args=(draft, selected, form_key))
            errors = st.session_state.get("param_errors")
            if errors and errors[:2] == (selected, st.session_state.get("canvas_version", 0)):
                for e in errors[2]:
                    st.error(e)
            if hasattr(block, "preview"):
                st.markdown("**Random sample of the data**")
                seed = st.session_state.setdefault(f"seed-{selected}", 0)
                try:
                    sample_table(actions.preview(draft, selected, rows=5, seed=seed))
                except DraftError as exc:
                    st.warning(str(exc))
                if st.button("Another sample", key=f"reseed-{selected}"):
                    st.session_state[f"seed-{selected}"] = seed + 1
                    st.rerun()
            st.button(f"Remove {selected}", key=f"remove-{selected}", on_click=_remove, args=(draft, selected))

# --- connections, validation, price, run, YAML -------------------------------------------------------
with left:
    tab_check, tab_edges, tab_yaml = st.tabs(["Check & run", "Connections", "YAML"])
    with tab_check:
        if problems:
            st.error(f"{len(problems)} problem(s) to fix before running:")
            for p in problems:
                st.markdown(f"- `{p.path or 'pipeline'}`" + (f" (line {p.line})" if p.line else "") + f": {p.message}")
        else:
            st.success("The pipeline is valid.")
            quote = actions.quote(draft)
            st.metric("Quoted price", aic(quote), help="Blocks' run prices plus the planned compute time")
        # A callback runs before the page script, so the canvas's own reruns cannot interrupt it half-way;
        # the page switch it asks for is completed by `setup` at the top of the next run.
        st.button("Run", type="primary", disabled=bool(problems), key="run", on_click=_start_run, args=(draft,))
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
    if st.button("Close this pipeline", key="close"):
        set_draft(None)
        st.rerun()
