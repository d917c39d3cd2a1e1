"""Settings forms generated from a block's pydantic Params: one widget per setting, of the kind its type asks for.

Every change is checked at once and saved when valid, so the form and the pipeline file agree; a value that
is not valid stays in its box with the reason beside it, is not saved, and keeps Run disabled until fixed.
Only the changed setting is written: settings left as they were keep their exact text in the YAML (a template
that leaves a setting to its default keeps leaving it so).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError as PydanticValidationError

from builder.errors import ValidationError
from builder.pipeline import param_problems
from builder.spec import Block
from builder.ui.words import param_words
from builder.yamlsrc import safe_yaml

ITEM_KINDS = {"string": "text", "integer": "whole", "number": "number"}


@dataclass(frozen=True)
class Setting:
    """One setting of a block as the form shows it."""

    name: str
    label: str
    help: str
    widget: str  # "choice", "switch", "whole", "number", "list", "text" or "yaml"
    required: bool
    nullable: bool
    default: Any
    options: tuple[Any, ...] = ()
    item_kind: str = "text"  # for "list": the kind of each item
    bounds: str = ""  # "a whole number from 1 to 1000", shown under the box


def _type_of(prop: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(the property's schema without Optional's null, nullable)."""
    if "anyOf" in prop:
        kinds = [p for p in prop["anyOf"] if p.get("type") != "null"]
        return (kinds[0] if len(kinds) == 1 else {}), len(kinds) < len(prop["anyOf"])
    return prop, False


def _bounds(inner: dict[str, Any], whole: bool) -> str:
    lo, hi = inner.get("minimum"), inner.get("maximum")
    xlo, xhi = inner.get("exclusiveMinimum"), inner.get("exclusiveMaximum")
    what = "a whole number" if whole else "a number"
    low = f"{lo:g}" if lo is not None else (f"more than {xlo:g}" if xlo is not None else None)
    high = f"{hi:g}" if hi is not None else (f"less than {xhi:g}" if xhi is not None else None)
    if lo is not None and hi is not None:
        return f"{what} from {low} to {high}"
    at_least = f"at least {low}" if lo is not None else low
    at_most = f"at most {high}" if hi is not None else high
    parts = [p for p in (at_least, at_most) if p]
    return f"{what}, " + " and ".join(parts) if parts else what


def settings_of(block: type[Block]) -> list[Setting]:
    """The settings of `block`, in the order its Params declares them."""
    schema = block.Params.model_json_schema()
    props: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    out = []
    for name, prop in props.items():
        field = block.Params.model_fields[name]
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        default = getattr(default, "value", default)  # enums as their value
        label, help_ = param_words(block.id, name)
        inner, nullable = _type_of(prop)
        kind = inner.get("type")
        extra: dict[str, Any] = {}
        if "enum" in inner or "enum" in prop:
            widget, extra["options"] = "choice", tuple(inner.get("enum") or prop["enum"])
        elif kind == "boolean":
            widget = "switch"
        elif kind in ("integer", "number"):
            widget = "whole" if kind == "integer" else "number"
            extra["bounds"] = _bounds(inner, kind == "integer")
        elif kind == "array" and inner.get("items", {}).get("type") in ITEM_KINDS:
            widget, extra["item_kind"] = "list", ITEM_KINDS[inner["items"]["type"]]
            extra["bounds"] = "one a line" + (f"; at least {inner['minItems']}" if inner.get("minItems") else "")
        elif kind in ("array", "object") or not kind:
            widget = "yaml"
        else:
            widget = "text"
        out.append(Setting(name, label, help_, widget, name in required, nullable, default, **extra))
    return out


def shown(setting: Setting, value: Any) -> Any:
    """What the widget of `setting` starts with, for the stored `value` (None: not set)."""
    if value is None:
        value = setting.default
    if setting.widget == "switch":
        return bool(value)
    if setting.widget == "choice":
        return value if value in setting.options else setting.options[0]
    if setting.widget == "list":
        return "\n".join(str(v) for v in value or [])
    if setting.widget == "yaml":
        return "" if value is None else yaml.safe_dump(value, allow_unicode=True).strip()
    return "" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))


def read(setting: Setting, raw: Any) -> Any:
    """The setting's value that a widget's content stands for; text that cannot be read is returned as it is,
    and the block's own validation then says what is wrong with it."""
    if setting.widget in ("switch", "choice"):
        return raw
    text = "" if raw is None else str(raw).strip()
    if not text:
        if setting.nullable:
            return None
        return [] if setting.widget == "list" else ""  # a number left empty is refused by the block's validation
    if setting.widget == "list":
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if len(lines) == 1 and "," in lines[0]:  # "yes, no, up" typed on one line
            lines = [part.strip() for part in lines[0].split(",") if part.strip()]
        return [_number(line, setting.item_kind) for line in lines]
    if setting.widget in ("whole", "number"):
        return _number(text, setting.widget)
    if setting.widget == "yaml":
        try:
            return safe_yaml(text)
        except (yaml.YAMLError, ValidationError):
            return text
    return text


def _number(text: str, kind: str) -> Any:
    try:
        if kind == "whole":
            return int(text)
        if kind == "number":
            value = float(text.replace(",", ".")) if text.count(",") == 1 and "." not in text else float(text)
            return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value
    except ValueError:
        pass
    return text


def apply_edit(block: type[Block], stored: dict[str, Any], name: str, raw: Any) -> tuple[dict[str, Any] | None, str]:
    """The stored params with setting `name` set from widget content `raw`; (None, the reason) when not valid.

    Nothing but `name` changes; when the value equals what is stored (or the default where nothing is stored),
    the params come back unchanged, so saving them rewrites the file byte for byte.
    """
    setting = next(s for s in settings_of(block) if s.name == name)
    value = read(setting, raw)
    current = stored.get(name, setting.default)
    if value == current or (value in ("", None) and current in ("", None)):
        return dict(stored), ""
    candidate = {**stored, name: value}
    if value is None:
        candidate.pop(name)
    try:
        parsed = block.Params(**candidate)
    except PydanticValidationError as exc:
        mine = [m for e, m in zip(exc.errors(), param_problems(exc), strict=True) if e["loc"][:1] == (name,)]
        reason = (mine or param_problems(exc))[0]
        return None, plain_reason(reason.split(": ", 1)[1] if reason.startswith(f"{name}:") else reason)
    dumped = parsed.model_dump(mode="json")
    new = dict(stored)
    if value is None:
        new.pop(name, None)
    else:
        new[name] = dumped[name]
    return new, ""


_PLAIN = [
    (re.compile(r"^must be ≥ (\S+), got .*$"), r"must be at least \1"),
    (re.compile(r"^must be ≤ (\S+), got .*$"), r"must be at most \1"),
    (re.compile(r"^must be > (\S+), got .*$"), r"must be more than \1"),
    (re.compile(r"^must be < (\S+), got .*$"), r"must be less than \1"),
    (re.compile(r"^input should be a valid (integer|number).*, got ''$"), "give a number"),
    (re.compile(r"^input should be a valid integer.*, got (.*)$"), r"\1 is not a whole number"),
    (re.compile(r"^input should be a valid number.*, got (.*)$"), r"\1 is not a number"),
    (re.compile(r"^list should have at least (\d+) items?.*$"), r"give at least \1, one a line"),
    (re.compile(r"^missing required parameter$"), "this setting is required"),
]


def plain_reason(message: str) -> str:
    """A validation message in the words the form uses ("must be ≥ 1, got 0" -> "must be at least 1")."""
    for pattern, words in _PLAIN:
        if pattern.match(message):
            return re.sub(r"\b(\d+)\.0\b", r"\1", pattern.sub(words, message))  # "more than 0", not "0.0"
    return message


def render(
    block: type[Block],
    stored: dict[str, Any],
    key: str,
    on_change: Callable[[str], None],
    errors: dict[str, str],
) -> None:
    """One widget per setting (keyed `key:name`) pre-filled from `stored`; `on_change(name)` runs on an edit,
    and `errors[name]`, when present, is shown beside that setting."""
    import streamlit as st

    for s in settings_of(block):
        label = s.label + ("" if not s.required else " (required)")
        wkey = f"{key}:{s.name}"
        start = shown(s, stored.get(s.name))
        common = {"help": s.help or None, "key": wkey, "on_change": on_change, "args": (s.name,)}
        if s.widget == "choice":
            st.selectbox(label, list(s.options), index=list(s.options).index(start), **common)
        elif s.widget == "switch":
            st.toggle(label, value=start, **common)
        elif s.widget in ("list", "yaml"):
            st.text_area(label, value=start, height=68 + 14 * min(6, start.count("\n")), **common)
        else:
            st.text_input(label, value=start, **common)
        if s.name in errors:
            st.error(f"{s.label}: {errors[s.name]} (not saved)", icon=":material/error:")
        elif s.bounds:
            st.caption(s.bounds[:1].upper() + s.bounds[1:] + ".")


def check_params(block: type[Block], values: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """(params as stored in the YAML, []) when valid, else (None, one sentence per problem)."""
    try:
        parsed = block.Params(**values)
    except PydanticValidationError as exc:
        return None, param_problems(exc)
    return parsed.model_dump(mode="json", exclude_none=True), []


__all__ = ["Setting", "apply_edit", "check_params", "plain_reason", "read", "render", "settings_of", "shown"]
