"""Data augmentation for 16 kHz speech clips, so a keyword spotter trained on a few speech engines generalises to
voices, rooms and phone lines it never heard: speaker changes (speed, tempo, pitch, vocal-tract length), placement,
noise (white, pink, babble), room reverb and a G.711 telephone channel on waveforms, and SpecAugment on log-mel
features. Every random choice comes from the generator passed in, so the same seed gives the same clips."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from blocks.speech.audio import SAMPLE_RATE, fit_length, resample

# Bump when an algorithm here changes what a clip becomes: it is part of `Augment.key()`, so cached data is rebuilt.
VERSION = 1
NOISE_KINDS = ("white", "pink", "babble")

# STFT for the vocal-tract warp: 32 ms frames, 75 % overlap (a Hann² sum that is flat, so overlap-add is exact).
N_FFT, HOP = 512, 128
# WSOLA: 25 ms frames at 50 % overlap; a join may move by up to 10 ms, half the period of a 50 Hz voice.
WSOLA_WIN, WSOLA_TOL = 400, 160
# Jaitly & Hinton's warp is linear up to this frequency (scaled by the factor), then bends to keep Nyquist fixed.
VTLP_BOUNDARY_HZ = 4800.0
# A silent clip has no power to set an SNR against; its noise is set against speech at this RMS level instead.
SILENCE_REFERENCE_DBFS = -20.0
SILENCE_POWER = 1e-10  # below -100 dBFS a clip counts as silent
MU = 255.0  # G.711 μ-law


def _hann(n: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)  # periodic: overlaps sum flat


def speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster: duration / factor, pitch and formants × factor (Kaldi's speed perturbation)."""
    if factor <= 0:
        raise ValueError(f"speed factor must be positive, got {factor}")
    if factor == 1.0 or len(x) == 0:
        return np.asarray(x, np.float32).copy()
    # Read the clip as if recorded at factor × 16 kHz and resample to 16 kHz: every frequency scales with the time.
    import soxr

    return soxr.resample(np.asarray(x, np.float32), SAMPLE_RATE * factor, SAMPLE_RATE).astype(np.float32)


def tempo(x: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster at the same pitch (WSOLA): length ≈ len(x) / factor."""
    if factor <= 0:
        raise ValueError(f"tempo factor must be positive, got {factor}")
    x = np.asarray(x, np.float32)
    out_len = int(round(len(x) / factor))
    if factor == 1.0 or out_len == 0 or len(x) == 0:
        return x[:out_len].copy()
    win, hop, tol = WSOLA_WIN, WSOLA_WIN // 2, WSOLA_TOL
    frames = out_len // hop + 3
    step = hop * factor  # input advance per output frame
    # Padding: `hop` in front so the output starts at a full overlap, and room for every search and continuation.
    front = tol + hop
    back = int((frames + 2) * step) + 2 * tol + 2 * win
    xp = np.pad(x, (front, back))
    w = _hann(win)
    y = np.zeros((frames + 1) * hop + win, np.float32)
    norm = np.zeros_like(y)
    q = tol  # frame 0 sits where it should (position -hop of the clip)
    for k in range(frames):
        if k:
            # Take the frame near its ideal place that best continues the previous one, so periods line up at the
            # join (what keeps the pitch); compared on the overlapping half, every other sample, for speed.
            ideal = tol + int(round(k * step))
            cont = xp[q + hop : q + 2 * hop : 2]
            region = np.lib.stride_tricks.sliding_window_view(xp[ideal - tol : ideal + tol + hop], hop)[:, ::2]
            q = ideal - tol + int(np.argmax(region @ cont))
        y[k * hop : k * hop + win] += w * xp[q : q + win]
        norm[k * hop : k * hop + win] += w
    return (y[hop : hop + out_len] / np.maximum(norm[hop : hop + out_len], 1e-3)).astype(np.float32)


def pitch_shift(x: np.ndarray, semitones: float) -> np.ndarray:
    """Move the pitch (and formants) by `semitones`, keeping the duration: a tempo stretch, then a resample."""
    ratio = 2.0 ** (semitones / 12.0)
    return _stretch_and_speed(np.asarray(x, np.float32), 1.0 / ratio, ratio, len(x))


def _stretch_and_speed(x: np.ndarray, stretch: float, factor: float, samples: int) -> np.ndarray:
    # One WSOLA pass and one resample for any mix of tempo, pitch and speed (each pass costs time and a little
    # quality): pitch × factor, duration / (stretch × factor).
    if stretch != 1.0:
        x = tempo(x, stretch)
    if factor != 1.0:
        x = speed(x, factor)
    return fit_length(x, samples).astype(np.float32)


def _stft(x: np.ndarray) -> np.ndarray:
    xp = np.pad(x, (N_FFT, N_FFT))  # every sample of the clip lies under four full frames
    frames = np.lib.stride_tricks.sliding_window_view(xp, N_FFT)[::HOP] * _hann(N_FFT)
    return np.fft.rfft(frames, axis=1)  # (frames, bins)


def _istft(spec: np.ndarray, samples: int) -> np.ndarray:
    frames = np.fft.irfft(spec, n=N_FFT, axis=1).astype(np.float32) * _hann(N_FFT)
    n, per = len(frames), N_FFT // HOP
    blocks = np.zeros((n + per - 1, HOP), np.float32)
    for j in range(per):  # overlap-add, a quarter frame at a time
        blocks[j : j + n] += frames[:, j * HOP : (j + 1) * HOP]
    return blocks.reshape(-1)[N_FFT : N_FFT + samples] / 1.5  # 1.5: the periodic Hann² summed at 75 % overlap


def vtlp(x: np.ndarray, alpha: float) -> np.ndarray:
    """Vocal-tract-length perturbation (Jaitly & Hinton 2013): frequencies × `alpha` up to a boundary, same length."""
    if alpha <= 0:
        raise ValueError(f"vtlp alpha must be positive, got {alpha}")
    x = np.asarray(x, np.float32)
    if alpha == 1.0 or len(x) == 0:
        return x.copy()
    nyquist = SAMPLE_RATE / 2
    knee = VTLP_BOUNDARY_HZ * min(alpha, 1.0) / alpha  # where the warp bends, so that Nyquist stays Nyquist
    slope = (nyquist - knee * alpha) / (nyquist - knee)

    def warp(f: np.ndarray) -> np.ndarray:
        return np.where(f <= knee, f * alpha, nyquist - slope * (nyquist - f))  # also beyond 0 and Nyquist

    spec = _stft(x.astype(np.float64))  # float64: the phases below are summed over hundreds of frames
    bin_hz = SAMPLE_RATE / N_FFT
    freqs = np.arange(spec.shape[1]) * bin_hz
    # Each output bin's magnitude is read from the source frequency that the warp sends there.
    src = np.interp(freqs, warp(np.array([0.0, knee, nyquist])), [0.0, knee, nyquist]) / bin_hz
    lo = np.minimum(src.astype(int), spec.shape[1] - 2)
    frac = src - lo
    mag = np.abs(spec)
    mag = mag[:, lo] * (1 - frac) + mag[:, lo + 1] * frac
    # The phase is rebuilt from each partial's warped instantaneous frequency: a bin's own phase would keep
    # advancing at the old frequency, and a moved partial would beat at the hop rate instead of moving.
    advance = 2 * np.pi * HOP / SAMPLE_RATE
    phase = np.angle(spec)
    dev = np.diff(phase, axis=0) - freqs * advance
    inst = freqs + (np.mod(dev + np.pi, 2 * np.pi) - np.pi) / advance  # Hz, between frames
    near = np.minimum(np.round(src).astype(int), spec.shape[1] - 1)
    out_phase = np.concatenate([phase[:1, near], phase[:1, near] + np.cumsum(warp(inst[:, near]) * advance, axis=0)])
    return _istft(mag * np.exp(1j * out_phase), len(x)).astype(np.float32)


def time_shift(x: np.ndarray, samples: int) -> np.ndarray:
    """Move the clip `samples` later (earlier when negative) in its window; zeros fill in, nothing wraps around."""
    x = np.asarray(x, np.float32)
    y = np.zeros_like(x)
    n = len(x)
    if abs(samples) >= n:
        return y
    if samples >= 0:
        y[samples:] = x[: n - samples]
    else:
        y[:samples] = x[-samples:]
    return y


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` samples of 1/f noise (equal power per octave, like fans and traffic) at unit RMS."""
    spec = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    spec /= np.sqrt(np.maximum(np.arange(n // 2 + 1), 1.0))  # power ∝ 1/f; DC held at the first bin's level
    spec[0] = 0.0
    return _unit_rms(np.fft.irfft(spec, n=n))


def babble(n: int, rng: np.random.Generator, sources: np.ndarray) -> np.ndarray:
    """`n` samples of 3–6 random stretches of other speech (rows of `sources`) mixed at equal level, at unit RMS."""
    sources = np.asarray(sources, np.float32)
    if sources.ndim != 2 or sources.shape[0] == 0 or sources.shape[1] == 0:
        raise ValueError(f"babble sources must be a non-empty 2-D array (clips, samples), got shape {sources.shape}")
    mix = np.zeros(n, np.float64)
    for _ in range(int(rng.integers(3, 7))):
        clip = sources[rng.integers(len(sources))]
        start = int(rng.integers(len(clip)))
        mix += _unit_rms(np.resize(np.roll(clip, -start), n))  # a short clip repeats to fill the length
    return _unit_rms(mix)


def _unit_rms(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0
    return (x / rms if rms > 0 else np.zeros_like(x)).astype(np.float32)


def add_noise(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`x` plus `noise` scaled to `snr_db` below x's power; silent x gets it against a -20 dBFS RMS reference."""
    x, noise = np.asarray(x, np.float32), np.asarray(noise, np.float32)
    if noise.shape != x.shape:
        raise ValueError(f"the noise must have the clip's shape {x.shape}, got {noise.shape}")
    p_noise = float(np.mean(np.square(noise, dtype=np.float64))) if len(x) else 0.0
    if p_noise == 0.0:
        return x.copy()
    p_x = float(np.mean(np.square(x, dtype=np.float64)))
    if p_x <= SILENCE_POWER:
        # A `_silence_` clip still gets the same spread of noise floors the words get, not none and not NaN.
        p_x = 10 ** (SILENCE_REFERENCE_DBFS / 10)
    gain = np.sqrt(p_x / (p_noise * 10 ** (snr_db / 10)))
    return (x + gain * noise).astype(np.float32)


def room_impulse(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """A synthetic room: a direct path of 1, then a noise tail that decays by 60 dB in `rt60` seconds."""
    if rt60 <= 0:
        raise ValueError(f"rt60 must be positive seconds, got {rt60}")
    n = max(2, int(rt60 * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-np.log(1000.0) * t / rt60)  # amplitude 1/1000 (-60 dB) at rt60
    tail[0] = 0.0
    # Direct-to-reverberant ratio from 0 dB (far across a room) to +10 dB (near the microphone).
    drr_db = rng.uniform(0.0, 10.0)
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail**2))
    tail[0] = 1.0
    return tail.astype(np.float32)


def reverb(x: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """`x` convolved with the impulse response `ir`, cut to x's length and brought to x's peak level."""
    from scipy.signal import fftconvolve  # scipy comes with scikit-learn

    x = np.asarray(x, np.float32)
    if len(x) == 0:
        return x.copy()
    y = fftconvolve(x, np.asarray(ir, np.float32))[: len(x)]
    peak, wet_peak = float(np.abs(x).max()), float(np.abs(y).max())
    return (y * (peak / wet_peak) if wet_peak > 0 else np.zeros_like(x)).astype(np.float32)


def mu_law(x: np.ndarray) -> np.ndarray:
    """G.711 μ-law round trip: compress, quantise to 8 bits (sign + 7-bit magnitude), expand."""
    x = np.clip(np.asarray(x, np.float32), -1.0, 1.0)
    code = np.round(np.log1p(MU * np.abs(x)) / np.log1p(MU) * 127.0)  # the codec's 8 bits: sign and this
    return (np.sign(x) * np.expm1(code / 127.0 * np.log1p(MU)) / MU).astype(np.float32)


@functools.cache
def _phone_filter() -> np.ndarray:
    from scipy.signal import ellip

    # The telephone band 300–3400 Hz at 8 kHz; an elliptic filter for edges as steep as a phone line's.
    return ellip(5, 0.5, 50, [300, 3400], btype="bandpass", fs=8000, output="sos")


def telephone(x: np.ndarray) -> np.ndarray:
    """A phone line: 8 kHz, band-pass 300–3400 Hz, 8-bit μ-law (G.711), back to 16 kHz; same length."""
    from scipy.signal import sosfiltfilt

    x = np.asarray(x, np.float32)
    if len(x) == 0:
        return x.copy()
    pad = 512  # silence around the clip: the filter and resamplers settle there, and a short clip still works
    narrow = resample(np.pad(x, pad), SAMPLE_RATE, 8000)
    # Zero-phase filtering: the word stays where it was in the window (a real line's delay is a few ms anyway).
    narrow = mu_law(sosfiltfilt(_phone_filter(), narrow))
    wide = fit_length(resample(narrow, 8000, SAMPLE_RATE), len(x) + 2 * pad)
    return wide[pad : pad + len(x)].astype(np.float32)


def _bands(batch: int, size: int, count: int, width: int, generator: torch.Generator) -> torch.Tensor:
    # (batch, size) bool: `count` bands per example, each 0..width long, placed uniformly inside 0..size.
    width = min(width, size)
    w = torch.randint(0, width + 1, (batch, count), generator=generator)
    start = (torch.rand((batch, count), generator=generator) * (size - w + 1)).long()
    idx = torch.arange(size)
    return ((idx >= start[..., None]) & (idx < (start + w)[..., None])).any(dim=1)


def spec_augment(
    feats: torch.Tensor,
    generator: torch.Generator,
    freq_masks: int = 2,
    freq_width: int = 8,
    time_masks: int = 2,
    time_width: int = 10,
) -> torch.Tensor:
    """SpecAugment (Park et al. 2019): random mel-bin bands and frame spans set to each example's mean, a new tensor."""
    assert feats.dim() == 4 and feats.shape[1] == 1, f"expected (batch, 1, n_mels, frames), got {tuple(feats.shape)}"
    batch, _, n_mels, frames = feats.shape
    freq = _bands(batch, n_mels, freq_masks, freq_width, generator)
    time = _bands(batch, frames, time_masks, time_width, generator)
    mask = (freq[:, None, :, None] | time[:, None, None, :]).to(feats.device)
    # The mean, not zero: a log-mel of zero is a loud level (log 1), the example's mean says nothing about it.
    return torch.where(mask, feats.mean(dim=(1, 2, 3), keepdim=True), feats)


@dataclass(frozen=True)
class Augment:
    """Which augmentations `augment` applies, how often and how strongly (defaults: all on, moderate)."""

    speed_prob: float = 0.5  # speed perturbation: length and pitch together, as a faster or slower talker
    speed_range: tuple[float, float] = (0.9, 1.1)  # Kaldi's 0.9–1.1
    tempo_prob: float = 0.3  # speaking rate alone
    tempo_range: tuple[float, float] = (0.85, 1.15)
    pitch_prob: float = 0.5  # a higher or lower voice at the same rate
    pitch_semitones: float = 2.0  # up to ± this
    vtlp_prob: float = 0.5  # a longer or shorter vocal tract: formants move
    vtlp_range: tuple[float, float] = (0.9, 1.1)  # Jaitly & Hinton's 0.9–1.1
    shift_ms: float = 100.0  # the word anywhere up to ± this from where it was (always applied)
    noise_prob: float = 0.6  # background noise
    snr_db: tuple[float, float] = (5.0, 30.0)  # from a loud café to a quiet office
    noise_kinds: tuple[str, ...] = NOISE_KINDS  # babble only when `augment` is given other speech to mix
    reverb_prob: float = 0.3  # a room
    rt60: tuple[float, float] = (0.1, 0.6)  # seconds: a car or small office to a living room
    telephone_prob: float = 0.2  # a phone line (band-limited, μ-law)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_prob") and not 0.0 <= value <= 1.0:
                raise ValueError(f"Augment.{f.name} must be a probability from 0 to 1, got {value}")
            if isinstance(value, tuple) and f.name != "noise_kinds" and (len(value) != 2 or value[0] > value[1]):
                raise ValueError(f"Augment.{f.name} must be a (low, high) pair, low first, got {value}")
        for name in ("speed_range", "tempo_range", "vtlp_range", "rt60"):
            if getattr(self, name)[0] <= 0:
                raise ValueError(f"Augment.{name} must be positive, got {getattr(self, name)}")
        if self.pitch_semitones < 0 or self.shift_ms < 0:
            raise ValueError("Augment.pitch_semitones and Augment.shift_ms must not be negative")
        unknown = set(self.noise_kinds) - set(NOISE_KINDS)
        if unknown:
            raise ValueError(f"Augment.noise_kinds may hold {', '.join(NOISE_KINDS)}; got {sorted(unknown)}")

    def key(self) -> dict[str, Any]:
        """Every setting and the algorithms' version, as plain JSON data (for a cache key)."""
        return {
            "version": VERSION,
            **{k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()},
        }


def augment(
    x: np.ndarray, rng: np.random.Generator, cfg: Augment, babble_sources: np.ndarray | None = None
) -> np.ndarray:
    """A random chain of `cfg`'s augmentations: same length, float32 in [-1, 1], the same for the same rng state."""
    x = np.asarray(x, np.float32)
    n = len(x)
    if n == 0:
        return x.copy()
    y = x.copy()
    # The speaker: vocal tract, then rate and pitch (one stretch and one resample however many of them are drawn).
    if rng.random() < cfg.vtlp_prob:
        y = vtlp(y, rng.uniform(*cfg.vtlp_range))
    stretch, factor = 1.0, 1.0
    if rng.random() < cfg.speed_prob:
        factor *= rng.uniform(*cfg.speed_range)
    if rng.random() < cfg.tempo_prob:
        stretch *= rng.uniform(*cfg.tempo_range)
    if rng.random() < cfg.pitch_prob:
        ratio = 2.0 ** (rng.uniform(-cfg.pitch_semitones, cfg.pitch_semitones) / 12.0)
        stretch, factor = stretch / ratio, factor * ratio
    y = _stretch_and_speed(y, stretch, factor, n)
    # The room, the placement in the window, the background, then the line that carries all of it.
    if rng.random() < cfg.reverb_prob:
        y = reverb(y, room_impulse(rng, rng.uniform(*cfg.rt60)))
    limit = int(cfg.shift_ms * SAMPLE_RATE / 1000)
    if limit:
        y = time_shift(y, int(rng.integers(-limit, limit + 1)))
    kinds = [k for k in cfg.noise_kinds if k != "babble" or babble_sources is not None]
    if kinds and rng.random() < cfg.noise_prob:
        kind = kinds[int(rng.integers(len(kinds)))]
        if kind == "white":
            noise = rng.standard_normal(n).astype(np.float32)
        elif kind == "pink":
            noise = pink_noise(n, rng)
        else:
            noise = babble(n, rng, babble_sources)
        y = add_noise(y, noise, rng.uniform(*cfg.snr_db))
    if rng.random() < cfg.telephone_prob:
        y = telephone(y)
    return np.clip(y, -1.0, 1.0).astype(np.float32)


__all__ = [
    "NOISE_KINDS",
    "VERSION",
    "Augment",
    "add_noise",
    "augment",
    "babble",
    "mu_law",
    "pink_noise",
    "pitch_shift",
    "reverb",
    "room_impulse",
    "spec_augment",
    "speed",
    "telephone",
    "tempo",
    "time_shift",
    "vtlp",
]
