"""Speech blocks on tiny data: WAV decoding, log-mel features against numpy's FFT, synthesised clips."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest
import torch

from blocks.speech.audio import SAMPLE_RATE, LogMel, decode_wav, encode_wav, fit_length, reference_log_mel
from runtime.bundle import BadItem


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


def test_synthesised_clips_are_split_by_voice_and_cached(tmp_path):
    from blocks.speech.synth import SILENCE, UNKNOWN, SynthCommands, SynthParams

    block = SynthCommands()
    params = SynthParams(words=["yes", "no"], voices=4, test_voices=0.25, speeds=[160], pitches=[50])
    assert block.check(params, tmp_path) == []
    data = block.load(params, tmp_path)
    assert data.labels == ["no", "yes", UNKNOWN, SILENCE]
    assert data.train_x.shape == (3 * 4, SAMPLE_RATE) and data.test_x.shape == (1 * 4, SAMPLE_RATE)
    assert set(data.source["test_voices"]).isdisjoint(set(data.source["voices"][:3]))
    assert np.abs(data.train_x).max() <= 1.0 and data.train_x[data.train_y == 0].std() > 0.01
    again = block.load(params, tmp_path)  # read from the cache, byte for byte
    assert np.array_equal(again.train_x, data.train_x) and again.labels == data.labels
    assert len(list(tmp_path.glob("*.npz"))) == 1
    rows = block.preview(params, tmp_path, rows=2, seed=0)
    assert all(r["audio"].startswith("data:audio/wav;base64,") and r["label"] in ("yes", "no") for r in rows)
    assert block.check(SynthParams(words=["yes", " "]), tmp_path) == [("words", "' ' is not a word to speak")]
