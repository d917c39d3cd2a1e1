"""What a run and a service produced, drawn for people: labelled charts, the confusion matrix with the class names as
the user wrote them, a warning when accuracy is measured on training data, the Try-it answer card, a readable log."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from builder.ui.progress import duration_text
from builder.ui.words import metric_words, step_words

__all__ = [
    "accuracy_notes",
    "answer_card",
    "bundle_manifest",
    "class_names",
    "confusion_chart",
    "display_label",
    "log_lines",
    "picked_suggestion",
    "series_chart",
    "suggestion_buttons",
]

# The classes every keyword spotter adds, in words.
_SPECIAL = {"_unknown_": "(another word)", "_silence_": "(silence)"}
TRAINING_DATA_WARNING = (
    "This accuracy was measured on the same examples the model learned from, so it cannot be trusted: "
    "it says nothing about new questions. Run it again to get a fair measurement."
)


def bundle_manifest(bundle_dir: str | Path | None) -> dict[str, Any]:
    """A service bundle's manifest (labels, answers, type), or {} when there is none or it cannot be read."""
    if not bundle_dir:
        return {}
    try:
        return json.loads((Path(bundle_dir) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def display_label(label: str | None, answers: dict[str, str] | None = None) -> str:
    """A class as the user wrote it: a FAQ answer's text instead of its slug, "(silence)" for `_silence_`."""
    if label is None:
        return ""
    answer = (answers or {}).get(label)
    if answer and _named_after(label, answer):
        return answer
    return _SPECIAL.get(label) or label


def _named_after(label: str, answer: str) -> bool:
    """Whether a FAQ intent is the name made from its answer ("we-are-open-7am…"), not one the user wrote."""
    slug = re.sub(r"[^a-z0-9]+", "-", answer.lower()).strip("-")[:40].rstrip("-") or "intent"
    return label == slug or (label.startswith(slug + "-") and label[len(slug) + 1 :].isdigit())


def class_names(manifest: dict[str, Any], classes: int) -> list[str]:
    """The names of a model's classes in order, as the user wrote them; "class 0", … when unknown."""
    labels = manifest.get("labels") or []
    if len(labels) != classes:
        return [f"class {i}" for i in range(classes)]
    return [display_label(x, manifest.get("answers")) for x in labels]


def confusion_chart(matrix: list[list[int]], names: list[str]) -> alt.Chart:
    """A coloured, labelled confusion matrix: rows what it really was, columns what the model said; big enough to
    show every class."""
    short = [_short(n) for n in names]
    unique = [f"{s}{' ' * i}" if short.count(s) > 1 else s for i, s in enumerate(short)]  # axis values must differ
    rows = [
        {"truth": unique[t], "said": unique[p], "count": int(c), "truth_full": names[t], "said_full": names[p]}
        for t, row in enumerate(matrix)
        for p, c in enumerate(row)
    ]
    frame = pd.DataFrame(rows)
    side = max(220, 26 * len(names))
    base = alt.Chart(frame).encode(
        x=alt.X("said:N", sort=unique, title="What the model said", axis=alt.Axis(labelAngle=-45, labelLimit=220)),
        y=alt.Y("truth:N", sort=unique, title="What it really was", axis=alt.Axis(labelLimit=220)),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("count:Q", title="Examples", scale=alt.Scale(scheme="blues")),
        tooltip=[
            alt.Tooltip("truth_full:N", title="Really"),
            alt.Tooltip("said_full:N", title="Model said"),
            alt.Tooltip("count:Q", title="Examples"),
        ],
    )
    top = max((max(r) for r in matrix if r), default=0)
    text = base.mark_text(fontSize=11).encode(
        text=alt.Text("count:Q"),
        color=alt.condition(alt.datum.count > top / 2, alt.value("white"), alt.value("black")),
    )
    return (cells + text).properties(width=side, height=side, title="Which answers the model mixes up")


def series_chart(frame: pd.DataFrame, metric: str) -> alt.Chart:
    """One metric per training round (columns `step`, `value`), with axis titles in words."""
    label, _ = metric_words(metric)
    return (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X("step:Q", title="Training round (epoch)", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y("value:Q", title=label, scale=alt.Scale(zero=False)),
            tooltip=[alt.Tooltip("step:Q", title="Round"), alt.Tooltip("value:Q", title=label, format=".4f")],
        )
        .properties(height=180, title=label)
    )


def accuracy_notes(metrics: dict[str, Any]) -> tuple[str | None, str | None]:
    """(warning, note) about how the accuracy was measured: a warning when it was measured on the training data,
    else the run's own plain note (or its test split in words)."""
    split = metrics.get("eval_split")
    if split == "train":
        return TRAINING_DATA_WARNING, None
    if metrics.get("metric_note"):
        return None, str(metrics["metric_note"])
    if split == "cross-validation" and metrics.get("cv_folds"):
        folds = metrics["cv_folds"]
        return None, f"Measured by cross-validation: trained {folds} times, each time tested on a part it did not see."
    words = {
        "heldout": "Measured on your separate file of test questions, none of which it learned from.",
        "split": "Measured on questions kept aside from your file, none of which it learned from.",
        "held-out voices": "Measured on voices the model never heard while learning.",
    }
    return None, words.get(str(split)) if split else None


def _pick_suggestion(suggestion: dict[str, Any]) -> None:
    """A "did you mean…?" button's callback: the question goes into the box and its answer is shown."""
    st.session_state["try-text"] = suggestion["question"]
    st.session_state["try-picked"] = suggestion


def suggestion_buttons(suggestions: list[dict[str, Any]]) -> None:
    """The FAQ questions closest to an unsure one, as buttons that show their answer."""
    if not suggestions:
        return
    st.markdown("**Did you mean…?**")
    for i, suggestion in enumerate(suggestions):
        st.button(suggestion["question"], key=f"try-suggestion-{i}", on_click=_pick_suggestion, args=(suggestion,))


def picked_suggestion() -> None:
    """The answer of the "did you mean…?" question the user picked (from the FAQ itself: no call is billed)."""
    picked = st.session_state.pop("try-picked", None)
    if picked:
        st.markdown(f"**{picked['question']}**")
        st.success(picked["answer"])


def answer_card(result: dict[str, Any], manifest: dict[str, Any]) -> None:
    """Draw a Try-it answer: the answer as its own text, a confident one in green, "I don't know" neutral."""
    answers = manifest.get("answers") or {}
    if "answer" in result:  # a FAQ chatbot
        score = float(result.get("score") or 0.0)
        if result.get("intent") is None:
            with st.container(border=True):
                st.markdown("**I don't know** — the model is not sure enough, so it gives the fallback answer:")
                st.markdown(result["answer"])
                best = display_label(result.get("top_intent"), answers)
                st.caption(f"Its best guess ({score:.0%} sure) was: {best}" if best else f"{score:.0%} sure")
                suggestion_buttons(result.get("suggestions") or [])
        else:
            st.success(result["answer"])
            st.caption(f"{score:.0%} sure")
        return
    if "label" in result:  # image or sound classes
        score = float(result.get("score") or 0.0)
        label = result["label"]
        if label in _SPECIAL:
            with st.container(border=True):
                st.markdown(f"Not one of the commands: {_SPECIAL[label]}")
                st.caption(f"{score:.0%} sure")
        else:
            st.success(display_label(label, answers))
            st.caption(f"{score:.0%} sure")
        return
    if "steering_angle" in result:
        angle = float(result["steering_angle"])
        side = "straight on" if abs(angle) < 0.05 else ("to the left" if angle < 0 else "to the right")
        st.metric("Steering", f"{angle:+.2f}", help="-1 is full left, 1 is full right")
        st.caption(f"Steer {side}.")
        return
    if "text" in result and "audio_base64" not in result:  # speech recognition
        if result["text"]:
            st.success(result["text"])
        else:
            with st.container(border=True):
                st.markdown("Nothing was recognised.")


def log_lines(
    summary: dict[str, Any], steps: list[dict[str, Any]], points: list[dict[str, Any]], raw: str | None
) -> list[str]:
    """A run's log in sentences, oldest first: steps starting and ending, each training round, the result."""
    events: list[tuple[datetime, int, str]] = []
    for i, s in enumerate(steps):
        words = step_words(s["block_id"])
        if s.get("started_at"):
            events.append((s["started_at"], i, f"{words} ({s['node_id']}) started"))
        if s.get("finished_at"):
            how = "reused from an earlier run" if s.get("cached") else f"took {duration_text(s.get('seconds') or 0)}"
            end = f"{words} ({s['node_id']}) {s['status']}, {how}"
            events.append((s["finished_at"], i, end + (f": {s['error']}" if s.get("error") else "")))
    by_round: dict[tuple[str, int], dict[str, float]] = {}
    first_at: dict[tuple[str, int], datetime] = {}
    for p in points:
        if p["step"] > 0:
            key = (p["node_id"], p["step"])
            by_round.setdefault(key, {})[p["name"]] = p["value"]
            first_at.setdefault(key, p["created_at"])
    for (node, epoch), values in by_round.items():
        shown = ", ".join(f"{metric_words(k)[0].lower()} {v:.4g}" for k, v in values.items())
        events.append((first_at[(node, epoch)], len(steps), f"{node}: epoch {epoch} finished — {shown}"))
    lines = [f"{_hms(when)}  {text}" for when, _, text in sorted(events, key=lambda e: (_naive(e[0]), e[1]))]
    if summary.get("error"):
        lines.append(f"The run failed: {summary['error']}")
    elif summary.get("status") == "succeeded":
        lines.append("The run succeeded.")
    if raw and not _is_json(raw):
        lines.append("(The technical output of the run is below.)")
    return lines


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _naive(when: datetime) -> datetime:
    return when.replace(tzinfo=None)


def _hms(when: datetime) -> str:
    return when.strftime("%H:%M:%S")
