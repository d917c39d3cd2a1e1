"""Pipeline files: load a YAML pipeline, apply `--set` overrides and validate it, reporting every problem."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError as PydanticValidationError

from builder.errors import BlockError, Problem, ValidationError
from builder.files import outside_roots
from builder.money import parse_amount
from builder.registry import get_block, load_blocks
from builder.spec import Block, BlockParams, Kind
from builder.yamlsrc import YamlSource, safe_yaml

CURRENT_SCHEMA_VERSION = 1
# `layout` holds the canvas positions of the nodes (the UI's); it never changes what runs.
TOP_LEVEL_KEYS = {"schema_version", "name", "description", "blocks", "edges", "compute", "budget", "layout"}
NODE_ID = re.compile(r"^[a-z][a-z0-9_-]*$")
EDGE = re.compile(r"^\s*([A-Za-z0-9_-]+)\.([A-Za-z0-9_]+)\s*->\s*([A-Za-z0-9_-]+)\.([A-Za-z0-9_]+)\s*$")
REF = re.compile(r"^([^@\s]+)@([^@\s]+)$")


@dataclass(frozen=True)
class Node:
    """One block placed in a pipeline, with its validated parameters."""

    node_id: str
    block: type[Block]
    params: BlockParams


@dataclass(frozen=True)
class Edge:
    """A connection from an output port of one node to an input port of another."""

    src: str
    src_port: str
    dst: str
    dst_port: str

    def __str__(self) -> str:
        return f"{self.src}.{self.src_port} -> {self.dst}.{self.dst_port}"


@dataclass
class Pipeline:
    """A validated pipeline: nodes, edges, compute tier and budget, plus the exact source text."""

    name: str
    description: str
    schema_version: int
    nodes: dict[str, Node]
    edges: list[Edge]
    compute: Node
    budget_wei: int | None
    source_text: str
    base_dir: Path
    source: str | None = None
    overrides: list[str] = field(default_factory=list)


def load_pipeline(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Pipeline:
    """Read and validate the pipeline file at `path`; raises ValidationError listing every problem."""
    p = Path(path)
    if not p.exists():
        raise ValidationError([Problem("", f"file not found: {p}")], str(p))
    if p.is_dir():
        raise ValidationError([Problem("", f"{p} is a folder, expected a pipeline .yaml file")], str(p))
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValidationError([Problem("", f"{p} is not UTF-8 text")], str(p)) from None
    return parse_pipeline(text, base_dir=p.resolve().parent, source=str(p), overrides=overrides)


def parse_pipeline(
    text: str, base_dir: Path, source: str | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Pipeline:
    """Validate pipeline YAML `text` whose relative paths are resolved against `base_dir`."""
    load_blocks()
    src = YamlSource(text, source)
    problems: list[Problem] = []
    data = src.data
    if not isinstance(data, dict):
        raise ValidationError(
            [Problem("", "a pipeline file must be a YAML mapping with name, blocks and edges")], source
        )
    data = _apply_overrides(data, list(overrides), problems)

    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.append(src.problem(str(key), f"unknown key; expected one of {', '.join(sorted(TOP_LEVEL_KEYS))}"))

    schema_version = data.get("schema_version")
    if schema_version is None:
        problems.append(src.problem("schema_version", f"missing; add `schema_version: {CURRENT_SCHEMA_VERSION}`"))
    elif not isinstance(schema_version, int) or isinstance(schema_version, bool) or schema_version < 1:
        problems.append(src.problem("schema_version", f"must be a positive integer, got {schema_version!r}"))
    elif schema_version > CURRENT_SCHEMA_VERSION:
        problems.append(
            src.problem(
                "schema_version",
                f"this file needs a newer Easy AI Builder (schema_version {schema_version}; "
                f"this one reads up to {CURRENT_SCHEMA_VERSION})",
            )
        )

    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(src.problem("name", "missing; give the pipeline a name"))
    description = data.get("description") or ""
    if not isinstance(description, str):
        problems.append(src.problem("description", "must be text"))
        description = ""

    nodes = _validate_nodes(data.get("blocks"), src, base_dir, problems)
    edges = _validate_edges(data.get("edges"), nodes, src, problems)
    compute = _validate_compute(data.get("compute"), src, base_dir, problems)

    _validate_layout(data.get("layout"), data.get("blocks"), src, problems)

    budget_wei = None
    if data.get("budget") is not None:
        try:
            budget_wei = parse_amount(data["budget"])
        except ValueError as exc:
            problems.append(src.problem("budget", str(exc)))

    if problems:
        raise ValidationError(problems, source)
    assert compute is not None and isinstance(name, str)
    return Pipeline(
        name=name.strip(),
        description=description.strip(),
        schema_version=schema_version,
        nodes=nodes,
        edges=edges,
        compute=compute,
        budget_wei=budget_wei,
        source_text=text,
        base_dir=base_dir,
        source=source,
        overrides=list(overrides),
    )


def _apply_overrides(data: dict, overrides: list[str], problems: list[Problem]) -> dict:
    if not overrides:
        return data
    data = yaml.safe_load(yaml.safe_dump(data))  # deep copy
    blocks = data.get("blocks") if isinstance(data.get("blocks"), dict) else {}
    for item in overrides:
        m = re.match(r"^([A-Za-z0-9_-]+)\.([A-Za-z0-9_.]+)=(.*)$", item, re.DOTALL)
        if not m:
            problems.append(Problem(f"--set {item}", "expected node.param=value"))
            continue
        node_id, param_path, raw = m.groups()
        if node_id not in blocks or not isinstance(blocks[node_id], dict):
            problems.append(Problem(f"--set {item}", f"no block node {node_id!r} in this pipeline"))
            continue
        try:
            value = safe_yaml(raw) if raw.strip() else ""
        except (yaml.YAMLError, ValidationError):
            value = raw
        params = blocks[node_id].setdefault("params", {}) or {}
        blocks[node_id]["params"] = params
        *parents, leaf = param_path.split(".")
        target = params
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return data


def _validate_params(
    block: type[Block], raw: Any, path: str, src: YamlSource, base_dir: Path, problems: list[Problem]
) -> BlockParams | None:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(src.problem(path, "params must be a mapping of name: value"))
        return None
    try:
        params = block.Params(**raw)
    except PydanticValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"])
            problems.append(src.problem(f"{path}.{loc}" if loc else path, _pydantic_message(err)))
        return None
    # A pipeline may come from a stranger (opened in the workbench, say): its data paths are confined before any
    # block reads them.
    outside = [
        (name, value)
        for name, value in params.model_dump(mode="json").items()
        if name.endswith("path") and isinstance(value, str) and value and outside_roots(value, base_dir)
    ]
    for name, value in outside:
        problems.append(
            src.problem(
                f"{path}.{name}",
                f"{value} is outside the pipeline's folder; data is read only from there, from published datasets, "
                "or from a folder named in AIB_DATA_DIRS",
            )
        )
    if outside:
        return params
    for param, message in block().check(params, base_dir):
        problems.append(src.problem(f"{path}.{param}" if param else path, message))
    return params


def param_problems(exc: PydanticValidationError) -> list[str]:
    """One `param: message` sentence per problem of a Params validation error (the CLI's wording)."""
    return [f"{'.'.join(str(x) for x in e['loc']) or 'params'}: {_pydantic_message(e)}" for e in exc.errors()]


def _pydantic_message(err: dict) -> str:
    kind, ctx, got = err.get("type", ""), err.get("ctx") or {}, err.get("input")
    if kind == "extra_forbidden":
        return "unknown parameter"
    if kind == "missing":
        return "missing required parameter"
    for key, op in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
        if key in ctx:
            return f"must be {op} {ctx[key]}, got {got!r}"
    msg = err.get("msg", "invalid value")
    return f"{msg[0].lower()}{msg[1:]}, got {got!r}"


def _parse_ref(ref: Any, path: str, src: YamlSource, problems: list[Problem]) -> type[Block] | None:
    if not isinstance(ref, str) or not REF.match(ref.strip()):
        problems.append(src.problem(path, f"must be `block-id@version` (for example chat.faq-csv@1.0.0), got {ref!r}"))
        return None
    block_id, version = REF.match(ref.strip()).groups()
    try:
        return get_block(block_id, version)
    except BlockError as exc:
        problems.append(src.problem(path, str(exc)))
        return None


def _validate_nodes(raw: Any, src: YamlSource, base_dir: Path, problems: list[Problem]) -> dict[str, Node]:
    nodes: dict[str, Node] = {}
    if raw is None:
        problems.append(src.problem("blocks", "missing; a pipeline needs at least one block"))
        return nodes
    if not isinstance(raw, dict) or not raw:
        problems.append(src.problem("blocks", "must be a non-empty mapping of node id: {use: block@version}"))
        return nodes
    for node_id, spec in raw.items():
        path = f"blocks.{node_id}"
        if not isinstance(node_id, str) or not NODE_ID.match(node_id):
            problems.append(
                src.problem(path, "node ids are lower-case letters, digits, '-' or '_', starting with a letter")
            )
            continue
        if not isinstance(spec, dict):
            problems.append(src.problem(path, "must be a mapping with `use:` and optional `params:`"))
            continue
        for key in spec:
            if key not in ("use", "params"):
                problems.append(src.problem(f"{path}.{key}", "unknown key; a block node has only `use` and `params`"))
        if "use" not in spec:
            problems.append(src.problem(path, "missing `use: block-id@version`"))
            continue
        block = _parse_ref(spec["use"], f"{path}.use", src, problems)
        if block is None:
            continue
        if block.kind == Kind.COMPUTE:
            problems.append(src.problem(f"{path}.use", f"{block.ref()} is a compute tier; put it under `compute:`"))
            continue
        params = _validate_params(block, spec.get("params"), f"{path}.params", src, base_dir, problems)
        # A node with invalid params keeps its place (params None) so its edges are still checked;
        # the pipeline is only built when there are no problems at all.
        nodes[node_id] = Node(node_id, block, params)  # type: ignore[arg-type]
    return nodes


def _validate_edges(raw: Any, nodes: dict[str, Node], src: YamlSource, problems: list[Problem]) -> list[Edge]:
    edges: list[Edge] = []
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        problems.append(src.problem("edges", "must be a list of `from_node.port -> to_node.port`"))
        return edges
    known_nodes = set(nodes)
    connected: dict[tuple[str, str], int] = {}
    for i, item in enumerate(raw):
        path = f"edges[{i}]"
        m = EDGE.match(item) if isinstance(item, str) else None
        if not m:
            problems.append(src.problem(path, f"must look like `from_node.port -> to_node.port`, got {item!r}"))
            continue
        edge = Edge(*m.groups())
        declared = src.data.get("blocks") if isinstance(src.data.get("blocks"), dict) else {}
        unknown = [n for n in (edge.src, edge.dst) if n not in known_nodes]
        for node_id in unknown:
            if node_id not in declared:
                problems.append(src.problem(path, f"no block node {node_id!r} in this pipeline"))
        if unknown:
            if edge.dst in known_nodes and edge.src in declared:
                # The source node is declared but invalid (already reported): don't also call the input unfed.
                connected.setdefault((edge.dst, edge.dst_port), i)
            continue
        bad = False
        s, d = nodes[edge.src].block, nodes[edge.dst].block
        out_port, in_port = s.output(edge.src_port), d.input(edge.dst_port)
        if out_port is None:
            outs = ", ".join(p.name for p in s.outputs) or "none"
            problems.append(src.problem(path, f"{edge.src} ({s.id}) has no output {edge.src_port!r}; outputs: {outs}"))
            bad = True
        if in_port is None:
            ins = ", ".join(p.name for p in d.inputs) or "none"
            problems.append(src.problem(path, f"{edge.dst} ({d.id}) has no input {edge.dst_port!r}; inputs: {ins}"))
            bad = True
        if bad:
            continue
        if out_port.type != in_port.type:
            problems.append(
                src.problem(
                    path,
                    f"port types differ: {edge.src}.{edge.src_port} gives {out_port.type} "
                    f"but {edge.dst}.{edge.dst_port} takes {in_port.type}",
                )
            )
            connected.setdefault((edge.dst, edge.dst_port), i)  # reported once, not again as unfed
            continue
        key = (edge.dst, edge.dst_port)
        if key in connected:
            problems.append(src.problem(path, f"{edge.dst}.{edge.dst_port} is already fed by edges[{connected[key]}]"))
            continue
        connected[key] = i
        edges.append(edge)
    for node_id, node in nodes.items():
        for port in node.block.inputs:
            if not port.optional and (node_id, port.name) not in connected:
                problems.append(
                    src.problem(
                        f"blocks.{node_id}", f"input {port.name!r} ({port.type}) is not connected to any output"
                    )
                )
    cycle = find_cycle(list(nodes), edges)
    if cycle:
        problems.append(src.problem("edges", "the edges form a cycle: " + " -> ".join(cycle + [cycle[0]])))
    return edges


def _validate_layout(raw: Any, blocks: Any, src: YamlSource, problems: list[Problem]) -> None:
    if raw is None:
        return
    if not isinstance(raw, dict):
        problems.append(src.problem("layout", "must be a mapping of node id: [x, y]"))
        return
    declared = blocks if isinstance(blocks, dict) else {}
    for node_id, pos in raw.items():
        if node_id not in declared:
            problems.append(src.problem(f"layout.{node_id}", f"no block node {node_id!r} in this pipeline"))
        elif not (
            isinstance(pos, list)
            and len(pos) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in pos)
        ):
            problems.append(src.problem(f"layout.{node_id}", f"must be [x, y] (two numbers), got {pos!r}"))


def find_cycle(node_ids: list[str], edges: list[Edge]) -> list[str]:
    """A list of node ids forming a cycle, or [] when the graph is acyclic."""
    succ: dict[str, list[str]] = {n: [] for n in node_ids}
    for e in edges:
        succ.setdefault(e.src, []).append(e.dst)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str]:
        state[n] = 1
        stack.append(n)
        for m in sorted(succ.get(n, [])):
            if state.get(m) == 1:
                return stack[stack.index(m) :]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return []

    for n in sorted(succ):
        if n not in state:
            found = visit(n)
            if found:
                return list(found)
    return []


def _validate_compute(raw: Any, src: YamlSource, base_dir: Path, problems: list[Problem]) -> Node | None:
    if raw is None:
        problems.append(src.problem("compute", "missing; choose a compute tier, e.g. `compute: compute.local@1.0.0`"))
        return None
    if isinstance(raw, str):
        raw = {"use": raw}
    if not isinstance(raw, dict) or "use" not in raw:
        problems.append(src.problem("compute", "must be `block-id@version` or a mapping with `use:` and `params:`"))
        return None
    block = _parse_ref(raw["use"], "compute.use", src, problems)
    if block is None:
        return None
    if block.kind != Kind.COMPUTE:
        problems.append(src.problem("compute", f"{block.ref()} is a {block.kind} block, not a compute tier"))
        return None
    params = _validate_params(block, raw.get("params"), "compute.params", src, base_dir, problems)
    return Node("compute", block, params) if params is not None else None


__all__ = [
    "CURRENT_SCHEMA_VERSION",
    "Edge",
    "Node",
    "Pipeline",
    "find_cycle",
    "load_pipeline",
    "param_problems",
    "parse_pipeline",
]
