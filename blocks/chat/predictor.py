"""Serving-time predictor of `text-classifier` bundles: tokenizers + onnxruntime, no torch needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from builder.registry import register_predictor


class TextRequest(BaseModel):
    text: str = Field(..., min_length=1, description="The user's question", examples=["How do I reset my password?"])


class TextBatchRequest(BaseModel):
    texts: list[str] = Field(..., min_length=1, description="Questions to answer, in order")


class TextResponse(BaseModel):
    answer: str = Field(description="The FAQ answer, or the fallback answer when the question is out of scope")
    intent: str | None = Field(description="The recognised intent; null when confidence is below the threshold")
    score: float = Field(description="Confidence of the top intent, 0..1")
    top_intent: str = Field(description="The most likely intent even when below the threshold")


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
        self.threshold = float(service.get("threshold", 0.0))
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

    def predict_proba(self, items: list[dict[str, str]]) -> np.ndarray:
        """Probabilities (batch, n_labels) for the items' texts."""
        encs = self.tokenizer.encode_batch([i["text"] for i in items])
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
        return self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    def predict(self, items: list[dict[str, str]]) -> list[dict[str, Any]]:
        """Answer, intent and score per item; below the threshold the fallback answer is given."""
        probs = self.predict_proba(items)
        out = []
        for row in probs:
            k = int(row.argmax())
            label, score = self.labels[k], float(row[k])
            confident = score >= self.threshold
            out.append(
                {
                    "answer": self.answers[label] if confident else self.fallback,
                    "intent": label if confident else None,
                    "score": round(score, 6),
                    "top_intent": label,
                }
            )
        return out
