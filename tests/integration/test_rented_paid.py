"""A paid run on rented compute, for real: a real Anvil, `prefect server` and a provider agent with a staked
compute-offer asset. Its compute is paid to the offer's owner, it signs its work on chain, and when it signs work
it did not do, the verifier's replay slashes its stake and the epoch's rewards leave its offer out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import free_port
from tests.integration.test_distributed import forge_segment, rented_copy, wait_for

AIB = [sys.executable, "-m", "builder.cli"]
AIC = 10**18


def env() -> dict[str, str]:
    e = os.environ.copy()
    e.pop("PREFECT_API_URL", None)  # the session's test server is not the distributed one
    e.pop("AIB_PAYMENTS", None)
    return e


def aib(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*AIB, *args], capture_output=True, text=True, timeout=timeout, env=env())


@pytest.fixture(scope="module")
def chain_and_server():
    started = aib("chain", "start", "--port", str(free_port()), "--json")
    assert started.returncode == 0, started.stderr
    server = aib("server", "start", "--port", str(free_port()), "--json", timeout=240)
    assert server.returncode == 0, server.stderr
    from runtime.settlement import Chain

    yield Chain.connect()
    aib("server", "stop")
    aib("chain", "stop")


def test_a_staked_provider_is_paid_signs_its_work_and_is_slashed_when_it_signs_work_it_did_not_do(
    chain_and_server, tmp_path
):

    from builder.pipeline import load_pipeline
    from builder.plan import compile_plan
    from runtime.config import get_settings
    from runtime.db import ProviderRow, session_factory
    from runtime.distributed import verify_run
    from runtime.rewards import RewardsChain, draft_epoch
    from runtime.work_receipts import offer_ref, receipt_key, submit_receipts

    chain = chain_and_server
    wallet = chain.w3.eth.accounts[3]  # the provider's own wallet (unlocked on Anvil), not the user's
    chain.send(chain.token.functions.transfer(wallet, 200 * AIC), chain.payer)
    bad = aib("provider", "start", "--tier", "cpu", "--price", "0.36", "--stake", "none")
    assert bad.returncode == 2 and "--stake:" in bad.stderr
    agent = subprocess.Popen(
        [*AIB, "provider", "start", "--tier", "cpu", "--price", "0.36", "--name", "staked", "--wallet", wallet,
         "--stake", "100"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env(), start_new_session=True,
    )  # fmt: skip
    try:

        def online():
            rows = json.loads(aib("providers", "list", "--json").stdout or "[]")
            return next((r for r in rows if r["name"] == "staked" and r["online"]), None)

        offer = wait_for(online, 120, "the staked provider online")
        with session_factory()() as s:
            row = s.get(ProviderRow, offer["id"])
            asset, signer = row.asset_id, row.wallet
        assert asset is not None and signer == wallet
        from chain.client import contract
        from runtime.chain_node import address_book

        registry = contract(chain.w3, "AssetRegistry", address_book())
        rewards = contract(chain.w3, "ContributionRewards", address_book())
        assert registry.functions.ownerOf(asset).call() == wallet
        assert registry.functions.assetOf(asset).call()[0] == 2  # ComputeOffer
        assert tuple(rewards.functions.stakeOf(asset).call()[:2]) == (wallet, 100 * AIC)
        # An agent that died between minting the offer and recording it adopts that asset instead of minting again.
        from runtime.chain_node import write_address_book
        from runtime.work_receipts import ensure_offer_asset

        book = address_book()
        del book["assets"][offer_ref(offer["id"])]
        write_address_book(book)
        minted = registry.functions.totalAssets().call()
        with session_factory()() as s:
            assert ensure_offer_asset(s.get(ProviderRow, offer["id"]), wallet) == asset
        assert registry.functions.totalAssets().call() == minted
        assert address_book()["assets"][offer_ref(offer["id"])] == asset

        path = rented_copy(tmp_path)
        pipeline_doc = yaml.safe_load(path.read_text())
        pipeline_doc["compute"]["params"]["segment_batches"] = 2  # segments of 2 optimiser steps, not whole epochs
        path.write_text(yaml.safe_dump(pipeline_doc))
        before = chain.token.functions.balanceOf(wallet).call()
        # A seed of its own: other tests trained this pipeline on other providers (and the step would be cached).
        sets = ["classifier.epochs=5", f"classifier.seed={time.time_ns() % 10**6}"]
        done = aib("run", str(path), "--set", sets[0], "--set", sets[1], "--json", timeout=400)
        assert done.returncode == 0, done.stdout + done.stderr
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert summary["status"] == "succeeded" and summary["provider_id"] == offer["id"]
        settlement = summary["settlement"]
        assert settlement["status"] == "settled"
        compute = [p for p in settlement["payouts"] if p["block_ref"] == offer_ref(offer["id"])]
        assert len(compute) == 1 and compute[0]["asset_id"] == asset and compute[0]["payee"] == wallet
        assert not [p for p in settlement["payouts"] if p["block_ref"].startswith("compute.rented")]
        assert chain.token.functions.balanceOf(wallet).call() - before == compute[0]["amount_wei"] > 0

        # The provider signed what it trained: the start and one checkpoint hash per segment, from its own wallet.
        run_id = summary["run_id"]
        receipt = rewards.functions.receiptOf(chain.w3.keccak(text=receipt_key(run_id, "classifier", 1)), asset).call()
        checked = summary["metrics"]["verification"]["classifier"]
        assert checked["ok"] is True and checked["epochs"] == 5 and checked["segments"] >= 10  # 2+ per epoch
        assert receipt[0] == wallet and receipt[1] == checked["segments"] and receipt[4] == asset
        assert [r["key"] for r in summary["metrics"]["receipts"]] == [receipt_key(run_id, "classifier", 1)]

        # A cheat: it hands in (and signs) weights for segment 3 (inside an epoch) it never trained.
        pipeline = load_pipeline(path, sets)
        plan = compile_plan(pipeline)
        folder = get_settings().cache_dir / "work" / plan.step("classifier").cache_key / "segments"
        commitments = forge_segment(folder, 3)
        with session_factory()() as s:
            provider = s.get(ProviderRow, offer["id"])
        signed = submit_receipts(run_id, plan, provider, 2, {})
        assert signed[0]["commitments"][3] == commitments[3]

        pool = chain.token.functions.balanceOf(rewards.functions.pool().call()).call()
        findings = verify_run(run_id, pipeline, plan, rate=1.0)
        found = findings["classifier"]
        per_epoch = checked["segments"] // 5
        epoch, part = divmod(3 - 1, per_epoch)
        assert found["ok"] is False and found["segment"] == 3 and found["epoch"] == epoch + 1
        assert found["committed_hash"] == commitments[3]
        assert found["reason"].startswith(f"segment 3 (epoch {epoch + 1}, part {part + 1} of {per_epoch}) replayed")
        slash = found["slash"]
        assert slash.get("tx", "").startswith("0x"), slash
        assert int(slash["amount_wei"]) == 50 * AIC and slash["offer_asset"] == asset  # half the stake
        assert rewards.functions.stakeOf(asset).call()[1] == 50 * AIC
        assert rewards.functions.excluded(asset).call()
        assert chain.token.functions.balanceOf(rewards.functions.pool().call()).call() - pool == 50 * AIC

        # The provider adds to its stake, then takes what is left back: asked first, withdrawn after the delay.
        more = aib("provider", "stake", offer["id"], "10")
        assert more.returncode == 0 and "staked 10 AIC" in more.stdout and "now 60 AIC" in more.stdout, more.stderr
        asked = aib("provider", "unstake", offer["id"], "--json")
        assert asked.returncode == 0 and json.loads(asked.stdout)["outcome"] == "requested", asked.stderr
        early = aib("provider", "unstake", offer["id"])
        assert early.returncode == 0 and "60 AIC can be withdrawn from" in early.stdout, early.stdout
        chain.w3.provider.make_request("evm_increaseTime", [7 * 24 * 3600 + 5])
        chain.w3.provider.make_request("evm_mine", [])
        held = chain.token.functions.balanceOf(wallet).call()
        done = aib("provider", "unstake", offer["id"], "--json")
        assert done.returncode == 0 and json.loads(done.stdout)["outcome"] == "withdrawn", done.stderr
        assert chain.token.functions.balanceOf(wallet).call() - held == 60 * AIC
        unknown = aib("provider", "unstake", "p-nope")
        assert unknown.returncode == 2 and "there is no provider 'p-nope'" in unknown.stderr

        # The next epoch leaves the cheat's offer out; the honest assets of the same run are still rewarded.
        with session_factory()() as s:
            draft = draft_epoch(s, RewardsChain.connect(), 100 * AIC)
        assert asset in draft.candidates and asset not in draft.shares
        assert draft.excluded[asset].startswith("its provider staked was caught cheating")
        assert draft.shares
    finally:
        os.killpg(agent.pid, signal.SIGTERM)
        try:
            agent.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(agent.pid, signal.SIGKILL)
