"""The compiled contracts committed under chain/build/ are exactly what the sources compile to."""

import subprocess
from pathlib import Path

from chain.artifacts import BUILD_DIR, CONTRACTS, load_artifact

ROOT = Path(__file__).resolve().parents[2]


def test_committed_build_is_fresh(tmp_path):
    r = subprocess.run(
        ["node", str(ROOT / "chain" / "compile.mjs"), "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    fresh = {p.name: p.read_bytes() for p in tmp_path.glob("*.json")}
    committed = {p.name: p.read_bytes() for p in BUILD_DIR.glob("*.json")}
    stale = sorted(n for n in fresh.keys() | committed.keys() if fresh.get(n) != committed.get(n))
    assert not stale, f"chain/build is stale for {stale}: run `make contracts` and commit chain/build/"


def test_artifacts_pin_the_compiler_and_evm_version():
    for name in CONTRACTS:
        artifact = load_artifact(name)
        assert artifact["compiler"]["version"].startswith("0.8.37+")
        assert artifact["compiler"]["settings"]["evmVersion"] == "cancun"
        assert artifact["bytecode"][:4] in ("0x60", "0x61") and artifact["abi"]  # PUSH1/PUSH2 of the free pointer
