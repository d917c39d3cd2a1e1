"""speech.synth-commands: labelled command words spoken by Debian's espeak-ng in many voices, speeds and pitches,
with noise and room-reverb augmentation; generated once and cached."""

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
from pydantic import Field

from blocks import DATA_PROVIDER
from blocks.speech.audio import MAX_SECONDS, SAMPLE_RATE, decode_wav, encode_wav, fit_length
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
UNKNOWN_WORDS = ["cat", "house", "bird", "tree", "happy", "seven", "learn", "wow", "sheila", "marvin", "bed", "dog"]
UNKNOWN, SILENCE = "_unknown_", "_silence_"
ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029"]
GENERATOR = "synth-commands-v2"  # v2: noise floors from none to `noise`
CLEAN_SHARE = 0.25  # of clips without background noise


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


def _augment(clip: np.ndarray, rng: np.random.Generator, noise: float, reverb: float) -> np.ndarray:
    """Random placement in the window, room reverb (an exponentially decaying noise impulse) and background noise."""
    x = clip
    if rng.random() < reverb:
        length = int(SAMPLE_RATE * rng.uniform(0.05, 0.25))
        ir = rng.normal(0, 1, length) * np.exp(-np.linspace(0, rng.uniform(4, 9), length))
        ir[0] = 1.0
        x = np.convolve(x, ir / np.abs(ir).sum() * 2)[: len(x)]
    x = x / (np.abs(x).max() + 1e-6) * rng.uniform(0.3, 0.9)
    # Background noise from none at all (digital silence, as a synthesised or noise-gated recording has) to `noise`,
    # spread over two decades: a model that only ever heard one noise floor takes a quiet one for another word.
    if rng.random() >= CLEAN_SHARE:
        x = x + rng.normal(0, noise * 10 ** rng.uniform(-2.0, 0.0), len(x))
    return np.clip(x, -1.0, 1.0).astype(np.float32)


class SynthParams(BlockParams):
    words: list[str] = Field(default_factory=lambda: list(COMMANDS), min_length=2, description="The command words")
    voices: int = Field(24, ge=4, le=200, description="Voices (accent × espeak variant) to speak them")
    test_voices: float = Field(0.25, gt=0.0, lt=1.0, description="Share of the voices held out for testing")
    speeds: list[int] = Field(default_factory=lambda: [120, 160, 200], min_length=1, description="Words per minute")
    pitches: list[int] = Field(default_factory=lambda: [25, 50, 75], min_length=1, description="espeak pitch 0-99")
    unknown: bool = Field(True, description="Add an `_unknown_` class of other words")
    silence: bool = Field(True, description="Add a `_silence_` class of background noise only")
    noise: float = Field(
        0.01, ge=0.0, le=0.2, description="Loudest background noise (standard deviation); clips get none up to this"
    )
    reverb: float = Field(0.5, ge=0.0, le=1.0, description="Share of clips with room reverb")
    seconds: float = Field(1.0, ge=0.5, le=3.0, description="Clip length")
    seed: int = Field(0, ge=0, description="Random seed: voices chosen, split, augmentation")


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
    license = "GPL-3.0 (espeak-ng output, free to use)"
    description = "Command words spoken by espeak-ng in many voices, speeds and pitches, with noise and reverb."

    def fingerprint(self, params: BlockParams, base_dir: Path) -> str:
        return GENERATOR

    def estimate_seconds(self, params: BlockParams) -> float:
        assert isinstance(params, SynthParams)
        return 0.01 * params.voices * len(params.speeds) * len(params.pitches) * (len(params.words) + 2)

    def check(self, params: BlockParams, base_dir: Path) -> list[tuple[str, str]]:
        assert isinstance(params, SynthParams)
        try:
            variants = espeak_variants()
        except DataError as exc:
            return [("voices", str(exc))]
        if params.voices > len(variants) * len(ACCENTS):
            return [("voices", f"espeak-ng has {len(variants) * len(ACCENTS)} voices here; ask for at most that")]
        bad = [w for w in params.words if not w.strip() or len(w) > 40]
        return [("words", f"{bad[0]!r} is not a word to speak")] if bad else []

    def voices(self, params: SynthParams) -> list[str]:
        """The chosen voices, e.g. `en-gb+f3`: accents and variants mixed, the same for the same seed."""
        pool = [f"{a}+{v}" for v in espeak_variants() for a in ACCENTS]
        return random.Random(params.seed).sample(pool, params.voices)

    def generate(self, params: SynthParams, on_progress: Callable[[int, int], None] | None = None) -> AudioClips:
        """Speak every (voice, speed, pitch, word), augment, and split by voice."""
        voices = self.voices(params)
        n_test = max(1, round(len(voices) * params.test_voices))
        labels = (
            sorted(set(params.words)) + ([UNKNOWN] if params.unknown else []) + ([SILENCE] if params.silence else [])
        )
        jobs = []
        rng = random.Random(params.seed)
        for vi, voice in enumerate(voices):
            for speed in params.speeds:
                for pitch in params.pitches:
                    for word in params.words:
                        jobs.append((vi, voice, speed, pitch, word, word))
                    if params.unknown:
                        jobs.append((vi, voice, speed, pitch, rng.choice(UNKNOWN_WORDS), UNKNOWN))
        spoken = []
        every = max(1, len(jobs) // 50)  # about 50 progress reports, each a database write
        with ThreadPoolExecutor(max_workers=4) as pool:  # espeak-ng runs as separate processes
            for clip in pool.map(lambda j: speak(j[4], j[1], j[2], j[3]), jobs):
                spoken.append(clip)
                if on_progress is not None and (len(spoken) % every == 0 or len(spoken) == len(jobs)):
                    on_progress(len(spoken), len(jobs))
        samples = int(SAMPLE_RATE * params.seconds)
        nrng = np.random.default_rng(params.seed)
        xs, ys, test = [], [], []
        for job, clip in zip(jobs, spoken, strict=True):
            xs.append(_augment(fit_length(clip, samples), nrng, params.noise, params.reverb))
            ys.append(labels.index(job[5]))
            test.append(job[0] >= len(voices) - n_test)
        if params.silence:
            per_voice = len(params.speeds) * len(params.pitches)
            for vi in range(len(voices)):
                for _ in range(per_voice):
                    xs.append(_augment(np.zeros(samples, np.float32), nrng, params.noise * 3, params.reverb))
                    ys.append(labels.index(SILENCE))
                    test.append(vi >= len(voices) - n_test)
        x, y, t = np.stack(xs), np.asarray(ys, dtype=np.int64), np.asarray(test)
        return AudioClips(
            x[~t],
            y[~t],
            x[t],
            y[t],
            labels,
            {"generator": GENERATOR, "voices": voices, "test_voices": voices[-n_test:]},
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
        """A few freshly spoken, augmented clips (the audio column holds WAV data URIs for players)."""
        import base64

        rng = random.Random(seed)
        voices = self.voices(params)
        nrng = np.random.default_rng(rng.randrange(2**32))
        out = []
        for _ in range(rows):
            word, voice = rng.choice(params.words), rng.choice(voices)
            speed, pitch = rng.choice(params.speeds), rng.choice(params.pitches)
            clip = _augment(fit_length(speak(word, voice, speed, pitch), int(SAMPLE_RATE * params.seconds)), nrng,
                            params.noise, params.reverb)  # fmt: skip
            uri = "data:audio/wav;base64," + base64.b64encode(encode_wav(clip)).decode()
            out.append({"audio": uri, "label": word, "voice": voice, "speed": speed, "pitch": pitch})
        return out

    def run(self, ctx: StepContext, inputs: dict[str, Any], params: BlockParams) -> dict[str, Any]:
        assert isinstance(params, SynthParams)
        ctx.progress(0, 1, "speaking the words with espeak-ng (once; then cached)")
        data = self.load(
            params,
            ctx.shared_cache_dir,
            lambda done, total: ctx.progress(done, total, f"spoke {done} of {total} clips"),
        )
        ctx.progress(1, 1, "clips ready")
        ctx.log_metric("train_clips", len(data.train_y))
        ctx.log_metric("test_clips", len(data.test_y))
        return {"clips": data}
