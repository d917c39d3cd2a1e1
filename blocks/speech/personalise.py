"""The user's own voice: recordings of the model's words, each checked (silent, clipped, too short, too long), and a
short fine-tune of a trained keyword spotter on them, with as many of its synthetic training clips mixed in so that
it keeps what it learnt from the other voices."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from blocks.folders import labelled_files
from blocks.speech.audio import SAMPLE_RATE, decode_audio, fit_length
from blocks.speech.synth import SILENCE, UNKNOWN
from blocks.speech.wav_folder import AUDIO_SUFFIXES, MAX_FILE_BYTES, MAX_FILES
from builder.errors import BadItem, DataError

MIN_CLIPS_PER_WORD = 3
COPIES = 8  # augmented copies of each own recording (besides the recording itself)
LR_FACTOR = 0.3  # the fine-tune's learning rate, as a share of the block's: nudge the model, do not retrain it
MAX_RECORDING_SECONDS = 10.0  # a recording may be 3 clip lengths long, and never longer than this
# A word is at least this much sound above the noise gate. Not 0.2 s: flite's kal says "down" quickly in 0.16 s and
# espeak-ng at 250 words a minute says "up" in 0.18 s; a click or a tap on the microphone is far shorter.
MIN_SOUND_SECONDS = 0.15
SILENT_PEAK_DBFS, SILENT_RMS_DBFS = -50.0, -70.0
CLIPPED_LEVEL, CLIPPED_SHARE = 0.999, 0.01  # clipped: at least 1 % of the samples at full scale
# The noise gate, over 10 ms frames: a frame is sound when it is 6 dB above the quietest tenth of the recording,
# within 45 dB of the loudest frame (a word's quiet consonants count) and above -60 dBFS.
FRAME = SAMPLE_RATE // 100
GATE_OVER_FLOOR, GATE_BELOW_PEAK_DB, GATE_DBFS = 2.0, 45.0, -60.0


@dataclass
class OwnClips:
    """The user's recordings as clips of the model's length, their words and file names, and the model's words
    nobody recorded (they keep the synthetic training only)."""

    clips: np.ndarray
    words: list[str]
    names: list[str]
    missing: list[str]


def max_recording_seconds(clip_seconds: float) -> float:
    """The longest own recording accepted for a model of clips `clip_seconds` long: 3 clips, at most 10 s."""
    return min(3 * clip_seconds, MAX_RECORDING_SECONDS)


def _dbfs(level: float) -> float:
    return 20 * np.log10(max(level, 1e-10))


def sound_frames(x: np.ndarray) -> np.ndarray:
    """Which 10 ms frames of a 16 kHz recording are above the noise gate (bool, one per whole frame)."""
    n = len(x) // FRAME
    if n == 0:
        return np.zeros(0, bool)
    rms = np.sqrt(np.mean(np.square(x[: n * FRAME].reshape(n, FRAME), dtype=np.float64), axis=1))
    gate = max(GATE_OVER_FLOOR * np.percentile(rms, 10), rms.max() * 10 ** (-GATE_BELOW_PEAK_DB / 20),
               10 ** (GATE_DBFS / 20))  # fmt: skip
    return rms > gate


def recording_problem(x: np.ndarray, max_seconds: float = 3.0) -> str | None:
    """Why a 16 kHz mono recording of one word cannot be used ("it is silent …"), or None when it can."""
    x = np.asarray(x, np.float32)
    seconds = len(x) / SAMPLE_RATE
    if seconds > max_seconds:
        return f"it is {seconds:.1f} s long; the longest allowed is {max_seconds:g} s, so trim it to the word"
    peak = float(np.abs(x).max()) if len(x) else 0.0
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0
    if _dbfs(peak) < SILENT_PEAK_DBFS or _dbfs(rms) < SILENT_RMS_DBFS:
        return (f"it is silent (its loudest sample is at {_dbfs(peak):.0f} dBFS); record it again closer to the "
                "microphone")  # fmt: skip
    clipped = float(np.mean(np.abs(x) >= CLIPPED_LEVEL))
    if clipped >= CLIPPED_SHARE:
        return (f"it is clipped ({clipped:.0%} of its samples are at full scale); record it again further from the "
                "microphone or with a lower input level")  # fmt: skip
    sound = float(np.sum(sound_frames(x))) * FRAME / SAMPLE_RATE
    if sound < MIN_SOUND_SECONDS:
        return f"it holds only {sound:.2f} s of sound; say the whole word (at least {MIN_SOUND_SECONDS:g} s of it)"
    return None


def sound_span(x: np.ndarray) -> tuple[int, int] | None:
    """The samples [start, end) from the first to the last frame above the noise gate; None when none is."""
    frames = np.flatnonzero(sound_frames(x))
    return (int(frames[0]) * FRAME, (int(frames[-1]) + 1) * FRAME) if len(frames) else None


def word_window(x: np.ndarray, samples: int) -> np.ndarray:
    """`samples` of a recording centred on its sound (not on the recording: a word is rarely in its middle)."""
    span = sound_span(x)
    if len(x) <= samples or span is None:
        return fit_length(np.asarray(x, np.float32), samples)
    centre = (span[0] + span[1]) // 2
    start = int(np.clip(centre - samples // 2, 0, len(x) - samples))
    return np.asarray(x[start : start + samples], np.float32)


def _unusable(bad: list[tuple[str, str]]) -> str:
    """One sentence naming the first unusable recording and why, and how many more there are."""
    name, why = bad[0]
    more = ""
    if len(bad) > 1:
        others = ", ".join(n for n, _ in bad[1:4]) + (", …" if len(bad) > 4 else "")
        more = f"; {len(bad) - 1} more cannot be used either ({others})"
    return f"own recording {name} cannot be used: {why}{more}"


def read_own_clips(root: Path, labels: Sequence[str] | None = None, clip_seconds: float | None = None) -> OwnClips:
    """The recordings in `root` (a folder or .zip, one sub-folder per word) as clips of `clip_seconds` around their
    sound; DataError (one sentence) for a folder that is not one of the model's `labels`, an unusable recording, or a
    word with fewer than 3 recordings. Without labels and clip length (a check before the run, which knows neither)
    any folder name and recordings up to 10 s pass."""
    entries = labelled_files(root, AUDIO_SUFFIXES, MAX_FILE_BYTES)
    if not entries:
        raise DataError(f"{root.name} holds no WAV or FLAC files in word sub-folders (e.g. left/001.wav)")
    if len(entries) > MAX_FILES:
        raise DataError(f"{root.name} holds {len(entries)} recordings; the limit is {MAX_FILES}")
    # `_silence_` is no word to record; `_unknown_` may hold the user's own other words.
    words = [w for w in labels if w != SILENCE] if labels is not None else None
    if words is not None:
        strangers = sorted({word for word, _, _ in entries} - set(words))
        if strangers:
            raise DataError(f"'{strangers[0]}' is not one of the model's words: {', '.join(words)}; rename or "
                            "remove that folder")  # fmt: skip
    limit = max_recording_seconds(clip_seconds) if clip_seconds else MAX_RECORDING_SECONDS
    samples = int(round((clip_seconds or 1.0) * SAMPLE_RATE))
    clips, found, names, bad = [], [], [], []
    for word, name, read in entries:
        try:
            x = decode_audio(read())
        except BadItem as exc:
            bad.append((name, str(exc)))
            continue
        problem = recording_problem(x, limit)
        if problem:
            bad.append((name, problem))
            continue
        clips.append(word_window(x, samples))
        found.append(word)
        names.append(name)
    if bad:
        raise DataError(_unusable(bad))
    counts = Counter(found)
    few = sorted(w for w, n in counts.items() if n < MIN_CLIPS_PER_WORD)
    if few:
        n = counts[few[0]]
        raise DataError(f"the word '{few[0]}' has {n} own recording{'' if n == 1 else 's'}; record at least "
                        f"{MIN_CLIPS_PER_WORD - n} more ({MIN_CLIPS_PER_WORD} per word are needed)")  # fmt: skip
    missing = [w for w in words or [] if w != UNKNOWN and w not in counts]
    return OwnClips(np.stack(clips).astype(np.float32), found, names, missing)


__all__ = [
    "MIN_CLIPS_PER_WORD",
    "OwnClips",
    "max_recording_seconds",
    "read_own_clips",
    "recording_problem",
    "sound_frames",
    "sound_span",
    "word_window",
]
