"""The workbench's own-voice recorder without a browser: which node it is for, each recording checked and refused in
one sentence or kept in the pipeline's folder, the counts, and "Use my recordings" making a pipeline that validates."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from blocks.speech.audio import SAMPLE_RATE, decode_audio, encode_wav
from blocks.speech.personalise import recording_problem
from builder.ui import own_voice
from builder.ui.draft import DraftError, from_yaml, validate
from tests.unit.test_speech_personalise import word_like

PIPELINE = """
schema_version: 1
name: my-commands
blocks:
  speech: {use: speech.synth-commands@1.0.0, params: {words: [lights, music, stop], seconds: 1.0}}
  features: {use: speech.log-mel@1.0.0}
  kws: {use: speech.kws-cnn@1.0.0}
  api: {use: service.api@1.0.0}
edges:
  - speech.clips -> features.clips
  - features.clips -> kws.clips
  - kws.model -> api.model
compute: compute.local@1.0.0
"""


@pytest.fixture()
def draft(tmp_path):
    return from_yaml(PIPELINE, tmp_path)


def test_the_recorder_is_for_the_keyword_model_and_its_spoken_words(draft):
    for node in ("kws", "speech", None):
        task = own_voice.task_for(draft, node)
        assert task == own_voice.VoiceTask("kws", ["lights", "music", "stop", "_unknown_"], 3.0)
    assert own_voice.task_for(draft, "features") is None and own_voice.task_for(draft, "api") is None
    draft.blocks["speech"]["params"] = {}  # no words named: the block's ten commands
    assert own_voice.task_for(draft, "kws").words[:3] == ["yes", "no", "up"]
    # Other words are recorded (as "other words") only when the model learns them.
    assert own_voice.shown("_unknown_") == "other words" and own_voice.shown("up") == "up"
    draft.blocks["speech"]["params"] = {"words": ["lights"], "unknown": False}
    assert own_voice.task_for(draft, "kws").words == ["lights"]


def test_a_silent_recording_is_refused_in_one_sentence_and_nothing_is_kept(draft):
    task = own_voice.task_for(draft, "kws")
    with pytest.raises(DraftError) as refused:
        own_voice.keep(draft, "stop", encode_wav(np.zeros(SAMPLE_RATE, np.float32)), task.max_seconds, "quiet.wav")
    assert str(refused.value).startswith("quiet.wav was not kept: it is silent (its loudest sample is at")
    assert str(refused.value).endswith("record it again closer to the microphone.")
    with pytest.raises(DraftError, match=r"^junk.wav was not kept: the data is not WAV or FLAC audio\.$"):
        own_voice.keep(draft, "stop", b"RIFF not really", task.max_seconds, "junk.wav")
    assert own_voice.recordings(draft, task.words) == {"lights": [], "music": [], "stop": [], "_unknown_": []}


def test_a_browser_recording_is_cut_to_its_word_and_kept_as_a_numbered_wav(draft):
    task = own_voice.task_for(draft, "kws")
    # 5 s from Record to Stop, the word 2 s in: longer than the 3 s allowed, but not once cut to the word.
    long_take = word_like(seconds=0.5, total=5.0, at=2.0)
    assert "5.0 s long" in recording_problem(long_take, task.max_seconds)
    name = own_voice.keep(draft, "stop", encode_wav(long_take), task.max_seconds, "This recording of “stop”")
    assert name == "001.wav"
    kept = decode_audio((draft.base_dir / "own-voice" / "stop" / "001.wav").read_bytes())
    assert 0.5 <= len(kept) / SAMPLE_RATE <= 1.2  # the word and a quarter second either side
    assert own_voice.keep(draft, "stop", encode_wav(word_like()), task.max_seconds, "b.wav") == "002.wav"


def test_counts_say_how_many_more_and_use_points_the_model_at_them(draft):
    task = own_voice.task_for(draft, "kws")
    assert own_voice.count_words(0).startswith("No recordings yet: record 3")
    assert own_voice.not_ready(draft, task) == "Record at least one word 3 times first."
    own_voice.keep(draft, "lights", encode_wav(word_like()), task.max_seconds, "a.wav")
    assert own_voice.count_words(len(own_voice.recordings(draft, task.words)["lights"])) == (
        "1 recording: record 2 more."
    )
    assert own_voice.not_ready(draft, task) == "“lights” has 1 recording: record 2 more, or remove it."
    with pytest.raises(DraftError, match="record 2 more"):
        own_voice.use(draft, task)
    for seconds in (0.45, 0.5):
        own_voice.keep(draft, "lights", encode_wav(word_like(seconds)), task.max_seconds, "b.wav")
    counts = own_voice.recordings(draft, task.words)
    assert counts == {"lights": ["001.wav", "002.wav", "003.wav"], "music": [], "stop": [], "_unknown_": []}
    assert own_voice.count_words(3) == "3 recordings: enough." and own_voice.not_ready(draft, task) is None

    note = own_voice.use(draft, task)
    assert note == "The next run of kws also learns your voice, from 3 recordings of 1 word."
    saved = yaml.safe_load((draft.base_dir / "pipeline.yaml").read_text())
    assert saved["blocks"]["kws"]["params"] == {"own_clips_path": "own-voice"} and own_voice.in_use(draft, task)
    assert validate(draft)[0] == []  # inside the pipeline's folder, and the block's own check accepts them
    own_voice.remove(draft, "lights", "002.wav")
    assert own_voice.not_ready(draft, task) == "“lights” has 2 recordings: record 1 more, or remove it."
    assert any("record at least 1 more" in p.message for p in validate(draft)[0])  # the run would refuse them too
    own_voice.stop_using(draft, task)
    assert yaml.safe_load((draft.base_dir / "pipeline.yaml").read_text())["blocks"]["kws"] == {
        "use": "speech.kws-cnn@1.0.0"
    }


def test_other_words_of_the_users_voice_are_kept_and_used_as_unknown(draft):
    task = own_voice.task_for(draft, "kws")
    for _ in range(2):
        own_voice.keep(draft, "_unknown_", encode_wav(word_like()), task.max_seconds, "x.wav")
    assert own_voice.not_ready(draft, task) == "“other words” has 2 recordings: record 1 more, or remove it."
    own_voice.keep(draft, "_unknown_", encode_wav(word_like(0.5)), task.max_seconds, "y.wav")
    for _ in range(3):
        own_voice.keep(draft, "stop", encode_wav(word_like()), task.max_seconds, "s.wav")
    assert own_voice.use(draft, task) == "The next run of kws also learns your voice, from 6 recordings of 2 words."
    assert validate(draft)[0] == []  # the block reads `_unknown_` as the model's class of other words
