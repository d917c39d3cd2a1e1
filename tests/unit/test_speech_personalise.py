"""The user's own voice: recordings checked one by one, refused in one sentence, and a fine-tune that helps."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from blocks.speech.audio import SAMPLE_RATE, encode_wav, fit_length
from blocks.speech.personalise import read_own_clips, recording_problem, word_window
from blocks.speech.synth import COMMANDS, SILENCE, UNKNOWN
from builder.errors import DataError

LABELS = [*COMMANDS, UNKNOWN, SILENCE]


def word_like(seconds: float = 0.5, total: float = 1.0, at: float | None = None, peak: float = 0.5) -> np.ndarray:
    """A voiced sound (150 Hz with harmonics, rising and falling) of `seconds` at `at` s (centred by default) in
    `total` s of faint noise."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1e-4, int(total * SAMPLE_RATE)).astype(np.float32)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    voice = sum(np.sin(2 * np.pi * 150 * h * t) / h for h in (1, 2, 3)) * np.hanning(len(t))
    start = int(((total - seconds) / 2 if at is None else at) * SAMPLE_RATE)
    x[start : start + len(t)] += (peak * voice / np.abs(voice).max()).astype(np.float32)
    return x


def write_words(root: Path, counts: dict[str, int]) -> Path:
    """A folder of own recordings: `counts[word]` word-like WAVs in each word's sub-folder."""
    for word, n in counts.items():
        (root / word).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / word / f"{i:03d}.wav").write_bytes(encode_wav(word_like(0.4 + 0.05 * i)))
    return root


@pytest.fixture()
def one_thread():
    """A tiny model trains fastest on one thread (hand-offs between threads would dominate it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_recording_problem_names_silent_clipped_short_and_long_recordings():
    assert recording_problem(word_like()) is None
    assert "silent" in recording_problem(np.zeros(SAMPLE_RATE, np.float32))
    assert "silent" in recording_problem(word_like(peak=10 ** (-55 / 20)))
    assert "clipped" in recording_problem(np.clip(word_like(peak=3.0), -1.0, 1.0))
    assert "only 0.08 s of sound" in recording_problem(word_like(seconds=0.08))
    assert "4.0 s long; the longest allowed is 3 s" in recording_problem(word_like(total=4.0))
    assert recording_problem(word_like(total=4.0), max_seconds=10.0) is None


def test_every_command_spoken_fast_by_flite_is_a_usable_recording():
    """Short words said quickly ("up", "on") must not be taken for a click: no false refusals."""
    from blocks.speech.engines import FLITE_VOICES, speak_flite

    for voice in FLITE_VOICES:
        for word in COMMANDS:
            assert recording_problem(speak_flite(word, voice, 0.9)) is None, (voice, word)


def test_the_clip_is_cut_around_the_word_not_the_middle_of_the_recording():
    x = word_like(seconds=0.4, total=3.0, at=2.3)
    clip = word_window(x, SAMPLE_RATE)
    assert len(clip) == SAMPLE_RATE
    assert np.abs(clip).max() > 0.4  # the word, where the centre crop holds only the noise
    assert np.abs(fit_length(x, SAMPLE_RATE)).max() < 0.01


def test_a_word_folder_that_is_not_one_of_the_models_words_is_named(tmp_path):
    root = write_words(tmp_path / "own", {"left": 3, "lefft": 3})
    with pytest.raises(DataError) as exc:
        read_own_clips(root, LABELS, 1.0)
    assert str(exc.value).startswith("'lefft' is not one of the model's words: yes, no, up, down, left, right")


def test_a_word_with_fewer_than_three_recordings_says_how_many_more(tmp_path):
    root = write_words(tmp_path / "own", {"yes": 3, "left": 2})
    with pytest.raises(DataError) as exc:
        read_own_clips(root, LABELS, 1.0)
    assert str(exc.value) == "the word 'left' has 2 own recordings; record at least 1 more (3 per word are needed)"


def test_an_unusable_recording_is_named_with_its_problem(tmp_path):
    root = write_words(tmp_path / "own", {"yes": 3, "left": 3})
    (root / "left" / "001.wav").write_bytes(encode_wav(np.zeros(SAMPLE_RATE, np.float32)))
    (root / "yes" / "002.wav").write_bytes(encode_wav(word_like(total=3.5)))
    with pytest.raises(DataError) as exc:
        read_own_clips(root, LABELS, 1.0)
    message = str(exc.value)
    assert message.startswith("own recording left/001.wav cannot be used: it is silent")
    assert message.endswith("1 more cannot be used either (yes/002.wav)")


def test_words_nobody_recorded_are_listed_and_keep_the_synthetic_training(tmp_path):
    own = read_own_clips(write_words(tmp_path / "own", {"yes": 3, "no": 4}), LABELS, 1.0)
    assert own.clips.shape == (7, SAMPLE_RATE) and own.words == ["no"] * 4 + ["yes"] * 3
    assert own.missing == [w for w in COMMANDS if w not in ("yes", "no")]


def test_the_block_checks_own_recordings_before_a_run_and_keeps_them_in_the_folder(tmp_path):
    from blocks.speech.kws import KwsCnn, KwsParams

    write_words(tmp_path / "own", {"yes": 3, "no": 1})
    block = KwsCnn()
    assert block.check(KwsParams(), tmp_path) == []
    assert block.check(KwsParams(own_clips_path="own"), tmp_path) == [
        ("own_clips_path", "the word 'no' has 1 own recording; record at least 2 more (3 per word are needed)")
    ]
    # A folder outside the pipeline's is refused by the pipeline's own check of every `…path` param.
    from builder.errors import ValidationError
    from builder.pipeline import parse_pipeline

    text = ("schema_version: 1\nname: mine\nblocks:\n  speech: {use: speech.synth-commands@1.0.0}\n"
            "  kws: {use: speech.kws-cnn@1.0.0, params: {own_clips_path: ../elsewhere}}\n"
            "edges:\n  - speech.clips -> kws.clips\ncompute: compute.local@1.0.0\nbudget: 1 AIC\n")  # fmt: skip
    with pytest.raises(ValidationError, match=r"own_clips_path \(line 5\): ../elsewhere is outside the pipeline"):
        parse_pipeline(text, tmp_path)


def test_the_block_fine_tunes_on_own_recordings_and_says_so_in_its_metrics(tmp_path, one_thread):
    from blocks.speech.kws import KwsCnn, KwsParams
    from blocks.speech.synth import AudioClips
    from runtime.config import Settings
    from runtime.context import StepContext

    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.1, (12, SAMPLE_RATE)).astype(np.float32)
    y = np.arange(12) % 3
    clips = AudioClips(x[:9], y[:9], x[9:], y[9:], ["yes", "no", UNKNOWN])
    ctx = StepContext(run_id="r", node_id="kws", cache_key="k" * 64, device="cpu", base_dir=tmp_path,
                      settings=Settings(tmp_path, f"sqlite:///{tmp_path}/x.db"), plan={})  # fmt: skip
    write_words(tmp_path / "own", {"yes": 3})
    params = KwsParams(epochs=1, channels=4, blocks=1, own_clips_path="own", own_epochs=1)
    metrics = KwsCnn().run(ctx, {"clips": clips}, params)["metrics"]
    assert metrics["personalised"] is True and metrics["own_clips"] == 3
    assert metrics["own_words_missing"] == ["no"] and metrics["personal_fine_tune_on"] == "coordinator"
    write_words(tmp_path / "typo", {"yes": 3, "yess": 3})
    with pytest.raises(DataError, match="'yess' is not one of the model's words: yes, no, _unknown_"):
        KwsCnn().run(ctx, {"clips": clips}, params.model_copy(update={"own_clips_path": "typo"}))


def test_the_cache_key_follows_the_recordings_bytes_not_their_path(tmp_path):
    from builder.pipeline import parse_pipeline
    from builder.plan import compile_plan

    def kws_key(folder: str) -> str:
        text = (
            "schema_version: 1\nname: mine\nblocks:\n"
            "  speech: {use: speech.synth-commands@1.0.0, params: {voices: 4}}\n"
            f"  kws: {{use: speech.kws-cnn@1.0.0, params: {{own_clips_path: {folder}}}}}\n"
            "edges:\n  - speech.clips -> kws.clips\ncompute: compute.local@1.0.0\nbudget: 1 AIC\n"
        )
        return compile_plan(parse_pipeline(text, tmp_path)).step("kws").cache_key

    from blocks.speech.kws import KwsCnn, KwsParams

    write_words(tmp_path / "own", {"yes": 3, "no": 3})
    before = kws_key("own")
    (tmp_path / "own" / "yes" / "001.wav").write_bytes(encode_wav(word_like(0.45, peak=0.3)))
    assert kws_key("own") != before  # one word recorded again: a new step
    shutil.copytree(tmp_path / "own", tmp_path / "moved")
    fingerprint = KwsCnn().fingerprint
    moved, own = KwsParams(own_clips_path="moved"), KwsParams(own_clips_path="own")
    assert fingerprint(moved, tmp_path) == fingerprint(own, tmp_path)
    assert fingerprint(KwsParams(), tmp_path) == ""


def test_fine_tuning_on_a_few_own_recordings_raises_accuracy_on_that_voice(one_thread):
    """A tiny spotter trained on espeak-ng's "yes" and "no" hears flite's rms as one word; three recordings of each
    word by rms (other speaking rates and pitches than the test clips) teach it that voice, and it keeps espeak's."""
    from blocks.speech.augment import pitch_shift
    from blocks.speech.engines import speak_flite
    from blocks.speech.kws import KwsNet, OnFeatures, fine_tune
    from blocks.speech.synth import speak
    from runtime.training import fit_quietly

    def clip(x: np.ndarray) -> np.ndarray:
        return fit_length((x / np.abs(x).max() * 0.6).astype(np.float32), SAMPLE_RATE)

    def accuracy(net: KwsNet, x: np.ndarray, y: np.ndarray) -> float:
        with torch.no_grad():
            return float(np.mean(net(torch.from_numpy(x)).argmax(1).numpy() == y))

    words, voices, speeds = ["yes", "no"], ["en-us", "en-gb", "en-us+m3", "en-gb+f2"], [140, 180, 220]
    base_x = np.stack([clip(speak(w, v, s, 50)) for w in words for v in voices for s in speeds])
    base_y = np.repeat([0, 1], len(voices) * len(speeds))
    takes = [(0.8, 1.0), (1.05, -1.0), (1.3, 0.5)]
    own_x = np.stack([clip(pitch_shift(speak_flite(w, "rms", s), p)) for w in words for s, p in takes])
    own_y = np.repeat([0, 1], len(takes))
    stretches = [0.85, 0.92, 1.0, 1.08, 1.2, 1.35]
    test_x = np.stack([clip(speak_flite(w, "rms", s)) for w in words for s in stretches])
    test_y = np.repeat([0, 1], len(stretches))

    torch.manual_seed(0)
    net = KwsNet(2, channels=16, blocks=2)
    with torch.no_grad():
        feats = net.features(torch.from_numpy(base_x))
    fit_quietly(OnFeatures(net), torch.optim.Adam(net.parameters(), lr=0.01), feats, torch.from_numpy(base_y),
                epochs=30, batch_size=8, seed=0, device="cpu")  # fmt: skip
    assert accuracy(net, base_x, base_y) == 1.0 and accuracy(net, test_x, test_y) <= 0.6
    fine_tune(net, own_x, own_y, feats, torch.from_numpy(base_y), epochs=20, lr=0.001, batch_size=8,
              spec_augment=False, seed=0, device="cpu")  # fmt: skip
    assert accuracy(net, test_x, test_y) >= 0.9
    assert accuracy(net, base_x, base_y) >= 0.9
