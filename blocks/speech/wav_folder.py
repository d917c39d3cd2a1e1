"""speech.wav-folder: a user's recordings (WAV or FLAC, any rate, mono or stereo), one sub-folder per label, as a
folder or a .zip file; every file becomes a 16 kHz mono clip, and a file that cannot be used is named."""

from __future__ import annotations

import base64
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field, model_validator

from blocks import DATA_PROVIDER
from blocks.folders import LabelledFolderBlock, check_labels, labelled_files, refuse_bad_files, stratified_split
from blocks.speech.audio import MAX_SECONDS, SAMPLE_RATE, decode_audio, encode_wav, fit_length
from blocks.speech.synth import AudioClips
from builder.errors import BadItem, DataError
from builder.ports import Port, PortType
from builder.registry import register_block
from builder.spec import BlockParams, Kind, Price, PriceUnit

if TYPE_CHECKING:
    from runtime.context import StepContext

AUDIO_SUFFIXES = {".wav", ".flac"}
MAX_FILES = 50_000
MAX_FILE_BYTES = 16 * 1024 * 1024  # 30 s of 48 kHz stereo 32-bit is 11.5 MB


def read_clips(
    root: Path, seconds: float, min_seconds: float, max_seconds: float
) -> tuple[np.ndarray, list[str], list[str]]:
    """Every recording as a 16 kHz mono clip of `seconds` (centred, cropped or padded), its label and its name;
    DataError naming every file that is unreadable, shorter than `min_seconds` or longer than `max_seconds`."""
    entries = labelled_files(root, AUDIO_SUFFIXES, MAX_FILE_BYTES)
    if not entries:
        raise DataError(f"{root.name} holds no WAV or FLAC files in label sub-folders (e.g. yes/001.wav)")
    if len(entries) > MAX_FILES:
        raise DataError(f"{root.name} holds {len(entries)} recordings; the limit is {MAX_FILES}")
    samples = int(round(SAMPLE_RATE * seconds))
    clips, labels, names, bad = [], [], [], []
    for label, name, read in entries:
        try:
            x = decode_audio(read(), max_seconds)
        except BadItem as exc:
            bad.append((name, str(exc)))
            continue
        if len(x) < min_seconds * SAMPLE_RATE:
            bad.append((name, f"it is {len(x) / SAMPLE_RATE:.2f} s long; the shortest allowed is {min_seconds} s"))
            continue
        clips.append(fit_length(x, samples))
        labels.append(label)
        names.append(name)
    refuse_bad_files(bad, "recordings")
    check_labels(labels, root.name, "recording")
    return np.stack(clips).astype(np.float32), labels, names


class WavFolderParams(BlockParams):
    path: str = Field(
        ..., min_length=1, description="A folder, or a .zip file, with one sub-folder of WAV/FLAC files per label"
    )
    seconds: float = Field(1.0, ge=0.25, le=10.0, description="Clip length: longer recordings are centre-cropped")
    min_seconds: float = Field(0.05, ge=0.0, le=10.0, description="Shorter recordings are reported, not used")
    max_seconds: float = Field(10.0, gt=0.0, le=MAX_SECONDS, description="Longer recordings are reported, not used")
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="Share of each label held out for testing")
    seed: int = Field(0, ge=0, description="Random seed of the split")

    @model_validator(mode="after")
    def _ordered(self) -> WavFolderParams:
        if self.min_seconds >= self.max_seconds:
            raise ValueError(f"min_seconds ({self.min_seconds}) must be below max_seconds ({self.max_seconds})")
        return self


@register_block
class WavFolder(LabelledFolderBlock):
    id = "speech.wav-folder"
    version = "1.0.0"
    kind = Kind.DATA
    domain = "speech"
    inputs = ()
    outputs = (Port("clips", PortType.AUDIO_CLIPS, "16 kHz clips by label with a stratified test split"),)
    Params = WavFolderParams
    file_suffixes = frozenset(AUDIO_SUFFIXES)
    max_file_bytes = MAX_FILE_BYTES
    example = "recording"
    price = Price(10**15, PriceUnit.RUN)  # 0.001 AIC per run
    provider = DATA_PROVIDER
    license = "user data"
    description = "Your recordings (WAV/FLAC, any rate), one sub-folder per label; unusable files are named."

    def _read(self, params: WavFolderParams, base_dir: Path) -> tuple[np.ndarray, list[str], list[str]]:
        return read_clips(self._root(params, base_dir), params.seconds, params.min_seconds, params.max_seconds)

    def load(self, params: WavFolderParams, base_dir: Path) -> AudioClips:
        """Read the recordings and split each label (the same seed gives the same split)."""
        clips, classes, names = self._read(params, base_dir)
        labels = sorted(set(classes))
        train, test = stratified_split(classes, params.test_fraction, params.seed)
        y = np.array([labels.index(c) for c in classes], dtype=np.int64)
        source = {
            "path": str(self._root(params, base_dir)),
            "recordings": len(names),
            "test_files": [names[i] for i in test],  # a mistake traced to its file (builder/ui/fix_data)
        }
        return AudioClips(clips[train], y[train], clips[test], y[test], labels, source)

    def preview(self, params: WavFolderParams, base_dir: Path, rows: int = 5, seed: int | None = None) -> list[dict]:
        """A random sample of clips as the model will hear them (16 kHz mono), with label and file name."""
        clips, classes, names = self._read(params, base_dir)
        picks = random.Random(seed).sample(range(len(classes)), min(rows, len(classes)))
        return [
            {
                "audio": "data:audio/wav;base64," + base64.b64encode(encode_wav(clips[i])).decode(),
                "label": classes[i],
                "file": names[i],
            }
            for i in picks
        ]

    def run(self, ctx: StepContext, inputs: dict[str, Any], params: BlockParams) -> dict[str, Any]:
        assert isinstance(params, WavFolderParams)
        ctx.progress(0, 1, "reading the recordings")
        data = self.load(params, ctx.base_dir)
        ctx.progress(1, 1, "clips ready")
        ctx.log_metric("train_clips", len(data.train_y))
        ctx.log_metric("test_clips", len(data.test_y))
        return {"clips": data}
