"""Form widgets generated from a block's pydantic Params: ranges, choices and help text come from the model."""

from __future__ import annotations

from typing import Any

import streamlit as st
import yaml
from pydantic import ValidationError as PydanticValidationError

from builder.errors import ValidationError
from builder.pipeline import param_problems
from builder.spec import Block
from builder.yamlsrc import safe_yaml


def _schema_type(prop: dict[str, Any]) -> tuple[str, bool]:
    """(JSON type, nullable) of a property, looking through Optional's anyOf."""
    if "anyOf" in prop:
        kinds = [p for p in prop["anyOf"] if p.get("type") != "null"]
        nullable = len(kinds) < len(prop["anyOf"])
        inner = kinds[0] if kinds else {}
        return inner.get("type", "string"), nullable
    return prop.get("type", "string"), False


def param_widgets(block: type[Block], values: dict[str, Any], key: str) -> dict[str, Any]:
    """One widget per parameter, pre-filled with `values`; returns what the widgets hold now."""
    schema = block.Params.model_json_schema()
    props: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    out: dict[str, Any] = {}
    for name, prop in props.items():
        label = name + (" *" if name in required else "")
        help_ = prop.get("description")
        value = values.get(name, prop.get("default"))
        kind, nullable = _schema_type(prop)
        wkey = f"{key}:{name}"
        if "enum" in prop:
            options = list(prop["enum"])
            out[name] = st.selectbox(
                label, options, index=options.index(value) if value in options else 0, help=help_, key=wkey
            )
        elif kind == "boolean":
            out[name] = st.checkbox(label, value=bool(value), help=help_, key=wkey)
        elif kind in ("integer", "number") and not nullable:
            is_int = kind == "integer"
            cast = int if is_int else float
            lo = prop.get("minimum", prop.get("exclusiveMinimum"))
            hi = prop.get("maximum", prop.get("exclusiveMaximum"))
            out[name] = st.number_input(
                label,
                min_value=cast(lo) if lo is not None else None,
                max_value=cast(hi) if hi is not None else None,
                value=cast(value) if value is not None else (cast(lo) if lo is not None else cast(0)),
                step=1 if is_int else None,
                format=None if is_int else "%g",
                help=help_,
                key=wkey,
            )
        elif kind in ("array", "object"):
            text = st.text_area(
                label, value=yaml.safe_dump(value).strip() if value is not None else "", help=help_, key=wkey
            )
            out[name] = _value(prop, text)
        else:
            text = st.text_input(label, value="" if value is None else str(value), help=help_, key=wkey)
            out[name] = _value(prop, text)
    return out


def _value(prop: dict[str, Any], raw: Any) -> Any:
    """The parameter value a widget's raw content stands for (text boxes hold YAML or numbers as text)."""
    kind, nullable = _schema_type(prop)
    if "enum" in prop or kind == "boolean" or (kind in ("integer", "number") and not nullable):
        return raw
    text = "" if raw is None else str(raw)
    if kind in ("array", "object"):
        try:
            return safe_yaml(text) if text.strip() else None
        except (yaml.YAMLError, ValidationError):
            return text  # the model's validation reports it beside the form
    if nullable and not text.strip():
        return None
    if kind in ("integer", "number"):
        try:
            return int(text) if kind == "integer" else float(text)
        except ValueError:
            return text  # reported by the model's validation
    return text


def param_values(block: type[Block], key: str) -> dict[str, Any]:
    """What the widgets drawn by `param_widgets(block, …, key)` hold, read from the session (for callbacks)."""
    props: dict[str, Any] = block.Params.model_json_schema().get("properties", {})
    return {name: _value(prop, st.session_state.get(f"{key}:{name}")) for name, prop in props.items()}


def check_params(block: type[Block], values: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """(params as stored in the YAML, []) when valid, else (None, one sentence per problem)."""
    try:
        parsed = block.Params(**values)
    except PydanticValidationError as exc:
        return None, param_problems(exc)
    return parsed.model_dump(mode="json", exclude_none=True), []


__all__ = ["check_params", "param_values", "param_widgets"]
