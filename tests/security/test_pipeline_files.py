"""Attacks through pipeline files (a stranger's YAML opened with `aib run`, `aib validate` or the workbench)."""

from __future__ import annotations

import resource
import subprocess
import sys
import time

import pytest

from builder.errors import ValidationError
from builder.pipeline import parse_pipeline
from builder.registry import load_blocks
from builder.ui.draft import DraftError, from_yaml
from tests.conftest import ROOT


def alias_bomb(levels: int = 9) -> str:
    """A 'billion laughs' pipeline: each level names the previous one ten times (10**levels strings)."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "name: bomb\nschema_version: 1\n" + "\n".join(lines) + f"\nblocks: *a{levels - 1}\nedges: []\n"


def test_a_nine_level_alias_bomb_is_refused_at_once_naming_the_line(tmp_path):
    text = alias_bomb()
    assert len(text) < 1000
    load_blocks()  # the catalog's first import is not what is timed
    started = time.monotonic()
    with pytest.raises(ValidationError) as caught:
        parse_pipeline(text, tmp_path, "bomb.yaml")
    assert time.monotonic() - started < 1.0
    (problem,) = caught.value.problems
    assert problem.line == 3 and "anchors and aliases" in problem.message


def test_the_workbench_refuses_an_alias_bomb_opened_as_yaml(tmp_path):
    started = time.monotonic()
    with pytest.raises(DraftError, match="anchors and aliases"):
        from_yaml(alias_bomb(), tmp_path)
    assert time.monotonic() - started < 1.0


def test_aib_validate_exits_2_on_an_alias_bomb_within_a_memory_limit(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    limit = 3 * 1024**3  # the CLI with torch loaded stays well below this; the bomb would need far more

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    done = subprocess.run(
        [sys.executable, "-m", "builder.cli", "validate", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=cap,
    )
    assert done.returncode == 2, done.stderr[-1000:]
    assert "anchors and aliases" in done.stdout + done.stderr and "Traceback" not in done.stderr
