"""Compute offers on chain: the offer asset a provider is paid through, its stake, its signed work receipts, and
the slash when the verifier proves it cheated (ContributionRewards).

A provider agent registers its offer as a ComputeOffer asset owned by its wallet; settlement pays the compute a
run used on it to that asset's current owner. After each attempt of a paid run, the provider signs a receipt per
training step: the checkpoint hash it resumed from and the hash after every segment (epoch) it trained. When the
verifier's replay of a segment lands elsewhere, the receipt that signed that segment's hash is the evidence of the
slash.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

from builder.errors import ChainError
from runtime.config import get_settings

ZERO32 = b"\0" * 32


def offer_ref(provider_id: str) -> str:
    """How the address book and settlements name a provider's compute-offer asset."""
    return f"offer:{provider_id}"


def _chain() -> tuple[Any, dict[str, Any]]:
    from chain.client import connect
    from runtime.chain_node import address_book, rpc_url

    return connect(rpc_url()), address_book()


def ensure_offer_asset(row: Any, wallet: str, sender: str | None = "owner") -> int:
    """The offer's asset id, registering it (owned by `wallet`) the first time; kept across restarts of the agent.
    `sender`: who sends the registration ("owner": `wallet` itself; None: the coordinator's own signer, for a
    provider on another machine that proved it holds `wallet`)."""
    from chain.client import contract, registered_asset
    from chain.deploy import ASSET_KINDS
    from runtime.chain_node import record_asset, send

    w3, book = _chain()
    known = book.get("assets", {}).get(offer_ref(row.id))
    if known is not None:
        return int(known)
    registry = contract(w3, "AssetRegistry", book)
    minted = registered_asset(registry, f"aib://offers/{row.id}")
    if minted is not None:  # minted by an agent that died before recording it
        record_asset(offer_ref(row.id), minted[0])
        return int(minted[0])
    content = json.dumps(
        {"offer": row.id, "name": row.name, "tier": row.tier, "hardware": row.hardware}, sort_keys=True
    )
    receipt = send(
        w3,
        registry.functions.register(
            wallet,
            ASSET_KINDS["compute"],
            hashlib.sha256(content.encode()).digest(),
            f"aib://offers/{row.id}",
            int(row.price_wei_per_s),
        ),
        wallet if sender == "owner" else (sender or _coordinator_signer(w3, book)),
    )
    from web3.logs import DISCARD

    asset_id = int(registry.events.AssetRegistered().process_receipt(receipt, errors=DISCARD)[0].args.assetId)
    record_asset(offer_ref(row.id), asset_id)
    return asset_id


def _coordinator_signer(w3: Any, book: dict[str, Any]) -> str:
    from chain.accounts import use_signer

    return use_signer(w3, book)


def stake(asset_id: int, amount_wei: int, wallet: str) -> str:
    """Stake `amount_wei` from `wallet` on the offer; the transaction hash."""
    from chain.client import contract
    from runtime.chain_node import send

    w3, book = _chain()
    token, rewards = contract(w3, "AICToken", book), contract(w3, "ContributionRewards", book)
    held = token.functions.balanceOf(wallet).call()
    if held < amount_wei:
        from builder.money import format_aic

        raise ChainError(f"the wallet {wallet} holds {format_aic(held)}, less than the stake {format_aic(amount_wei)}")
    send(w3, token.functions.approve(rewards.address, amount_wei), wallet)
    return send(w3, rewards.functions.stake(asset_id, amount_wei), wallet).transactionHash.to_0x_hex()


def stake_status(asset_id: int) -> dict[str, Any]:
    """The stake on an offer: staker, amount, when it can be withdrawn (0: no withdrawal asked; never before the
    challenge window of the offer's latest receipt has passed), now (chain time)."""
    from chain.client import contract

    w3, book = _chain()
    stake = contract(w3, "ContributionRewards", book).functions.stakeOf(asset_id).call()
    staker, amount, unstake_at, locked_until = stake
    return {"staker": staker, "amount_wei": int(amount),
            "unstake_at": max(int(unstake_at), int(locked_until)) if unstake_at else 0,
            "now": int(w3.eth.get_block("latest").timestamp)}  # fmt: skip


def unstake(asset_id: int) -> dict[str, Any]:
    """Ask to withdraw the stake on an offer, or withdraw it once the delay has passed; what happened."""
    from chain.client import contract
    from runtime.chain_node import send

    w3, book = _chain()
    rewards = contract(w3, "ContributionRewards", book)
    status = stake_status(asset_id)
    if status["amount_wei"] == 0:
        raise ChainError(f"nothing is staked on offer asset #{asset_id}")
    if status["unstake_at"] == 0:
        tx = send(w3, rewards.functions.requestUnstake(asset_id), status["staker"]).transactionHash.to_0x_hex()
        return {**stake_status(asset_id), "outcome": "requested", "tx": tx}
    if status["now"] < status["unstake_at"]:
        return {**status, "outcome": "waiting"}
    tx = send(w3, rewards.functions.withdrawStake(asset_id), status["staker"]).transactionHash.to_0x_hex()
    return {**status, "outcome": "withdrawn", "tx": tx}


def _offer_asset(receipt: dict) -> int:
    """The offer asset that signed a receipt recorded in a run's metrics (recorded since receipts are per offer;
    earlier records name only the provider)."""
    if "offer_asset" in receipt:
        return int(receipt["offer_asset"])
    from runtime.db import ProviderRow, session_factory

    with session_factory()() as s:
        provider = s.get(ProviderRow, receipt["provider_id"])
    if provider is None or provider.asset_id is None:
        raise ChainError(f"the provider {receipt['provider_id']} of receipt {receipt['key']} has no offer asset")
    return int(provider.asset_id)


def receipt_key(run_id: str, node_id: str, attempt: int) -> str:
    """The off-chain id of a provider's receipt for one step of one attempt (keccak256 of it is the on-chain id)."""
    return f"{run_id}/{node_id}/attempt-{attempt}"


def committed(cache_key: str) -> list[str]:
    """The checkpoint hashes a training step has committed so far (empty when none)."""
    from runtime.context import segments_dir

    try:
        return list(json.loads((segments_dir(get_settings(), cache_key) / "commitments.json").read_text()))
    except (OSError, ValueError):
        return []


def _as_bytes32(h: str) -> bytes:
    return bytes.fromhex(h) if h else ZERO32  # a segment lost to a crash was never committed


def submit_receipts(run_id: str, plan: Any, provider: Any, attempt: int, before: dict[str, int]) -> list[dict]:
    """Sign, from the provider's wallet, what this attempt trained in each step (`before`: commitments per step
    when the attempt began); the receipts, also kept in the run's metrics for the verifier."""
    from chain.client import contract
    from runtime.chain_node import send
    from runtime.db import Run, session_factory

    w3, book = _chain()
    rewards = contract(w3, "ContributionRewards", book)
    receipts = []
    for step in plan.steps:
        hashes = committed(step.cache_key)
        start = max(before.get(step.node_id, 0) - 1, 0)  # a resumed attempt starts from the last kept checkpoint
        mine = hashes[start:]
        if len(mine) < 2:
            continue
        key = receipt_key(run_id, step.node_id, attempt)
        call = rewards.functions.submitReceipt(w3.keccak(text=key), provider.asset_id, [_as_bytes32(h) for h in mine])
        tx = send(w3, call, provider.wallet).transactionHash.to_0x_hex()
        receipts.append({"key": key, "node_id": step.node_id, "start": start, "commitments": mine, "tx": tx,
                         "provider_id": provider.id, "offer_asset": int(provider.asset_id)})  # fmt: skip
    if receipts:
        with session_factory().begin() as s:
            run = s.get(Run, run_id)
            run.metrics = {**(run.metrics or {}), "receipts": [*(run.metrics or {}).get("receipts", []), *receipts]}
    return receipts


def sign_attempt(run_id: str, plan: Any, attempt: int, before: dict[str, int]) -> None:
    """Provider side, after an attempt: sign its receipts when the run is paid on chain and the offer has an asset;
    a failure is reported, never fatal (the run's result stands; unsigned work just cannot be slashed or proven)."""
    import os

    from runtime.chain_node import payments_enabled
    from runtime.db import ProviderRow, session_factory

    provider_id = os.environ.get("AIB_PROVIDER_ID")
    if not provider_id or not payments_enabled():
        return
    with session_factory()() as s:
        provider = s.get(ProviderRow, provider_id)
    if provider is None or provider.asset_id is None or not provider.wallet:
        return
    try:
        submit_receipts(run_id, plan, provider, attempt, before)
    except Exception as exc:  # a chain hiccup must not fail the work that was done
        print(f"warning: work receipts of run {run_id} were not signed: {exc}", file=sys.stderr)


def slash_cheat(
    run_id: str, node_id: str, segment: int, committed_hash: str, replayed_hash: str, receipts: list[dict]
) -> dict[str, Any]:
    """Slash the provider that signed `committed_hash` for `segment` of step `node_id` (the hash the verifier
    checked and found wrong): the verifier's replay gave `replayed_hash`. What happened ({tx, amount_wei,
    offer_asset}) or {error}."""
    from web3.logs import DISCARD

    from chain.client import contract
    from runtime.chain_node import send

    for r in receipts:
        if r["node_id"] != node_id or not r["start"] < segment <= r["start"] + len(r["commitments"]) - 1:
            continue
        if r["commitments"][segment - r["start"]] != committed_hash:
            continue  # another attempt's receipt: that provider did not sign the hash that failed
        w3, book = _chain()
        rewards = contract(w3, "ContributionRewards", book)
        from chain.accounts import use_signer

        verifier = use_signer(w3, book)
        call = rewards.functions.slash(
            w3.keccak(text=r["key"]),
            _offer_asset(r),
            [_as_bytes32(h) for h in r["commitments"]],
            segment - r["start"],
            bytes.fromhex(replayed_hash),
        )
        try:
            receipt = send(w3, call, verifier)
        except ChainError as exc:
            return {"error": str(exc)}
        event = rewards.events.Slashed().process_receipt(receipt, errors=DISCARD)[0].args
        return {
            "tx": receipt.transactionHash.to_0x_hex(),
            "amount_wei": str(event.amount),
            "offer_asset": event.offerAssetId,
            "provider_id": r["provider_id"],
        }
    return {"error": f"no receipt signs the checked hash of segment {segment} of step {node_id!r}; nothing to slash"}


__all__ = [
    "committed",
    "ensure_offer_asset",
    "offer_ref",
    "receipt_key",
    "sign_attempt",
    "slash_cheat",
    "stake",
    "stake_status",
    "submit_receipts",
    "unstake",
]
