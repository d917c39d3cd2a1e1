"""service.api: export a trained model as an ONNX service bundle, checked for parity, ready to serve."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from blocks import SERVICE_PROVIDER
from builder.ports import Port, PortType
from builder.registry import register_block
from builder.spec import Block, BlockParams, Kind, Price, PriceUnit

if TYPE_CHECKING:
    from runtime.context import StepContext


class ServiceApiParams(BlockParams):
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Below this confidence the fallback answer is given")
    fallback_answer: str = Field(
        "Sorry, I don't know that yet.",
        min_length=1,
        max_length=1000,
        description="Answer for questions the model is not confident about",
    )
    max_text_chars: int = Field(1000, ge=1, le=100_000, description="Longest accepted input text (longer: HTTP 413)")
    max_batch: int = Field(64, ge=1, le=4096, description="Most items in one batch request (more: HTTP 413)")


@register_block
class ServiceApi(Block):
    id = "service.api"
    version = "1.0.0"
    kind = Kind.SERVICE
    domain = "service"
    inputs = (Port("model", PortType.MODEL, "the trained model to serve"),)
    outputs = (Port("service", PortType.SERVICE_BUNDLE, "self-contained ONNX bundle"),)
    Params = ServiceApiParams
    price = Price(10**15, PriceUnit.RUN)  # export fee, 0.001 AIC per run
    call_price = Price(10**15, PriceUnit.CALLS_1K)  # 0.001 AIC per 1k served calls
    provider = SERVICE_PROVIDER
    license = "Apache-2.0"
    description = "Exports the model to ONNX (parity-checked) and serves it over HTTP with API keys and metering."
    cacheable = False  # the manifest names the plan that produced it

    def estimate_seconds(self, params: BlockParams) -> float:
        return 5.0

    def run(self, ctx: StepContext, inputs: dict[str, Any], params: BlockParams) -> dict[str, Any]:
        from runtime.export import export_bundle

        assert isinstance(params, ServiceApiParams)
        model = inputs["model"]
        ctx.progress(0, 2, "exporting to ONNX")
        blocks = [
            {
                "node_id": s["node_id"],
                "block_id": s["block_id"],
                "version": s["version"],
                "provider": s["provider"],
                "price": s["price"],
                "call_price": s["call_price"],
            }
            for s in ctx.plan["steps"]
        ]
        bundle, manifest = export_bundle(
            model,
            ctx.settings.bundles_dir,
            {
                "pipeline": ctx.plan["name"],
                "plan_hash": ctx.plan["plan_hash"],
                "metrics": getattr(model, "metrics", {}),
                "blocks": blocks,
                "service": params.model_dump(mode="json"),
            },
        )
        ctx.progress(2, 2, "bundle exported and parity-checked")
        parity = manifest["parity"]
        ctx.log_metric("parity_max_abs_diff", parity["parity_max_abs_diff"])
        return {"service": bundle}
