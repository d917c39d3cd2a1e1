"""The embedded chain as a user runs it: a real Anvil on a free loopback port, via the `aib` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import free_port

PROVIDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def aib(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "builder.cli", *args], capture_output=True, text=True, timeout=120, env=os.environ.copy()
    )


@pytest.fixture()
def local_chain():
    port = free_port()
    started = aib("chain", "start", "--port", str(port), "--json")
    assert started.returncode == 0, started.stderr
    yield json.loads(started.stdout.strip().splitlines()[-1])
    aib("chain", "stop")


def balance(address: str) -> int:
    r = aib("wallet", "balance", address, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["balance_wei"]


def test_start_deploys_contracts_and_funds_the_local_user(local_chain):
    assert local_chain["running"] and local_chain["chain_id"] == 31337
    assert set(local_chain["contracts"]) == {"AICToken", "AssetRegistry", "ContributionRewards", "RunEscrow"}
    r = aib("wallet", "balance", "--json")
    assert json.loads(r.stdout)["balance_wei"] == 1_000 * 10**18


def test_balances_survive_a_restart_and_contracts_are_not_redeployed(local_chain):
    before = balance(PROVIDER)
    funded = aib("wallet", "fund", PROVIDER, "12.5 AIC")
    assert funded.returncode == 0 and "sent 12.5 AIC" in funded.stdout
    assert aib("chain", "stop").returncode == 0
    assert json.loads(aib("chain", "status", "--json").stdout)["running"] is False
    restarted = json.loads(aib("chain", "start", "--port", local_chain["rpc_url"].rsplit(":", 1)[1], "--json").stdout)
    assert restarted["contracts"] == local_chain["contracts"]
    assert balance(PROVIDER) == before + 12_500_000_000_000_000_000


def test_a_chain_saved_before_the_rewards_contract_gets_it_on_its_next_start(local_chain):
    from chain.client import connect, contract
    from chain.deploy import UNLIMITED
    from runtime.chain_node import address_book, write_address_book

    book = address_book()
    old = book["contracts"].pop("ContributionRewards")
    write_address_book(book)  # as a chain deployed before ContributionRewards existed left it
    assert aib("chain", "stop").returncode == 0
    restarted = json.loads(aib("chain", "start", "--port", local_chain["rpc_url"].rsplit(":", 1)[1], "--json").stdout)
    rewards = restarted["contracts"]["ContributionRewards"]
    assert rewards != old and {k: v for k, v in restarted["contracts"].items() if k != "ContributionRewards"} == {
        k: v for k, v in local_chain["contracts"].items() if k != "ContributionRewards"
    }
    w3 = connect(restarted["rpc_url"])
    book = address_book()
    assert w3.eth.get_code(rewards)
    token = contract(w3, "AICToken", book)
    assert token.functions.allowance(book["roles"]["ecosystem"], rewards).call() == UNLIMITED  # the pool funds it


def test_bad_wallet_input_is_one_sentence_with_exit_2(local_chain):
    for args, message in [
        (("wallet", "balance", "0x123"), "error: '0x123' is not an Ethereum address"),
        (("wallet", "fund", PROVIDER, "0.0000000000000000001 AIC"), "is smaller than 1 wei"),
        (("wallet", "fund", PROVIDER, "lots"), "expected an amount like '0.5 AIC'"),
    ]:
        r = aib(*args)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)


def test_unreachable_rpc_url_is_named():
    env_url = "http://127.0.0.1:9"  # nothing listens on the discard port
    r = subprocess.run(
        [sys.executable, "-m", "builder.cli", "wallet", "balance", PROVIDER],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "AIB_RPC_URL": env_url},
    )
    assert r.returncode == 2
    assert r.stderr.startswith(f"error: no Ethereum node answers at {env_url}")


def test_catalog_assets_are_registered_and_can_be_reassigned_and_sold(local_chain):
    assets = {a["block"]: a for a in json.loads(aib("assets", "list", "--json").stdout)}
    assert assets["chat.faq-csv@1.0.0"]["owner"] == PROVIDER
    assert assets["compute.local@1.0.0"]["owner"] == "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
    new_owner, buyer = "0x976EA74026E726554dB657fA54763abd0C3a0aa9", "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f"
    r = aib("assets", "register", "chat.faq-csv", "--owner", new_owner)
    assert r.returncode == 0, r.stderr
    asset = {a["block"]: a for a in json.loads(aib("assets", "list", "--json").stdout)}["chat.faq-csv@1.0.0"]
    assert asset["owner"] == new_owner and asset["asset_id"] > assets["chat.faq-csv@1.0.0"]["asset_id"]
    assert aib("assets", "transfer", str(asset["asset_id"]), buyer).returncode == 0
    after = {a["block"]: a for a in json.loads(aib("assets", "list", "--json").stdout)}["chat.faq-csv@1.0.0"]
    assert after["owner"] == buyer


def test_bad_asset_input_is_one_sentence_with_exit_2(local_chain):
    for args, message in [
        (("assets", "transfer", "999", PROVIDER), "error: there is no asset 999"),
        (("assets", "register", "chat.faq-csvv", "--owner", PROVIDER), "did you mean 'chat.faq-csv'"),
        (("assets", "register", "chat.faq-csv", "--owner", "0xnope"), "is not an Ethereum address"),
    ]:
        r = aib(*args)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
