"""A FAQ bot's confidence that means something: temperature scaling, a fallback threshold chosen to meet a stated
share of wrong answers, the general out-of-scope questions it is fitted on, and "did you mean…?" suggestions.

The rule (one place, used by chat.intent-classifier and service.api):

- the scores are calibrated by one temperature T (softmax(logits / T)), fitted on the cross-validation folds'
  out-of-fold logits by least negative log-likelihood;
- the threshold is the lowest confidence at which the questions answered hold at most `target` wrong answers,
  counting in-scope questions (scored out of fold) and general out-of-scope questions (any answer to one of those
  is wrong), the latter weighted to OUT_OF_SCOPE_SHARE of all questions asked;
- with fewer than DEPENDABLE_EVAL_EXAMPLES out-of-fold questions there is too little to choose from: T = 1 and the
  threshold is FIXED_THRESHOLD.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from blocks.chat.evaluation import DEPENDABLE_EVAL_EXAMPLES

FIXED_THRESHOLD = 0.5  # the threshold when the data are too few to choose one
DEFAULT_WRONG_ANSWER_TARGET = 0.05  # at most 5 % wrong answers among the questions answered
OUT_OF_SCOPE_SHARE = 1 / 3  # one question in three asked is one the FAQ has no answer for
OUT_OF_SCOPE_MAX_SIMILARITY = 0.75  # a general question this close to one of the FAQ's may well be answered by it
SUGGESTIONS = 3
OUT_OF_SCOPE_FILE = Path(__file__).parent / "data" / "out_of_scope.txt"


@functools.lru_cache(maxsize=1)
def out_of_scope_questions() -> tuple[str, ...]:
    """The general out-of-scope questions shipped with the project (blocks/chat/data/out_of_scope.txt)."""
    lines = OUT_OF_SCOPE_FILE.read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / temperature."""
    z = logits / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of `labels` (golden-section search on log T)."""

    def nll(log_t: float) -> float:
        p = softmax(logits, float(np.exp(log_t)))[np.arange(len(labels)), labels]
        return float(-np.log(np.clip(p, 1e-12, None)).mean())

    lo, hi = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(60):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(b)
    return round(float(np.exp((lo + hi) / 2)), 6)


def choose_threshold(scores: np.ndarray, wrong: np.ndarray, target: float, weights: np.ndarray | None = None) -> float:
    """The lowest confidence threshold at which the answered questions (score ≥ threshold) hold at most `target`
    (weighted) wrong answers; above the highest score (nothing answered) when no threshold meets it."""
    assert 0 < target < 1, f"target must be in (0, 1), got {target}"
    scores, wrong = np.asarray(scores, dtype=np.float64), np.asarray(wrong, dtype=bool)
    w = np.ones_like(scores) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    s, bad, w = scores[order], wrong[order], w[order]
    answered, wrong_weight = np.cumsum(w), np.cumsum(w * bad)
    # A threshold answers every question of its score at once: only the last of equal scores is a valid cut.
    last_of_score = np.append(s[1:] != s[:-1], True)
    ok = (wrong_weight <= target * answered) & last_of_score
    if not ok.any():
        return float(np.nextafter(s[0], np.inf)) if len(s) else FIXED_THRESHOLD
    return float(s[np.flatnonzero(ok)[-1]])


def wrong_rate(scores: np.ndarray, wrong: np.ndarray, threshold: float, weights: np.ndarray | None = None) -> float:
    """Share (weighted) of wrong answers among the questions answered at `threshold`; 0 when none is answered."""
    w = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=np.float64)
    answered = np.asarray(scores) >= threshold
    total = float(w[answered].sum())
    return float((w * np.asarray(wrong, dtype=bool))[answered].sum() / total) if total else 0.0


def threshold_for(calibration: dict[str, Any] | None, target: float) -> dict[str, Any]:
    """The fallback threshold that meets `target` on a model's calibration data, and what it does there:
    {"threshold", "threshold_source" ("data" or "fixed"), "out_of_scope_rejection" (cross-fitted: each half of the
    out-of-scope questions scored at the threshold chosen with the other half), "answered_right" (held-out
    questions answered with their right answer, when there were any)}."""
    if not calibration or not calibration.get("dependable"):
        return {"threshold": FIXED_THRESHOLD, "threshold_source": "fixed"}
    scores, wrong = np.asarray(calibration["scores"]), np.asarray(calibration["wrong"], dtype=bool)
    oos = np.asarray(calibration.get("oos_scores") or [], dtype=np.float64)

    def pick(oos_part: np.ndarray) -> float:
        weight = OUT_OF_SCOPE_SHARE / (1 - OUT_OF_SCOPE_SHARE) * len(scores) / len(oos_part) if len(oos_part) else 0
        all_scores = np.concatenate([scores, oos_part])
        all_wrong = np.concatenate([wrong, np.ones(len(oos_part), dtype=bool)])
        weights = np.concatenate([np.ones(len(scores)), np.full(len(oos_part), weight)])
        return choose_threshold(all_scores, all_wrong, target, weights)

    found: dict[str, Any] = {"threshold": round(pick(oos), 6), "threshold_source": "data"}
    if len(oos) >= 2:
        halves = (oos[0::2], oos[1::2])
        rejected = sum(int((half < pick(other)).sum()) for half, other in (halves, halves[::-1]))
        found["out_of_scope_rejection"] = round(rejected / len(oos), 6)
    held = calibration.get("heldout_scores")
    if held:
        right = np.asarray(calibration["heldout_right"], dtype=bool)
        found["answered_right"] = round(float((right & (np.asarray(held) >= found["threshold"])).mean()), 6)
    return found


def suggestions(
    similarities: np.ndarray, questions: list[str], intents: list[str], answers: dict[str, str], k: int = SUGGESTIONS
) -> list[dict[str, Any]]:
    """The k FAQ questions closest to the user's (cosine `similarities`, one per FAQ question), one per answer:
    each answer's closest question, the answers ranked by that similarity."""
    best: dict[str, int] = {}
    for i in np.argsort(-similarities, kind="stable"):
        best.setdefault(intents[i], int(i))
        if len(best) == k:
            break
    return [
        {"question": questions[i], "answer": answers[intent], "score": round(float(similarities[i]), 6)}
        for intent, i in best.items()
    ]


__all__ = [
    "DEFAULT_WRONG_ANSWER_TARGET",
    "DEPENDABLE_EVAL_EXAMPLES",
    "FIXED_THRESHOLD",
    "OUT_OF_SCOPE_SHARE",
    "SUGGESTIONS",
    "choose_threshold",
    "fit_temperature",
    "out_of_scope_questions",
    "softmax",
    "suggestions",
    "threshold_for",
    "wrong_rate",
]
