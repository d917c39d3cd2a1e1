"""speech.tts-espeak: a text-to-speech service: text in, a WAV file of it spoken by Debian's espeak-ng out."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field

from blocks import MODEL_PROVIDER
from blocks.speech.audio import SAMPLE_RATE, encode_wav
from blocks.speech.synth import espeak_languages, espeak_variants, speak
from builder.errors import BadItem, DataError
from builder.ports import Port, PortType
from builder.registry import register_block, register_predictor
from builder.spec import Block, BlockParams, Kind, Price, PriceUnit

if TYPE_CHECKING:
    from runtime.context import StepContext

MAX_SPOKEN_SECONDS = 120.0


@dataclass
class TtsModel:
    """A text-to-speech voice: espeak-ng's voice, speed and pitch."""

    voice: str
    speed: int
    pitch: int
    metrics: dict[str, Any] = field(default_factory=dict)

    def parity_inputs(self) -> list[Any]:
        return []  # no exported graph: the service runs espeak-ng with the same settings

    def export(self, bundle_dir: Path) -> dict[str, Any]:
        return {"type": "tts-espeak", "voice": self.voice, "speed": self.speed, "pitch": self.pitch}


class TtsParams(BlockParams):
    voice: str = Field("en-us", min_length=1, description="espeak-ng voice: a language (en-us, de, …), or with a "
                       "variant (en-gb+f3)")  # fmt: skip
    speed: int = Field(160, ge=80, le=450, description="Words per minute")
    pitch: int = Field(50, ge=0, le=99, description="espeak pitch 0-99")


@register_block
class TtsEspeak(Block):
    id = "speech.tts-espeak"
    version = "1.0.0"
    kind = Kind.MODEL
    domain = "speech"
    inputs = ()
    outputs = (Port("model", PortType.MODEL, "a voice: text in, WAV out"),)
    Params = TtsParams
    price = Price(10**14, PriceUnit.RUN)
    call_price = Price(10**14, PriceUnit.CALLS_1K)
    provider = MODEL_PROVIDER
    license = "GPL-3.0 (espeak-ng; its output is free to use)"
    description = "Text to speech with espeak-ng: serve a voice that answers any text with a WAV file."

    def check(self, params: BlockParams, base_dir: Path) -> list[tuple[str, str]]:
        assert isinstance(params, TtsParams)
        try:
            languages, variants = espeak_languages(), set(espeak_variants())
        except DataError as exc:
            return [("voice", str(exc))]
        language, _, variant = params.voice.partition("+")
        if language not in languages:
            return [("voice", f"espeak-ng has no voice {language!r}; try en-us, en-gb or another language code")]
        if variant and variant not in variants:
            return [("voice", f"espeak-ng has no variant {variant!r}; try m1-m7, f1-f5 or croak")]
        return []

    def estimate_seconds(self, params: BlockParams) -> float:
        return 1.0

    def run(self, ctx: StepContext, inputs: dict[str, Any], params: BlockParams) -> dict[str, Any]:
        assert isinstance(params, TtsParams)
        sample = speak("Hello, this is your new voice.", params.voice, params.speed, params.pitch, MAX_SPOKEN_SECONDS)
        ctx.log_metric("sample_seconds", len(sample) / SAMPLE_RATE)
        return {"model": TtsModel(params.voice, params.speed, params.pitch, {"voice": params.voice})}


class SpeakRequest(BaseModel):
    text: str = Field(..., min_length=1, description="What to say", examples=["Your parcel is on its way."])


class SpeakBatchRequest(BaseModel):
    texts: list[str] = Field(..., min_length=1, description="Texts to speak, in order")


class SpeechResponse(BaseModel):
    audio_base64: str = Field(description="The text spoken, as a 16 kHz mono 16-bit WAV file, base64")
    sample_rate: int = Field(description="Samples per second of the WAV file")
    seconds: float = Field(description="Its length")


@register_predictor("tts-espeak")
class TtsPredictor:
    """Runs espeak-ng with the bundle's voice for each text."""

    Request = SpeakRequest
    Response = SpeechResponse
    BatchRequest = SpeakBatchRequest

    def __init__(self, bundle_dir: Path, manifest: dict[str, Any], threads: int | None = None) -> None:
        self.manifest = manifest
        self.voice, self.speed, self.pitch = manifest["voice"], int(manifest["speed"]), int(manifest["pitch"])
        self.max_chars = int((manifest.get("service") or {}).get("max_text_chars", 1000))

    def items_from_batch(self, batch: BaseModel) -> list[dict[str, str]]:
        return [{"text": t} for t in batch.texts]  # type: ignore[attr-defined]

    def check_item(self, item: dict[str, str]) -> str | None:
        if len(item["text"]) > self.max_chars:
            return f"text is {len(item['text'])} characters long; this service accepts at most {self.max_chars}"
        return None

    def prepare(self, item: dict[str, str]) -> dict[str, str]:
        if not item["text"].strip():
            raise BadItem("the text is blank")
        return item

    def predict_proba(self, items: list[dict[str, str]]) -> np.ndarray:
        raise NotImplementedError("a voice gives audio, not class probabilities")

    def predict(self, items: list[dict[str, str]]) -> list[dict[str, Any]]:
        out = []
        for item in items:
            x = speak(self.prepare(item)["text"], self.voice, self.speed, self.pitch, MAX_SPOKEN_SECONDS)
            out.append(
                {
                    "audio_base64": base64.b64encode(encode_wav(x)).decode(),
                    "sample_rate": SAMPLE_RATE,
                    "seconds": round(len(x) / SAMPLE_RATE, 3),
                }
            )
        return out
