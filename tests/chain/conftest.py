"""An in-process EVM (eth-tester + py-evm) with the project's contracts deployed; reverted after each test."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider

from chain.artifacts import load_artifact
from chain.errors import decode_revert, revert_data

ROOT = Path(__file__).resolve().parents[2]
FEE_BPS = 250  # 2.5 %
TIMEOUT = 3600
CLAIM_WINDOW = 7 * 24 * 3600
UNSTAKE_DELAY = 24 * 3600
SLASH_BPS = 5_000


def deploy(w3: Web3, artifact: dict, *args: Any, sender: str | None = None) -> Any:
    contract = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx = contract.constructor(*args).transact({"from": sender or w3.eth.accounts[0]})
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    return w3.eth.contract(address=receipt.contractAddress, abi=artifact["abi"])


def reverts(call: Callable[[], Any]) -> str:
    """Run `call`, which must revert; returns the decoded custom error (`Name(arg=value, …)`)."""
    try:
        call()
    except Exception as exc:  # eth-tester raises TransactionFailed with the raw revert data
        data = revert_data(exc)
        decoded = decode_revert(data) if data else None
        return decoded or str(exc)
    raise AssertionError("the call did not revert")


@pytest.fixture(scope="session")
def test_artifacts(tmp_path_factory) -> dict[str, dict]:
    """Test-only contracts (e.g. a reentrant token), compiled with the project's solc-js."""
    out = tmp_path_factory.mktemp("test-contracts")
    subprocess.run(
        [
            "node",
            str(ROOT / "chain" / "compile.mjs"),
            "--src",
            str(ROOT / "tests" / "chain" / "contracts"),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    return {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}


@pytest.fixture(scope="module")
def _deployed() -> SimpleNamespace:
    w3 = Web3(EthereumTesterProvider())
    a = w3.eth.accounts
    roles = SimpleNamespace(
        admin=a[0],
        investors=a[1],
        team=a[2],
        ecosystem=a[3],
        marketing=a[4],
        advisors=a[5],
        company=a[6],
        settler=a[7],
        treasury=a[8],
        payer=a[1],
        stranger=a[9],
    )
    token = deploy(
        w3,
        load_artifact("AICToken"),
        roles.investors,
        roles.team,
        roles.ecosystem,
        roles.marketing,
        roles.advisors,
        roles.company,
    )
    registry = deploy(w3, load_artifact("AssetRegistry"))
    escrow = deploy(
        w3,
        load_artifact("RunEscrow"),
        token.address,
        registry.address,
        roles.treasury,
        FEE_BPS,
        TIMEOUT,
        roles.admin,
        roles.settler,
    )
    rewards = deploy(
        w3,
        load_artifact("ContributionRewards"),
        token.address,
        registry.address,
        roles.ecosystem,
        CLAIM_WINDOW,
        UNSTAKE_DELAY,
        SLASH_BPS,
        roles.admin,
        roles.settler,
    )
    return SimpleNamespace(
        w3=w3, accounts=a, roles=roles, token=token, registry=registry, escrow=escrow, rewards=rewards
    )


@pytest.fixture()
def chain(_deployed: SimpleNamespace):
    """The deployed contracts; every change a test makes is rolled back after it."""
    tester = _deployed.w3.provider.ethereum_tester
    snapshot = tester.take_snapshot()
    yield _deployed
    tester.revert_to_snapshot(snapshot)
    _deployed.__dict__.pop("prop_assets", None)


def tx(w3: Web3, fn: Any, sender: str) -> Any:
    """Send a contract transaction and return its receipt."""
    return w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender}))
