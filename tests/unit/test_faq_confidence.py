"""A FAQ bot's confidence means something: the fallback threshold meets its wrong-answer target, the temperature
is the calibrated one, the served model learns from every row of the file, and "did you mean…?" gives the true
closest questions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from blocks.chat.confidence import (
    FIXED_THRESHOLD,
    choose_threshold,
    fit_temperature,
    out_of_scope_questions,
    softmax,
    suggestions,
    threshold_for,
    wrong_rate,
)
from blocks.chat.intent_classifier import IntentClassifier, IntentClassifierParams, build_head
from blocks.chat.minilm_encoder import EMBED_DIM, TextFeatures
from runtime.training import fit_quietly
from tests.unit.test_honest_metrics import step_context


def synthetic_scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores where a wrong answer is likelier the lower the score (as from a sensible classifier)."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0.05, 1.0, n)
    wrong = rng.uniform(0, 1, n) > scores
    return scores, wrong


@pytest.mark.parametrize("target", [0.01, 0.05, 0.2])
@pytest.mark.parametrize("seed", range(5))
def test_the_threshold_meets_its_target_and_no_lower_one_does(target, seed):
    scores, wrong = synthetic_scores(2000, seed)
    t = choose_threshold(scores, wrong, target)
    answered = scores >= t
    assert answered.any() and wrong[answered].mean() <= target
    for lower in np.unique(scores[scores < t]):  # every lower cut answers more questions and breaks the target
        assert wrong[scores >= lower].mean() > target


def test_out_of_scope_questions_count_as_wrong_with_their_weight():
    scores, wrong = np.array([0.9, 0.8, 0.7, 0.6]), np.array([False, False, False, False])
    assert choose_threshold(scores, wrong, 0.05) == 0.6  # everything right: everything answered
    oos, weights = np.array([0.75]), np.array([1, 1, 1, 1, 3.0])
    t = choose_threshold(np.append(scores, oos), np.append(wrong, True), 0.05, weights)
    assert t == 0.8 and wrong_rate(np.append(scores, oos), np.append(wrong, True), t, weights) == 0.0


def test_equal_scores_are_answered_together_and_an_unreachable_target_answers_nothing():
    scores, wrong = np.array([0.9, 0.9, 0.5]), np.array([False, True, False])
    assert choose_threshold(scores, wrong, 0.3) > 0.9  # cutting between the two 0.9s is impossible
    assert choose_threshold(scores, wrong, 0.4) == 0.5  # one wrong in three answered


def test_the_fitted_temperature_is_the_one_that_generated_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 5))
    labels = np.array([rng.choice(5, p=p) for p in softmax(logits, 2.5)])
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.1)


def test_too_few_questions_keep_the_fixed_threshold():
    assert threshold_for(None, 0.05) == {"threshold": FIXED_THRESHOLD, "threshold_source": "fixed"}
    assert threshold_for({"dependable": False, "scores": [0.9]}, 0.05)["threshold"] == FIXED_THRESHOLD


def test_suggestions_are_the_true_top_k_one_per_answer():
    rng = np.random.default_rng(1)
    sims = rng.uniform(-1, 1, 40)
    intents = [f"i{i % 7}" for i in range(40)]
    questions = [f"q{i}" for i in range(40)]
    answers = {f"i{k}": f"answer {k}" for k in range(7)}
    got = suggestions(sims, questions, intents, answers, k=3)
    best = {}
    for i in range(40):  # each answer's closest question, by brute force
        if intents[i] not in best or sims[i] > sims[best[intents[i]]]:
            best[intents[i]] = i
    top = sorted(best.values(), key=lambda i: -sims[i])[:3]
    assert got == [{"question": questions[i], "answer": answers[intents[i]], "score": round(float(sims[i]), 6)}
                   for i in top]  # fmt: skip
    assert [s["score"] for s in got] == sorted((s["score"] for s in got), reverse=True)


def test_the_shipped_out_of_scope_set_is_many_questions_from_many_places():
    questions = out_of_scope_questions()
    assert len(questions) >= 150 and len(set(questions)) == len(questions)
    assert all(q and not q.startswith("#") for q in questions)


def split_features(n_answers: int = 4, per_answer: int = 10) -> TextFeatures:
    """Clustered embeddings, 8 questions per answer to train on and 2 held out by a split of the file."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (n_answers, EMBED_DIM)).astype(np.float32)
    rows = {(a, q): centres[a] + 0.3 * rng.normal(0, 1, EMBED_DIM).astype(np.float32)
            for a in range(n_answers) for q in range(per_answer)}  # fmt: skip
    train = [(a, q) for a in range(n_answers) for q in range(per_answer - 2)]
    held = [(a, q) for a in range(n_answers) for q in range(per_answer - 2, per_answer)]
    return TextFeatures(
        train_x=np.stack([rows[k] for k in train]),
        train_intents=[f"a{a}" for a, _ in train],
        eval_x=np.stack([rows[k] for k in held]),
        eval_intents=[f"a{a}" for a, _ in held],
        eval_texts=[f"question {q} of {a}" for a, q in held],
        answers={f"a{a}": f"answer {a}" for a in range(n_answers)},
        eval_split="split",
        encoder={"name": "test", "max_length": 16, "normalize": True},
        train_texts=tuple(f"question {q} of {a}" for a, q in train),
        oos_x=rng.normal(0, 1, (20, EMBED_DIM)).astype(np.float32),
    )


def test_the_served_model_is_refit_on_every_row_after_a_split_measured_it(tmp_path):
    feats = split_features()
    params = IntentClassifierParams(epochs=20, lr=0.05, seed=2)
    out = IntentClassifier().run(step_context(tmp_path), {"features": feats}, params)
    m, model = out["metrics"], out["model"]
    assert (m["eval_split"], m["eval_examples"]) == ("split", 8)  # measured on the split's 8 questions
    x = torch.from_numpy(np.concatenate([feats.train_x, feats.eval_x]))
    y = torch.tensor([int(i[1:]) for i in [*feats.train_intents, *feats.eval_intents]])
    torch.manual_seed(params.seed)  # the served head is exactly the one trained on all 40 rows
    alone = build_head(4, params.hidden)
    opt = torch.optim.Adam(alone.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    fit_quietly(alone, opt, x, y, epochs=params.epochs, batch_size=params.batch_size, seed=params.seed, device="cpu")
    assert all(np.array_equal(v.numpy(), model.head_state[k]) for k, v in alone.state_dict().items())
    assert len(model.questions) == 40 and set(feats.eval_texts) <= set(model.questions)  # suggestible too
    assert len(model.calibration["scores"]) == 40 and model.calibration["dependable"]
    assert len(model.calibration["heldout_scores"]) == 8 and len(model.calibration["oos_scores"]) == 20


def test_the_answers_texts_train_every_head_but_are_never_scored_or_suggested(tmp_path):
    feats = split_features()
    rng = np.random.default_rng(5)
    feats.answer_x = rng.normal(0, 1, (4, EMBED_DIM)).astype(np.float32)  # one row per answer, in label order
    feats.answer_intents = ("a0", "a1", "a2", "a3")
    params = IntentClassifierParams(epochs=20, lr=0.05, seed=2)
    model = IntentClassifier().run(step_context(tmp_path), {"features": feats}, params)["model"]
    x = torch.from_numpy(np.concatenate([feats.train_x, feats.eval_x, feats.answer_x]))
    y = torch.tensor([int(i[1:]) for i in [*feats.train_intents, *feats.eval_intents, *feats.answer_intents]])
    torch.manual_seed(params.seed)  # the served head is the one trained on the 40 questions and the 4 answers
    alone = build_head(4, params.hidden)
    opt = torch.optim.Adam(alone.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    fit_quietly(alone, opt, x, y, epochs=params.epochs, batch_size=params.batch_size, seed=params.seed, device="cpu")
    assert all(np.array_equal(v.numpy(), model.head_state[k]) for k, v in alone.state_dict().items())
    # Nobody asks an answer: the metric, the calibration and the suggestions hold the 40 questions alone.
    assert len(model.calibration["scores"]) == 40 and len(model.questions) == 40
    assert model.metrics["eval_examples"] == 8
    # The cross-validation's heads learnt from them too: the out-of-scope questions each fold's head scores (the
    # questions' own scores are all but 1 on clusters this clear) differ from a run without them.
    off = IntentClassifier().run(
        step_context(tmp_path / "off"), {"features": feats}, params.model_copy(update={"learn_from_answers": False})
    )["model"]
    assert off.calibration["oos_scores"] != model.calibration["oos_scores"]
    assert not np.array_equal(off.head_state["weight"], model.head_state["weight"])


def test_the_encoder_embeds_each_answer_beside_the_questions_in_label_order(tmp_path):
    from blocks.chat.faq_csv import FaqData
    from blocks.chat.minilm_encoder import MiniLMEncoder, MiniLMEncoderParams, embed_texts

    answers = {"hours": "We are open 9 to 5.", "refund": "Refunds take five days."}
    data = FaqData(["when do you open", "money back?"], ["hours", "refund"], [], [], answers, "cross-validation")
    feats = MiniLMEncoder().run(step_context(tmp_path), {"examples": data}, MiniLMEncoderParams())["features"]
    assert feats.answer_intents == ("hours", "refund")
    expected = embed_texts(list(answers.values()), feats.encoder, "cpu", 8)
    np.testing.assert_allclose(feats.answer_x, expected, atol=1e-5)
