"""The pipeline being edited in the browser: a YAML-shaped draft that may be incomplete or invalid.

The pipeline YAML is the single source of truth: the canvas shows a Draft, every edit changes the Draft,
and `to_yaml(from_yaml(text))` keeps every key (node positions live under `layout:`). Validation reuses
the CLI's `parse_pipeline`, and its problems are mapped back to the nodes they concern.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from builder.errors import Problem, ValidationError
from builder.pipeline import CURRENT_SCHEMA_VERSION, EDGE, parse_pipeline
from builder.registry import all_blocks, get_block, load_blocks
from builder.spec import Block, Kind
from builder.yamlsrc import safe_yaml

KEY_ORDER = ("schema_version", "name", "description", "blocks", "edges", "compute", "budget", "layout")
GRID_X, GRID_Y = 260, 140


class DraftError(ValueError):
    """An edit that cannot be made (one sentence saying why)."""


@dataclass
class Draft:
    """A pipeline as plain data (the YAML mapping), plus the folder its relative data paths resolve against."""

    data: dict[str, Any]
    base_dir: Path
    header: str = ""  # leading comment lines of the file, kept on save
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def blocks(self) -> dict[str, dict[str, Any]]:
        return self.data.setdefault("blocks", {})

    @property
    def edges(self) -> list[str]:
        return self.data.setdefault("edges", [])

    @property
    def layout(self) -> dict[str, list[float]]:
        return self.data.setdefault("layout", {})


def new_draft(name: str, base_dir: Path) -> Draft:
    """An empty pipeline on the local compute tier."""
    return Draft(
        {
            "schema_version": CURRENT_SCHEMA_VERSION,
            "name": name,
            "description": "",
            "blocks": {},
            "edges": [],
            "compute": "compute.local@1.0.0",
        },
        base_dir,
    )


def from_yaml(text: str, base_dir: Path) -> Draft:
    """Read pipeline YAML for editing; DraftError only when it is not a YAML mapping at all."""
    try:
        data = safe_yaml(text)
    except ValidationError as exc:
        raise DraftError(exc.problems[0].message) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise DraftError(f"the file is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise DraftError("a pipeline file must be a YAML mapping with name, blocks and edges")
    header_lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        header_lines.append(line)
    return Draft(data, base_dir, "\n".join(header_lines))


def to_yaml(draft: Draft) -> str:
    """The draft as pipeline YAML (stable key order; the header comment kept)."""
    ordered = {k: draft.data[k] for k in KEY_ORDER if k in draft.data and draft.data[k] not in (None, {}, [])}
    ordered.update({k: v for k, v in draft.data.items() if k not in KEY_ORDER})
    body = yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True, width=100)
    return (draft.header + "\n" if draft.header else "") + body


def block_of(draft: Draft, node_id: str) -> type[Block] | None:
    """The block class a node uses, or None when its `use:` is missing or unknown."""
    ref = (draft.blocks.get(node_id) or {}).get("use")
    if not isinstance(ref, str) or "@" not in ref:
        return None
    block_id, version = ref.split("@", 1)
    try:
        return get_block(block_id, version)
    except Exception:
        return None


def compute_block(draft: Draft) -> type[Block] | None:
    """The compute tier block the pipeline runs on (`compute:` is a ref or a mapping with `use:`), or None."""
    raw = draft.data.get("compute")
    ref = raw.get("use") if isinstance(raw, dict) else raw
    return block_of(Draft({"blocks": {"compute": {"use": ref}}}, draft.base_dir), "compute")


def add_block(draft: Draft, ref: str, pos: tuple[float, float] | None = None) -> str:
    """Place block `ref` (id@version) on the canvas with its default params; returns the new node id."""
    load_blocks()
    block_id, _, version = ref.partition("@")
    block = get_block(block_id, version)
    if block.kind == Kind.COMPUTE:
        draft.data["compute"] = block.ref()
        return "compute"
    base = re.sub(r"[^a-z0-9_-]", "-", block.id.split(".")[-1].lower()) or "node"
    if not base[0].isalpha():
        base = "n" + base
    node_id, n = base, 2
    while node_id in draft.blocks:
        node_id, n = f"{base}-{n}", n + 1
    draft.blocks[node_id] = {"use": block.ref(), "params": default_params(block)}
    if pos is None:
        column = len(draft.blocks) - 1
        pos = (GRID_X * column, GRID_Y * (column % 2))
    draft.layout[node_id] = [float(pos[0]), float(pos[1])]
    return node_id


def default_params(block: type[Block]) -> dict[str, Any]:
    """The params a block starts with: every field that has a default (required ones are left to fill)."""
    params = {}
    for name, f in block.Params.model_fields.items():
        if not f.is_required():
            value = f.get_default(call_default_factory=True)
            params[name] = value.value if hasattr(value, "value") else value
    return params


def remove_block(draft: Draft, node_id: str) -> None:
    """Delete a node and every edge touching it."""
    draft.blocks.pop(node_id, None)
    draft.layout.pop(node_id, None)
    draft.data["edges"] = [e for e in draft.edges if node_id not in _edge_nodes(e)]


def _edge_nodes(edge: str) -> tuple[str, ...]:
    m = EDGE.match(edge)
    return (m.group(1), m.group(3)) if m else ()


def fed_inputs(draft: Draft) -> set[tuple[str, str]]:
    """(node, input port) pairs that an edge already feeds."""
    fed = set()
    for e in draft.edges:
        m = EDGE.match(e)
        if m:
            fed.add((m.group(3), m.group(4)))
    return fed


def connect(draft: Draft, src: str, dst: str) -> str:
    """Join `src` to `dst` through the one output→input pair of the same type; DraftError says why not."""
    if src == dst:
        raise DraftError("a block cannot feed itself")
    s, d = block_of(draft, src), block_of(draft, dst)
    if s is None or d is None:
        raise DraftError(f"{src if s is None else dst} has no known block; fix its `use:` first")
    fed = fed_inputs(draft)
    pairs = [(o, i) for o in s.outputs for i in d.inputs if o.type == i.type]
    if not pairs:
        outs = ", ".join(f"{p.name} ({p.type})" for p in s.outputs) or "nothing"
        ins = ", ".join(f"{p.name} ({p.type})" for p in d.inputs) or "nothing"
        raise DraftError(f"{src} gives {outs} but {dst} takes {ins}: no port types match")
    free = [(o, i) for o, i in pairs if (dst, i.name) not in fed]
    if not free:
        raise DraftError(f"{dst}.{pairs[0][1].name} is already connected; remove that connection first")
    if len(free) > 1:
        options = ", ".join(f"{src}.{o.name} -> {dst}.{i.name}" for o, i in free)
        raise DraftError(f"{src} can feed {dst} in several ways ({options}); add the edge in the YAML")
    o, i = free[0]
    edge = f"{src}.{o.name} -> {dst}.{i.name}"
    draft.edges.append(edge)
    return edge


def fits_between(draft: Draft, src: str, dst: str) -> list[type[Block]]:
    """Blocks that could stand between `src` and `dst`: one of their inputs takes what `src` gives, and one
    of their outputs is what `dst` takes (for a refused connection: "put a … between them")."""
    s, d = block_of(draft, src), block_of(draft, dst)
    if s is None or d is None:
        return []
    load_blocks()
    gives = {p.type for p in s.outputs}
    takes = {p.type for p in d.inputs}
    return [
        b
        for b in all_blocks()
        if b.kind != Kind.COMPUTE and gives & {p.type for p in b.inputs} and takes & {p.type for p in b.outputs}
    ]


def insert_between(draft: Draft, src: str, dst: str, ref: str) -> tuple[str, list[str]]:
    """Add block `ref` halfway between `src` and `dst` and connect src -> it -> dst; (node id, edges made).

    DraftError (and the draft unchanged) when either connection cannot be made.
    """
    before = clone(draft)
    sx, sy = draft.layout.get(src, [0.0, 0.0])
    dx, dy = draft.layout.get(dst, [sx + GRID_X, sy])
    node_id = add_block(draft, ref, ((sx + dx) / 2, (sy + dy) / 2 + GRID_Y / 2))
    try:
        edges = [connect(draft, src, node_id), connect(draft, node_id, dst)]
    except DraftError:
        draft.data = before.data
        raise
    return node_id, edges


def disconnect(draft: Draft, src: str, dst: str) -> None:
    """Remove every edge from `src` to `dst`."""
    draft.data["edges"] = [e for e in draft.edges if _edge_nodes(e) != (src, dst)]


def node_edges(draft: Draft) -> list[tuple[str, str, str]]:
    """(edge text, source node, target node) for every well-formed edge."""
    out = []
    for e in draft.edges:
        m = EDGE.match(e)
        if m:
            out.append((e, m.group(1), m.group(3)))
    return out


def validate(draft: Draft) -> tuple[list[Problem], dict[str, list[str]]]:
    """Every problem of the draft, and the messages that concern each node (for highlighting)."""
    try:
        parse_pipeline(to_yaml(draft), draft.base_dir)
    except ValidationError as exc:
        problems = list(exc.problems)
    else:
        return [], {}
    by_node: dict[str, list[str]] = {}
    for p in problems:
        for node_id in _nodes_of(draft, p.path):
            by_node.setdefault(node_id, []).append(p.message)
    return problems, by_node


def _nodes_of(draft: Draft, path: str) -> list[str]:
    m = re.match(r"^(?:blocks|layout)\.([^.\[]+)", path)
    if m:
        return [m.group(1)]
    m = re.match(r"^edges\[(\d+)\]", path)
    if m and int(m.group(1)) < len(draft.edges):
        return list(_edge_nodes(draft.edges[int(m.group(1))]))
    if path.startswith("compute"):
        return ["compute"]
    return []


def palette(query: str = "") -> dict[str, list[type[Block]]]:
    """Blocks grouped by domain, filtered by a case-insensitive search over id, description and provider."""
    load_blocks()
    q = query.strip().lower()
    groups: dict[str, list[type[Block]]] = {}
    for b in all_blocks():
        text = f"{b.id} {b.description} {b.domain} {b.kind}".lower()
        if q and q not in text:
            continue
        groups.setdefault(b.domain, []).append(b)
    return dict(sorted(groups.items()))


def clone(draft: Draft) -> Draft:
    """A deep copy (edits to it never touch `draft`)."""
    return Draft(copy.deepcopy(draft.data), draft.base_dir, draft.header, copy.deepcopy(draft.extra))


__all__ = [
    "Draft",
    "DraftError",
    "add_block",
    "block_of",
    "clone",
    "compute_block",
    "connect",
    "default_params",
    "disconnect",
    "fed_inputs",
    "fits_between",
    "insert_between",
    "from_yaml",
    "new_draft",
    "node_edges",
    "palette",
    "remove_block",
    "to_yaml",
    "validate",
]
