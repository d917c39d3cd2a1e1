"""Serving-time predictor of `text-classifier` bundles: tokenizers + onnxruntime, no torch needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from blocks.chat.confidence import FIXED_THRESHOLD, suggestions
from builder.registry import register_predictor


class TextRequest(BaseModel):
    text: str = Field(..., min_length=1, description="The user's question", examples=["How do I reset my password?"])


class TextBatchRequest(BaseModel):
    texts: list[str] = Field(..., min_length=1, description="Questions to answer, in order")


class Suggestion(BaseModel):
    question: str = Field(description="A question of the FAQ close to the one asked")
    answer: str = Field(description="That question's answer")
    score: float = Field(description="How close it is to the question asked (cosine similarity, up to 1)")


class TextResponse(BaseModel):
    answer: str = Field(description="The FAQ answer, or the fallback answer when the question is out of scope")
    intent: str | None = Field(description="The recognised intent; null when confidence is below the threshold")
    score: float = Field(description="Confidence of the top intent, 0..1")
    top_intent: str = Field(description="The most likely intent even when below the threshold")
    suggestions: list[Suggestion] = Field(
        default_factory=list,
        description="Below the threshold: the FAQ questions closest to the one asked (one per answer, closest "
        'first), for a "did you mean…?"; empty when the answer is given',
    )


@register_predictor("text-classifier")
class TextClassifierPredictor:
    """One onnxruntime session per process; tokenisation with the bundle's own tokenizer.json."""

    Request = TextRequest
    Response = TextResponse
    BatchRequest = TextBatchRequest

    def __init__(self, bundle_dir: Path, manifest: dict[str, Any], threads: int | None = None) -> None:
        from tokenizers import Tokenizer

        from runtime.bundle import onnx_session

        self.manifest = manifest
        self.labels: list[str] = manifest["labels"]
        self.answers: dict[str, str] = manifest["answers"]
        service = manifest.get("service", {})
        threshold = service.get("threshold")  # null in a manifest: the fixed default
        self.threshold = float(FIXED_THRESHOLD if threshold is None else threshold)
        pairs = manifest.get("questions") or []  # bundles before suggestions have none (and one output)
        self.questions = [q for q, _ in pairs]
        self.question_intents = [i for _, i in pairs]
        self.fallback = service.get("fallback_answer", "Sorry, I don't know that yet.")
        self.max_chars = int(service.get("max_text_chars", 1000))
        self.tokenizer = Tokenizer.from_file(str(bundle_dir / manifest["tokenizer_file"]))
        self.tokenizer.enable_truncation(max_length=int(manifest["max_length"]))
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self.session = onnx_session(bundle_dir / manifest["model_file"], threads)

    def items_from_batch(self, batch: BaseModel) -> list[dict[str, str]]:
        return [{"text": t} for t in batch.texts]  # type: ignore[attr-defined]

    def check_item(self, item: dict[str, str]) -> str | None:
        text = item["text"]
        if not text.strip():
            return None
        if len(text) > self.max_chars:
            return f"text is {len(text)} characters long; this service accepts at most {self.max_chars}"
        return None

    def _run(self, items: list[dict[str, str]]) -> list[np.ndarray]:
        """The graph's outputs for the items' texts: probabilities (batch, n_labels) [, similarities (batch,
        n_questions)]."""
        encs = self.tokenizer.encode_batch([i["text"] for i in items])
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
        return self.session.run(None, {"input_ids": ids, "attention_mask": mask})

    def predict_proba(self, items: list[dict[str, str]]) -> np.ndarray:
        """Probabilities (batch, n_labels) for the items' texts."""
        return self._run(items)[0]

    def predict(self, items: list[dict[str, str]]) -> list[dict[str, Any]]:
        """Answer, intent and score per item; below the threshold the fallback answer, with suggestions."""
        outputs = self._run(items)
        probs = outputs[0]
        sims = outputs[1] if len(outputs) > 1 and self.questions else None
        out = []
        for n, row in enumerate(probs):
            k = int(row.argmax())
            label, score = self.labels[k], float(row[k])
            confident = score >= self.threshold
            close = [] if confident or sims is None else suggestions(sims[n], self.questions, self.question_intents,
                                                                     self.answers)  # fmt: skip
            out.append(
                {
                    "answer": self.answers[label] if confident else self.fallback,
                    "intent": label if confident else None,
                    "score": round(score, 6),
                    "top_intent": label,
                    "suggestions": close,
                }
            )
        return out
