"""Compile a validated pipeline into a Plan: topologically ordered, versions pinned, priced, cache-keyed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from builder.errors import Problem, ValidationError
from builder.money import format_aic
from builder.pipeline import Node, Pipeline
from builder.spec import PriceUnit


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the form every hash in a Plan is taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_hex(text: str | bytes) -> str:
    """Hex sha256 of text (UTF-8) or bytes."""
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


@dataclass(frozen=True)
class PlanStep:
    """One fully resolved step of a Plan."""

    node_id: str
    block_id: str
    version: str
    kind: str
    params: dict[str, Any]
    inputs: dict[str, str]  # input port -> "upstream_node.output_port"
    cache_key: str
    price: dict[str, Any]
    call_price: dict[str, Any] | None
    provider: str
    estimated_seconds: float
    # Published datasets the step reads, each paid per run: [{ref, dataset, provider, amount_wei}]
    royalties: tuple[dict[str, Any], ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.block_id}@{self.version}"


@dataclass(frozen=True)
class Plan:
    """The compiled pipeline; `plan_hash` is the run's identity for caching and settlement."""

    name: str
    schema_version: int
    steps: tuple[PlanStep, ...]
    compute: PlanStep
    quote_wei: int
    budget_wei: int | None
    plan_hash: str

    def to_dict(self) -> dict[str, Any]:
        """The Plan as plain data (stored with every run)."""
        return {
            "name": self.name,
            "schema_version": self.schema_version,
            "steps": [asdict(s) for s in self.steps],
            "compute": asdict(self.compute),
            "quote_wei": self.quote_wei,
            "budget_wei": self.budget_wei,
            "plan_hash": self.plan_hash,
        }

    def step(self, node_id: str) -> PlanStep:
        """The step for `node_id`."""
        return next(s for s in self.steps if s.node_id == node_id)


def topological_order(pipeline: Pipeline) -> list[str]:
    """Node ids in dependency order; ties broken by node id so the order never depends on file layout."""
    indeg = {n: 0 for n in pipeline.nodes}
    succ: dict[str, list[str]] = {n: [] for n in pipeline.nodes}
    for e in pipeline.edges:
        indeg[e.dst] += 1
        succ[e.src].append(e.dst)
    ready = sorted(n for n, d in indeg.items() if d == 0)
    order: list[str] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in succ[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
                ready.sort()
    if len(order) != len(pipeline.nodes):
        raise ValidationError([Problem("edges", "the edges form a cycle")], pipeline.source)
    return order


def _step(
    node: Node,
    inputs: dict[str, str],
    upstream_keys: dict[str, str],
    pipeline: Pipeline,
    royalties: Mapping[str, Sequence[dict[str, Any]]],
) -> PlanStep:
    block = node.block()
    params = node.params.model_dump(mode="json")
    key_material = {
        "block": node.block.ref(),
        "params": params,
        "content": block.fingerprint(node.params, pipeline.base_dir),
        "inputs": {port: upstream_keys[src] for port, src in sorted(inputs.items())},
    }
    return PlanStep(
        node_id=node.node_id,
        block_id=node.block.id,
        version=node.block.version,
        kind=str(node.block.kind),
        params=params,
        inputs=dict(sorted(inputs.items())),
        cache_key=sha256_hex(canonical_json(key_material)),
        price=node.block.price.to_dict(),
        call_price=node.block.call_price.to_dict() if node.block.call_price else None,
        provider=node.block.provider,
        estimated_seconds=float(block.estimate_seconds(node.params)),
        royalties=tuple(r for name in params for r in royalties.get(f"blocks.{node.node_id}.params.{name}", ())),
    )


def data_files(pipeline: Pipeline) -> dict[str, Path]:
    """Every data file the pipeline's blocks read (params ending in `path`), by YAML path, resolved against the
    pipeline's folder: what a caller looks up to price published datasets (see runtime/datasets.py)."""
    found: dict[str, Path] = {}
    for node in pipeline.nodes.values():
        for name, value in node.params.model_dump(mode="json").items():
            if name.endswith("path") and isinstance(value, str) and value:
                path = Path(value) if Path(value).is_absolute() else pipeline.base_dir / value
                found[f"blocks.{node.node_id}.params.{name}"] = path
    return found


def compute_quote(steps: tuple[PlanStep, ...], compute: PlanStep) -> int:
    """The compute part of a quote: planned device seconds times the tier's price (the only estimated part)."""
    seconds = sum(s.estimated_seconds for s in steps)
    return int(round(compute.price["amount_wei"] * seconds))


def quote(steps: tuple[PlanStep, ...], compute: PlanStep) -> int:
    """The price in wei quoted before a run: per-run prices plus planned device seconds on the tier."""
    total = sum(s.price["amount_wei"] for s in steps if s.price["unit"] == PriceUnit.RUN)
    total += sum(r["amount_wei"] for s in steps for r in s.royalties)
    return total + compute_quote(steps, compute)


def compile_plan(pipeline: Pipeline, royalties: Mapping[str, Sequence[dict[str, Any]]] | None = None) -> Plan:
    """Compile `pipeline` into a Plan; pure and deterministic for the same file, params and data.

    `royalties`: what published datasets among the data files are owed per run, by the YAML path of the parameter
    that reads them (`data_files` names them); resolved by the caller, since the core touches no catalog.
    """
    royalties = royalties or {}
    order = topological_order(pipeline)
    feeds: dict[str, dict[str, str]] = {n: {} for n in pipeline.nodes}
    for e in pipeline.edges:
        feeds[e.dst][e.dst_port] = f"{e.src}.{e.src_port}"
    keys: dict[str, str] = {}
    steps: list[PlanStep] = []
    for node_id in order:
        upstream = {f"{s.node_id}.{p}": f"{s.cache_key}:{p}" for s in steps for p in _out_ports(pipeline, s)}
        step = _step(pipeline.nodes[node_id], feeds[node_id], upstream, pipeline, royalties)
        keys[node_id] = step.cache_key
        steps.append(step)
    compute = _step(pipeline.compute, {}, {}, pipeline, royalties)
    frozen = tuple(steps)
    quoted = quote(frozen, compute)
    if pipeline.budget_wei is not None and quoted > pipeline.budget_wei:
        raise ValidationError(
            [
                Problem(
                    "budget",
                    f"the quoted price {format_aic(quoted)} exceeds the budget "
                    f"{format_aic(pipeline.budget_wei)}; raise the budget or choose cheaper blocks",
                )
            ],
            pipeline.source,
        )
    body = {
        "name": pipeline.name,
        "schema_version": pipeline.schema_version,
        "steps": [asdict(s) for s in frozen],
        "compute": asdict(compute),
        "quote_wei": quoted,
        "budget_wei": pipeline.budget_wei,
    }
    return Plan(
        name=pipeline.name,
        schema_version=pipeline.schema_version,
        steps=frozen,
        compute=compute,
        quote_wei=quoted,
        budget_wei=pipeline.budget_wei,
        plan_hash=sha256_hex(canonical_json(body)),
    )


def _out_ports(pipeline: Pipeline, step: PlanStep) -> list[str]:
    return [p.name for p in pipeline.nodes[step.node_id].block.outputs]


__all__ = [
    "Plan",
    "PlanStep",
    "canonical_json",
    "compile_plan",
    "compute_quote",
    "data_files",
    "quote",
    "sha256_hex",
    "topological_order",
]
