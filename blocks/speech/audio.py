"""Audio in and out: WAV bytes ↔ 16 kHz mono float32, and the pure-torch log-mel features every speech model
computes inside its own graph (so a served model hears exactly what it was trained on)."""

from __future__ import annotations

import io
import wave

import numpy as np
import torch
from torch import nn

from builder.errors import BadItem

SAMPLE_RATE = 16_000
MAX_SECONDS = 30.0
# Sample rates audio may claim: telephone (8 kHz) to studio (192 kHz). A header is the sender's word, and the cost
# of resampling grows with the claimed rate, so anything else is refused before any work.
MIN_RATE, MAX_RATE = 8_000, 192_000


def check_rate(rate: int) -> None:
    """BadItem (one sentence) for a sample rate outside 8–192 kHz."""
    if not MIN_RATE <= rate <= MAX_RATE:
        raise BadItem(f"the audio claims a sample rate of {rate:,} Hz; {MIN_RATE:,} to {MAX_RATE:,} Hz are accepted")


def resample(x: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling with libsoxr (linear in the clip's length whatever the two rates)."""
    import soxr

    if rate == target or len(x) == 0:
        return x.astype(np.float32)
    return soxr.resample(x.astype(np.float32), rate, target).astype(np.float32)


def decode_wav(data: bytes, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """WAV bytes (PCM 8/16/24/32-bit, any rate, mono or stereo) → 16 kHz mono float32 in [-1, 1].

    BadItem (one sentence) when it is empty, not a PCM WAV file, or longer than `max_seconds`.
    """
    if not data:
        raise BadItem("the audio is empty")
    try:
        with wave.open(io.BytesIO(data)) as w:
            rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError, ValueError, RuntimeError):  # RuntimeError: a chunk header the reader cannot follow
        raise BadItem("the data is not a PCM WAV file") from None
    if rate <= 0 or channels <= 0 or width not in (1, 2, 3, 4):
        raise BadItem("the data is not a PCM WAV file")
    check_rate(rate)
    frames = len(raw) // (width * channels)
    if frames == 0:
        raise BadItem("the audio is empty")
    if frames / rate > max_seconds:
        raise BadItem(f"the audio is {frames / rate:.1f} s long; the limit is {max_seconds:.0f} s")
    raw = raw[: frames * width * channels]
    if width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v) / float(1 << 23)).astype(np.float32)
    else:
        dtype = np.int16 if width == 2 else np.int32
        x = np.frombuffer(raw, dtype).astype(np.float32) / float(np.iinfo(dtype).max + 1)
    x = x.reshape(-1, channels).mean(axis=1)
    return resample(x, rate)


def decode_audio(data: bytes, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """WAV (PCM or float) or FLAC bytes, any rate, mono or stereo → 16 kHz mono float32 in [-1, 1].

    BadItem (one sentence) when it is empty, not WAV or FLAC audio, or longer than `max_seconds`.
    """
    if not data:
        raise BadItem("the audio is empty")
    if data[:4] == b"RIFF":
        try:
            return decode_wav(data, max_seconds)
        except BadItem as exc:
            if "not a PCM WAV" not in str(exc):
                raise
    import soundfile  # libsndfile, bundled by the wheel: FLAC, float and extensible WAV

    try:
        with soundfile.SoundFile(io.BytesIO(data)) as f:
            rate, frames = f.samplerate, f.frames
            if rate > 0:
                check_rate(rate)  # before reading a sample
            too_long = rate > 0 and frames / rate > max_seconds
            x = None if rate <= 0 or too_long else f.read(dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
        raise BadItem("the data is not WAV or FLAC audio") from None
    if too_long:
        raise BadItem(f"the audio is {frames / rate:.1f} s long; the limit is {max_seconds:.0f} s")
    if x is None:
        raise BadItem("the data is not WAV or FLAC audio")
    if len(x) == 0:
        raise BadItem("the audio is empty")
    return resample(x.mean(axis=1), rate)


def encode_wav(x: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    """Mono float32 in [-1, 1] → 16-bit PCM WAV bytes."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(x, -1.0, 1.0) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def fit_length(x: np.ndarray, samples: int) -> np.ndarray:
    """Centre-crop or zero-pad a clip to exactly `samples`."""
    if len(x) >= samples:
        start = (len(x) - samples) // 2
        return x[start : start + samples]
    pad = samples - len(x)
    return np.pad(x, (pad // 2, pad - pad // 2))


def mel_filterbank(n_mels: int, n_fft: int, rate: int = SAMPLE_RATE, fmin: float = 20.0, fmax: float | None = None):
    """Triangular HTK-mel filters, (n_mels, n_fft // 2 + 1)."""
    fmax = fmax or rate / 2

    def mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def hz(m):
        return 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    bins = np.linspace(0, rate / 2, n_fft // 2 + 1)
    fb = np.zeros((n_mels, len(bins)), dtype=np.float32)
    for i in range(n_mels):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        fb[i] = np.clip(np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)), 0.0, None)
    return fb


def dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Orthonormal DCT-II (n_out, n_in): MFCCs are its product with the log-mel energies."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    m = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    m[0] /= np.sqrt(2.0)
    return m


DEFAULT_FEATURES = {"n_mels": 40, "n_fft": 512, "win": 400, "hop": 160, "n_mfcc": 0}


class LogMel(nn.Module):
    """Waveform (batch, samples) → log-mel (batch, 1, n_mels, frames), or its first `n_mfcc` MFCCs, as a strided
    convolution with a Hann-windowed DFT basis (exports to ONNX as plain Conv/MatMul, no STFT operator needed)."""

    def __init__(self, n_mels: int = 40, n_fft: int = 512, win: int = 400, hop: int = 160, n_mfcc: int = 0) -> None:
        super().__init__()
        self.n_fft, self.hop, self.n_mfcc = n_fft, hop, n_mfcc
        window = np.zeros(n_fft, dtype=np.float64)
        start = (n_fft - win) // 2
        window[start : start + win] = np.hanning(win + 1)[:-1]
        k = np.arange(n_fft // 2 + 1)[:, None]
        n = np.arange(n_fft)[None, :]
        basis = np.concatenate([np.cos(2 * np.pi * k * n / n_fft), -np.sin(2 * np.pi * k * n / n_fft)]) * window
        self.register_buffer("basis", torch.tensor(basis, dtype=torch.float32).unsqueeze(1))
        self.register_buffer("mel", torch.tensor(mel_filterbank(n_mels, n_fft)))
        if n_mfcc:
            self.register_buffer("dct", torch.tensor(dct_matrix(n_mfcc, n_mels), dtype=torch.float32))

    def forward(self, wave_: torch.Tensor) -> torch.Tensor:
        pad = self.n_fft // 2
        x = nn.functional.pad(wave_.unsqueeze(1), (pad, pad))  # centred frames, zero-padded ends
        spec = nn.functional.conv1d(x, self.basis, stride=self.hop)  # (batch, 2 * bins, frames)
        bins = spec.shape[1] // 2
        power = spec[:, :bins] ** 2 + spec[:, bins:] ** 2
        feats = torch.log(torch.matmul(self.mel, power) + 1e-6)
        if self.n_mfcc:
            feats = torch.matmul(self.dct, feats)
        return feats.unsqueeze(1)


def reference_log_mel(
    x: np.ndarray, n_mels: int = 40, n_fft: int = 512, win: int = 400, hop: int = 160, n_mfcc: int = 0
) -> np.ndarray:
    """The same features with numpy's FFT frame by frame (and scipy's DCT for MFCCs): what LogMel is checked
    against."""
    window = np.zeros(n_fft)
    start = (n_fft - win) // 2
    window[start : start + win] = np.hanning(win + 1)[:-1]
    padded = np.pad(x.astype(np.float64), (n_fft // 2, n_fft // 2))
    frames = 1 + (len(padded) - n_fft) // hop
    spec = np.stack([np.abs(np.fft.rfft(padded[i * hop : i * hop + n_fft] * window)) ** 2 for i in range(frames)], 1)
    feats = np.log(mel_filterbank(n_mels, n_fft).astype(np.float64) @ spec + 1e-6)
    if n_mfcc:
        from scipy.fft import dct

        feats = dct(feats, type=2, norm="ortho", axis=0)[:n_mfcc]
    return feats


__all__ = [
    "DEFAULT_FEATURES",
    "SAMPLE_RATE",
    "LogMel",
    "decode_audio",
    "decode_wav",
    "dct_matrix",
    "encode_wav",
    "fit_length",
    "reference_log_mel",
    "resample",
]
