"""chat.intent-classifier: a classification head trained on sentence embeddings; exports encoder + head."""

from __future__ import annotations

import io
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from blocks import MODEL_PROVIDER
from blocks.chat.evaluation import CROSS_VALIDATION, fold_count, metric_note, question_key, stratified_folds
from blocks.chat.minilm_encoder import EMBED_DIM, SentenceEncoder, TextFeatures, encoder_dir, load_transformer
from builder.files import atomic_write_bytes
from builder.ports import Port, PortType
from builder.registry import register_block
from builder.spec import Block, BlockParams, Kind, Price, PriceUnit

if TYPE_CHECKING:
    from runtime.context import StepContext

PARITY_SAMPLE = 256  # training questions the export is checked on when there are no held-out ones
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def build_head(n_labels: int, hidden: int) -> nn.Module:
    """Linear head (hidden=0) or a one-hidden-layer MLP over 384-d embeddings."""
    if hidden == 0:
        return nn.Linear(EMBED_DIM, n_labels)
    return nn.Sequential(nn.Linear(EMBED_DIM, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, n_labels))


class EncoderWithHead(nn.Module):
    """The whole served model in one graph: token ids → sentence embedding → intent probabilities."""

    def __init__(self, encoder: SentenceEncoder, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        emb = self.encoder(input_ids, attention_mask)  # (batch, 384)
        return torch.softmax(self.head(emb), dim=-1)  # (batch, n_labels)


@dataclass
class TextClassifierModel:
    """A trained intent classifier: head weights, labels, answers and the encoder it was trained on."""

    head_state: dict[str, np.ndarray]
    hidden: int
    labels: list[str]
    answers: dict[str, str]
    encoder: dict[str, Any]
    metrics: dict[str, Any]
    eval_texts: list[str] = field(default_factory=list)

    def head(self) -> nn.Module:
        head = build_head(len(self.labels), self.hidden)
        head.load_state_dict({k: torch.from_numpy(v) for k, v in self.head_state.items()})
        return head.eval()

    def torch_module(self, device: str = "cpu") -> EncoderWithHead:
        """The served model as a torch module (the reference the ONNX export is checked against)."""
        encoder = SentenceEncoder(load_transformer(device), self.encoder["normalize"])
        return EncoderWithHead(encoder, self.head().to(device)).eval()

    def reference_proba(self, texts: list[str], device: str = "cpu") -> np.ndarray:
        """Probabilities from torch eager, tokenised exactly as at training time."""
        from blocks.chat.minilm_encoder import load_tokenizer

        tok = load_tokenizer()(
            texts, padding=True, truncation=True, max_length=self.encoder["max_length"], return_tensors="pt"
        )
        with torch.inference_mode():
            probs = self.torch_module(device)(tok["input_ids"].to(device), tok["attention_mask"].to(device))
        return probs.float().cpu().numpy()

    def parity_inputs(self) -> list[Any]:
        """Inputs on which the exported graph must agree with torch."""
        return [{"text": t} for t in self.eval_texts]

    def reference_outputs(self, items: list[Any]) -> np.ndarray:
        return self.reference_proba([i["text"] for i in items])

    def export(self, bundle_dir: Path) -> dict[str, Any]:
        """Write model.onnx (encoder + head) and tokenizer files; return this model's manifest fields."""
        module = self.torch_module("cpu")
        example = torch.ones((1, 8), dtype=torch.long)
        buf = io.BytesIO()
        with warnings.catch_warnings():
            # The tracer warns about shape-dependent Python branches inside transformers' attention; the
            # parity check on every evaluation example is what proves the graph right.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Exporting aten::index operator")
            _export(module, example, buf)
        atomic_write_bytes(bundle_dir / "model.onnx", buf.getvalue())
        src = encoder_dir()
        for name in TOKENIZER_FILES:
            if (src / name).exists():
                shutil.copyfile(src / name, bundle_dir / name)
        return {
            "type": "text-classifier",
            "model_file": "model.onnx",
            "tokenizer_file": "tokenizer.json",
            "max_length": self.encoder["max_length"],
            "encoder": self.encoder["name"],
            "labels": list(self.labels),
            "answers": dict(self.answers),
        }


def _export(module: nn.Module, example: torch.Tensor, buf: io.BytesIO) -> None:
    torch.onnx.export(
        module,
        (example, torch.ones_like(example)),
        buf,
        input_names=["input_ids", "attention_mask"],
        output_names=["probabilities"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "tokens"},
            "attention_mask": {0: "batch", 1: "tokens"},
            "probabilities": {0: "batch"},
        },
        opset_version=17,
        dynamo=False,
    )


class IntentClassifierParams(BlockParams):
    epochs: int = Field(60, ge=1, le=1000, description="Passes over the training examples")
    lr: float = Field(0.02, gt=0.0, le=1.0, description="Learning rate of the Adam optimiser")
    seed: int = Field(0, ge=0, description="Random seed: the same seed and data give the same model")
    hidden: int = Field(0, ge=0, le=4096, description="Hidden units of the head; 0 for a linear head")
    batch_size: int = Field(32, ge=1, le=4096, description="Examples per optimisation step")
    weight_decay: float = Field(1e-4, ge=0.0, le=1.0, description="L2 penalty on the head's weights")


@register_block
class IntentClassifier(Block):
    id = "chat.intent-classifier"
    version = "1.0.0"
    kind = Kind.MODEL
    domain = "chat"
    inputs = (Port("features", PortType.TENSOR_SHARDS, "sentence embeddings with intents"),)
    outputs = (
        Port("model", PortType.MODEL, "trained encoder + intent head"),
        Port("metrics", PortType.METRICS, "accuracy on held-out questions, or by cross-validation"),
    )
    Params = IntentClassifierParams
    price = Price(3 * 10**15, PriceUnit.RUN)  # 0.003 AIC per run
    call_price = Price(3 * 10**14, PriceUnit.CALLS_1K)
    provider = MODEL_PROVIDER
    license = "Apache-2.0"
    description = "Trains an intent classification head on sentence embeddings (epochs, lr, seed)."
    trains = True

    def estimate_seconds(self, params: BlockParams) -> float:
        assert isinstance(params, IntentClassifierParams)
        return 0.02 * params.epochs

    def run(self, ctx: StepContext, inputs: dict[str, Any], params: BlockParams) -> dict[str, Any]:
        from runtime.training import accuracy, baseline_accuracy, fit

        assert isinstance(params, IntentClassifierParams)
        feats: TextFeatures = inputs["features"]
        labels = sorted(feats.answers)
        index = {label: i for i, label in enumerate(labels)}
        device = ctx.device
        x = torch.from_numpy(feats.train_x).to(device)
        y = torch.tensor([index[i] for i in feats.train_intents], device=device)
        # Anything but a real hold-out (cross-validation; "train" in features cached by an older version, whose
        # eval rows were the training rows) is measured by cross-validation, never on the rows trained on.
        held_out = feats.eval_split in ("heldout", "split")
        ex = torch.from_numpy(feats.eval_x).to(device) if held_out else x[:0]
        ey = torch.tensor([index[i] for i in feats.eval_intents], device=device) if held_out else y[:0]

        torch.manual_seed(params.seed)
        head = build_head(len(labels), params.hidden).to(device)
        opt = torch.optim.Adam(head.parameters(), lr=params.lr, weight_decay=params.weight_decay)
        loss_value = fit(
            ctx, head, opt, (x, y, ex, ey), epochs=params.epochs, batch_size=params.batch_size, seed=params.seed
        )
        per_answer = [int((y == i).sum()) for i in range(len(labels))]
        if held_out:
            measured = {
                "accuracy": round(accuracy(head, ex, ey), 6),
                "baseline_accuracy": baseline_accuracy(y, ey),
                "eval_examples": len(ey),
                "eval_split": feats.eval_split,
            }
        elif ctx.verify_epochs is None:  # after the served model's training, which it leaves untouched
            keys = [question_key(t) for t in feats.train_texts] or [str(i) for i in range(len(y))]
            measured = cross_validate(x, y, keys, len(labels), params, device)
        else:  # a verifier's replay checks the committed training; its metrics are never used
            measured = {"eval_split": CROSS_VALIDATION}
        note = metric_note(measured["eval_split"], measured.get("eval_examples", 0), per_answer,
                           measured.get("cv_folds", 0))  # fmt: skip
        metrics = {
            **measured,
            "train_accuracy": round(accuracy(head, x, y), 6),
            "loss": round(loss_value, 6) if loss_value == loss_value else None,
            "intents": len(labels),
            "epochs": params.epochs,
            **({"metric_note": note} if note else {}),
        }
        model = TextClassifierModel(
            head_state={k: v.detach().cpu().numpy() for k, v in head.state_dict().items()},
            hidden=params.hidden,
            labels=labels,
            answers=dict(feats.answers),
            encoder=dict(feats.encoder),
            metrics=metrics,
            # The export's parity check needs questions, held out or not: under cross-validation, training ones
            # (a sample when eval_fraction 0 leaves a large file without a hold-out).
            eval_texts=list(feats.eval_texts) if held_out else list(feats.train_texts[:PARITY_SAMPLE]),
        )
        return {"model": model, "metrics": metrics}


def cross_validate(
    x: torch.Tensor, y: torch.Tensor, keys: list[str], n_labels: int, params: IntentClassifierParams, device: str
) -> dict[str, Any]:
    """Accuracy (and the majority baseline's) over every row, each predicted by a head trained, with the same
    params and seed, on the other folds only (blocks/chat/evaluation.py states the rule)."""
    from runtime.training import fit_quietly

    intents = [str(int(i)) for i in y.cpu()]
    k = fold_count(intents, keys)
    fold = torch.tensor(stratified_folds(intents, keys, k, params.seed), device=device)
    predicted, majority = torch.empty_like(y), torch.empty_like(y)
    for f in range(k):
        train, test = fold != f, fold == f
        torch.manual_seed(params.seed)
        head = build_head(n_labels, params.hidden).to(device)
        opt = torch.optim.Adam(head.parameters(), lr=params.lr, weight_decay=params.weight_decay)
        fit_quietly(head, opt, x[train], y[train], epochs=params.epochs, batch_size=params.batch_size,
                    seed=params.seed, device=device)  # fmt: skip
        with torch.no_grad():
            predicted[test] = head(x[test]).argmax(dim=-1)
        majority[test] = int(torch.bincount(y[train].cpu(), minlength=n_labels).argmax())
    return {
        "accuracy": round(float((predicted == y).float().mean()), 6),
        "baseline_accuracy": round(float((majority == y).float().mean()), 6),
        "eval_examples": len(y),
        "eval_split": CROSS_VALIDATION,
        "cv_folds": k,
    }
