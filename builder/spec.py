"""Block specs: the declarative description every marketplace block carries, and the block base class."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from builder.ports import Port

if TYPE_CHECKING:
    from runtime.context import StepContext

BLOCK_ID = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*\.[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


class Kind(StrEnum):
    """What role a block plays in a pipeline."""

    DATA = "data"
    TRANSFORM = "transform"
    MODEL = "model"
    COMPUTE = "compute"
    METRIC = "metric"
    SERVICE = "service"


class PriceUnit(StrEnum):
    """What one priced unit of a block is."""

    RUN = "run"  # data, transform and model blocks: once per run that uses them
    DEVICE_SECOND = "device_second"  # compute tiers: per second of device time actually used
    CALLS_1K = "1k_calls"  # services (and models inside them): per thousand served calls


@dataclass(frozen=True)
class Price:
    """A price in AIC wei per unit."""

    amount_wei: int
    unit: PriceUnit

    def to_dict(self) -> dict[str, Any]:
        return {"amount_wei": self.amount_wei, "unit": str(self.unit)}


class BlockParams(BaseModel):
    """Base of every block's parameter model: unknown keys are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Block:
    """A marketplace block; subclasses declare the spec as class data and implement `run`."""

    id: ClassVar[str]
    version: ClassVar[str]
    kind: ClassVar[Kind]
    domain: ClassVar[str]
    inputs: ClassVar[tuple[Port, ...]] = ()
    outputs: ClassVar[tuple[Port, ...]] = ()
    Params: ClassVar[type[BlockParams]] = BlockParams
    price: ClassVar[Price]
    call_price: ClassVar[Price | None] = None  # per 1k calls while inside a served service
    provider: ClassVar[str]
    license: ClassVar[str]
    description: ClassVar[str]
    cacheable: ClassVar[bool] = True  # output depends only on params + inputs, so it may be reused
    # Trains with runtime.training.fit: on rented compute its work must come with committed checkpoints, which
    # the coordinator replays; a step of such a block without them is not paid.
    trains: ClassVar[bool] = False

    @classmethod
    def ref(cls) -> str:
        """The pinned reference `id@version` used in pipeline files."""
        return f"{cls.id}@{cls.version}"

    @classmethod
    def input(cls, name: str) -> Port | None:
        """The input port called `name`, or None."""
        return next((p for p in cls.inputs if p.name == name), None)

    @classmethod
    def output(cls, name: str) -> Port | None:
        """The output port called `name`, or None."""
        return next((p for p in cls.outputs if p.name == name), None)

    def fingerprint(self, params: BlockParams, base_dir: Path) -> str:
        """A hash of external content the block reads (files); part of its cache key."""
        return ""

    def check(self, params: BlockParams, base_dir: Path) -> list[tuple[str, str]]:
        """Checks needing the file system (data files exist and parse); (param name, message) pairs."""
        return []

    def estimate_seconds(self, params: BlockParams) -> float:
        """Planned device seconds for this step, used to quote compute before a run."""
        return 0.0

    def device_request(self, params: BlockParams) -> str:
        """Compute blocks: the device the steps ask for, "auto" (a GPU when present), "cpu" or "cuda"."""
        return "auto"

    def run(self, ctx: StepContext, inputs: dict[str, Any], params: BlockParams) -> dict[str, Any]:
        """Execute the step: read `inputs` (port name → value) and return outputs (port name → value)."""
        raise NotImplementedError(f"block {self.ref()} does not implement run()")

    @classmethod
    def spec_dict(cls) -> dict[str, Any]:
        """The spec as plain data (for `aib blocks list --json`, the UI palette and the docs)."""
        return {
            "id": cls.id,
            "version": cls.version,
            "kind": str(cls.kind),
            "domain": cls.domain,
            "description": cls.description,
            "inputs": [{"name": p.name, "type": str(p.type), "optional": p.optional} for p in cls.inputs],
            "outputs": [{"name": p.name, "type": str(p.type)} for p in cls.outputs],
            "params_schema": cls.Params.model_json_schema(),
            "price": cls.price.to_dict(),
            "call_price": cls.call_price.to_dict() if cls.call_price else None,
            "provider": cls.provider,
            "license": cls.license,
        }


def check_block(cls: type[Block]) -> list[str]:
    """Conformance check of a block class's declaration; returns every inconsistency found."""
    problems: list[str] = []
    for attr in ("id", "version", "kind", "domain", "price", "provider", "license", "description"):
        if not hasattr(cls, attr):
            problems.append(f"missing class attribute {attr!r}")
    if problems:
        return problems
    if not BLOCK_ID.match(cls.id):
        problems.append(f"id {cls.id!r} must look like 'domain.name' in lower-case kebab words")
    if not SEMVER.match(cls.version):
        problems.append(f"version {cls.version!r} must be MAJOR.MINOR.PATCH")
    if not isinstance(cls.kind, Kind):
        problems.append(f"kind must be a builder.spec.Kind, got {cls.kind!r}")
    if not ADDRESS.match(cls.provider):
        problems.append(f"provider {cls.provider!r} must be a 0x-prefixed 20-byte address")
    if not (isinstance(cls.Params, type) and issubclass(cls.Params, BlockParams)):
        problems.append("Params must subclass builder.spec.BlockParams")
    else:
        try:
            cls.Params()
        except Exception:  # noqa: BLE001 - blocks may have required params; they must still round-trip
            pass
    if cls.price.amount_wei < 0:
        problems.append("price must not be negative")
    if cls.call_price is not None and cls.call_price.unit != PriceUnit.CALLS_1K:
        problems.append("call_price must be per 1k calls")
    for price in (cls.price, cls.call_price):
        if price is not None and price.unit == PriceUnit.CALLS_1K and price.amount_wei % 1000:
            problems.append("a per-1k-calls price must be a multiple of 1000 wei so each call costs whole wei")
    names = [p.name for p in cls.inputs] + [p.name for p in cls.outputs]
    if len(set(p.name for p in cls.inputs)) != len(cls.inputs):
        problems.append("input port names must be unique")
    if len(set(p.name for p in cls.outputs)) != len(cls.outputs):
        problems.append("output port names must be unique")
    for n in names:
        if not re.match(r"^[a-z][a-z0-9_]*$", n):
            problems.append(f"port name {n!r} must be lower_snake_case")
    if cls.kind == Kind.COMPUTE and cls.price.unit != PriceUnit.DEVICE_SECOND:
        problems.append("a compute block is priced per device second")
    if cls.kind == Kind.SERVICE and cls.call_price is None:
        problems.append("a service block needs a call_price (per 1k calls)")
    return problems


__all__ = ["Block", "BlockParams", "Kind", "Price", "PriceUnit", "check_block"]
