"""The tuner's search space comes from a block's declared params; a trial worse than the median is stopped."""

from __future__ import annotations

import pytest

from blocks.chat.intent_classifier import IntentClassifierParams
from blocks.speech.kws import KwsParams
from runtime.tuning import Pruned, TrialReporter, new_study, objective_of, search_space, suggest


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def step_started(self, node_id, cached):
        self.seen.append(("started", node_id))

    def progress(self, node_id, done, total, description):
        pass

    def metric(self, node_id, name, value, step):
        self.seen.append((node_id, name, value, step))

    def step_finished(self, node_id, status):
        self.seen.append(("finished", node_id, status))


def test_the_space_is_the_declared_params_near_the_pipelines_values_within_their_bounds():
    params = IntentClassifierParams()
    space = {d.name: d for d in search_space(params)}
    assert set(space) == {"epochs", "lr", "batch_size", "weight_decay"}  # not the seed; hidden 0 stays linear
    assert (space["epochs"].low, space["epochs"].high, space["epochs"].log) == (15, 240, True)
    assert space["lr"].low == pytest.approx(0.005) and space["lr"].high == pytest.approx(0.08)
    for name, d in space.items():
        field = IntentClassifierParams.model_fields[name]
        IntentClassifierParams(**{name: d.low}), IntentClassifierParams(**{name: d.high})  # both ends are valid
        assert field.annotation is int or d.kind == "float"
    kws = {d.name: d for d in search_space(KwsParams(channels=500))}
    assert kws["arch"].choices == ("ds-cnn", "bc-resnet") and kws["lr_schedule"].kind == "choice"
    assert kws["channels"].high == 512  # the declared bound caps the factor-of-4 window
    assert "spec_augment" not in kws and "own_clips_path" not in kws and "seed" not in kws


def test_drawn_params_are_valid_params_of_the_block():
    study = new_study("maximize")
    space = search_space(KwsParams())
    for _ in range(20):
        drawn = suggest(study.ask(), space)
        KwsParams(**drawn)  # pydantic accepts every draw


def test_a_trial_below_the_median_of_earlier_trials_is_stopped_and_events_still_pass_on():
    study = new_study("maximize")
    for good in (0.9, 0.92):
        trial = study.ask()
        for epoch in range(1, 6):
            trial.report(good, epoch)
        study.tell(trial, good)
    events = Events()
    reporter = TrialReporter(events, study.ask(), "classifier", "accuracy")
    reporter.metric("classifier", "accuracy", 0.2, 1)  # within the warm-up: never stopped
    reporter.metric("classifier", "train_accuracy", 0.1, 3)  # not the objective
    reporter.metric("encoder", "accuracy", 0.1, 3)  # not the tuned node
    with pytest.raises(Pruned, match="stopped early by the tuner: its held-out accuracy at epoch 2"):
        reporter.metric("classifier", "accuracy", 0.2, 2)
    assert events.seen[-1] == ("classifier", "accuracy", 0.2, 2)  # recorded before the run stops
    good = TrialReporter(Events(), study.ask(), "classifier", "accuracy")
    for epoch in range(1, 6):
        good.metric("classifier", "accuracy", 0.95, epoch)  # better than the median: goes on


def test_the_objective_is_accuracy_up_or_mae_down():
    assert objective_of({"accuracy": 0.9, "loss": 1}) == ("accuracy", "maximize")
    assert objective_of({"mae": 0.1}) == ("mae", "minimize")
