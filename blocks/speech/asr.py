"""speech.asr-pocketsphinx: speech to text with the en-US model the pocketsphinx package ships (no download),
optionally restricted to a command grammar (JSGF), which is far more accurate on a closed set of commands."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field

from blocks import MODEL_PROVIDER
from blocks.speech.audio import SAMPLE_RATE
from blocks.speech.predictor import AudioInput
from blocks.speech.synth import SILENCE, UNKNOWN, AudioClips
from builder.ports import Port, PortType
from builder.registry import register_block, register_predictor
from builder.spec import Block, BlockParams, Kind, Price, PriceUnit

if TYPE_CHECKING:
    from runtime.context import StepContext

WORD = re.compile(r"^[a-z][a-z']*$")


def command_grammar(commands: list[str]) -> str:
    """A JSGF grammar accepting one of `commands` (each one or more words), or nothing: without the empty
    alternative, silence would be forced onto the nearest command."""
    alternatives = " | ".join(" ".join(c.lower().split()) for c in commands)
    return f"#JSGF V1.0;\ngrammar commands;\npublic <command> = <NULL> | {alternatives};\n"


def decoder(grammar: str | None) -> Any:
    """A pocketsphinx decoder with the bundled en-US model: the grammar's search, or the open language model."""
    from pocketsphinx import Decoder

    if not grammar:
        return Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
    dec = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL", lm=None)
    try:
        dec.add_jsgf_string("grammar", grammar)
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"the grammar cannot be parsed: {exc}") from None
    dec.activate_search("grammar")
    return dec


def unknown_words(commands: list[str]) -> list[str]:
    """The words of `commands` that the bundled en-US dictionary does not know (they can never be heard)."""
    dec = decoder(None)
    return sorted({w for c in commands for w in c.lower().split() if dec.lookup_word(w) is None})


def transcribe(dec: Any, x: np.ndarray) -> str:
    """The decoder's best hypothesis for a 16 kHz mono clip ("" when it heard nothing)."""
    pcm = (np.clip(x, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    dec.start_utt()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()
    hyp = dec.hyp()
    return " ".join(hyp.hypstr.split()) if hyp else ""


@dataclass
class AsrModel:
    """A speech recogniser: the bundled acoustic model, with a grammar or the open language model."""

    grammar: str | None
    metrics: dict[str, Any] = field(default_factory=dict)

    def parity_inputs(self) -> list[Any]:
        return []  # no exported graph: the service runs the very decoder measured here

    def export(self, bundle_dir: Path) -> dict[str, Any]:
        return {"type": "asr-pocketsphinx", "grammar": self.grammar, "sample_rate": SAMPLE_RATE}


class AsrParams(BlockParams):
    commands: list[str] = Field(
        default_factory=list,
        description="Closed set of commands to recognise (a JSGF grammar); empty: the labels of the clips "
        "connected, or open vocabulary when none are",
    )
    grammar: str = Field("", max_length=20_000, description="Your own JSGF grammar (overrides `commands`)")
    open_vocabulary: bool = Field(False, description="Ignore commands and labels: transcribe any English speech")
    eval_clips: int = Field(200, ge=0, le=5000, description="Test clips transcribed to measure accuracy")


def _grammar_for(params: AsrParams, labels: list[str]) -> str | None:
    if params.open_vocabulary:
        return None
    if params.grammar.strip():
        return params.grammar
    commands = params.commands or [w for w in labels if w not in (UNKNOWN, SILENCE)]
    return command_grammar(commands) if commands else None


@register_block
class AsrPocketsphinx(Block):
    id = "speech.asr-pocketsphinx"
    version = "1.0.0"
    kind = Kind.MODEL
    domain = "speech"
    inputs = (Port("clips", PortType.AUDIO_CLIPS, "labelled clips to measure accuracy on", optional=True),)
    outputs = (
        Port("model", PortType.MODEL, "speech recogniser (audio in, text out)"),
        Port("metrics", PortType.METRICS, "accuracy on the test clips, when clips are connected"),
    )
    Params = AsrParams
    price = Price(10**15, PriceUnit.RUN)  # 0.001 AIC per run
    call_price = Price(3 * 10**14, PriceUnit.CALLS_1K)
    provider = MODEL_PROVIDER
    license = "BSD-2-Clause (CMU Sphinx)"
    description = "Speech to text with pocketsphinx's bundled en-US model; a command grammar for closed command sets."

    def check(self, params: BlockParams, base_dir: Path) -> list[tuple[str, str]]:
        assert isinstance(params, AsrParams)
        bad = [c for c in params.commands if not all(WORD.match(w) for w in c.lower().split())]
        if bad:
            return [("commands", f"{bad[0]!r} is not a command of English words")]
        unknown = unknown_words(params.commands)
        if unknown:
            return [("commands", f"the en-US dictionary does not know {', '.join(unknown)}; use other words")]
        if params.grammar.strip():
            try:
                decoder(params.grammar)
            except ValueError as exc:
                return [("grammar", str(exc))]
        return []

    def estimate_seconds(self, params: BlockParams) -> float:
        assert isinstance(params, AsrParams)
        return 2.0 + 0.3 * params.eval_clips

    def run(self, ctx: StepContext, inputs: dict[str, Any], params: BlockParams) -> dict[str, Any]:
        assert isinstance(params, AsrParams)
        clips: AudioClips | None = inputs.get("clips")
        grammar = _grammar_for(params, clips.labels if clips else [])
        dec = decoder(grammar)
        metrics: dict[str, Any] = {"vocabulary": "grammar" if grammar else "open"}
        if clips is not None and params.eval_clips:
            # _unknown_ clips have no transcript to compare with; _silence_ must give nothing.
            keep = [i for i, y in enumerate(clips.test_y) if clips.labels[y] != UNKNOWN][: params.eval_clips]
            expected = ["" if clips.labels[clips.test_y[i]] == SILENCE else clips.labels[clips.test_y[i]] for i in keep]
            heard = []
            for n, i in enumerate(keep):
                heard.append(transcribe(dec, clips.test_x[i]))
                ctx.progress(n + 1, len(keep), "transcribing the test clips")
            if keep:
                right = [h == e for h, e in zip(heard, expected, strict=True)]
                per_label = {
                    e or SILENCE: float(np.mean([r for r, x in zip(right, expected, strict=True) if x == e]))
                    for e in sorted(set(expected))
                }
                metrics.update(accuracy=float(np.mean(right)), eval_clips=len(keep), accuracy_by_label=per_label)
                ctx.log_metric("accuracy", metrics["accuracy"])
        return {"model": AsrModel(grammar, metrics), "metrics": metrics}


class TranscriptResponse(BaseModel):
    text: str = Field(description="What was said (empty when nothing was recognised)")


@register_predictor("asr-pocketsphinx")
class AsrPredictor(AudioInput):
    """The bundled en-US decoder with the bundle's grammar; one decoder per serving thread (they keep state)."""

    Response = TranscriptResponse

    def __init__(self, bundle_dir: Path, manifest: dict[str, Any], threads: int | None = None) -> None:
        self.manifest = manifest
        self.grammar = manifest.get("grammar")
        self._local = threading.local()
        decoder(self.grammar)  # a bad grammar fails at load, not on the first call

    def predict_proba(self, items: list[dict[str, Any]]) -> np.ndarray:
        raise NotImplementedError("a speech recogniser gives text, not class probabilities")

    def predict(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        dec = getattr(self._local, "decoder", None)
        if dec is None:
            dec = self._local.decoder = decoder(self.grammar)
        return [{"text": transcribe(dec, self.prepare(i)["samples"])} for i in items]
