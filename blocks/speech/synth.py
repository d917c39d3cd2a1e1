"""speech.synth-commands: labelled command words spoken by Debian's espeak-ng and Festival in many voices, speeds
and pitches, augmented (speed, pitch, vocal tract, time shift, noise, reverb, telephone line); generated once and
cached. flite never speaks here: it is the engine the leave-one-engine-out check listens with."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field, model_validator

from blocks import DATA_PROVIDER
from blocks.speech.audio import MAX_SECONDS, SAMPLE_RATE, decode_wav, encode_wav, fit_length
from blocks.speech.engines import EVAL_ENGINE, TRAIN_ENGINES, festival_voices, installed, missing, speak_festival
from builder.errors import BadItem, DataError
from builder.files import atomic_write_bytes
from builder.ports import Port, PortType
from builder.registry import register_block
from builder.spec import Block, BlockParams, Kind, Price, PriceUnit

if TYPE_CHECKING:
    from runtime.context import StepContext

ESPEAK = "espeak-ng"
log = logging.getLogger(__name__)
COMMANDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
# Other words for `_unknown_`: Speech Commands v2's, some that sound near a command (so "up" is not any "uh"), and
# common words of one to four syllables. A broad list is what makes the class mean "any other word": with the first
# 34 alone, flite's unseen words were answered `_unknown_` 0.60 of the time, with these 0.80 (bench/RESULTS.md).
UNKNOWN_WORDS = [
    "cat", "house", "bird", "tree", "happy", "seven", "learn", "wow", "sheila", "marvin", "bed", "dog", "backward",
    "follow", "forward", "visual", "zero", "one", "two", "three", "four", "five", "six", "eight", "nine", "cup",
    "know", "yet", "of", "lift", "own", "goal", "top", "town",
    "bag", "ball", "bell", "book", "box", "bread", "bus", "car", "card", "cloud", "cow", "desk", "door", "duck",
    "egg", "fish", "fox", "frog", "glass", "hat", "key", "lamp", "map", "milk", "moon", "nut", "pen", "pig", "rain",
    "ring", "road", "rock", "rose", "salt", "sand", "ship", "shoe", "sky", "snow", "sock", "star", "sun", "toy",
    "wall", "wind", "wolf", "bridge", "cheese", "clock", "dream", "field", "fruit", "grass", "horse", "juice",
    "light", "mouse", "night", "plant", "queen", "shirt", "smile", "sport", "storm", "teeth", "train", "voice",
    "watch", "wheel", "world", "youth", "thing", "small", "green", "black", "sweet", "warm", "thank", "please",
    "baby", "basket", "blanket", "brother", "carpet", "castle", "chicken", "circle", "city", "country", "dragon",
    "eagle", "engine", "finger", "flower", "forest", "friendly", "guitar", "hammer", "island", "jacket", "jungle",
    "letter", "lion", "market", "monkey", "mountain", "mother", "nature", "ocean", "office", "parrot", "peanut",
    "people", "picture", "planet", "puzzle", "rabbit", "rainbow", "shadow", "sister", "spider", "station", "summer",
    "sugar", "teacher", "ticket", "turtle", "winter", "zebra", "doctor", "father", "student", "problem", "moment",
    "money", "story", "husband", "pizza", "salad", "farmer", "silent", "open", "happen", "simple", "purple",
    "banana", "camera", "family", "holiday", "potato", "tomato", "umbrella", "violin", "elephant", "computer",
    "beautiful", "chocolate", "dinosaur", "hospital", "library", "medicine", "telephone", "vegetable", "animal",
    "energy", "important", "together", "afternoon", "remember",
]  # fmt: skip
UNKNOWN, SILENCE = "_unknown_", "_silence_"
ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029"]
GENERATOR = "synth-commands-v5"  # v5: Festival's HTS voice at each speed (v4: 203 other words; v3: 34)


@dataclass
class AudioClips:
    """Fixed-length 16 kHz mono clips (n, samples) with labels; the test clips are held out (other voices or
    speakers where the data knows them). `features` (set by speech.log-mel) belong to these exact samples: a
    transform that changes the samples must drop them."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    labels: list[str]
    source: dict[str, Any] = field(default_factory=dict)
    features: Any = None


def _voices(listing: str) -> list[str]:
    """The lines of an espeak-ng voice listing (`--voices`, `--voices=variant`) after its header; DataError when
    espeak-ng is not installed."""
    exe = shutil.which(ESPEAK)
    if exe is None:
        raise DataError("espeak-ng is not installed; `make run` or `make test` installs it (apt-get install espeak-ng)")
    return subprocess.run([exe, listing], capture_output=True, text=True, check=True).stdout.splitlines()[1:]


def espeak_variants() -> list[str]:
    """espeak-ng's voice variants (m1, f3, croak, …), sorted; DataError when espeak-ng is not installed."""
    return sorted({t.removeprefix("!v/") for line in _voices("--voices=variant") for t in line.split()
                   if t.startswith("!v/")})  # fmt: skip


def espeak_languages() -> set[str]:
    """The language voices espeak-ng has here (en-us, en-gb, de, …); DataError when it is not installed."""
    return {line.split()[1] for line in _voices("--voices") if len(line.split()) > 1}


def speak(text: str, voice: str, speed: int, pitch: int, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """`text` spoken by espeak-ng, as 16 kHz mono float32. The text goes in on stdin, never as an argument (a
    word starting with "-" would be read as an option); BadItem when espeak-ng cannot speak it."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        try:
            done = subprocess.run(
                [ESPEAK, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", f.name, "--stdin"],
                input=text.encode("utf-8"),
                capture_output=True,
                timeout=60,
            )
        except subprocess.TimeoutExpired:
            raise BadItem("the text takes too long to speak; send a shorter one") from None
        if done.returncode != 0:
            # The tool's own words go to our log, never to whoever sent the text.
            log.warning("espeak-ng failed (exit %s): %s", done.returncode, done.stderr.decode(errors="replace").strip())
            raise BadItem("this text cannot be spoken by the voice; check its characters and language")
        data = Path(f.name).read_bytes()
    with wave.open(io.BytesIO(data)) as w:
        seconds = w.getnframes() / max(1, w.getframerate())
    if seconds > max_seconds:
        raise BadItem(f"the text takes {seconds:.0f} s to speak; the limit is {max_seconds:.0f} s")
    return decode_wav(data, max_seconds)


def _level(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A clip at a random peak level between -10 and -1 dBFS (a recording's gain is never known)."""
    return (x / (np.abs(x).max() + 1e-6) * rng.uniform(0.3, 0.9)).astype(np.float32)


def _shifted(x: np.ndarray, rng: np.random.Generator, shift_ms: float) -> np.ndarray:
    """The clip moved by a random time shift of up to ± `shift_ms` (zeros fill in)."""
    from blocks.speech.augment import time_shift

    most = int(SAMPLE_RATE * shift_ms / 1000)
    return time_shift(x, int(rng.integers(-most, most + 1))) if most else x


def _background(samples: int, rng: np.random.Generator, level: float, babble_sources: np.ndarray) -> np.ndarray:
    """Noise with no speech for the `_silence_` class: digital silence, white, pink or babble, over two decades of
    loudness up to `level` (standard deviation)."""
    from blocks.speech import augment

    kind = rng.integers(4)
    if kind == 0:
        return np.zeros(samples, np.float32)
    if kind == 1:
        noise = rng.normal(0, 1, samples)
    elif kind == 2:
        noise = augment.pink_noise(samples, rng)
    else:
        noise = augment.babble(samples, rng, babble_sources)
    noise = noise / (np.std(noise) + 1e-9) * level * 10 ** rng.uniform(-2.0, 0.0)
    return np.clip(noise, -1.0, 1.0).astype(np.float32)


class SynthParams(BlockParams):
    words: list[str] = Field(default_factory=lambda: list(COMMANDS), min_length=2, description="The command words")
    engines: list[str] = Field(
        default_factory=lambda: list(TRAIN_ENGINES), min_length=1, description="Speech engines: espeak-ng, festival"
    )
    voices: int = Field(24, ge=4, le=200, description="espeak-ng voices (accent × variant) to speak them")
    test_voices: float = Field(0.25, gt=0.0, lt=1.0, description="Share of each engine's voices held out for testing")
    test_engine: str = Field("", description="An engine whose clips are only tested on, never trained on ('' for none)")
    speeds: list[int] = Field(default_factory=lambda: [120, 160, 200], min_length=1, description="Words per minute")
    pitches: list[int] = Field(default_factory=lambda: [25, 50, 75], min_length=1, description="espeak pitch 0-99")
    unknown: bool = Field(True, description="Add an `_unknown_` class of other words")
    unknown_per_voice: int = Field(
        1, ge=1, le=10, description="Other words spoken for `_unknown_` by each voice at each speed and pitch"
    )
    unknown_distinct_copies: bool = Field(
        False, description="Each augmented copy of an `_unknown_` training clip is another word (same class size)"
    )
    silence: bool = Field(True, description="Add a `_silence_` class of background noise only")
    copies: int = Field(1, ge=1, le=20, description="Augmented copies of each spoken training clip")
    clean_copy: bool = Field(True, description="Also keep each training clip as spoken (only shifted in time)")
    balance: bool = Field(True, description="Give an engine with fewer voices more augmented copies")
    speed: float = Field(0.1, ge=0.0, le=0.3, description="Speed perturbation: ± this share of the tempo and pitch")
    pitch: float = Field(2.0, ge=0.0, le=6.0, description="Pitch shift: up to ± this many semitones")
    vtlp: float = Field(0.1, ge=0.0, le=0.3, description="Vocal-tract-length perturbation: warp factor 1 ± this")
    shift_ms: float = Field(100.0, ge=0.0, le=500.0, description="Random time shift in the window, up to ± ms")
    snr_db: list[float] = Field(
        default_factory=lambda: [5.0, 30.0], min_length=2, max_length=2, description="Noise SNR range (dB)"
    )
    noise_share: float = Field(0.6, ge=0.0, le=1.0, description="Share of training clips with background noise")
    reverb: float = Field(0.3, ge=0.0, le=1.0, description="Share of training clips with room reverb")
    telephone: float = Field(0.2, ge=0.0, le=1.0, description="Share of training clips through a telephone channel")
    noise: float = Field(0.05, ge=0.0, le=0.3, description="Loudest `_silence_` noise (standard deviation)")
    seconds: float = Field(1.0, ge=0.5, le=3.0, description="Clip length")
    seed: int = Field(0, ge=0, description="Random seed: voices chosen, split, augmentation")

    @model_validator(mode="after")
    def _engines(self) -> SynthParams:
        for engine in [*self.engines, *([self.test_engine] if self.test_engine else [])]:
            if engine == EVAL_ENGINE:
                raise ValueError(
                    "flite is kept out of all training data: it is the engine the leave-one-engine-out check listens "
                    "with; choose espeak-ng or festival"
                )
            if engine not in TRAIN_ENGINES:
                raise ValueError(f"there is no speech engine {engine!r}; choose from {', '.join(TRAIN_ENGINES)}")
        if len(set(self.engines)) != len(self.engines):
            raise ValueError("an engine is named twice in engines")
        if self.test_engine and self.test_engine not in self.engines:
            raise ValueError(f"test_engine {self.test_engine!r} is not one of the engines {self.engines}")
        if self.test_engine and len(self.engines) < 2:
            raise ValueError("a test_engine needs another engine to train on")
        if not 0 <= self.snr_db[0] <= self.snr_db[1] <= 60:
            raise ValueError(f"snr_db must be two numbers from 0 to 60, low first; got {self.snr_db}")
        return self

    def augmentation(self) -> Any:
        """The augmentation settings these params ask for (their `key()` is part of the cache key)."""
        from blocks.speech.augment import Augment

        return Augment(
            speed_range=(1 - self.speed, 1 + self.speed),
            pitch_semitones=self.pitch,
            vtlp_range=(1 - self.vtlp, 1 + self.vtlp),
            shift_ms=self.shift_ms,
            noise_prob=self.noise_share,
            snr_db=tuple(self.snr_db),
            reverb_prob=self.reverb,
            telephone_prob=self.telephone,
        )


@dataclass(frozen=True)
class _Job:
    engine: str
    voice: str
    speed: int
    pitch: int
    text: str
    label: str
    test: bool
    copy: int | None = None  # only this one of the clip's copies (None: all of them)


@register_block
class SynthCommands(Block):
    id = "speech.synth-commands"
    version = "1.0.0"
    kind = Kind.DATA
    domain = "speech"
    inputs = ()
    outputs = (Port("clips", PortType.AUDIO_CLIPS, "16 kHz clips by word; test clips from held-out voices"),)
    Params = SynthParams
    price = Price(10**15, PriceUnit.RUN)  # 0.001 AIC per run
    provider = DATA_PROVIDER
    license = "GPL-3.0 (espeak-ng output) and Festival's voice licences (free to use)"
    description = (
        "Command words spoken by espeak-ng and Festival in many voices, speeds and pitches, with speed, pitch, "
        "vocal-tract, noise, reverb and telephone augmentation."
    )

    def fingerprint(self, params: BlockParams, base_dir: Path) -> str:
        return GENERATOR

    def estimate_seconds(self, params: BlockParams) -> float:
        assert isinstance(params, SynthParams)
        combos = (params.voices + 3) * len(params.speeds) * len(params.pitches) * (len(params.words) + 2)
        return 0.01 * combos * (1 + params.copies)

    def check(self, params: BlockParams, base_dir: Path) -> list[tuple[str, str]]:
        assert isinstance(params, SynthParams)
        problems: list[tuple[str, str]] = []
        for engine in params.engines:
            if not installed(engine):
                problems.append(("engines", missing(engine)))
        if problems:
            return problems
        if "espeak-ng" in params.engines and params.voices > len(espeak_variants()) * len(ACCENTS):
            return [
                ("voices", f"espeak-ng has {len(espeak_variants()) * len(ACCENTS)} voices here; ask for at most that")
            ]
        if "festival" in params.engines:
            try:
                festival_voices()
            except DataError as exc:
                return [("engines", str(exc))]
        bad = [w for w in params.words if not w.strip() or len(w) > 40]
        return [("words", f"{bad[0]!r} is not a word to speak")] if bad else []

    def voices(self, params: SynthParams) -> list[str]:
        """The chosen espeak-ng voices, e.g. `en-gb+f3`: accents and variants mixed, the same for the same seed."""
        pool = [f"{a}+{v}" for v in espeak_variants() for a in ACCENTS]
        return random.Random(params.seed).sample(pool, params.voices)

    def engine_voices(self, params: SynthParams) -> dict[str, list[str]]:
        """Each engine's voices, the held-out ones last (`espeak-ng`'s chosen by the seed, all of Festival's)."""
        out: dict[str, list[str]] = {}
        for engine in params.engines:
            if engine == "espeak-ng":
                out[engine] = self.voices(params)
            else:
                found = festival_voices()
                out[engine] = random.Random(params.seed).sample(found, len(found))
        return out

    def _jobs(self, params: SynthParams) -> tuple[list[_Job], dict[str, int], dict[str, list[str]]]:
        """Every clip to speak, how many augmented copies each training clip of each engine gets, and each engine's
        voices."""
        rng = random.Random(params.seed)
        voices = self.engine_voices(params)
        jobs: list[_Job] = []
        for engine, names in voices.items():
            if engine == params.test_engine:
                n_test = len(names)
            elif params.test_engine or len(names) < 2:
                n_test = 0  # the test engine is the test set; a single voice cannot be split
            else:
                n_test = max(1, round(len(names) * params.test_voices))
            for vi, voice in enumerate(names):
                test = vi >= len(names) - n_test
                for speed in params.speeds:
                    for pitch in params.pitches:
                        for word in params.words:
                            jobs.append(_Job(engine, voice, speed, pitch, word, word, test))
                        others: list[str] = []
                        while params.unknown and len(others) < params.unknown_per_voice:  # different words
                            other = rng.choice(UNKNOWN_WORDS)
                            if other not in others:
                                others.append(other)
                                jobs.append(_Job(engine, voice, speed, pitch, other, UNKNOWN, test))
        train_by_engine = {e: sum(1 for j in jobs if j.engine == e and not j.test) for e in voices}
        most = max(train_by_engine.values())
        copies = {
            e: params.copies * (max(1, round(most / n / 2)) if params.balance and n else 1)
            for e, n in train_by_engine.items()
        }  # an engine with few voices is brought to about half of the largest one, by augmented copies
        if params.unknown_distinct_copies:
            # Copies of one other word teach little about "any other word": each copy of an `_unknown_` training
            # clip is a word of its own, spoken by the same voice at the same speed and pitch.
            varied: list[_Job] = []
            for job in jobs:
                if job.label != UNKNOWN or job.test:
                    varied.append(job)
                    continue
                said = {job.text}
                for k in range(copies[job.engine] + int(params.clean_copy)):
                    word = job.text
                    if k:
                        if len(said) == len(UNKNOWN_WORDS):  # more copies than words: each word again
                            said = set()
                        while (word := rng.choice(UNKNOWN_WORDS)) in said:
                            pass
                        said.add(word)
                    varied.append(_Job(job.engine, job.voice, job.speed, job.pitch, word, UNKNOWN, False, k))
            jobs = varied
        return jobs, copies, voices

    def _speak(self, job: _Job) -> np.ndarray:
        if job.engine == "festival":
            # Festival's voices are recordings of people: its speed is a duration stretch, its pitch a shift.
            from blocks.speech.augment import pitch_shift

            clip = speak_festival(job.text, job.voice, stretch=160 / job.speed)
            return pitch_shift(clip, (job.pitch - 50) / 12.5) if job.pitch != 50 else clip
        return speak(job.text, job.voice, job.speed, job.pitch)

    def generate(self, params: SynthParams, on_progress: Callable[[int, int], None] | None = None) -> AudioClips:
        """Speak every (engine, voice, speed, pitch, word), augment the training clips, and split by voice (or by
        engine when `test_engine` is set). Test clips are clean: what is measured is the voice, not the noise."""
        from blocks.speech.augment import augment

        jobs, copies, voices = self._jobs(params)
        labels = (
            sorted(set(params.words)) + ([UNKNOWN] if params.unknown else []) + ([SILENCE] if params.silence else [])
        )
        spoken = []
        every = max(1, len(jobs) // 50)  # about 50 progress reports, each a database write
        with ThreadPoolExecutor(max_workers=4) as pool:  # the engines run as separate processes
            for clip in pool.map(self._speak, jobs):
                spoken.append(clip)
                if on_progress is not None and (len(spoken) % every == 0 or len(spoken) == len(jobs)):
                    on_progress(len(spoken), len(jobs))
        samples = int(SAMPLE_RATE * params.seconds)
        nrng = np.random.default_rng(params.seed)
        cfg = params.augmentation()
        # Babble is other speech mixed: the training clips of other words (never a test voice).
        pool_ = [fit_length(c, samples) for j, c in zip(jobs, spoken, strict=True) if not j.test and j.label == UNKNOWN]
        babble_sources = np.stack(pool_) if pool_ else np.stack([fit_length(c, samples) for c in spoken[:8]])
        xs, ys, test, engines = [], [], [], []
        for job, clip in zip(jobs, spoken, strict=True):
            if job.test:
                xs.append(_level(fit_length(clip, samples), nrng))
            else:
                every_copy = range(copies[job.engine] + int(params.clean_copy))
                for k in every_copy if job.copy is None else (job.copy,):
                    x = _level(fit_length(clip, samples), nrng)
                    # The first is the clip as spoken (only placed in the window): with every clip changed, a model
                    # never hears a clean word and underfits (measured: 0.34 of its own training clips right).
                    xs.append(_shifted(x, nrng, params.shift_ms) if params.clean_copy and k == 0 else
                              augment(x, nrng, cfg, babble_sources))  # fmt: skip
                    ys.append(labels.index(job.label))
                    test.append(False)
                    engines.append(job.engine)
                continue
            ys.append(labels.index(job.label))
            test.append(True)
            engines.append(job.engine)
        if params.silence:
            per_word = max(1, sum(1 for t, y in zip(test, ys, strict=True) if not t and y == 0))
            n_test_word = sum(1 for t, y in zip(test, ys, strict=True) if t and y == 0)
            for is_test, n in ((False, per_word), (True, n_test_word)):
                for _ in range(n):
                    xs.append(_background(samples, nrng, params.noise, babble_sources))
                    ys.append(labels.index(SILENCE))
                    test.append(is_test)
                    engines.append("")
        x, y, t = np.stack(xs), np.asarray(ys, dtype=np.int64), np.asarray(test)
        held = sorted({f"{j.engine}:{j.voice}" for j in jobs if j.test})
        return AudioClips(
            x[~t],
            y[~t],
            x[t],
            y[t],
            labels,
            {
                "generator": GENERATOR,
                "engines": list(params.engines),
                "voices": [f"{e}:{v}" for e, names in voices.items() for v in names],
                "test_voices": held,
                "test_engine": params.test_engine,
                "copies": copies,
                "augmentation": cfg.key(),
                "test_clip_engines": sorted({e for e, tt in zip(engines, test, strict=True) if tt and e}),
                # Each test clip's engine ("" for background noise), in order: accuracy is reported per engine.
                "test_engine_of_clip": [e for e, tt in zip(engines, test, strict=True) if tt],
            },
        )

    def load(
        self, params: SynthParams, cache_dir: Path, on_progress: Callable[[int, int], None] | None = None
    ) -> AudioClips:
        """The clips for `params`, generated once and then read from `cache_dir` (checked against their hash);
        `on_progress(done, total)` hears of the clips spoken while generating."""
        key = hashlib.sha256(json.dumps([GENERATOR, params.model_dump(mode="json")], sort_keys=True).encode())
        path = cache_dir / f"{key.hexdigest()[:24]}.npz"
        digest = path.with_suffix(".sha256")
        if path.exists() and digest.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == digest.read_text():
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                return AudioClips(z["train_x"], z["train_y"], z["test_x"], z["test_y"], meta["labels"], meta["source"])
        data = self.generate(params, on_progress)
        buf = io.BytesIO()
        meta = json.dumps({"labels": data.labels, "source": data.source})
        np.savez(buf, train_x=data.train_x, train_y=data.train_y, test_x=data.test_x, test_y=data.test_y, meta=meta)
        atomic_write_bytes(path, buf.getvalue())
        atomic_write_bytes(digest, hashlib.sha256(buf.getvalue()).hexdigest().encode())
        return data

    def preview(self, params: SynthParams, base_dir: Path, rows: int = 5, seed: int | None = None) -> list[dict]:
        """A few freshly spoken, augmented training clips (the audio column holds WAV data URIs for players)."""
        import base64

        from blocks.speech.augment import augment

        rng = random.Random(seed)
        voices = self.engine_voices(params)
        nrng = np.random.default_rng(rng.randrange(2**32))
        samples = int(SAMPLE_RATE * params.seconds)
        out = []
        for _ in range(rows):
            engine = rng.choice(sorted(voices))
            job = _Job(engine, rng.choice(voices[engine]), rng.choice(params.speeds), rng.choice(params.pitches),
                       word := rng.choice(params.words), word, False)  # fmt: skip
            clip = augment(_level(fit_length(self._speak(job), samples), nrng), nrng, params.augmentation())
            uri = "data:audio/wav;base64," + base64.b64encode(encode_wav(clip)).decode()
            out.append({"audio": uri, "label": word, "engine": engine, "voice": job.voice, "speed": job.speed,
                        "pitch": job.pitch})  # fmt: skip
        return out

    def run(self, ctx: StepContext, inputs: dict[str, Any], params: BlockParams) -> dict[str, Any]:
        assert isinstance(params, SynthParams)
        ctx.progress(0, 1, f"speaking the words with {' and '.join(params.engines)} (once; then cached)")
        data = self.load(
            params,
            ctx.shared_cache_dir,
            lambda done, total: ctx.progress(done, total, f"spoke {done} of {total} clips"),
        )
        ctx.progress(1, 1, "clips ready")
        ctx.log_metric("train_clips", len(data.train_y))
        ctx.log_metric("test_clips", len(data.test_y))
        return {"clips": data}
