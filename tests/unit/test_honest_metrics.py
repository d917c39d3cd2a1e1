"""A FAQ model's accuracy is never measured on questions it trained on: too little to hold out is cross-validated,
a rough figure says so in plain words, and the served model still learns from every question."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from blocks.chat.evaluation import question_key
from blocks.chat.faq_csv import FaqCsv, FaqCsvParams
from blocks.chat.intent_classifier import IntentClassifier, IntentClassifierParams, build_head
from blocks.chat.minilm_encoder import EMBED_DIM, TextFeatures
from runtime.config import Settings
from runtime.context import StepContext
from runtime.training import fit_quietly

ANSWERS = ["A", "B", "C", "D"]


def write_faq(tmp_path: Path, per_answer: int, answers: int = 4, extra: str = "") -> Path:
    rows = "".join(f"question {q} about {a},answer {a}\n" for a in range(answers) for q in range(per_answer))
    path = tmp_path / "faq.csv"
    path.write_text("question,answer\n" + rows + extra, encoding="utf-8")
    return path


def test_a_faq_too_small_to_hold_out_is_cross_validated_over_every_question(tmp_path):
    write_faq(tmp_path, per_answer=3)  # 20 % of 3 questions is none: no answer could be measured on a hold-out
    data = FaqCsv().load(FaqCsvParams(path="faq.csv"), tmp_path)
    assert data.eval_split == "cross-validation"
    assert len(data.train_texts) == 12 and data.eval_texts == [] and data.eval_intents == []


@pytest.mark.parametrize(
    ("answers", "per_answer", "fraction", "expected"),
    [
        (3, 10, 0.2, ("cross-validation", 30, 0)),  # 6 held out in all: too few to measure, all are trained on
        (16, 10, 0.2, ("split", 128, 32)),  # 32 held out: enough
        (16, 10, 0.0, ("cross-validation", 160, 0)),  # nothing asked to be held out
    ],
)
def test_a_hold_out_is_made_only_when_it_measures_enough(tmp_path, answers, per_answer, fraction, expected):
    write_faq(tmp_path, per_answer=per_answer, answers=answers)
    data = FaqCsv().load(FaqCsvParams(path="faq.csv", eval_fraction=fraction), tmp_path)
    assert (data.eval_split, len(data.train_texts), len(data.eval_texts)) == expected


def test_an_answer_that_would_have_no_evaluation_question_means_cross_validation(tmp_path):
    rare = "".join(f"rare question {q},rare answer\n" for q in range(3))  # 20 % of 3 is none
    write_faq(tmp_path, per_answer=10, answers=16, extra=rare)  # the others would hold out 32: enough in all
    data = FaqCsv().load(FaqCsvParams(path="faq.csv"), tmp_path)
    assert data.eval_split == "cross-validation" and len(data.train_texts) == 163 and data.eval_texts == []


def test_copies_of_a_question_are_never_on_both_sides_of_the_split(tmp_path):
    copies = "".join(f"Question  {q} ABOUT {a},answer {a}\n" for a in range(16) for q in range(10))
    write_faq(tmp_path, per_answer=10, answers=16, extra=copies)  # every question twice, spelt differently
    for seed in range(3):
        data = FaqCsv().load(FaqCsvParams(path="faq.csv", seed=seed), tmp_path)
        trained = {question_key(t) for t in data.train_texts}
        assert data.eval_split == "split" and not trained & {question_key(t) for t in data.eval_texts}


def test_held_out_questions_that_are_training_questions_are_not_used_to_measure(tmp_path):
    write_faq(tmp_path, per_answer=3)
    (tmp_path / "held.csv").write_text(
        "question,answer\nquestion 0 about 1,answer 1\nwhat about one?,answer 1\nQUESTION 2 about 3,answer 3\n"
    )
    data = FaqCsv().load(FaqCsvParams(path="faq.csv", heldout_path="held.csv"), tmp_path)
    assert data.eval_split == "heldout" and data.eval_texts == ["what about one?"] and data.heldout_repeats == 2


def latin_square_features() -> tuple[TextFeatures, torch.Tensor, torch.Tensor]:
    """Three topics, each asked once per answer: a question's topic-mates all have other answers, so a model that
    never saw the question cannot give its answer (out-of-fold accuracy 0), while one that saw every question can
    tell them apart by what is their own (a small private direction each): training accuracy 1."""
    eye = np.eye(EMBED_DIM, dtype=np.float32)
    rows, intents, texts = [], [], []
    for topic in range(3):
        for a, answer in enumerate(ANSWERS):
            own = 10 + 4 * topic + a
            rows.append(eye[topic] + 0.5 * eye[own])
            intents.append(answer)
            texts.append(f"topic {topic} asked for {answer}")
    x = np.stack(rows)
    feats = TextFeatures(
        train_x=x,
        train_intents=intents,
        eval_x=x[:0],
        eval_intents=[],
        eval_texts=[],
        answers={a: f"answer {a}" for a in ANSWERS},
        eval_split="cross-validation",
        encoder={"name": "test", "max_length": 16, "normalize": True},
        train_texts=tuple(texts),
    )
    return feats, torch.from_numpy(x), torch.tensor([ANSWERS.index(i) for i in intents])


def step_context(tmp_path: Path, **kw) -> StepContext:
    settings = Settings(tmp_path, f"sqlite:///{tmp_path}/x.db")
    return StepContext(run_id="r", node_id="classifier", cache_key="c" * 64, device="cpu", base_dir=tmp_path,
                       settings=settings, plan={}, **kw)  # fmt: skip


PARAMS = IntentClassifierParams(epochs=30, lr=0.05, seed=3)


def test_cross_validated_accuracy_is_out_of_fold_and_the_served_head_learns_every_question(tmp_path):
    feats, x, y = latin_square_features()
    out = IntentClassifier().run(step_context(tmp_path), {"features": feats}, PARAMS)
    m, model = out["metrics"], out["model"]
    assert m["eval_split"] == "cross-validation" and m["cv_folds"] == 3 and m["eval_examples"] == 12
    assert m["train_accuracy"] == 1.0 and m["accuracy"] == 0.0  # not the training figure: what a new question gets
    assert m["metric_note"] == (
        "Measured by 3-fold cross-validation on 12 questions: a rough figure. For a dependable one, add at least 18 "
        "more questions (about 5 per answer) so that there are 30 or more, with at least 5 phrasings for every answer."
    )
    with torch.no_grad():
        served = model.head()(x).argmax(dim=-1)
    assert torch.equal(served, y)  # the served head was trained on all 12 questions
    assert model.parity_inputs() == [{"text": t} for t in feats.train_texts]


def test_cross_validation_leaves_the_committed_training_exact_and_replayable(tmp_path):
    feats, x, y = latin_square_features()
    ctx = step_context(tmp_path, keep_segments=True)
    model = IntentClassifier().run(ctx, {"features": feats}, PARAMS)["model"]
    commitments = json.loads((ctx.segments_dir / "commitments.json").read_text())
    assert len(commitments) == PARAMS.epochs + 1  # the folds committed nothing

    torch.manual_seed(PARAMS.seed)  # the served head is exactly the one trained alone on every question
    alone = build_head(len(ANSWERS), PARAMS.hidden)
    opt = torch.optim.Adam(alone.parameters(), lr=PARAMS.lr, weight_decay=PARAMS.weight_decay)
    fit_quietly(alone, opt, x, y, epochs=PARAMS.epochs, batch_size=PARAMS.batch_size, seed=PARAMS.seed, device="cpu")
    assert all(np.array_equal(v.numpy(), model.head_state[k]) for k, v in alone.state_dict().items())

    verify = step_context(tmp_path, verify_epochs=[1, 15, PARAMS.epochs])
    IntentClassifier().run(verify, {"features": feats}, PARAMS)
    assert verify.verification["ok"] is True and verify.verification["max_abs_diff"] == 0.0


def test_the_cli_names_cross_validation_and_prints_the_note(capsys):
    from builder.cli.base import _print_run

    note = "Measured by 3-fold cross-validation on 12 questions: a rough figure."
    metrics = {"accuracy": 0.25, "eval_examples": 12, "eval_split": "cross-validation", "cv_folds": 3}
    summary = {"status": "succeeded", "metrics": {**metrics, "metric_note": note}, "service_id": None,
               "cost": {"total": "0.006 AIC", "quote_wei": 6 * 10**15}}  # fmt: skip
    _print_run(summary)
    printed = " ".join(capsys.readouterr().out.split())
    assert "accuracy by 3-fold cross-validation: 0.250 (12 examples)" in printed and note in printed
    assert "set" not in printed.split("cost")[0]
