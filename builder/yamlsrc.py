"""YAML loading that remembers the line of every key, so errors can say `path (line N)`."""

from __future__ import annotations

from typing import Any

import yaml

from builder.errors import Problem, ValidationError


def refuse_aliases(text: str, source: str | None) -> None:
    """Pipeline files have no use for anchors and aliases, and a few hundred bytes of nested aliases expand
    without bound ("billion laughs"): refuse the first one, reading the events once, before anything expands."""
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            line = event.start_mark.line + 1
            raise ValidationError(
                [
                    Problem(
                        source or "",
                        f"YAML anchors and aliases (& and *) are not allowed in pipeline files (line {line}); "
                        "write the value out in full",
                        line,
                    )
                ],
                source,
            )


class YamlSource:
    """Parsed YAML data plus a map from dotted paths (`blocks.train.params.epochs`, `edges[2]`) to lines."""

    def __init__(self, text: str, source: str | None = None) -> None:
        self.text = text
        self.source = source
        try:
            refuse_aliases(text, source)
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data: Any = yaml.safe_load(text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else None
            col = mark.column + 1 if mark else None
            what = exc.problem or exc.context or "invalid YAML"
            raise ValidationError(
                [Problem(source or "", f"YAML syntax error at line {line}, column {col}: {what}", line)], source
            ) from None
        except yaml.YAMLError as exc:
            raise ValidationError([Problem(source or "", f"YAML syntax error: {exc}")], source) from None
        self.lines: dict[str, int] = {}
        if node is not None:
            self._walk(node, "")

    def _walk(self, node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                path = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
                self.lines[path] = key_node.start_mark.line + 1
                self._walk(value_node, path)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                path = f"{prefix}[{i}]"
                self.lines[path] = item.start_mark.line + 1
                self._walk(item, path)

    def line_of(self, path: str) -> int | None:
        """The line of `path`, or of its nearest ancestor that appears in the file."""
        while path:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            if cut <= 0:
                break
            path = path[:cut]
        return self.lines.get(path)

    def problem(self, path: str, message: str) -> Problem:
        """A Problem at `path` with its line filled in."""
        return Problem(path, message, self.line_of(path))


def safe_yaml(text: str, source: str | None = None) -> Any:
    """yaml.safe_load for text a user wrote: anchors and aliases refused first (ValidationError naming the line)."""
    refuse_aliases(text, source)
    return yaml.safe_load(text)


__all__ = ["YamlSource", "refuse_aliases", "safe_yaml"]
