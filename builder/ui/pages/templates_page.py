"""Templates: a card per pipeline in templates/, and "Use this template" opens it on the canvas."""

from __future__ import annotations

import streamlit as st
import yaml

from builder.ui.actions import open_template
from builder.ui.common import current_draft, flash, set_draft, setup
from builder.ui.progress import estimate_text
from builder.ui.words import block_name

setup("Templates", "templates")
st.caption("Start from a working pipeline; everything in it can be changed on the canvas afterwards.")

from runtime.config import template_files, templates_dir  # noqa: E402


def _use(path, name) -> None:
    """A callback (runs before the page script, never interrupted by a rerun): open the template, go build."""
    before = current_draft()
    set_draft(open_template(path))
    # Nothing is replaced: every edit was saved as it was made, and the previous pipeline stays in My pipelines.
    kept = f" Your pipeline {before.data.get('name')!r} is kept in My pipelines." if before is not None else ""
    flash("success", f"Opened the {name or path.stem} template.{kept}")
    st.session_state["goto"] = "builder"


paths = template_files()
if not paths:
    st.info(f"No templates in {templates_dir()}.")
for path in paths:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        st.warning(f"{path.name} is not valid YAML and is skipped.")
        continue
    notes = path.with_suffix(".md")
    with st.container(border=True):
        st.subheader(data.get("name", path.stem))
        st.write(data.get("description", ""))
        blocks = [
            block_name(str(b.get("use", "?"))) for b in (data.get("blocks") or {}).values() if isinstance(b, dict)
        ]
        st.caption("Blocks: " + " → ".join(blocks))
        took = estimate_text(path.stem)
        if took:
            st.markdown(f":material/schedule: {took}")
        if notes.exists():
            with st.expander("What to expect"):
                st.markdown(notes.read_text(encoding="utf-8"))
        st.button(
            "Use this template", key=f"use-{path.stem}", type="primary", on_click=_use, args=(path, data.get("name"))
        )
