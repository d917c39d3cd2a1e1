"""The code base stays ruff-clean (lint rules in pyproject.toml)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing():
    r = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "builder", "blocks", "runtime", "chain", "tests", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
