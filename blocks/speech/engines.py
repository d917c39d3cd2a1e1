"""Offline speech engines that speak the training and test words: espeak-ng (formant synthesis, many accents and
variants), Festival (diphone and HTS voices of recorded people) and flite (kept for evaluation only).

A model that only ever heard one engine learns that engine, not the words: the command recogniser trains on several,
and is judged on one it never heard. flite is that judge, so no training data may use it (`TRAIN_ENGINES`).
"""

from __future__ import annotations

import io
import logging
import re
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from blocks.speech.audio import MAX_SECONDS, decode_wav
from builder.errors import BadItem, DataError

log = logging.getLogger(__name__)

TRAIN_ENGINES = ("espeak-ng", "festival")
EVAL_ENGINE = "flite"
# The Debian packages that bring each engine and each of its English voices: named when one is missing.
PACKAGES = {"espeak-ng": "espeak-ng", "festival": "festival", "flite": "flite"}
FESTIVAL_VOICE_PACKAGES = {
    "kal_diphone": "festvox-kallpc16k",
    "ked_diphone": "festvox-kdlpc16k",
    "cmu_us_slt_arctic_hts": "festvox-us-slt-hts",
}
FESTIVAL_VOICES_DIR = Path("/usr/share/festival/voices")
FESTIVAL_LANGUAGES = ("english", "us")  # the English voice folders Debian's festvox packages install into
FLITE_VOICES = ("kal", "awb", "rms", "slt")  # compiled into Debian's flite
_SCHEME_NAME = re.compile(r"^[a-z0-9_]+$")  # a voice name goes into a Scheme expression: nothing else may


def missing(engine: str) -> str:
    """One sentence naming the engine that is not installed and the Debian package(s) that provide it."""
    packages = PACKAGES[engine] + (" " + " ".join(FESTIVAL_VOICE_PACKAGES.values()) if engine == "festival" else "")
    return f"{engine} is not installed; `make run` or `make test` installs it (apt-get install {packages})"


def installed(engine: str) -> bool:
    """Whether `engine`'s program is on this machine."""
    return shutil.which({"festival": "text2wave"}.get(engine, engine)) is not None


def festival_voices() -> list[str]:
    """Festival's English voices here (kal_diphone, …), sorted; DataError naming the packages when Festival is
    missing or has no English voice."""
    if not installed("festival"):
        raise DataError(missing("festival"))
    voices = sorted(
        p.name
        for lang in FESTIVAL_LANGUAGES
        if (FESTIVAL_VOICES_DIR / lang).is_dir()
        for p in (FESTIVAL_VOICES_DIR / lang).iterdir()
        if p.is_dir() and _SCHEME_NAME.match(p.name)
    )
    if not voices:
        raise DataError(
            "Festival has no English voice here; apt-get install " + " ".join(FESTIVAL_VOICE_PACKAGES.values())
        )
    return voices


def _run_to_wav(command: list[str], text: str, engine: str, max_seconds: float) -> np.ndarray:
    """Run a speech engine that writes the WAV file named by `{wav}` in `command`, `text` on stdin; 16 kHz float32."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        try:
            done = subprocess.run(
                [a.replace("{wav}", f.name) for a in command],
                input=text.encode("utf-8"),
                capture_output=True,
                timeout=60,
            )
        except subprocess.TimeoutExpired:
            raise BadItem("the text takes too long to speak; send a shorter one") from None
        except FileNotFoundError:
            raise DataError(missing(engine)) from None
        data = Path(f.name).read_bytes()
        if done.returncode != 0 or not data:
            # The tool's own words go to our log, never to whoever sent the text.
            log.warning("%s failed (exit %s): %s", engine, done.returncode, done.stderr.decode(errors="replace"))
            raise BadItem(f"this text cannot be spoken by {engine}; check its characters and language")
    with wave.open(io.BytesIO(data)) as w:
        seconds = w.getnframes() / max(1, w.getframerate())
    if seconds > max_seconds:
        raise BadItem(f"the text takes {seconds:.0f} s to speak; the limit is {max_seconds:.0f} s")
    return decode_wav(data, max_seconds)


def speak_festival(text: str, voice: str, stretch: float = 1.0, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """`text` spoken by a Festival voice (`kal_diphone`, …) at `stretch` × its own durations, as 16 kHz float32.
    The text goes in on stdin; the voice must be one `festival_voices()` lists (it is evaluated as Scheme)."""
    if not _SCHEME_NAME.match(voice):
        raise BadItem(f"{voice!r} is not a Festival voice name")
    if voice.endswith("_hts"):
        # An HTS voice computes its own durations and ignores Duration_Stretch: its engine's speech rate (-r, faster
        # above 1) is the stretch's inverse. Without it every "speed" of cmu_us_slt_arctic_hts was the same clip.
        speed = f'(set! hts_engine_params (append hts_engine_params (list (list "-r" {1 / stretch:.3f}))))'
    else:
        speed = f"(Parameter.set 'Duration_Stretch {stretch:.3f})"
    command = ["text2wave", "-eval", f"(voice_{voice})", "-eval", speed, "-o", "{wav}"]
    return _run_to_wav(command, text, "festival", max_seconds)


def speak_flite(text: str, voice: str, stretch: float = 1.0, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """`text` spoken by one of flite's voices at `stretch` × its durations, as 16 kHz float32: for evaluation only
    (never training data)."""
    if voice not in FLITE_VOICES:
        raise BadItem(f"flite has no voice {voice!r}; it has {', '.join(FLITE_VOICES)}")
    if not installed("flite"):
        raise DataError(missing("flite"))
    command = ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch:.3f}", "-o", "{wav}"]
    return _run_to_wav(command, text, "flite", max_seconds)
