"""Speech blocks on tiny data: WAV decoding, log-mel features against numpy's FFT, synthesised clips."""

from __future__ import annotations

import copy
import io
import wave

import numpy as np
import pytest
import soundfile
import torch

from blocks.speech.audio import (
    SAMPLE_RATE,
    LogMel,
    decode_audio,
    decode_wav,
    encode_wav,
    fit_length,
    reference_log_mel,
)
from builder.errors import BadItem
from tests.conftest import ROOT


def wav_bytes(x: np.ndarray, rate: int, width: int = 2, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        frames = np.repeat(x[:, None], channels, axis=1).reshape(-1)
        if width == 1:
            data = (frames * 127 + 128).astype(np.uint8).tobytes()
        elif width == 3:
            v = (frames * (2**23 - 1)).astype(np.int32)
            data = np.stack([v & 255, (v >> 8) & 255, (v >> 16) & 255], 1).astype(np.uint8).tobytes()
        else:
            data = (frames * (2 ** (8 * width - 1) - 1)).astype(f"<i{width}").tobytes()
        w.writeframes(data)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("rate", "width", "channels"),
    [(16000, 2, 1), (22050, 2, 1), (44100, 2, 2), (8000, 1, 1), (48000, 3, 2), (16000, 4, 1)],
)
def test_any_pcm_wav_becomes_16k_mono(rate, width, channels):
    t = np.arange(int(rate * 0.5)) / rate
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    x = decode_wav(wav_bytes(tone, rate, width, channels))
    assert x.dtype == np.float32 and abs(len(x) - SAMPLE_RATE // 2) <= 1
    spectrum = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / len(x) - 440) < 5  # still a 440 Hz tone
    assert 0.4 < np.abs(x).max() < 0.6


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the audio is empty"),
        (b"RIFF....WAVEnot really", "not a PCM WAV file"),
        (b"fLaC\x00\x00\x00\x22", "not a PCM WAV file"),
    ],
)
def test_bad_audio_is_one_sentence(data, message):
    with pytest.raises(BadItem, match=message):
        decode_wav(data)
    with pytest.raises(BadItem, match="the audio is empty" if not data else "not WAV or FLAC audio"):
        decode_audio(data)


def test_flac_and_float_wav_of_any_rate_become_16k_mono():
    t = np.arange(22050) / 44100
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for fmt, subtype, rate in (("FLAC", "PCM_16", 44100), ("WAV", "FLOAT", 44100), ("FLAC", "PCM_24", 8000)):
        buf = io.BytesIO()
        soundfile.write(buf, np.stack([tone, tone], 1), rate, format=fmt, subtype=subtype)
        x = decode_audio(buf.getvalue())
        assert x.dtype == np.float32 and abs(len(x) - round(len(tone) * SAMPLE_RATE / rate)) <= 1
        assert 0.4 < np.abs(x).max() < 0.6
    buf = io.BytesIO()
    soundfile.write(buf, np.zeros(8000 * 31, np.float32), 8000, format="FLAC")
    with pytest.raises(BadItem, match="the limit is 30 s"):
        decode_audio(buf.getvalue())


def test_too_long_and_empty_wavs_are_refused():
    with pytest.raises(BadItem, match="the limit is 30 s"):
        decode_wav(wav_bytes(np.zeros(8000 * 31), 8000))
    with pytest.raises(BadItem, match="the audio is empty"):
        decode_wav(wav_bytes(np.zeros(0), 16000))


def test_encode_decode_round_trip_and_fit_length():
    x = (np.random.default_rng(0).random(1000) - 0.5).astype(np.float32)
    assert np.allclose(decode_wav(encode_wav(x)), x, atol=1e-4)
    assert len(fit_length(x, 400)) == 400 and len(fit_length(x, 1600)) == 1600
    assert np.array_equal(fit_length(x, 1600)[300:1300], x)


def test_log_mel_in_torch_matches_numpy_fft_frame_by_frame():
    x = np.random.default_rng(1).normal(0, 0.1, SAMPLE_RATE).astype(np.float32)
    ours = LogMel()(torch.from_numpy(x)[None])[0, 0].numpy()
    ref = reference_log_mel(x)
    assert ours.shape == ref.shape == (40, 101)
    assert np.abs(ours - ref).max() < 1e-3
    mfcc = LogMel(n_mfcc=13)(torch.from_numpy(x)[None])[0, 0].numpy()
    ref = reference_log_mel(x, n_mfcc=13)  # scipy's DCT-II of numpy's log-mel
    assert mfcc.shape == ref.shape == (13, 101) and np.abs(mfcc - ref).max() < 1e-3


def test_synthesised_clips_are_split_by_voice_and_cached(tmp_path):
    from blocks.speech.synth import SILENCE, UNKNOWN, SynthCommands, SynthParams

    block = SynthCommands()
    params = SynthParams(words=["yes", "no"], voices=4, test_voices=0.25, speeds=[160], pitches=[50], balance=False)
    assert block.check(params, tmp_path) == []
    heard: list[tuple[int, int]] = []
    data = block.load(params, tmp_path, lambda done, total: heard.append((done, total)))
    # (4 espeak-ng + 3 Festival voices) x (2 words + 1 other word) clips spoken: the Runs page's bar fills as they are
    assert heard[-1] == (21, 21) and len(heard) >= 6 and [d for d, _ in heard] == sorted({d for d, _ in heard})
    assert data.labels == ["no", "yes", UNKNOWN, SILENCE]
    # One voice of each engine held out: 5 training voices x 3 clips, each as spoken and in one augmented copy, and
    # silence as much as one word (10).
    assert data.train_x.shape == (5 * 3 * 2 + 10, SAMPLE_RATE) and data.test_x.shape == (2 * 3 + 2, SAMPLE_RATE)
    held = set(data.source["test_voices"])
    assert len(held) == 2 and {v.split(":")[0] for v in held} == {"espeak-ng", "festival"}
    assert held.isdisjoint(set(data.source["voices"]) - held) and data.source["test_clip_engines"] == sorted(
        {"espeak-ng", "festival"}
    )
    assert np.abs(data.train_x).max() <= 1.0 and data.train_x[data.train_y == 0].std() > 0.01
    again = block.load(params, tmp_path, lambda done, total: heard.append((-1, -1)))  # from the cache, byte for byte
    assert heard[-1] == (21, 21)  # nothing spoken again
    assert np.array_equal(again.train_x, data.train_x) and again.labels == data.labels
    assert len(list(tmp_path.glob("*.npz"))) == 1
    rows = block.preview(params, tmp_path, rows=2, seed=0)
    assert all(r["audio"].startswith("data:audio/wav;base64,") and r["label"] in ("yes", "no") for r in rows)
    assert block.check(SynthParams(words=["yes", " "]), tmp_path) == [("words", "' ' is not a word to speak")]


def test_each_voice_speaks_different_other_words_from_a_list_that_leaves_the_benchs_unseen_words_out():
    import ast

    from blocks.speech.synth import COMMANDS, UNKNOWN, UNKNOWN_WORDS, SynthCommands, SynthParams

    params = SynthParams(words=["yes", "no"], voices=4, speeds=[120, 160], pitches=[50], unknown_per_voice=3)
    jobs, _, _ = SynthCommands()._jobs(params)
    others: dict[tuple, list[str]] = {}
    for j in jobs:
        if j.label == UNKNOWN:
            others.setdefault((j.engine, j.voice, j.speed, j.pitch), []).append(j.text)
    assert len(others) == 2 * (4 + 3) and all(len(set(words)) == 3 for words in others.values())
    assert {w for words in others.values() for w in words} <= set(UNKNOWN_WORDS)
    assert len(set(UNKNOWN_WORDS)) == len(UNKNOWN_WORDS) >= 200 and not set(UNKNOWN_WORDS) & set(COMMANDS)
    # bench/speech_generalise.py scores `_unknown_` on words no recipe trains on, and fine-tunes on the user's own
    # other words: neither may be in the training list (read from its source: bench/ is not a package).
    tree = ast.parse((ROOT / "bench" / "speech_generalise.py").read_text(encoding="utf-8"))
    names = ("UNSEEN_WORDS", "OWN_OTHER_WORDS")
    lists = {n.targets[0].id: ast.literal_eval(n.value) for n in tree.body
             if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") in names}  # fmt: skip
    assert len(lists) == 2 and all(lists.values())
    assert not set(UNKNOWN_WORDS) & (set(lists["UNSEEN_WORDS"]) | set(lists["OWN_OTHER_WORDS"]))
    again, _, _ = SynthCommands()._jobs(params)
    assert again == jobs  # the same seed speaks the same words


def test_a_test_engine_is_only_tested_on_and_the_smaller_engine_gets_more_copies(tmp_path):
    from blocks.speech.synth import SynthCommands, SynthParams

    block = SynthCommands()
    held = SynthParams(words=["yes", "no"], voices=4, speeds=[160], pitches=[50], test_engine="festival", unknown=False,
                       silence=False, balance=False)  # fmt: skip
    data = block.load(held, tmp_path)
    # Every espeak-ng voice trains, every Festival voice tests: 4 x 2 training clips (as spoken and augmented), 3 x 2
    # test clips.
    assert data.train_x.shape[0] == 16 and data.test_x.shape[0] == 6
    assert data.source["test_engine"] == "festival" and data.source["test_clip_engines"] == ["festival"]
    assert all(v.startswith("festival:") for v in data.source["test_voices"])
    # With balance, Festival's 2 training voices are brought towards espeak-ng's 12 by augmented copies.
    balanced = SynthParams(words=["yes", "no"], voices=16, speeds=[160], pitches=[50], unknown=False, silence=False)
    _, copies, _ = block._jobs(balanced)
    assert copies == {"espeak-ng": 1, "festival": 3}  # 12 espeak-ng voices train against 2 Festival ones


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"engines": ["flite"]}, "flite is kept out of all training data"),
        ({"engines": ["espeak-ng"], "test_engine": "flite"}, "flite is kept out of all training data"),
        ({"engines": ["espeak-ng", "pico"]}, "there is no speech engine 'pico'"),
        ({"engines": ["espeak-ng"], "test_engine": "festival"}, "is not one of the engines"),
        ({"engines": ["festival"], "test_engine": "festival"}, "needs another engine to train on"),
        ({"snr_db": [30, 5]}, "snr_db must be two numbers from 0 to 60, low first"),
    ],
)
def test_speech_engine_params_are_refused_in_one_sentence(params, message):
    from pydantic import ValidationError

    from blocks.speech.synth import SynthParams

    with pytest.raises(ValidationError, match=message):
        SynthParams(**params)


def test_a_missing_engine_is_named_with_the_package_that_provides_it(tmp_path, monkeypatch):
    from blocks.speech import engines
    from blocks.speech.synth import SynthCommands, SynthParams

    monkeypatch.setattr(engines.shutil, "which", lambda name: None if name == "text2wave" else "/usr/bin/" + name)
    problems = SynthCommands().check(SynthParams(), tmp_path)
    assert problems == [("engines", "festival is not installed; `make run` or `make test` installs it (apt-get install "
                                    "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts)")]  # fmt: skip
    with pytest.raises(engines.DataError, match="apt-get install festival"):
        engines.festival_voices()
    with pytest.raises(engines.BadItem, match="flite has no voice 'bob'"):
        engines.speak_flite("yes", "bob")


def test_festival_and_flite_speak_and_a_voice_name_cannot_inject_scheme():
    from blocks.speech.engines import festival_voices, speak_festival, speak_flite

    assert {"kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts"} <= set(festival_voices())
    for voice in ("kal_diphone", "cmu_us_slt_arctic_hts"):  # a diphone voice and an HTS one take speed differently
        slow, fast = speak_festival("forward", voice, 1.3), speak_festival("forward", voice, 0.8)
        assert len(slow) > 1.3 * len(fast) and slow.std() > 0.01, voice  # the stretch reaches the voice
    assert speak_flite("forward", "awb").std() > 0.01
    with pytest.raises(BadItem, match="is not a Festival voice name"):
        speak_festival("yes", 'kal_diphone) (system "touch /tmp/pwned")')


def recordings(root, layout: dict[str, list[tuple[str, float, int, int]]]) -> None:
    """Write label folders of tones: (file name, seconds, rate, channels); .flac names are written as FLAC."""
    for label, files in layout.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for k, (name, seconds, rate, channels) in enumerate(files):
            t = np.arange(int(rate * seconds)) / rate
            x = (0.3 * np.sin(2 * np.pi * (300 + 200 * len(label) + 10 * k) * t)).astype(np.float32)
            frames = np.repeat(x[:, None], channels, axis=1)
            soundfile.write(root / label / name, frames, rate, format="FLAC" if name.endswith(".flac") else "WAV")


def test_a_wav_folder_of_any_rates_and_formats_becomes_clips_split_per_label(tmp_path):
    from blocks.speech.wav_folder import WavFolder, WavFolderParams

    recordings(
        tmp_path / "rec",
        {
            "yes": [
                ("a.wav", 0.8, 8000, 1),
                ("b.flac", 1.5, 44100, 2),
                ("c.wav", 0.5, 48000, 2),
                ("d.wav", 1, 16000, 1),
            ],
            "no": [("a.flac", 0.7, 22050, 1), ("b.wav", 1.2, 16000, 2), ("c.wav", 0.9, 11025, 1)],
        },
    )
    block = WavFolder()
    params = WavFolderParams(path="rec", seconds=1.0, test_fraction=0.3)
    assert block.check(params, tmp_path) == []
    data = block.load(params, tmp_path)
    assert data.labels == ["no", "yes"]
    assert data.train_x.shape[1] == SAMPLE_RATE and len(data.train_y) + len(data.test_y) == 7
    assert set(data.test_y.tolist()) == {0, 1}  # every label is represented in the test split
    rows = block.preview(params, tmp_path, rows=3, seed=1)
    assert len(rows) == 3 and all(r["audio"].startswith("data:audio/wav;base64,") for r in rows)
    assert block.fingerprint(params, tmp_path) != "missing"

    import shutil

    shutil.make_archive(str(tmp_path / "rec"), "zip", tmp_path / "rec")  # the same folder uploaded as a zip
    zipped = block.load(WavFolderParams(path="rec.zip", seconds=1.0, test_fraction=0.3), tmp_path)
    assert np.array_equal(zipped.train_x, data.train_x) and np.array_equal(zipped.test_y, data.test_y)


def test_unusable_recordings_are_named_not_dropped(tmp_path):
    from blocks.speech.wav_folder import WavFolder, WavFolderParams

    recordings(tmp_path / "rec", {"yes": [("ok.wav", 1, 16000, 1), ("tiny.wav", 0.01, 16000, 1)],
                                  "no": [("ok.wav", 1, 16000, 1), ("long.flac", 12, 16000, 1)]})  # fmt: skip
    (tmp_path / "rec" / "no" / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    problems = WavFolder().check(WavFolderParams(path="rec"), tmp_path)
    assert len(problems) == 1 and problems[0][0] == "path"
    text = problems[0][1]
    assert text.startswith("3 file(s) cannot be used as recordings:")
    for name in ("no/broken.wav", "no/long.flac", "yes/tiny.wav"):
        assert name in text
    assert "(the data is not WAV or FLAC audio)" in text  # why, for the first one
    (tmp_path / "empty").mkdir()
    assert "holds no WAV or FLAC files" in WavFolder().check(WavFolderParams(path="empty"), tmp_path)[0][1]
    recordings(tmp_path / "one", {"yes": [("a.wav", 1, 16000, 1), ("b.wav", 1, 16000, 1)]})
    assert "one label (yes)" in WavFolder().check(WavFolderParams(path="one"), tmp_path)[0][1]
    with pytest.raises(ValueError, match="min_seconds"):
        WavFolderParams(path="x", min_seconds=5, max_seconds=2)


def tiny_clips(n_train: int = 6, n_test: int = 3):
    from blocks.speech.synth import AudioClips

    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.1, (n_train + n_test, SAMPLE_RATE)).astype(np.float32)
    y = np.arange(n_train + n_test) % 2
    return AudioClips(x[:n_train], y[:n_train], x[n_train:], y[n_train:], ["a", "b"])


def test_log_mel_features_are_computed_once_and_a_changed_setting_has_its_own_shards(tmp_path):
    from blocks.speech.features import LogMelParams, compute_features, feature_spec
    from runtime.shards import ShardStore

    store, clips = ShardStore(tmp_path), tiny_clips()
    spec = feature_spec(LogMelParams().settings())
    first = compute_features(store, clips, spec)
    again = compute_features(store, clips, spec)
    assert not first.from_cache and again.from_cache
    assert first.train.shape == (6, 1, 40, 101) and np.array_equal(first.train, again.train)
    ref = reference_log_mel(clips.test_x[1])
    assert np.abs(again.test[1, 0] - ref).max() < 1e-3
    mfcc = compute_features(store, clips, feature_spec(LogMelParams(mfcc=13).settings()))
    assert not mfcc.from_cache and mfcc.train.shape == (6, 1, 13, 101)
    assert len(store.entries()) == 2 and compute_features(store, clips, spec).from_cache  # the first kept
    with pytest.raises(ValueError, match="mfcc"):
        LogMelParams(n_mels=20, mfcc=30)


def test_the_served_graph_computes_the_features_the_model_was_trained_on(tmp_path):
    """Parity: the LogMel module exported to ONNX (as inside every speech model) against the cached shards."""
    from blocks.speech.features import LogMelParams, compute_features, feature_spec, log_mel_module
    from runtime.bundle import onnx_session
    from runtime.export import write_onnx
    from runtime.shards import ShardStore

    clips = tiny_clips()
    for params in (LogMelParams(), LogMelParams(n_mels=32, window_ms=30, hop_ms=12.5, mfcc=20)):
        spec = feature_spec(params.settings())
        trained_on = compute_features(ShardStore(tmp_path / "shards"), clips, spec)
        out = tmp_path / f"m{params.mfcc}"
        out.mkdir()
        name = write_onnx(log_mel_module(spec), torch.zeros((1, SAMPLE_RATE)), "waveform", "features", out)
        served = onnx_session(out / name, 1).run(None, {"waveform": clips.test_x})[0]
        assert served.shape == trained_on.test.shape
        assert np.abs(served - trained_on.test).max() < 1e-3


def test_the_kws_model_keeps_the_feature_settings_it_was_trained_with(tmp_path):
    from blocks.speech.features import LogMelParams, compute_features, feature_spec
    from blocks.speech.kws import AudioClassifierModel, KwsNet
    from runtime.shards import ShardStore

    spec = feature_spec(LogMelParams(mfcc=13).settings())
    net = KwsNet(2, channels=8, blocks=1, features=spec)
    model = AudioClassifierModel(
        {k: v.numpy() for k, v in net.state_dict().items()}, 8, 1, ["a", "b"], SAMPLE_RATE, {}, features=spec
    )
    feats = compute_features(ShardStore(tmp_path), tiny_clips(), spec)
    module = model.torch_module().eval()
    with torch.no_grad():
        on_wave = module(torch.from_numpy(tiny_clips().test_x))
        on_feats = torch.softmax(module.net.classify(torch.from_numpy(feats.test)), -1)
    assert torch.allclose(on_wave, on_feats, atol=1e-5)


def test_asr_with_a_command_grammar_hears_espeak_commands(tmp_path):
    from blocks.speech.asr import AsrParams, AsrPocketsphinx, command_grammar, decoder, transcribe
    from blocks.speech.synth import speak

    words = ["yes", "no", "stop", "go"]
    dec = decoder(command_grammar(words))
    heard = [transcribe(dec, speak(w, "en-us", 150, 50)) for w in words]
    assert sum(h == w for h, w in zip(heard, words, strict=True)) >= 3, heard
    block = AsrPocketsphinx()
    assert block.check(AsrParams(commands=["lights on", "stop"]), tmp_path) == []
    assert "does not know zzyzxq" in block.check(AsrParams(commands=["zzyzxq"]), tmp_path)[0][1]
    assert block.check(AsrParams(commands=["rm -rf"]), tmp_path)[0][0] == "commands"
    assert block.check(AsrParams(grammar="this is not jsgf"), tmp_path)[0][0] == "grammar"


def test_tts_speaks_any_text_as_wav_and_refuses_unknown_voices(tmp_path):
    import base64

    from blocks.speech.tts import TtsEspeak, TtsParams, TtsPredictor

    block = TtsEspeak()
    assert block.check(TtsParams(voice="en-gb+f3"), tmp_path) == []
    assert "no voice 'xx-klingon'" in block.check(TtsParams(voice="xx-klingon"), tmp_path)[0][1]
    assert "no variant 'nobody'" in block.check(TtsParams(voice="en-us+nobody"), tmp_path)[0][1]
    predictor = TtsPredictor(tmp_path, {"voice": "en-us", "speed": 160, "pitch": 50})
    # A text that looks like an option is spoken, not obeyed (it goes in on stdin).
    out = predictor.predict([{"text": "--version please"}, {"text": "Hello there."}])
    for r in out:
        x = decode_wav(base64.b64decode(r["audio_base64"]))
        assert r["sample_rate"] == SAMPLE_RATE and r["seconds"] > 0.3 and np.abs(x).max() > 0.05
    assert predictor.check_item({"text": "x" * 1001}).startswith("text is 1001 characters long")
    with pytest.raises(BadItem, match="blank"):
        predictor.predict([{"text": "   "}])


def test_spec_augment_masks_in_training_are_replayed_exactly_from_a_checkpoint():
    from blocks.speech.kws import KwsNet, OnFeatures

    torch.manual_seed(0)
    net = KwsNet(4, channels=8, blocks=1)
    feats = torch.randn(6, 1, 40, 101)
    a = OnFeatures(net, spec_augment=True, seed=3).train()
    a(feats)  # one step: the next masks depend on it
    saved = {k: v.clone() for k, v in a.state_dict().items()}
    torch.manual_seed(1)  # dropout's random state (the training loop restores it from the checkpoint too)
    first = a(feats)
    torch.manual_seed(0)
    b = OnFeatures(KwsNet(4, channels=8, blocks=1), spec_augment=True, seed=0).train()
    b.load_state_dict(saved)  # a verifier replaying the segment from the checkpoint
    torch.manual_seed(1)
    assert int(saved["mask_step"]) == 1 and torch.equal(b(feats), first)
    torch.manual_seed(1)
    assert not torch.equal(a(feats), first)  # the next step masks other bands
    # Without training mode nothing is masked: the served graph sees whole features.
    assert torch.equal(a.eval()(feats), net.eval().classify(feats))


def test_held_out_metrics_count_engines_phone_line_and_unknown_words_from_the_answers():
    from blocks.speech.kws import held_out_metrics
    from blocks.speech.synth import SILENCE, UNKNOWN, AudioClips

    class Loud(torch.nn.Module):
        """Answers "yes" (0) for a loud clip, `_unknown_` (2) for a quiet one: what each metric counts is known."""

        def forward(self, w):
            loud = (w.abs().amax(dim=1) > 0.5).float()
            return torch.stack([loud, torch.zeros_like(loud), 1 - loud, torch.zeros_like(loud)], dim=1)

    labels = ["yes", "no", UNKNOWN, SILENCE]
    x = np.zeros((6, SAMPLE_RATE), np.float32)
    x[[0, 2, 3], 100] = 0.9  # loud: answered "yes"
    y = np.array([0, 0, 1, 2, 2, 3])  # yes (right), yes (quiet: rejected), no (answered yes), 2 others, silence
    engines = ["espeak-ng", "festival", "festival", "espeak-ng", "festival", ""]
    clips = AudioClips(x[:0], y[:0], x, y, labels, {"test_engine": "festival", "test_engine_of_clip": engines})
    m = held_out_metrics(Loud(), clips, "cpu")
    assert m["eval_split"] == "held-out engine (festival)"
    # espeak-ng: "yes" right, the other wrong; Festival: only the other word right.
    assert m["accuracy_by_engine"] == {"espeak-ng": 0.5, "festival": round(1 / 3, 6)}
    assert m["unknown_rejection"] == 0.5 and m["commands_rejected"] == round(1 / 3, 6)
    # Through the telephone line the one-sample click is filtered away: every clip is quiet, answered `_unknown_`.
    assert m["phone_line_accuracy"] == round(2 / 6, 6)


@pytest.mark.parametrize("utterance_norm", [False, True])
@pytest.mark.parametrize("settings", [{}, {"n_mels": 32}, {"n_mels": 24, "mfcc": 13}])
def test_bc_resnet_serves_the_same_answers_from_onnx_for_any_feature_settings(tmp_path, settings, utterance_norm):
    from blocks.speech.features import LogMelParams, feature_spec
    from blocks.speech.kws import AudioClassifierModel, KwsNet, SubSpectralNorm
    from runtime.bundle import onnx_session

    spec = feature_spec(LogMelParams(**settings).settings())
    torch.manual_seed(0)
    net = KwsNet(3, channels=8, features=spec, arch="bc-resnet", utterance_norm=utterance_norm)
    # 40 mel bands give 20, 10, 5 per stage: five sub-bands each; 32 and 13 rows do not divide, one band.
    bands = {m.bands for m in net.modules() if isinstance(m, SubSpectralNorm)}
    assert bands == ({5} if not settings else {1})
    assert 5_000 < sum(p.numel() for p in net.body.parameters()) < 12_000  # BC-ResNet-1's size: 9.2k
    net.eval()
    clips = tiny_clips()
    model = AudioClassifierModel(
        {k: v.numpy() for k, v in net.state_dict().items()}, 8, 4, ["a", "b", "c"], SAMPLE_RATE, {},
        arch="bc-resnet", features=spec, utterance_norm=utterance_norm,
    )  # fmt: skip
    manifest = model.export(tmp_path)
    served = onnx_session(tmp_path / manifest["model_file"], 1).run(None, {"waveform": clips.test_x})[0]
    assert served.shape == (len(clips.test_x), 3)
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(clips.test_x)), -1).numpy()
    assert np.abs(served - expected).max() < 1e-4


def test_bc_resnet_learns_to_tell_two_tones_apart():
    from blocks.speech.kws import KwsNet, OnFeatures
    from runtime.training import fit_quietly

    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    rng = np.random.default_rng(0)
    x = np.stack([0.3 * np.sin(2 * np.pi * (300 if i % 2 else 2000) * t) + 0.05 * rng.standard_normal(SAMPLE_RATE)
                  for i in range(16)]).astype(np.float32)  # fmt: skip
    y = torch.tensor([i % 2 for i in range(16)])
    torch.manual_seed(0)
    net = KwsNet(2, channels=8, arch="bc-resnet")
    with torch.no_grad():
        feats = net.features(torch.from_numpy(x))
    fit_quietly(OnFeatures(net), torch.optim.Adam(net.parameters(), lr=0.01), feats, y, epochs=6, batch_size=4,
                seed=0, device="cpu")  # fmt: skip
    with torch.no_grad():
        assert (net.eval()(torch.from_numpy(x)).argmax(1) == y).all()
    with pytest.raises(ValueError, match="unknown keyword-spotter architecture 'resnet'"):
        KwsNet(2, arch="resnet")


def test_utterance_norm_answers_the_same_through_any_fixed_colouring_of_the_bands():
    """A voice, a microphone or a phone line adds a level to each band for the whole clip: with `utterance_norm` the
    net's answer does not change when one is added; without it, it does."""
    from blocks.speech.kws import KwsNet

    torch.manual_seed(0)
    feats = torch.randn(4, 1, 40, 101)
    tilt = torch.linspace(-3.0, 2.0, 40).reshape(1, 1, 40, 1)  # a steady colour: low bands louder, high ones quieter
    for norm in (True, False):
        torch.manual_seed(0)
        net = KwsNet(3, channels=8, arch="bc-resnet", utterance_norm=norm).eval()
        with torch.no_grad():
            for w in net.parameters():  # weights of a trained net's size: a fresh one hardly tells inputs apart
                w.normal_(0.0, 1.0)
            plain, coloured = net.classify(feats), net.classify(feats + tilt)
        assert torch.allclose(plain, coloured, atol=1e-4) is norm


def test_a_model_saved_before_utterance_norm_existed_loads_without_it():
    from blocks.speech.kws import AudioClassifierModel, KwsNet

    net = KwsNet(3, channels=8, arch="bc-resnet")
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    # A model pickled in the step cache before the setting existed has no such attribute: it is read as off.
    old = AudioClassifierModel(state, 8, 4, ["a", "b", "c"], SAMPLE_RATE, {}, arch="bc-resnet")
    del old.__dict__["utterance_norm"]
    assert old.torch_module().net.utterance_norm is False


def test_an_unknown_bias_moves_answers_to_unknown_when_answering_and_is_served_but_never_trained_on(tmp_path):
    from blocks.speech.kws import AudioClassifierModel, KwsNet, OnFeatures, answer_bias
    from blocks.speech.synth import UNKNOWN
    from runtime.bundle import onnx_session

    labels = ["no", "yes", UNKNOWN]
    assert answer_bias(labels, 1.5) == [0.0, 0.0, 1.5]
    clips = tiny_clips()
    torch.manual_seed(0)
    plain = KwsNet(3, channels=8, arch="bc-resnet")
    biased = KwsNet(3, channels=8, arch="bc-resnet", answer_bias=answer_bias(labels, 3.0))
    biased.load_state_dict(plain.state_dict())  # the bias is no weight: the same state loads into either
    x = torch.from_numpy(clips.test_x)
    with torch.no_grad():
        before, after = plain.eval()(x), biased.eval()(x)
        assert torch.allclose(after - before, torch.tensor([0.0, 0.0, 3.0]).expand_as(after), atol=1e-5)
        # While training the loss sees the net's own logits: a bias in them would be learnt away. (Copies: a
        # training pass moves the batch-norm statistics.)
        feats = plain.features(x)
        torch.manual_seed(1)
        trained_plain = OnFeatures(copy.deepcopy(plain).train())(feats)
        torch.manual_seed(1)
        trained_biased = OnFeatures(copy.deepcopy(biased).train())(feats)
        assert torch.allclose(trained_plain, trained_biased)
    model = AudioClassifierModel(
        {k: v.numpy() for k, v in biased.state_dict().items()}, 8, 4, labels, SAMPLE_RATE, {}, arch="bc-resnet",
        unknown_bias=3.0,
    )  # fmt: skip
    served = onnx_session(tmp_path / model.export(tmp_path)["model_file"], 1).run(None, {"waveform": clips.test_x})[0]
    assert np.abs(served - torch.softmax(after, -1).numpy()).max() < 1e-4
    # A model pickled before the setting existed answers without a bias.
    del model.__dict__["unknown_bias"]
    assert model.torch_module().net.answer_bias.tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="one number per class"):
        KwsNet(3, channels=8, answer_bias=[0.0, 1.0])


def test_distinct_copies_make_each_copy_of_an_unknown_clip_another_word_and_keep_every_class_size(tmp_path):
    from blocks.speech.synth import UNKNOWN, UNKNOWN_WORDS, SynthCommands, SynthParams

    block = SynthCommands()
    base = {"words": ["yes", "no"], "voices": 4, "speeds": [160], "pitches": [50], "copies": 2, "balance": False}
    same, copies, _ = block._jobs(SynthParams(**base))
    varied, varied_copies, _ = block._jobs(SynthParams(**base, unknown_distinct_copies=True))
    assert varied_copies == copies == {"espeak-ng": 2, "festival": 2}
    assert [j for j in varied if j.label != UNKNOWN or j.test] == [j for j in same if j.label != UNKNOWN or j.test]
    # Each training voice said one other word for all 3 of its copies (as spoken + 2 augmented); now 3 words.
    for jobs, per_voice in ((same, 1), (varied, 3)):
        said: dict[tuple, list] = {}
        for j in jobs:
            if j.label == UNKNOWN and not j.test:
                said.setdefault((j.engine, j.voice), []).append(j)
        assert len(said) == 3 + 2  # 3 espeak-ng and 2 Festival voices train
        assert all(len({j.text for j in js}) == per_voice for js in said.values())
        assert all(sorted(j.copy for j in js) == ([None] if per_voice == 1 else [0, 1, 2]) for js in said.values())
    assert block._jobs(SynthParams(**base, unknown_distinct_copies=True))[0] == varied  # the same seed, same words
    # More copies than other words (Festival's few voices balanced against 150 espeak-ng ones): each word comes
    # round again instead of the draw never ending.
    many = SynthParams(words=["yes", "no"], voices=200, speeds=[160], pitches=[50], copies=20,
                       unknown_distinct_copies=True)  # fmt: skip
    jobs, many_copies, _ = block._jobs(many)
    assert many_copies["festival"] + 1 > len(UNKNOWN_WORDS)
    one_voice = [j.text for j in jobs if j.label == UNKNOWN and not j.test and j.engine == "festival"]
    one_voice = one_voice[: many_copies["festival"] + 1]
    assert len(set(one_voice)) == len(UNKNOWN_WORDS) and len(one_voice) == many_copies["festival"] + 1
    small = {**base, "copies": 1}
    plain = block.load(SynthParams(**small), tmp_path)
    mixed = block.load(SynthParams(**small, unknown_distinct_copies=True), tmp_path)
    assert np.array_equal(np.bincount(plain.train_y), np.bincount(mixed.train_y))  # every class keeps its size
    assert np.array_equal(plain.test_y, mixed.test_y)
