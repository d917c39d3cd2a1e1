"""service.api: export a trained model as an ONNX service bundle, checked for parity, ready to serve."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from blocks import SERVICE_PROVIDER
from blocks.chat.confidence import DEFAULT_WRONG_ANSWER_TARGET, FIXED_THRESHOLD
from builder.ports import Port, PortType
from builder.registry import register_block
from builder.spec import Block, BlockParams, Kind, Price, PriceUnit

if TYPE_CHECKING:
    from runtime.context import StepContext


class ServiceApiParams(BlockParams):
    threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Below this confidence the fallback answer is given; empty: chosen from the data to meet "
        "wrong_answer_target (0.5 for models that cannot choose one)",
    )
    wrong_answer_target: float = Field(
        DEFAULT_WRONG_ANSWER_TARGET,
        gt=0.0,
        lt=1.0,
        description="Most wrong answers allowed among the questions answered (0.05: 5 %); the threshold is chosen "
        "from the data to meet it, unless a threshold is given",
    )
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
    outputs = (
        Port("service", PortType.SERVICE_BUNDLE, "self-contained ONNX bundle"),
        Port("metrics", PortType.METRICS, "the fallback threshold and what it does"),
    )
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
        service, metrics = service_settings(model, params)
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
                "service": service,
            },
        )
        ctx.progress(2, 2, "bundle exported and parity-checked")
        parity = manifest["parity"]
        ctx.log_metric("parity_max_abs_diff", parity["parity_max_abs_diff"])
        return {"service": bundle, "metrics": metrics}


def service_settings(model: Any, params: ServiceApiParams) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the manifest's service section, the run's metrics): the threshold the user gave, else the one the model
    chooses from its data to meet the wrong-answer target (models that cannot: FIXED_THRESHOLD)."""
    service = params.model_dump(mode="json")
    if params.threshold is not None:
        found: dict[str, Any] = {"threshold": params.threshold, "threshold_source": "user"}
    elif hasattr(model, "threshold_for"):
        found = model.threshold_for(params.wrong_answer_target)
    else:
        found = {"threshold": FIXED_THRESHOLD, "threshold_source": "fixed"}
    service.update(threshold=found["threshold"], threshold_source=found["threshold_source"])
    if not hasattr(model, "threshold_for"):  # a threshold means nothing to other models' services
        return service, {}
    metrics = {k: v for k, v in found.items() if k != "threshold_source"}
    if found["threshold_source"] == "data":
        metrics["wrong_answer_target"] = params.wrong_answer_target
    return service, metrics
