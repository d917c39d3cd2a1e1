"""The floor plan holds where it matters: the pipeline core imports and compiles with the chain and the engine gone.

`lint-imports` (run by `make test`) checks the static arrows; these tests run the code with the packages it must
not need made unimportable, so a lazy import inside a function cannot hide a dependency either.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import tomllib

import runtime
from tests.conftest import ROOT, TEMPLATES

# What blocks may use of the runtime (docs/architecture.md); every other runtime module is forbidden to them.
BLOCK_KIT = {
    "runtime.bundle",
    "runtime.config",
    "runtime.context",
    "runtime.evaluation",
    "runtime.export",
    "runtime.shards",
    "runtime.store",
    "runtime.training",
    "runtime.verification",
}

BLOCKER = """
import importlib.abc, json, sys

BLOCKED = json.loads(sys.argv[1])


class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"{name} is blocked in this test")
        return None


sys.meta_path.insert(0, Refuse())
"""


def _contract(contract_id: str) -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return next(c for c in config["contracts"] if c["id"] == contract_id)


def _run_blocked(blocked: list[str], body: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + body, json.dumps(blocked)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_pipeline_core_imports_with_runtime_chain_blocks_and_the_shells_unimportable():
    core = [m.strip() for m in _contract("floor-plan")["layers"][-1].split(":")]
    body = f"""
import importlib
for name in {core!r}:
    importlib.import_module(name)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("runtime", "chain", "blocks"))
print(json.dumps(leaked))
"""
    done = _run_blocked(["runtime", "chain", "blocks", "builder.cli", "builder.ui"], body)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_every_template_compiles_with_runtime_and_chain_unimportable():
    """Compiling loads every block (the registry imports the catalog) and hashes the data files, and needs neither
    the runtime nor the chain: blocks import the runtime's block kit only inside the code that runs a step.
    The plans equal the ones compiled with everything importable."""
    from builder.pipeline import load_pipeline
    from builder.plan import compile_plan

    blocked = ["runtime", "chain", "builder.cli", "builder.ui"]
    templates = sorted(str(p) for p in TEMPLATES.glob("*.yaml"))
    body = f"""
from pathlib import Path
from builder.pipeline import load_pipeline
from builder.plan import compile_plan
hashes = {{p: compile_plan(load_pipeline(Path(p))).plan_hash for p in {templates!r}}}
print(json.dumps(hashes))
"""
    done = _run_blocked(blocked, body)
    assert done.returncode == 0, done.stderr[-2000:]
    hashes = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(hashes) == len(templates) >= 5
    assert hashes == {p: compile_plan(load_pipeline(ROOT / p)).plan_hash for p in templates}


def test_the_blocker_really_refuses_what_it_blocks():
    done = _run_blocked(["runtime.db"], "import runtime.db")
    assert done.returncode != 0 and "runtime.db is blocked" in done.stderr


def test_every_runtime_module_is_either_block_kit_or_forbidden_to_blocks():
    modules = {f"runtime.{m.name}" for m in pkgutil.iter_modules(runtime.__path__) if m.name != "migrations"}
    forbidden = set(_contract("blocks-use-only-the-block-kit")["forbidden_modules"])
    unclassified = modules - forbidden - BLOCK_KIT
    assert not unclassified, (
        f"classify {sorted(unclassified)}: add to forbidden_modules of the blocks contract in pyproject.toml, "
        "or to BLOCK_KIT here (and docs/architecture.md) if blocks may use it"
    )
    assert not (forbidden & BLOCK_KIT) and (forbidden | BLOCK_KIT) <= modules | {"runtime.migrations"}


def test_every_block_that_trains_says_so_so_its_rented_work_must_bring_evidence():
    """verify_run asks committed checkpoints of the steps of blocks with `trains`; a block that trains with
    runtime.training.fit without saying so would be paid on rented compute with no evidence at all."""
    import inspect
    import re

    from builder.registry import all_blocks

    trainers = [b.ref() for b in all_blocks() if re.search(r"\bfit\(", inspect.getsource(b.run))]
    assert len(trainers) >= 4  # the chat, speech, vision and driving trainers
    assert sorted(trainers) == sorted(b.ref() for b in all_blocks() if b.trains)
