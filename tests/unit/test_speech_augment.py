"""Speech augmentation on synthetic signals: what each transform does to length, pitch, spectrum and level, that the
same seed gives the same clip, and that the random chain stays finite and in [-1, 1] on awkward input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from blocks.speech import augment as aug
from blocks.speech.audio import SAMPLE_RATE

SR = SAMPLE_RATE
T = np.arange(SR) / SR


def sine(hz: float, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * hz * np.arange(int(SR * seconds)) / SR)).astype(np.float32)


def peak_hz(y: np.ndarray) -> float:
    """The strongest frequency, to a fraction of a hertz (Hann window, zero-padded FFT)."""
    n = 1 << 18
    return float(np.argmax(np.abs(np.fft.rfft(y * np.hanning(len(y)), n=n))) * SR / n)


def band_power(y: np.ndarray, lo: float, hi: float) -> float:
    power = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(len(y), 1 / SR)
    return float(power[(f >= lo) & (f < hi)].sum())


def vowel(seconds: float = 1.0) -> np.ndarray:
    """Speech-like: harmonics of a 220 Hz voice shaped by formants at 700, 1200 and 2600 Hz, with a syllable beat."""
    t = np.arange(int(SR * seconds)) / SR
    x = np.zeros_like(t)
    for k in range(1, 16):
        hz = 220 * k
        gain = sum(np.exp(-(((hz - f) / 150) ** 2)) for f in (700, 1200, 2600)) + 0.05
        x += gain * np.sin(2 * np.pi * hz * t + k)
    x *= 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def test_speed_shortens_the_clip_and_raises_the_pitch_together():
    y = aug.speed(sine(300), 1.1)
    assert y.dtype == np.float32 and abs(len(y) - SR / 1.1) <= 2
    assert peak_hz(y) == pytest.approx(330, rel=0.01)
    assert len(aug.speed(sine(300), 0.9)) == pytest.approx(SR / 0.9, abs=2)


@pytest.mark.parametrize("factor", [0.8, 1.25])
def test_tempo_changes_the_length_but_keeps_the_pitch(factor):
    y = aug.tempo(sine(300), factor)
    assert y.dtype == np.float32 and len(y) == round(SR / factor)
    assert peak_hz(y) == pytest.approx(300, rel=0.03)
    # Pure: almost all the energy stays at 300 Hz (a misaligned join would spread it into sidebands).
    assert band_power(y, 280, 320) > 0.99 * band_power(y, 0, SR / 2)


@pytest.mark.parametrize("semitones", [-3.0, 2.0])
def test_pitch_shift_moves_the_pitch_and_keeps_the_length(semitones):
    y = aug.pitch_shift(sine(300), semitones)
    assert y.dtype == np.float32 and len(y) == SR
    assert peak_hz(y) == pytest.approx(300 * 2 ** (semitones / 12), rel=0.03)


@pytest.mark.parametrize("alpha", [0.9, 1.1])
def test_vtlp_scales_frequencies_below_the_boundary_and_keeps_the_length(alpha):
    y = aug.vtlp(sine(1000), alpha)
    assert y.dtype == np.float32 and len(y) == SR
    assert peak_hz(y) == pytest.approx(1000 * alpha, rel=0.03)
    assert band_power(y, 1000 * alpha - 20, 1000 * alpha + 20) > 0.99 * band_power(y, 0, SR / 2)  # moved, not smeared
    # Nyquist stays put: a partial just below it moves much less than the factor.
    assert abs(peak_hz(aug.vtlp(sine(7500), alpha)) - 7500) < 0.5 * abs(7500 * alpha - 7500)


def test_vtlp_with_a_factor_of_almost_one_gives_the_clip_back():
    x = (np.random.default_rng(0).standard_normal(SR) * 0.2).astype(np.float32)
    assert np.abs(aug.vtlp(x, 1.0 + 1e-9) - x).max() < 1e-3  # the STFT, phase rebuild and overlap-add are exact


def test_time_shift_fills_with_zeros_and_never_wraps_around():
    x = np.arange(1, 11, dtype=np.float32)
    assert aug.time_shift(x, 3).tolist() == [0, 0, 0, 1, 2, 3, 4, 5, 6, 7]
    assert aug.time_shift(x, -3).tolist() == [4, 5, 6, 7, 8, 9, 10, 0, 0, 0]
    assert not aug.time_shift(x, 10).any() and not aug.time_shift(x, -25).any()
    assert np.array_equal(aug.time_shift(x, 0), x)


def test_pink_noise_has_equal_power_per_octave_and_follows_the_seed():
    y = aug.pink_noise(4 * SR, np.random.default_rng(0))
    assert y.dtype == np.float32 and len(y) == 4 * SR
    assert np.sqrt(np.mean(y.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)
    octaves = [10 * np.log10(band_power(y, f, 2 * f)) for f in (250, 500, 1000, 2000)]
    assert max(octaves) - min(octaves) < 1.5  # white noise would gain 3 dB an octave
    assert np.array_equal(y, aug.pink_noise(4 * SR, np.random.default_rng(0)))
    assert not np.array_equal(y, aug.pink_noise(4 * SR, np.random.default_rng(1)))


def test_babble_mixes_stretches_of_the_sources_only():
    sources = np.stack([sine(hz, 0.5) for hz in (200, 450, 800, 1300, 2100)])  # shorter than the output
    y = aug.babble(SR, np.random.default_rng(0), sources)
    assert y.dtype == np.float32 and len(y) == SR
    assert np.sqrt(np.mean(y.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)
    at_sources = sum(band_power(y, hz - 20, hz + 20) for hz in (200, 450, 800, 1300, 2100))
    assert at_sources > 0.95 * band_power(y, 0, SR / 2)
    assert np.array_equal(y, aug.babble(SR, np.random.default_rng(0), sources))
    assert not np.array_equal(y, aug.babble(SR, np.random.default_rng(1), sources))
    with pytest.raises(ValueError, match="non-empty 2-D"):
        aug.babble(SR, np.random.default_rng(0), np.zeros((0, SR)))


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
@pytest.mark.parametrize("kind", ["white", "pink"])
def test_add_noise_hits_the_requested_snr(snr_db, kind):
    rng = np.random.default_rng(0)
    x = vowel()
    noise = rng.standard_normal(SR).astype(np.float32) * 3 if kind == "white" else aug.pink_noise(SR, rng)
    y = aug.add_noise(x, noise, snr_db)
    added = y.astype(np.float64) - x
    measured = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(added**2))
    assert y.dtype == np.float32 and abs(measured - snr_db) < 0.5


def test_add_noise_on_silence_uses_the_reference_level_and_stays_finite():
    noise = np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    y = aug.add_noise(np.zeros(SR, np.float32), noise, 20.0)
    assert np.isfinite(y).all()
    rms_db = 10 * np.log10(np.mean(y.astype(np.float64) ** 2))
    assert rms_db == pytest.approx(aug.SILENCE_REFERENCE_DBFS - 20.0, abs=0.1)
    assert np.array_equal(aug.add_noise(vowel(), np.zeros(SR, np.float32), 10.0), vowel())  # silent noise: no-op
    with pytest.raises(ValueError, match="shape"):
        aug.add_noise(vowel(), noise[:100], 10.0)


@pytest.mark.parametrize("rt60", [0.2, 0.5])
def test_room_impulse_decays_60_db_in_rt60(rt60):
    ir = aug.room_impulse(np.random.default_rng(0), rt60).astype(np.float64)
    assert ir[0] == 1.0 and np.abs(ir[1:]).max() < 1.0  # the direct path is the loudest
    assert len(ir) == int(rt60 * SR)
    block = SR // 100  # 10 ms energies of the tail, fitted by a line in dB
    energy = [np.sum(ir[i : i + block] ** 2) for i in range(block, len(ir) - block, block)]
    seconds = (np.arange(len(energy)) + 1.5) * block / SR
    slope = np.polyfit(seconds, 10 * np.log10(energy), 1)[0]  # dB per second
    assert -60 / slope == pytest.approx(rt60, rel=0.15)


def test_reverb_smears_a_click_keeps_the_length_and_the_peak():
    x = np.zeros(SR, np.float32)
    x[1000] = 0.7
    y = aug.reverb(x, aug.room_impulse(np.random.default_rng(0), 0.4))
    assert y.dtype == np.float32 and len(y) == SR
    assert np.abs(y).max() == pytest.approx(0.7, rel=1e-5)
    assert np.abs(y[:1000]).max() < 1e-6 and band_power(y[1100:], 0, SR / 2) > 1e-3  # a tail after the click only
    assert not aug.reverb(np.zeros(SR, np.float32), aug.room_impulse(np.random.default_rng(0), 0.4)).any()


def test_telephone_removes_what_is_outside_the_phone_band():
    x = (np.random.default_rng(0).standard_normal(2 * SR) * 0.2).astype(np.float32)
    y = aug.telephone(x)
    assert y.dtype == np.float32 and len(y) == len(x)

    def out_vs_in_db(s):
        outside = band_power(s, 0, 250) + band_power(s, 3600, SR / 2 + 1)
        return 10 * np.log10(outside / band_power(s, 250, 3600))

    assert out_vs_in_db(x) - out_vs_in_db(y) >= 20


def test_telephone_keeps_in_band_speech_in_place():
    x = vowel()
    y = aug.telephone(x)
    assert len(y) == len(x) and not np.array_equal(y, x)
    assert np.corrcoef(x[2000:-2000], y[2000:-2000])[0, 1] > 0.9  # no delay, no level loss worth the name
    assert len(aug.telephone(x[:37])) == 37 and np.isfinite(aug.telephone(x[:37])).all()


def test_mu_law_quantises_to_8_bits_but_keeps_the_waveform():
    x = vowel()
    y = aug.mu_law(x)
    assert y.dtype == np.float32 and not np.array_equal(y, x)
    assert len(np.unique(y)) <= 255  # sign and 7 bits; +0 and -0 decode alike
    assert np.corrcoef(x, y)[0, 1] > 0.9
    assert aug.mu_law(np.zeros(4, np.float32)).tolist() == [0, 0, 0, 0]  # silence stays silent


def test_spec_augment_masks_whole_bands_within_the_limits_with_the_example_mean():
    feats = torch.randn(32, 1, 40, 101)
    before = feats.clone()
    out = aug.spec_augment(feats, torch.Generator().manual_seed(0))
    assert out.shape == feats.shape and torch.equal(feats, before)  # a new tensor, the input untouched
    changed = out != feats
    rows = changed.all(dim=3)[:, 0]  # (batch, n_mels): bins masked over every frame
    cols = changed.all(dim=2)[:, 0]  # (batch, frames)
    assert torch.equal(changed[:, 0], rows[:, :, None] | cols[:, None, :])  # nothing but whole bands and spans
    assert rows.sum(1).max() <= 2 * 8 and cols.sum(1).max() <= 2 * 10
    assert rows.any() and cols.any()  # masks do happen
    mean = feats.mean(dim=(1, 2, 3), keepdim=True).expand_as(feats)
    assert torch.equal(out[changed], mean[changed])


def test_spec_augment_follows_the_generator_seed_and_can_be_switched_off():
    feats = torch.randn(8, 1, 40, 101)
    a = aug.spec_augment(feats, torch.Generator().manual_seed(5))
    assert torch.equal(a, aug.spec_augment(feats, torch.Generator().manual_seed(5)))
    assert not torch.equal(a, aug.spec_augment(feats, torch.Generator().manual_seed(6)))
    off = aug.spec_augment(feats, torch.Generator().manual_seed(5), freq_width=0, time_width=0)
    assert torch.equal(off, feats)
    with pytest.raises(AssertionError, match="expected"):
        aug.spec_augment(feats[:, 0], torch.Generator())


ALL_ON = aug.Augment(
    speed_prob=1.0, tempo_prob=1.0, pitch_prob=1.0, vtlp_prob=1.0, noise_prob=1.0, reverb_prob=1.0, telephone_prob=1.0
)


def square() -> np.ndarray:
    return np.clip(np.sign(sine(150)) * 1.5, -1.0, 1.0).astype(np.float32)  # clipped at full scale


def burst() -> np.ndarray:
    return sine(1000, seconds=0.005)  # 80 samples


@pytest.mark.parametrize("make", [lambda: np.zeros(SR, np.float32), square, burst, vowel])
@pytest.mark.parametrize("cfg", [aug.Augment(), ALL_ON])
def test_augment_stays_finite_in_range_and_at_length(make, cfg):
    sources = np.stack([vowel(), sine(300), sine(700)])
    x = make()
    for seed in range(6):
        y = aug.augment(x, np.random.default_rng(seed), cfg, sources)
        assert y.dtype == np.float32 and y.shape == x.shape
        assert np.isfinite(y).all() and np.abs(y).max() <= 1.0


def test_augment_is_the_same_for_the_same_seed_and_differs_for_another():
    x, sources = vowel(), np.stack([vowel(), sine(500)])
    a = aug.augment(x, np.random.default_rng(3), ALL_ON, sources)
    assert np.array_equal(a, aug.augment(x, np.random.default_rng(3), ALL_ON, sources))
    assert not np.array_equal(a, aug.augment(x, np.random.default_rng(4), ALL_ON, sources))
    assert not np.allclose(a, x, atol=1e-2)  # it did change the clip


def test_augment_with_everything_off_returns_the_clip_unchanged():
    off = aug.Augment(
        speed_prob=0, tempo_prob=0, pitch_prob=0, vtlp_prob=0, shift_ms=0, noise_prob=0, reverb_prob=0, telephone_prob=0
    )
    x = vowel()
    assert np.array_equal(aug.augment(x, np.random.default_rng(0), off), x)


def test_augment_leaves_out_babble_without_sources():
    babble_only = aug.Augment(noise_prob=1.0, noise_kinds=("babble",), shift_ms=0, telephone_prob=0, reverb_prob=0)
    babble_only = dataclasses.replace(babble_only, speed_prob=0, tempo_prob=0, pitch_prob=0, vtlp_prob=0)
    x = vowel()
    assert np.array_equal(aug.augment(x, np.random.default_rng(0), babble_only), x)
    assert not np.array_equal(aug.augment(x, np.random.default_rng(0), babble_only, np.stack([sine(500)])), x)


def test_augment_key_holds_every_setting_as_plain_data():
    cfg = aug.Augment(snr_db=(0.0, 20.0))
    key = cfg.key()
    assert set(key) == {f.name for f in dataclasses.fields(aug.Augment)} | {"version"}
    assert key["snr_db"] == [0.0, 20.0] and key["noise_kinds"] == list(aug.NOISE_KINDS)
    assert key != aug.Augment().key()


@pytest.mark.parametrize(
    "bad, words",
    [
        ({"noise_prob": 1.5}, "noise_prob must be a probability"),
        ({"snr_db": (30.0, 5.0)}, "snr_db must be a .low, high. pair"),
        ({"speed_range": (0.0, 1.1)}, "speed_range must be positive"),
        ({"noise_kinds": ("white", "brown")}, "noise_kinds may hold"),
        ({"pitch_semitones": -1.0}, "must not be negative"),
    ],
)
def test_augment_settings_out_of_range_are_refused_with_the_field_named(bad, words):
    with pytest.raises(ValueError, match=words):
        aug.Augment(**bad)
