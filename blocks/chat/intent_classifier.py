"""chat.intent-classifier: a classification head trained on sentence embeddings; exports encoder + head."""

from __future__ import annotations

import contextlib
import io
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from blocks import MODEL_PROVIDER
from blocks.chat.confidence import OUT_OF_SCOPE_MAX_SIMILARITY, fit_temperature, softmax, threshold_for
from blocks.chat.evaluation import (
    CROSS_VALIDATION,
    DEPENDABLE_EVAL_EXAMPLES,
    fold_count,
    metric_note,
    question_key,
    stratified_folds,
)
from blocks.chat.minilm_encoder import (
    EMBED_DIM,
    SentenceEncoder,
    TextFeatures,
    encoder_dir,
    load_tokenizer,
    load_transformer,
)
from builder.files import atomic_write_bytes
from builder.ports import Port, PortType
from builder.registry import register_block
from builder.spec import Block, BlockParams, Kind, Price, PriceUnit

if TYPE_CHECKING:
    from runtime.context import StepContext

PARITY_SAMPLE = 256  # training questions the export is checked on when there are no held-out ones
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def build_head(n_labels: int, hidden: int, dim: int = EMBED_DIM) -> nn.Module:
    """Linear head (hidden=0) or a one-hidden-layer MLP over `dim`-d embeddings (MiniLM's 384 by default)."""
    if hidden == 0:
        return nn.Linear(dim, n_labels)
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, n_labels))


class EncoderWithHead(nn.Module):
    """The whole served model in one graph: token ids → sentence embedding → calibrated intent probabilities, and
    (when given the FAQ's questions) the cosine similarity to each of them, for "did you mean…?"."""

    def __init__(
        self, encoder: SentenceEncoder, head: nn.Module, temperature: float = 1.0, questions: np.ndarray | None = None
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.temperature = float(temperature)
        dim = head.in_features if isinstance(head, nn.Linear) else head[0].in_features
        unit = np.zeros((0, dim), np.float32) if questions is None else _unit_rows(questions)
        self.register_buffer("questions", torch.from_numpy(unit))  # (n_questions, dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        emb = self.encoder(input_ids, attention_mask)  # (batch, 384)
        probs = torch.softmax(self.head(emb) / self.temperature, dim=-1)  # (batch, n_labels)
        if not len(self.questions):
            return probs
        return probs, nn.functional.normalize(emb, dim=-1) @ self.questions.T  # (batch, n_questions)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (cosine geometry whatever the encoder's `normalize`)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-9, None)


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
    # Plain defaults, so models cached before these fields existed still load (and export as they did).
    temperature: float = 1.0  # divides the logits: fitted on the cross-validation folds (blocks/chat/confidence.py)
    calibration: dict[str, Any] | None = None  # out-of-fold scores the fallback threshold is chosen on
    questions: tuple[str, ...] = ()  # the FAQ's distinct questions, for suggestions
    question_intents: tuple[str, ...] = ()
    question_x: np.ndarray | None = None  # (n_questions, 384) their embeddings

    def threshold_for(self, target: float) -> dict[str, Any]:
        """The fallback threshold that keeps wrong answers at most `target` (blocks/chat/confidence.py)."""
        return threshold_for(self.calibration, target)

    def head(self) -> nn.Module:
        first = next(iter(self.head_state.values()))  # its first layer's weights: (out, embedding width)
        head = build_head(len(self.labels), self.hidden, int(first.shape[1]))
        head.load_state_dict({k: torch.from_numpy(v) for k, v in self.head_state.items()})
        return head.eval()

    def torch_module(self, device: str = "cpu") -> EncoderWithHead:
        """The served model as a torch module (the reference the ONNX export is checked against)."""
        encoder = SentenceEncoder(load_transformer(device, self.encoder["name"]), self.encoder["normalize"])
        return EncoderWithHead(encoder, self.head().to(device), self.temperature, self.question_x).to(device).eval()

    def reference_proba(self, texts: list[str], device: str = "cpu") -> np.ndarray:
        """Probabilities from torch eager, tokenised exactly as at training time."""
        tok = load_tokenizer(self.encoder["name"])(
            texts, padding=True, truncation=True, max_length=self.encoder["max_length"], return_tensors="pt"
        )
        with torch.inference_mode():
            out = self.torch_module(device)(tok["input_ids"].to(device), tok["attention_mask"].to(device))
        return (out[0] if isinstance(out, tuple) else out).float().cpu().numpy()

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
            _export(module, example, buf, similarities=self.question_x is not None)
        atomic_write_bytes(bundle_dir / "model.onnx", buf.getvalue())
        src = encoder_dir(self.encoder["name"])
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
            "temperature": self.temperature,
            # Output 2 of the graph: the similarity to each of these, in this order.
            **(
                {"questions": [list(q) for q in zip(self.questions, self.question_intents, strict=True)]}
                if self.question_x is not None
                else {}
            ),  # fmt: skip
        }


def _export(module: nn.Module, example: torch.Tensor, buf: io.BytesIO, similarities: bool) -> None:
    outputs = ["probabilities", "similarities"] if similarities else ["probabilities"]
    torch.onnx.export(
        module,
        (example, torch.ones_like(example)),
        buf,
        input_names=["input_ids", "attention_mask"],
        output_names=outputs,
        dynamic_axes={
            "input_ids": {0: "batch", 1: "tokens"},
            "attention_mask": {0: "batch", 1: "tokens"},
            **{name: {0: "batch"} for name in outputs},
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
    learn_from_answers: bool = Field(
        True, description="Also learn from each answer's own text, as one more way of asking its question"
    )


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
        # The served model learns from every row of the FAQ file: a split's evaluation rows too (it is measured
        # by a model trained on the rest, below). A held-out file is never trained on.
        split = feats.eval_split == "split"
        rows_x = np.concatenate([feats.train_x, feats.eval_x]) if split else feats.train_x
        rows_intents = list(feats.train_intents) + (list(feats.eval_intents) if split else [])
        rows_texts = list(feats.train_texts) + (list(feats.eval_texts) if split and feats.train_texts else [])
        x = torch.from_numpy(rows_x).to(device)
        y = torch.tensor([index[i] for i in rows_intents], device=device)
        # Answers are training rows only: every head (served, per fold, hold-out) learns from them; no metric,
        # calibration or suggestion counts them, as nobody asks an answer.
        extra = _answer_rows(feats, index, device) if params.learn_from_answers else None
        fit_x, fit_y = _with(x, y, extra)
        # Anything but a real hold-out (cross-validation; "train" in features cached by an older version, whose
        # eval rows were the training rows) is measured by cross-validation, never on the rows trained on.
        held_out = feats.eval_split in ("heldout", "split")
        ex = torch.from_numpy(feats.eval_x).to(device) if held_out else x[:0]
        ey = torch.tensor([index[i] for i in feats.eval_intents], device=device) if held_out else y[:0]

        torch.manual_seed(params.seed)
        head = build_head(len(labels), params.hidden, x.shape[1]).to(device)
        opt = torch.optim.Adam(head.parameters(), lr=params.lr, weight_decay=params.weight_decay)
        logged_eval = (ex, ey) if feats.eval_split == "heldout" else (x[:0], y[:0])  # split rows are trained on
        loss_value = fit(
            ctx, head, opt, (fit_x, fit_y, *logged_eval), epochs=params.epochs, batch_size=params.batch_size,
            seed=params.seed,
        )  # fmt: skip
        per_answer = [int((y == i).sum()) for i in range(len(labels))]
        keys = [question_key(t) for t in rows_texts] if len(rows_texts) == len(y) else [str(i) for i in range(len(y))]
        oos_x = _out_of_scope_rows(feats.oos_x, rows_x)
        # A verifier's replay checks the committed training; its metrics and calibration are never used.
        replay = ctx.verify_epochs is not None
        cv = None if replay else cross_validate(x, y, keys, len(labels), params, device, oos_x, extra)
        eval_logits: torch.Tensor | None = None
        if feats.eval_split == "heldout":
            with torch.no_grad():
                eval_logits = head(ex)
            measured = {
                "accuracy": round(accuracy(head, ex, ey), 6),
                "baseline_accuracy": baseline_accuracy(y, ey),
                "eval_examples": len(ey),
                "eval_split": feats.eval_split,
            }
        elif split:
            n_train = len(feats.train_intents)
            measured, eval_logits = hold_out(x[:n_train], y[:n_train], ex, ey, len(labels), params, device, extra)
        elif cv is not None:
            measured = cv["metrics"]
        else:
            measured = {"eval_split": CROSS_VALIDATION}
        note = metric_note(measured["eval_split"], measured.get("eval_examples", 0), per_answer,
                           measured.get("cv_folds", 0))  # fmt: skip
        temperature, calibration = calibrate(cv, y, eval_logits, ey) if cv is not None else (1.0, None)
        started = time.perf_counter()
        evaluation = faq_evaluation(feats, labels, (y, rows_texts), (ey, eval_logits), cv, temperature)
        if evaluation is not None:
            evaluation["seconds"] = round(time.perf_counter() - started, 4)
        metrics = {
            **measured,
            "train_accuracy": round(accuracy(head, x, y), 6),
            "loss": round(loss_value, 6) if loss_value == loss_value else None,
            "intents": len(labels),
            "epochs": params.epochs,
            **({"metric_note": note} if note else {}),
            **({"data_warnings": list(feats.warnings)} if getattr(feats, "warnings", ()) else {}),
            **({"evaluation": evaluation} if evaluation is not None else {}),
        }
        first_of: dict[str, int] = {}  # the FAQ's distinct questions, in file order, for suggestions
        for i, key in enumerate(keys):
            first_of.setdefault(key, i)
        distinct = list(first_of.values()) if len(rows_texts) == len(y) else []
        model = TextClassifierModel(
            head_state={k: v.detach().cpu().numpy() for k, v in head.state_dict().items()},
            hidden=params.hidden,
            labels=labels,
            answers=dict(feats.answers),
            encoder=dict(feats.encoder),
            metrics=metrics,
            # The export's parity check needs questions, held out or not: under cross-validation, training ones
            # (a sample when eval_fraction 0 leaves a large file without a hold-out).
            eval_texts=list(feats.eval_texts) if held_out else list(rows_texts[:PARITY_SAMPLE]),
            temperature=temperature,
            calibration=calibration,
            questions=tuple(rows_texts[i] for i in distinct),
            question_intents=tuple(rows_intents[i] for i in distinct),
            question_x=rows_x[distinct] if distinct else None,
        )
        return {"model": model, "metrics": metrics}


def _answer_rows(feats: TextFeatures, index: dict[str, int], device: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(embeddings, labels) of the answers' own texts, when the features carry them (older cached ones do not)."""
    answer_x = getattr(feats, "answer_x", None)
    if answer_x is None or not len(answer_x):
        return None
    labels = [index[i] for i in feats.answer_intents]
    return torch.from_numpy(answer_x).to(device), torch.tensor(labels, device=device)


def _with(
    x: torch.Tensor, y: torch.Tensor, extra: tuple[torch.Tensor, torch.Tensor] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training rows plus the `extra` ones (the answers' texts), if any."""
    return (torch.cat([x, extra[0]]), torch.cat([y, extra[1]])) if extra else (x, y)


def _out_of_scope_rows(oos_x: np.ndarray | None, rows_x: np.ndarray) -> np.ndarray:
    """The general out-of-scope questions less those close to one of the FAQ's (the FAQ may well answer them)."""
    if oos_x is None or not len(oos_x):
        return np.zeros((0, rows_x.shape[1]), np.float32)
    nearest = (_unit_rows(oos_x) @ _unit_rows(rows_x).T).max(axis=1)
    return oos_x[nearest < OUT_OF_SCOPE_MAX_SIMILARITY]


def calibrate(
    cv: dict[str, Any], y: torch.Tensor, eval_logits: torch.Tensor | None, ey: torch.Tensor
) -> tuple[float, dict[str, Any]]:
    """(temperature, calibration data) from the cross-validation's out-of-fold logits: the temperature is fitted
    only on enough questions (else 1); the held-out questions' calibrated scores come along to measure with."""
    logits, labels = cv["logits"].cpu().numpy().astype(np.float64), y.cpu().numpy()
    dependable = len(labels) >= DEPENDABLE_EVAL_EXAMPLES
    temperature = fit_temperature(logits, labels) if dependable else 1.0
    probs = softmax(logits, temperature)
    oos = cv["oos_logits"].cpu().numpy().astype(np.float64)
    calibration: dict[str, Any] = {
        "dependable": dependable,
        "scores": probs.max(axis=1).round(6).tolist(),
        "wrong": (probs.argmax(axis=1) != labels).tolist(),
        "oos_scores": softmax(oos, temperature).max(axis=1).round(6).tolist() if len(oos) else [],
    }
    if eval_logits is not None and len(ey):
        held = softmax(eval_logits.cpu().numpy().astype(np.float64), temperature)
        calibration["heldout_scores"] = held.max(axis=1).round(6).tolist()
        calibration["heldout_right"] = (held.argmax(axis=1) == ey.cpu().numpy()).tolist()
    return temperature, calibration


def _fit_head(
    x: torch.Tensor, y: torch.Tensor, n_labels: int, params: IntentClassifierParams, device: str
) -> nn.Module:
    """A head trained quietly with the served head's params and seed (for measuring, never served)."""
    from runtime.training import fit_quietly

    torch.manual_seed(params.seed)
    head = build_head(n_labels, params.hidden, x.shape[1]).to(device)
    opt = torch.optim.Adam(head.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    fit_quietly(head, opt, x, y, epochs=params.epochs, batch_size=params.batch_size, seed=params.seed, device=device)
    return head


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Torch on one CPU thread for a while: a head's steps are far too small to share out, and on a busy machine
    two threads waiting on each other made the folds 50× slower (measured: 0.3 s against 39 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def hold_out(
    x: torch.Tensor, y: torch.Tensor, ex: torch.Tensor, ey: torch.Tensor, n_labels: int,
    params: IntentClassifierParams, device: str, extra: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[dict[str, Any], torch.Tensor]:  # fmt: skip
    """Accuracy on a split's evaluation rows of a head trained on the rest only; (metrics, its eval logits)."""
    from runtime.training import accuracy, baseline_accuracy

    with _one_thread():
        head = _fit_head(*_with(x, y, extra), n_labels, params, device)
    with torch.no_grad():
        logits = head(ex)
    measured = {
        "accuracy": round(accuracy(head, ex, ey), 6),
        "baseline_accuracy": baseline_accuracy(y, ey),
        "eval_examples": len(ey),
        "eval_split": "split",
    }
    return measured, logits


def faq_evaluation(
    feats: TextFeatures, labels: list[str], rows: tuple[torch.Tensor, list[str]],
    held: tuple[torch.Tensor, torch.Tensor | None], cv: dict[str, Any] | None, temperature: float,
) -> dict[str, Any] | None:  # fmt: skip
    """The evaluation (runtime/evaluation.py) of the questions the metric was measured on, each answered by a model
    that never trained on it: the held-out ones, else every row by cross-validation; probabilities calibrated as
    the service's are, misclassified questions shown as their text."""
    from runtime.evaluation import classification_evaluation

    if held[1] is not None:
        truth, logits, texts = held[0], held[1], list(feats.eval_texts)
    elif cv is not None:
        truth, logits, texts = rows[0], cv["logits"], rows[1]
    else:
        return None
    if not len(truth):
        return None
    probs = torch.softmax(logits.detach().cpu() / temperature, dim=-1).numpy()

    def shown(i: int) -> dict[str, str]:
        return {"text": texts[i]} if i < len(texts) else {}

    keyed = texts if len(texts) == len(truth) else None
    return classification_evaluation(truth.cpu().numpy(), probs, labels, shown, keys=keyed)


def cross_validate(
    x: torch.Tensor, y: torch.Tensor, keys: list[str], n_labels: int, params: IntentClassifierParams, device: str,
    oos_x: np.ndarray | None = None, extra: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Accuracy (and the majority baseline's) over every row, each predicted by a head trained, with the same
    params and seed, on the other folds (and the `extra` rows, the answers' texts, never predicted) only
    (blocks/chat/evaluation.py states the rule): {"metrics", "logits" (out of fold, one row per question),
    "oos_logits" (each out-of-scope question scored by one fold's head)}."""
    intents = [str(int(i)) for i in y.cpu()]
    k = fold_count(intents, keys)
    fold = torch.tensor(stratified_folds(intents, keys, k, params.seed), device=device)
    oos = torch.from_numpy(np.zeros((0, x.shape[1]), np.float32) if oos_x is None else oos_x).to(device)
    oos_fold = torch.arange(len(oos), device=device) % k
    logits = torch.zeros((len(y), n_labels), device=device)
    oos_logits = torch.zeros((len(oos), n_labels), device=device)
    majority = torch.empty_like(y)
    with _one_thread():
        for f in range(k):
            train, test = fold != f, fold == f
            head = _fit_head(*_with(x[train], y[train], extra), n_labels, params, device)
            with torch.no_grad():
                logits[test] = head(x[test])
                oos_logits[oos_fold == f] = head(oos[oos_fold == f])
            majority[test] = int(torch.bincount(y[train].cpu(), minlength=n_labels).argmax())
    predicted = logits.argmax(dim=-1)
    metrics = {
        "accuracy": round(float((predicted == y).float().mean()), 6),
        "baseline_accuracy": round(float((majority == y).float().mean()), 6),
        "eval_examples": len(y),
        "eval_split": CROSS_VALIDATION,
        "cv_folds": k,
    }
    return {"metrics": metrics, "logits": logits, "oos_logits": oos_logits}
