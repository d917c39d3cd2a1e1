"""Attacks through uploaded items a served model reads: what a stranger's bytes may cost us."""

from __future__ import annotations

import struct
import time

import numpy as np
import pytest

from blocks.speech.audio import decode_audio, decode_wav
from builder.errors import BadItem


def wav_claiming(rate: int, seconds_of_body: float = 0.25, real_rate: int = 16_000) -> bytes:
    """A 16-bit mono PCM WAV whose header claims `rate` Hz (the body holds `seconds_of_body` s at `real_rate`)."""
    body = (np.random.default_rng(0).standard_normal(int(real_rate * seconds_of_body)) * 3000).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2 % 2**32, 2, 16)
    return b"RIFF" + struct.pack("<I", 36 + len(body)) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + \
        b"data" + struct.pack("<I", len(body)) + body  # fmt: skip


@pytest.mark.parametrize("decode", [decode_wav, decode_audio])
def test_a_header_claiming_4_ghz_is_refused_in_well_under_a_second_whatever_the_body(decode):
    data = wav_claiming(4_000_000_000, seconds_of_body=250)  # 8 MB of samples, the largest item we accept
    assert len(data) > 7_900_000
    started = time.monotonic()
    with pytest.raises(BadItem, match="4,000,000,000 Hz; 8,000 to 192,000 Hz are accepted"):
        decode(data)
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize("rate", [7_999, 192_001, 1])
def test_rates_outside_telephone_to_studio_are_refused(rate):
    with pytest.raises(BadItem, match="are accepted"):
        decode_wav(wav_claiming(rate, seconds_of_body=0.01))


@pytest.mark.parametrize("rate", [8_000, 44_100, 192_000])
def test_rates_from_telephone_to_studio_are_resampled_to_16k(rate):
    x = decode_wav(wav_claiming(rate, seconds_of_body=0.5, real_rate=rate))
    assert x.dtype == np.float32 and abs(len(x) - 8_000) <= 1
