"""Why a model is wrong, computed in its run from its held-out answers: per-class precision / recall / F1, the
confusion matrix (counts and normalised by the true class), the calibration of its confidence (a reliability
diagram and the expected calibration error), what a fallback threshold does (coverage against accuracy), and the
held-out examples it got wrong (a classifier: the most confident mistakes first) or worst (a regressor).

Part of the block kit: a model block calls it at the end of its run and puts the result in its metrics under
`evaluation`, so a cached step brings it back with the rest; `aib runs show --json` prints it as `evaluation`."""

from __future__ import annotations

import base64
import io
import wave
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

CALIBRATION_BINS = 10
THRESHOLDS = tuple(round(t, 2) for t in np.linspace(0.0, 0.95, 20))  # 0, 0.05, … 0.95
MAX_EXAMPLES = 8

Example = Callable[[int], dict[str, Any]]  # a held-out row's input as its user knows it: {"text"} / {"image_png"} …


def classification_evaluation(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    example: Example | None = None,
    max_examples: int = MAX_EXAMPLES,
    keys: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The evaluation of a classifier from its held-out probabilities `probs` (rows × classes) and true classes;
    `keys` name the held-out rows (a FAQ's questions) so that two versions can be compared answer by answer."""
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    k = len(labels)
    predicted = p.argmax(axis=1) if len(y) else np.zeros(0, np.int64)
    confidence = p.max(axis=1) if len(y) else np.zeros(0)
    matrix = np.zeros((k, k), np.int64)
    np.add.at(matrix, (y, predicted), 1)
    support = matrix.sum(axis=1)
    said = matrix.sum(axis=0)
    right = np.diag(matrix)
    precision = np.divide(right, said, out=np.zeros(k), where=said > 0)
    recall = np.divide(right, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0)
    present = support > 0
    correct = predicted == y
    wrong = np.flatnonzero(~correct)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:max_examples]
    return {
        "kind": "classification",
        "labels": list(labels),
        "examples": int(len(y)),
        "accuracy": _r(correct.mean()) if len(y) else 0.0,
        "macro_f1": _r(f1[present].mean()) if present.any() else 0.0,
        "confusion_matrix": matrix.tolist(),
        "confusion_normalised": [[_r(c / row.sum()) if row.sum() else 0.0 for c in row] for row in matrix],
        "per_class": [
            {
                "label": labels[i],
                "precision": _r(precision[i]),
                "recall": _r(recall[i]),
                "f1": _r(f1[i]),
                "support": int(support[i]),
            }
            for i in range(k)
        ],
        "calibration": calibration(confidence, correct),
        "coverage": coverage_curve(confidence, correct),
        "misclassified": [
            {
                "index": int(i),
                "true": labels[int(y[i])],
                "predicted": labels[int(predicted[i])],
                "confidence": _r(confidence[i]),
                **(example(int(i)) if example is not None else {}),
            }
            for i in wrong
        ],
        # Every held-out answer, for comparing versions (runtime/versions.py).
        "truth": [labels[int(t)] for t in y],
        "answers": [labels[int(a)] for a in predicted],
        **({"keys": list(keys)} if keys is not None else {}),
    }


def calibration(confidence: np.ndarray, correct: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Reliability diagram: per confidence bin (equal width over [0, 1]), how many answers, their mean confidence
    and how many were right; `ece`, the expected calibration error (their count-weighted gap)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows, gap = [], 0.0
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        conf = float(confidence[inside].mean()) if n else None
        acc = float(correct[inside].mean()) if n else None
        if n:
            gap += n * abs(conf - acc)
        rows.append({"low": _r(edges[b]), "high": _r(edges[b + 1]), "count": n,
                     "confidence": _r(conf) if n else None, "accuracy": _r(acc) if n else None})  # fmt: skip
    return {"bins": rows, "ece": _r(gap / len(confidence)) if len(confidence) else 0.0}


def coverage_curve(
    confidence: np.ndarray, correct: np.ndarray, thresholds: Sequence[float] = THRESHOLDS
) -> list[dict[str, Any]]:
    """For each threshold, answering only when the confidence is at least it: the share of questions answered
    (coverage), the accuracy of those answers, and the share of all questions answered wrong."""
    out = []
    n = len(confidence)
    for t in thresholds:
        answered = confidence >= t
        count = int(answered.sum())
        out.append({
            "threshold": float(t),
            "coverage": _r(count / n) if n else 0.0,
            "accuracy": _r(correct[answered].mean()) if count else None,
            "answered_wrong": _r((answered & ~correct).sum() / n) if n else 0.0,
        })  # fmt: skip
    return out


def regression_evaluation(
    y_true: np.ndarray, y_pred: np.ndarray, example: Example | None = None, max_examples: int = MAX_EXAMPLES
) -> dict[str, Any]:
    """The evaluation of a regressor: MAE, RMSE, R², the error histogram and the worst held-out examples."""
    t = np.asarray(y_true, np.float64).reshape(-1)
    p = np.asarray(y_pred, np.float64).reshape(-1)
    err = p - t
    n = len(t)
    worst = np.argsort(-np.abs(err), kind="stable")[:max_examples]
    ss = float(((t - t.mean()) ** 2).sum()) if n else 0.0
    counts, edges = np.histogram(err, bins=10) if n else (np.zeros(0), np.zeros(0))
    return {
        "kind": "regression",
        "examples": n,
        "mae": _r(np.abs(err).mean()) if n else 0.0,
        "rmse": _r(np.sqrt((err**2).mean())) if n else 0.0,
        "r2": _r(1 - float((err**2).sum()) / ss) if ss > 0 else None,
        "error_histogram": [
            {"low": _r(edges[i]), "high": _r(edges[i + 1]), "count": int(c)} for i, c in enumerate(counts)
        ],
        "worst": [
            {
                "index": int(i),
                "true": _r(t[i]),
                "predicted": _r(p[i]),
                "error": _r(err[i]),
                **(example(int(i)) if example is not None else {}),
            }
            for i in worst
        ],
        "truth": [round(float(v), 4) for v in t],
        "answers": [round(float(v), 4) for v in p],
    }


def png_base64(pixels: np.ndarray, scale: int = 1) -> str:
    """A greyscale (H × W, 0–1 or 0–255) or RGB (H × W × 3) image as base64 PNG, enlarged `scale` times."""
    from PIL import Image

    a = np.asarray(pixels, np.float64)
    if a.max(initial=0) <= 1.0:
        a = a * 255
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode()


def wav_base64(samples: np.ndarray, rate: int) -> str:
    """Mono float samples (−1…1) as a base64 16-bit PCM WAV file."""
    pcm = (np.clip(np.asarray(samples, np.float64), -1, 1) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return base64.b64encode(buf.getvalue()).decode()


def _r(value: Any) -> float:
    return round(float(value), 6)


__all__ = [
    "CALIBRATION_BINS",
    "THRESHOLDS",
    "calibration",
    "classification_evaluation",
    "coverage_curve",
    "png_base64",
    "regression_evaluation",
    "wav_base64",
]
