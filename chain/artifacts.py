"""Compiled contracts (ABI + bytecode JSON under chain/build/, shipped as package data)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

BUILD_DIR = Path(__file__).resolve().parent / "build"
CONTRACTS = ("AICToken", "AssetRegistry", "ContributionRewards", "RunEscrow")


@functools.cache
def load_artifact(name: str) -> dict[str, Any]:
    """The compiled artifact of contract `name` (abi, bytecode, deployedBytecode, compiler)."""
    path = BUILD_DIR / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no compiled contract {name!r} in {BUILD_DIR}; run `make contracts`")
    return json.loads(path.read_text(encoding="utf-8"))


__all__ = ["BUILD_DIR", "CONTRACTS", "load_artifact"]
