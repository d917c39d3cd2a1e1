"""Every evaluation figure against scikit-learn's implementation on random data."""

from __future__ import annotations

import base64
import io
import wave

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from runtime.evaluation import (
    THRESHOLDS,
    classification_evaluation,
    png_base64,
    regression_evaluation,
    wav_base64,
)


@st.composite
def classified(draw):
    """Random true classes and probability rows over k classes."""
    k = draw(st.integers(2, 6))
    n = draw(st.integers(1, 80))
    y = draw(arrays(np.int64, n, elements=st.integers(0, k - 1)))
    raw = draw(arrays(np.float64, (n, k), elements=st.floats(0.01, 1.0)))
    sharp = draw(st.sampled_from([1.0, 4.0]))  # flat and confident models
    p = raw**sharp
    return y, p / p.sum(axis=1, keepdims=True), k


@settings(max_examples=150, deadline=None)
@given(classified())
def test_classification_figures_match_scikit_learn(data):
    y, p, k = data
    labels = [f"c{i}" for i in range(k)]
    ev = classification_evaluation(y, p, labels)
    predicted = p.argmax(axis=1)
    assert ev["confusion_matrix"] == skm.confusion_matrix(y, predicted, labels=list(range(k))).tolist()
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y, predicted, labels=list(range(k)), zero_division=0
    )
    got = ev["per_class"]
    assert [c["label"] for c in got] == labels
    np.testing.assert_allclose([c["precision"] for c in got], precision, atol=1e-6)
    np.testing.assert_allclose([c["recall"] for c in got], recall, atol=1e-6)
    np.testing.assert_allclose([c["f1"] for c in got], f1, atol=1e-6)
    assert [c["support"] for c in got] == support.tolist()
    assert ev["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted), abs=1e-6)
    macro = skm.f1_score(y, predicted, labels=np.unique(y), average="macro", zero_division=0)
    assert ev["macro_f1"] == pytest.approx(macro, abs=1e-6)
    normalised = skm.confusion_matrix(y, predicted, labels=list(range(k)), normalize="true")
    np.testing.assert_allclose(ev["confusion_normalised"], np.nan_to_num(normalised), atol=1e-6)


@settings(max_examples=150, deadline=None)
@given(classified())
def test_calibration_matches_scikit_learns_reliability_curve_and_the_ece_its_definition(data):
    y, p, k = data
    ev = classification_evaluation(y, p, [str(i) for i in range(k)])
    confidence, correct = p.max(axis=1), (p.argmax(axis=1) == y)
    bins = [b for b in ev["calibration"]["bins"] if b["count"]]
    assert sum(b["count"] for b in ev["calibration"]["bins"]) == len(y)
    if correct.any() and not correct.all():  # scikit-learn needs both outcomes to name the positive one
        right, sure = calibration_curve(correct.astype(int), confidence, n_bins=10, strategy="uniform")
        np.testing.assert_allclose([b["accuracy"] for b in bins], right, atol=1e-6)
        np.testing.assert_allclose([b["confidence"] for b in bins], sure, atol=1e-6)
    ece = sum(b["count"] * abs(b["confidence"] - b["accuracy"]) for b in bins) / len(y)
    assert ev["calibration"]["ece"] == pytest.approx(ece, abs=1e-5)


@settings(max_examples=100, deadline=None)
@given(classified())
def test_coverage_is_the_share_answered_at_each_threshold_and_the_accuracy_of_those_answers(data):
    y, p, k = data
    ev = classification_evaluation(y, p, [str(i) for i in range(k)])
    confidence, predicted = p.max(axis=1), p.argmax(axis=1)
    assert [c["threshold"] for c in ev["coverage"]] == list(THRESHOLDS)
    for point in ev["coverage"]:
        answered = confidence >= point["threshold"]
        assert point["coverage"] == pytest.approx(answered.mean(), abs=1e-6)
        if answered.any():
            assert point["accuracy"] == pytest.approx(skm.accuracy_score(y[answered], predicted[answered]), abs=1e-6)
        else:
            assert point["accuracy"] is None
    assert ev["coverage"][0]["coverage"] == 1.0  # a threshold of 0 answers everything


@settings(max_examples=100, deadline=None)
@given(classified())
def test_the_mistakes_shown_are_the_most_confident_wrong_answers(data):
    y, p, k = data
    labels = [f"c{i}" for i in range(k)]
    ev = classification_evaluation(y, p, labels, example=lambda i: {"text": f"row {i}"}, max_examples=5)
    confidence, predicted = p.max(axis=1), p.argmax(axis=1)
    wrong = np.flatnonzero(predicted != y)
    shown = ev["misclassified"]
    assert len(shown) == min(5, len(wrong))
    assert all(predicted[m["index"]] != y[m["index"]] for m in shown)
    assert [m["text"] for m in shown] == [f"row {m['index']}" for m in shown]
    assert [m["true"] for m in shown] == [labels[y[m["index"]]] for m in shown]
    if len(wrong) > len(shown):  # none left out is surer than one shown
        left = np.setdiff1d(wrong, [m["index"] for m in shown])
        assert confidence[left].max() <= min(m["confidence"] for m in shown) + 1e-6


@settings(max_examples=150, deadline=None)
@given(
    arrays(np.float64, st.integers(1, 60), elements=st.floats(-1, 1)),
    st.floats(0.0, 0.5),
    st.integers(0, 2**31),
)
def test_regression_figures_match_scikit_learn(truth, noise, seed):
    predicted = truth + np.random.default_rng(seed).normal(0, noise + 1e-3, len(truth))
    ev = regression_evaluation(truth, predicted, example=lambda i: {"index_seen": i}, max_examples=4)
    assert ev["mae"] == pytest.approx(skm.mean_absolute_error(truth, predicted), abs=1e-6)
    assert ev["rmse"] == pytest.approx(skm.root_mean_squared_error(truth, predicted), abs=1e-6)
    if np.var(truth) > 1e-9:  # r² is undefined for a constant truth
        assert ev["r2"] == pytest.approx(skm.r2_score(truth, predicted), abs=1e-5)
    errors = np.abs(predicted - truth)
    worst = [w["index"] for w in ev["worst"]]
    assert len(worst) == min(4, len(truth)) and [w["index_seen"] for w in ev["worst"]] == worst
    assert sorted(errors[worst], reverse=True) == pytest.approx(np.sort(errors)[::-1][: len(worst)])
    assert sum(b["count"] for b in ev["error_histogram"]) == len(truth)


def test_no_held_out_examples_give_an_empty_evaluation_not_an_error():
    ev = classification_evaluation(np.zeros(0, np.int64), np.zeros((0, 3)), ["a", "b", "c"])
    assert ev["examples"] == 0 and ev["misclassified"] == [] and ev["calibration"]["ece"] == 0.0
    assert regression_evaluation(np.zeros(0), np.zeros(0))["worst"] == []


def test_examples_are_real_png_and_wav_files():
    image = Image.open(io.BytesIO(base64.b64decode(png_base64(np.eye(8), scale=4))))
    assert image.size == (32, 32) and image.getpixel((0, 0)) == 255 and image.getpixel((4, 0)) == 0
    samples = np.sin(np.linspace(0, 100, 16000))
    with wave.open(io.BytesIO(base64.b64decode(wav_base64(samples, 16000)))) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (16000, 1, 2, 16000)
        back = np.frombuffer(w.readframes(16000), "<i2") / 32767
    np.testing.assert_allclose(back, samples, atol=1e-4)
