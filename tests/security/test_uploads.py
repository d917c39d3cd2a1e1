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


def test_a_spreadsheet_that_unpacks_to_100_mb_is_refused_before_it_is_inflated(tmp_path):
    import zipfile

    import pandas as pd

    from blocks.chat.faq_csv import read_table
    from builder.errors import DataError

    real = tmp_path / "real.xlsx"
    pd.DataFrame({"question": ["Do you deliver?", "Can you deliver?"], "answer": ["Yes.", "Yes."]}).to_excel(
        real, index=False
    )
    bomb = tmp_path / "faq.xlsx"
    with zipfile.ZipFile(real) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":  # a valid sheet, padded with 110 MiB of blanks
                data = data.replace(b"<sheetData>", b"<sheetData>" + b" " * (110 * 1024 * 1024))
            z.writestr(info.filename, data)
    assert bomb.stat().st_size < 1_000_000
    started = time.monotonic()
    with pytest.raises(DataError, match=r"faq.xlsx unpacks to 115 MB; the limit is 100 MB"):
        read_table(bomb)
    assert time.monotonic() - started < 1.0


def _zip_with_a_damaged_member(tmp_path, good: dict[str, bytes], damaged: str):
    """A zip of `good` files plus `damaged`, whose stored bytes are altered after writing (its CRC fails on read)."""
    import zipfile

    path = tmp_path / "upload.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in good.items():
            z.writestr(name, data)
        z.writestr(damaged, b"\x89PNG" + b"\x00" * 400)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(damaged)
    body = info.header_offset + 30 + len(damaged.encode()) + 10  # inside the member's data
    raw[body] ^= 0xFF
    path.write_bytes(bytes(raw))
    return path


def test_an_image_zip_with_a_damaged_member_names_it_instead_of_crashing(tmp_path):
    import io

    from PIL import Image

    from blocks.vision.image_folder import read_images
    from builder.errors import DataError

    def png(shade: int) -> bytes:
        buf = io.BytesIO()
        Image.new("L", (8, 8), shade).save(buf, format="PNG")
        return buf.getvalue()

    good = {f"{c}/{i}.png": png(40 * i) for c in ("cats", "dogs") for i in range(3)}
    path = _zip_with_a_damaged_member(tmp_path, good, "dogs/broken.png")
    with pytest.raises(DataError, match=r"dogs/broken.png \(it cannot be unpacked from upload.zip"):
        read_images(path, 8)


def test_an_audio_zip_with_a_damaged_member_names_it_instead_of_crashing(tmp_path):
    from blocks.speech.audio import encode_wav
    from blocks.speech.wav_folder import read_clips
    from builder.errors import DataError

    tone = (0.3 * np.sin(np.arange(16_000) / 10)).astype(np.float32)
    good = {f"{w}/{i}.wav": encode_wav(tone) for w in ("yes", "no") for i in range(3)}
    path = _zip_with_a_damaged_member(tmp_path, good, "no/broken.wav")
    with pytest.raises(DataError, match=r"no/broken.wav \(it cannot be unpacked from upload.zip"):
        read_clips(path, 1.0, 0.1, 30.0)
