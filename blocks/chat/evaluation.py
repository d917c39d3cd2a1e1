"""How a FAQ model's accuracy is measured honestly: the rule that picks a hold-out or cross-validation, the
stratified folds, and the plain-words note that says when the figure is rough.

The rule (one place, used by chat.faq-csv and chat.intent-classifier):

- a held-out file is used when given (less any question that is also a training question);
- else a share of each answer's questions is held out, when that leaves every answer at least one evaluation
  question and DEPENDABLE_EVAL_EXAMPLES or more in all;
- else (too little to hold out) accuracy is measured by stratified k-fold cross-validation over all questions,
  k = min(MAX_FOLDS, fewest distinct questions of an answer), at least 2, and the served model learns from all.

A figure is called dependable when it rests on DEPENDABLE_EVAL_EXAMPLES or more questions the scoring model never
trained on and, under cross-validation, every answer has DEPENDABLE_PER_ANSWER or more phrasings; otherwise the
metrics carry a `metric_note` saying how many more questions would make it so.
"""

from __future__ import annotations

import math
import random

CROSS_VALIDATION = "cross-validation"
DEPENDABLE_EVAL_EXAMPLES = 30
DEPENDABLE_PER_ANSWER = 5
MAX_FOLDS = 5


def question_key(text: str) -> str:
    """What makes two questions the same for evaluation: case and spacing aside (the encoder is uncased)."""
    return " ".join(text.lower().split())


def fold_count(intents: list[str], keys: list[str]) -> int:
    """k of the cross-validation: MAX_FOLDS, or fewer when an answer has fewer distinct questions; at least 2. An
    answer with a single question does not lower k (it cannot be cross-validated: its one question is scored by
    models that never saw the answer, and counts as wrong)."""
    sizes = [len({k for k, i in zip(keys, intents, strict=True) if i == intent}) for intent in set(intents)]
    return max(2, min([MAX_FOLDS, *(n for n in sizes if n > 1)]))


def stratified_folds(intents: list[str], keys: list[str], k: int, seed: int) -> list[int]:
    """The fold (0..k-1) of each row: each answer's distinct questions shuffled (by `seed`) and dealt round the
    folds in turn; copies of one question share a fold, so a question is never scored by a model that saw it."""
    rng = random.Random(seed)
    fold_of: dict[str, int] = {}
    turn = 0
    for intent in sorted(set(intents)):
        mine = [key for key, i in zip(keys, intents, strict=True) if i == intent and key not in fold_of]
        mine = list(dict.fromkeys(mine))
        rng.shuffle(mine)
        for key in mine:
            fold_of[key] = turn % k
            turn += 1
    return [fold_of[key] for key in keys]


def metric_note(eval_split: str, eval_examples: int, per_answer: list[int], folds: int = 0) -> str | None:
    """A plain-words warning when the accuracy is rough, with how many more questions would make it dependable;
    None when it is dependable. `per_answer`: the questions each answer trains on."""
    if eval_split == CROSS_VALIDATION:
        short_total = max(0, DEPENDABLE_EVAL_EXAMPLES - eval_examples)
        short_answers = sum(max(0, DEPENDABLE_PER_ANSWER - n) for n in per_answer)
        more = max(short_total, short_answers)
        if more == 0:
            return None
        goals = []
        if short_total:
            goals.append(f"so that there are {DEPENDABLE_EVAL_EXAMPLES} or more")
        if short_answers:
            goals.append(f"with at least {DEPENDABLE_PER_ANSWER} phrasings for every answer")
        return (
            f"Measured by {folds}-fold cross-validation on {eval_examples} questions: a rough figure. "
            f"For a dependable one, add at least {more} more questions "
            f"(about {math.ceil(more / len(per_answer))} per answer) {', '.join(goals)}."
        )
    if eval_split != "heldout" or eval_examples >= DEPENDABLE_EVAL_EXAMPLES:
        return None  # a split of the file is only made when it holds out enough (see the rule above)
    return (
        f"Measured on only {eval_examples} held-out questions: a rough figure. For a dependable one, add at least "
        f"{DEPENDABLE_EVAL_EXAMPLES - eval_examples} more questions to the held-out file."
    )


__all__ = [
    "CROSS_VALIDATION",
    "DEPENDABLE_EVAL_EXAMPLES",
    "DEPENDABLE_PER_ANSWER",
    "MAX_FOLDS",
    "fold_count",
    "metric_note",
    "question_key",
    "stratified_folds",
]
