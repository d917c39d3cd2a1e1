"""Why a model is wrong, drawn for people (issue 14's evaluation views): per-class precision / recall / F1, the
confusion matrix as counts or shares, how far its confidence can be trusted (reliability diagram), what the
fallback threshold does (coverage against accuracy), and the held-out examples it got wrong, shown as the user knows
them (the question, the picture, a player for the recording, the road frame with both steering needles)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from builder.ui.results import confusion_chart, display_label

__all__ = ["show_evaluation"]


Fixer = Callable[[dict[str, Any], str], None]  # draws "fix the data" for a mistake (an item, a widget key prefix)


def show_evaluation(
    node: str, evaluation: dict[str, Any], manifest: dict[str, Any], threshold: float | None, fix: Fixer | None = None
) -> None:
    """The evaluation a model node stored in its run (runtime/evaluation.py), under a subheading of its own; `fix`
    offers to correct the data from each mistake."""
    answers = manifest.get("answers")
    if evaluation.get("kind") == "classification":
        _classification(node, evaluation, answers, threshold, fix)
    elif evaluation.get("kind") == "regression":
        _regression(node, evaluation)


def _name(label: str, answers: dict[str, str] | None) -> str:
    return display_label(label, answers)


def _classification(
    node: str, ev: dict[str, Any], answers: dict[str, str] | None, threshold: float | None, fix: Fixer | None
) -> None:
    names = [_name(x, answers) for x in ev["labels"]]
    st.subheader("Why it is wrong")
    st.caption(
        f"Measured on {ev['examples']:,} examples the model never learned from ({node}): accuracy "
        f"{ev['accuracy']:.1%}, macro F1 {ev['macro_f1']:.3f}."
    )
    per_class = pd.DataFrame(ev["per_class"])
    per_class.insert(0, "Class", names)
    st.dataframe(
        per_class.drop(columns=["label"]).rename(
            columns={"precision": "Precision", "recall": "Recall", "f1": "F1", "support": "Examples"}
        ),
        hide_index=True,
        column_config={
            "Precision": st.column_config.NumberColumn(help="Of the times it said this, the share it was right."),
            "Recall": st.column_config.NumberColumn(help="Of the examples really of this class, the share it found."),
        },
    )
    st.caption("Each row is what an example really was; each column what the model said. The diagonal is right.")
    shares = st.toggle("Confusion matrix as shares of each true class", key=f"eval-{node}-shares")
    if shares:
        st.altair_chart(_share_chart(ev["confusion_normalised"], names), width="content")
    else:
        st.altair_chart(confusion_chart(ev["confusion_matrix"], names), width="content")
    left, right = st.columns(2)
    with left:
        st.altair_chart(_reliability_chart(ev["calibration"]), width="stretch")
        st.caption(
            f"When the model says 80 % sure, is it right 8 times in 10? Points on the diagonal: yes. "
            f"Average gap (expected calibration error): {ev['calibration']['ece']:.3f}."
        )
    with right:
        st.altair_chart(_coverage_chart(ev["coverage"], threshold), width="stretch")
        st.caption(
            "Answering only above a confidence threshold: the share of questions answered and how many of those are "
            "right." + (f" The service's threshold is {threshold:.2f}." if threshold is not None else "")
        )
    wrong = ev.get("misclassified") or []
    if not wrong:
        st.success("It got every held-out example right.")
        return
    st.markdown(f"**The {len(wrong)} mistakes it was surest of**")
    for i, item in enumerate(wrong):
        said, really = _name(item["predicted"], answers), _name(item["true"], answers)
        with st.container(border=True):
            _example(item, f"eval-{node}-{i}")
            st.caption(f"Really: **{really}** · the model said: **{said}** ({item['confidence']:.0%} sure)")
            if fix is not None:  # it draws a form where the example can be traced to the user's data
                fix(item, f"fix-{node}-{i}")


def _regression(node: str, ev: dict[str, Any]) -> None:
    st.subheader("Where it is wrong")
    c1, c2, c3 = st.columns(3)
    c1.metric("Mean error", f"{ev['mae']:.3f}", help="Average size of the error on held-out examples.")
    c2.metric("RMSE", f"{ev['rmse']:.3f}", help="Root mean squared error: big errors count more.")
    c3.metric("R²", "–" if ev["r2"] is None else f"{ev['r2']:.3f}", help="1 is perfect; 0 is no better than the mean.")
    frame = pd.DataFrame(ev["error_histogram"])
    if not frame.empty:
        frame["error"] = (frame["low"] + frame["high"]) / 2
        chart = (
            alt.Chart(frame)
            .mark_bar()
            .encode(
                x=alt.X("error:Q", title="Predicted minus true"),
                y=alt.Y("count:Q", title="Examples"),
                tooltip=[alt.Tooltip("low:Q", format=".3f"), alt.Tooltip("high:Q", format=".3f"), "count:Q"],
            )
            .properties(height=180, title="How big the errors are")
        )
        st.altair_chart(chart, width="stretch")
    worst = ev.get("worst") or []
    if worst:
        st.markdown(f"**Its {len(worst)} worst held-out examples** (green: the right steering, red: the model's)")
        cols = st.columns(4)
        for i, item in enumerate(worst):
            with cols[i % 4]:
                _example(item, f"eval-{node}-{i}")
                st.caption(f"true {item['true']:+.2f} · said {item['predicted']:+.2f}")


def _example(item: dict[str, Any], key: str) -> None:
    """A held-out example's input as its user knows it."""
    if "text" in item:
        st.markdown(f"> {item['text']}")
    if "image_png" in item:
        st.image(base64.b64decode(item["image_png"]))
    if "audio_wav" in item:
        st.audio(base64.b64decode(item["audio_wav"]), format="audio/wav")


def _share_chart(matrix: list[list[float]], names: list[str]) -> alt.Chart:
    rows = [
        {"truth": names[t], "said": names[p], "share": float(v)}
        for t, row in enumerate(matrix)
        for p, v in enumerate(row)
    ]
    side = max(220, 26 * len(names))
    base = alt.Chart(pd.DataFrame(rows)).encode(
        x=alt.X("said:N", sort=names, title="What the model said", axis=alt.Axis(labelAngle=-45, labelLimit=220)),
        y=alt.Y("truth:N", sort=names, title="What it really was", axis=alt.Axis(labelLimit=220)),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("share:Q", title="Share", scale=alt.Scale(scheme="blues", domain=[0, 1])),
        tooltip=["truth:N", "said:N", alt.Tooltip("share:Q", format=".0%")],
    )
    text = base.mark_text(fontSize=10).encode(
        text=alt.Text("share:Q", format=".0%"),
        color=alt.condition(alt.datum.share > 0.5, alt.value("white"), alt.value("black")),
    )
    return (cells + text).properties(width=side, height=side, title="Shares of each true class")


def _reliability_chart(calibration: dict[str, Any]) -> alt.Chart:
    frame = pd.DataFrame([b for b in calibration["bins"] if b["count"]])
    diagonal = alt.Chart(pd.DataFrame({"x": [0.0, 1.0], "y": [0.0, 1.0]})).mark_line(strokeDash=[4, 4], color="grey")
    diagonal = diagonal.encode(x="x:Q", y="y:Q")
    if frame.empty:
        return diagonal.properties(height=220, title="Confidence against accuracy")
    points = (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X("confidence:Q", title="How sure the model was", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("accuracy:Q", title="How often it was right", scale=alt.Scale(domain=[0, 1])),
            tooltip=[
                alt.Tooltip("confidence:Q", title="Mean confidence", format=".2f"),
                alt.Tooltip("accuracy:Q", title="Right", format=".0%"),
                alt.Tooltip("count:Q", title="Answers"),
            ],
        )
    )
    return (diagonal + points).properties(height=220, title="Confidence against accuracy")


def _coverage_chart(curve: list[dict[str, Any]], threshold: float | None) -> alt.Chart:
    rows = []
    for p in curve:
        rows.append({"threshold": p["threshold"], "what": "Answered", "share": p["coverage"]})
        if p["accuracy"] is not None:
            rows.append({"threshold": p["threshold"], "what": "Right among answered", "share": p["accuracy"]})
    lines = (
        alt.Chart(pd.DataFrame(rows))
        .mark_line(point=True)
        .encode(
            x=alt.X("threshold:Q", title="Confidence threshold", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("share:Q", title="Share", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("what:N", title=None),
            tooltip=["what:N", alt.Tooltip("threshold:Q", format=".2f"), alt.Tooltip("share:Q", format=".1%")],
        )
    )
    if threshold is None:
        return lines.properties(height=220, title="What a threshold does")
    rule = alt.Chart(pd.DataFrame({"threshold": [threshold]})).mark_rule(color="red").encode(x="threshold:Q")
    return (lines + rule).properties(height=220, title="What a threshold does")
