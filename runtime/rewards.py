"""Proof-of-Value epochs on chain: close an epoch with one ContributionRewards transaction, claim, show.

Closing an epoch takes every settled run and service batch no epoch has counted yet, sums what they paid each
asset, leaves junk out (runtime.rewards_math), splits the epoch's pool pro rata and builds the Merkle tree. The
epoch, its report and the settlements it counts are written in one database transaction *before* closeEpoch is
sent; a retry first asks the contract whether the epoch is already closed, so a crash at any point neither loses
an epoch nor pays one twice (the contract itself refuses to close the same epoch number again).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from web3.logs import DISCARD

from builder.errors import ChainError, NotFoundError
from builder.money import format_aic
from chain.merkle import build_tree
from runtime.db import ProviderRow, RewardEpoch, Run, ServiceBatch, Settlement, utcnow
from runtime.rewards_math import Candidate, data_verdict, duplicate_of, epoch_values, judge, split_pool

DEFAULT_EPOCH_POOL_WEI = 10_000 * 10**18  # what one epoch pays out of the incentive pool unless told otherwise


@dataclass
class RewardsChain:
    """The contracts Proof-of-Value talks to and the operator that closes epochs."""

    w3: Any
    token: Any
    registry: Any
    rewards: Any
    operator: str
    pool: str
    escrow: str  # settlements through this escrow (on this chain) are what the epochs count
    ref_of: dict[int, str]  # asset id -> the block, dataset or offer it is (from the address book)

    @classmethod
    def connect(cls) -> RewardsChain:
        from chain.accounts import use_signer
        from chain.client import connect, contract
        from runtime.chain_node import address_book, rpc_url

        w3 = connect(rpc_url())
        book = address_book()
        if "ContributionRewards" not in book.get("contracts", {}):
            raise ChainError(
                "this chain has no ContributionRewards contract; restart the local chain (`aib chain stop`, then "
                "`aib chain start`) to deploy it"
            )
        rewards = contract(w3, "ContributionRewards", book)
        return cls(
            w3,
            contract(w3, "AICToken", book),
            contract(w3, "AssetRegistry", book),
            rewards,
            use_signer(w3, book),
            rewards.functions.pool().call(),
            book["contracts"]["RunEscrow"],
            {int(v): k for k, v in book.get("assets", {}).items()},
        )

    def send(self, call: Any, sender: str | None = None) -> Any:
        from runtime.chain_node import send

        return send(self.w3, call, sender or self.operator)

    def content_hashes(self) -> dict[int, tuple[bytes, str]]:
        """Every registered asset's (content hash, metadata URI); the registry numbers assets 1..totalAssets."""
        n = self.registry.functions.totalAssets().call()
        records = (self.registry.functions.assetOf(i).call() for i in range(1, n + 1))
        return {i: (r[1], r[3]) for i, r in enumerate(records, start=1)}

    def excluded(self, asset_id: int) -> bool:
        return bool(self.rewards.functions.excluded(asset_id).call())


@dataclass
class EpochDraft:
    """What closing the next epoch now would pay, and what it would leave out and why."""

    number: int
    pool_wei: int
    candidates: dict[int, Candidate]
    excluded: dict[int, str]
    shares: dict[int, int]
    settlements: list[str] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)

    @property
    def total_wei(self) -> int:
        return sum(self.shares.values())

    def _leaf(self, asset_id: int) -> dict[str, Any]:
        c = self.candidates[asset_id]
        return {"asset_id": asset_id, "ref": c.ref, "value_wei": str(c.value_wei)}

    def report(self) -> dict[str, Any]:
        """The public report of the epoch (its sha256 goes on chain); proofs let any owner claim from it alone."""
        tree = build_tree(self.number, self.shares) if self.shares else None
        return {
            "epoch": self.number,
            "pool_wei": str(self.pool_wei),
            "total_wei": str(self.total_wei),
            "root": "0x" + tree.root.hex() if tree else None,
            "paid": [
                {**self._leaf(a), "amount_wei": str(amount), "proof": ["0x" + p.hex() for p in tree.proof(a)]}
                for a, amount in self.shares.items()
            ]
            if tree
            else [],
            "excluded": [
                {
                    "asset_id": a,
                    "ref": self.candidates[a].ref,
                    "value_wei": str(self.candidates[a].value_wei),
                    "reason": r,
                }
                for a, r in sorted(self.excluded.items())
            ],
            "settlements": sorted(self.settlements),
            "batches": sorted(self.batches),
        }


def report_hash(report: dict[str, Any]) -> bytes:
    """sha256 of the canonical JSON of an epoch report (what closeEpoch stores as reportHash)."""
    return hashlib.sha256(json.dumps(report, sort_keys=True, separators=(",", ":")).encode()).digest()


def _unrewarded(session: Session, rc: RewardsChain) -> tuple[list[Settlement], list[ServiceBatch]]:
    """Settled runs and batches of this chain's escrow that no epoch has counted yet."""
    chain_id = rc.w3.eth.chain_id
    found = []
    for table in (Settlement, ServiceBatch):
        found.append(
            list(
                session.scalars(
                    select(table).where(
                        table.status == "settled",
                        table.reward_epoch_id.is_(None),
                        table.escrow == rc.escrow,
                        table.chain_id == chain_id,
                    )
                )
            )
        )
    return found[0], found[1]


def _data_reasons(session: Session, candidates: dict[int, Candidate]) -> dict[int, str]:
    """Junk verdicts for the candidates that are data, from the metrics of the finished runs that read them."""
    metrics_by_ref: dict[str, list[dict[str, Any]]] = {}
    for run in session.scalars(select(Run).where(Run.status == "succeeded")):
        refs = set()
        for step in (run.plan or {}).get("steps", []):
            if step.get("kind") == "data":
                refs.add(f"{step['block_id']}@{step['version']}")
            refs.update(r["ref"] for r in step.get("royalties") or ())
        for ref in refs:
            metrics_by_ref.setdefault(ref, []).append(run.metrics or {})
    reasons = {}
    for asset_id, c in candidates.items():
        verdict = data_verdict(metrics_by_ref.get(c.ref, []))
        if verdict:
            reasons[asset_id] = verdict
    return reasons


def _cheaters(session: Session, rc: RewardsChain, candidates: dict[int, Candidate]) -> dict[int, str]:
    """Compute offers caught cheating: a run on them failed verification here, or the contract excluded them."""
    caught: dict[str, str] = {}
    for run in session.scalars(select(Run).where(Run.provider_id.is_not(None), Run.error.like("verification failed%"))):
        caught.setdefault(run.provider_id, run.id)
    reasons: dict[int, str] = {}
    for row in session.scalars(select(ProviderRow).where(ProviderRow.asset_id.is_not(None))):
        if row.id in caught:
            reasons[int(row.asset_id)] = f"its provider {row.name} was caught cheating (run {caught[row.id]})"
    for asset_id in candidates:
        if asset_id not in reasons and rc.excluded(asset_id):
            reasons[asset_id] = "slashed on chain for proven cheating"
    return reasons


def draft_epoch(session: Session, rc: RewardsChain, pool_wei: int = DEFAULT_EPOCH_POOL_WEI) -> EpochDraft:
    """What the next epoch would pay if closed now (nothing is written)."""
    number = rc.rewards.functions.epochCount().call() + 1
    runs, batches = _unrewarded(session, rc)
    payouts = [p for row in [*runs, *batches] for p in (row.payouts or [])]
    candidates = epoch_values(payouts)
    excluded = judge(
        candidates,
        duplicates=duplicate_of(rc.content_hashes()) if candidates else {},
        data_reasons=_data_reasons(session, candidates),
        cheaters=_cheaters(session, rc, candidates),
    )
    values = {a: c.value_wei for a, c in candidates.items() if a not in excluded}
    return EpochDraft(
        number=number,
        pool_wei=pool_wei,
        candidates=candidates,
        excluded=excluded,
        shares=split_pool(values, pool_wei),
        settlements=[r.id for r in runs],
        batches=[b.id for b in batches],
    )


def _check_pool(rc: RewardsChain, total: int) -> None:
    balance = rc.token.functions.balanceOf(rc.pool).call()
    allowance = rc.token.functions.allowance(rc.pool, rc.rewards.address).call()
    if min(balance, allowance) < total:
        raise ChainError(
            f"the incentive pool {rc.pool} can give {format_aic(min(balance, allowance))} but the epoch needs "
            f"{format_aic(total)}; pass a smaller --amount"
        )


def close_epoch(session: Session, rc: RewardsChain, pool_wei: int = DEFAULT_EPOCH_POOL_WEI) -> RewardEpoch | EpochDraft:
    """Close the next epoch (or finish one a crash left pending); the closed epoch, or the draft when it pays
    nothing (no settled usage since the last epoch, or all of it junk) and so was not closed."""
    if pool_wei <= 0:
        raise ChainError("an epoch must pay more than 0 AIC")
    mine = RewardEpoch.contract == rc.rewards.address
    pending = session.scalar(select(RewardEpoch).where(mine, RewardEpoch.status == "pending"))
    if pending is not None:
        return _finish(session, rc, pending)
    on_chain = rc.rewards.functions.epochCount().call()
    known = session.scalar(select(RewardEpoch.number).where(mine).order_by(RewardEpoch.number.desc()).limit(1)) or 0
    if on_chain != known:
        raise ChainError(
            f"the rewards contract has closed {on_chain} epoch(s) but this database knows {known}; close epochs "
            "from the database that closed the others"
        )
    draft = draft_epoch(session, rc, pool_wei)
    if not draft.shares:
        return draft
    _check_pool(rc, draft.total_wei)
    report = draft.report()
    row = RewardEpoch(
        number=draft.number,
        chain_id=rc.w3.eth.chain_id,
        contract=rc.rewards.address,
        status="pending",
        root=report["root"],
        total_wei=draft.total_wei,
        report=report,
        report_hash="0x" + report_hash(report).hex(),
    )
    session.add(row)
    try:
        session.flush()  # the epoch number is unique per contract: a racing close-epoch stops here
    except IntegrityError:
        session.rollback()
        raise ChainError(f"epoch {draft.number} is being closed by another process; run it again") from None
    # Claim exactly the settlements the draft counted, in the same transaction as the epoch row, so that nothing
    # is counted twice and nothing counted is lost.
    for table, ids in ((Settlement, draft.settlements), (ServiceBatch, draft.batches)):
        if ids:
            taken = session.execute(
                update(table).where(table.id.in_(ids), table.reward_epoch_id.is_(None)).values(reward_epoch_id=row.id)
            ).rowcount
            if taken != len(ids):
                session.rollback()
                raise ChainError("another close-epoch counted some of the same usage meanwhile; run it again")
    session.commit()  # what will be sent is on disk before it is sent
    return _finish(session, rc, row)


def _finish(session: Session, rc: RewardsChain, row: RewardEpoch) -> RewardEpoch:
    """Send closeEpoch for a pending epoch unless the contract has it already; record the outcome."""
    root = bytes.fromhex(row.root[2:])
    on_chain = rc.rewards.functions.epochOf(row.number).call()
    if on_chain[0] == b"\0" * 32:
        if rc.rewards.functions.epochCount().call() + 1 != row.number:
            raise ChainError(f"epoch {row.number} cannot be closed: the contract expects another epoch number")
        _check_pool(rc, row.total_wei)
        call = rc.rewards.functions.closeEpoch(row.number, root, row.total_wei, bytes.fromhex(row.report_hash[2:]))
        try:
            receipt = rc.send(call)
        except ChainError as exc:
            row.error = str(exc)
            session.commit()
            raise
        tx = receipt.transactionHash.to_0x_hex()
    elif on_chain[0] == root:  # sent before a crash: record it, never send again
        logs = rc.rewards.events.EpochClosed().get_logs(from_block=0, argument_filters={"epoch": row.number})
        tx = logs[-1].transactionHash.to_0x_hex() if logs else None
    else:
        raise ChainError(f"epoch {row.number} was closed on chain with another root than the one recorded here")
    row.status, row.close_tx, row.closed_at, row.error = "closed", tx, utcnow(), None
    session.commit()
    return row


def epochs(session: Session, rc: RewardsChain) -> list[RewardEpoch]:
    """The epochs recorded for this chain's rewards contract, oldest first."""
    return list(
        session.scalars(
            select(RewardEpoch).where(RewardEpoch.contract == rc.rewards.address).order_by(RewardEpoch.number)
        )
    )


def get_epoch(session: Session, rc: RewardsChain, number: int) -> RewardEpoch:
    """A recorded epoch of this chain's rewards contract; NotFoundError naming the epochs there are."""
    mine = RewardEpoch.contract == rc.rewards.address
    row = session.scalar(select(RewardEpoch).where(mine, RewardEpoch.number == number))
    if row is None:
        last = session.scalar(select(RewardEpoch.number).where(mine).order_by(RewardEpoch.number.desc()).limit(1))
        known = f"epochs 1 to {last} exist" if last else "no epoch has been closed yet"
        raise NotFoundError(f"there is no rewards epoch {number}; {known}")
    return row


def epoch_claims(rc: RewardsChain, row: RewardEpoch) -> list[dict[str, Any]]:
    """The epoch's paid assets with whether each was claimed and who its owner (the payee) is now."""
    out = []
    for leaf in row.report["paid"]:
        asset_id = leaf["asset_id"]
        try:
            owner = rc.registry.functions.ownerOf(asset_id).call()
        except Exception:  # a burned or unknown token has no payee
            owner = None
        out.append(
            {
                **{k: v for k, v in leaf.items() if k != "proof"},
                "claimed": bool(rc.rewards.functions.isClaimed(row.number, asset_id).call()),
                "owner": owner,
            }
        )
    return out


def claim(session: Session, rc: RewardsChain, number: int, asset_ids: list[int] | None = None) -> list[dict[str, Any]]:
    """Claim epoch `number`'s rewards of `asset_ids` (default: all its paid assets) for their owners; assets claimed
    already are skipped, so running it again pays nothing twice. One dict per asset: what happened."""
    row = get_epoch(session, rc, number)
    if row.status != "closed":
        raise ChainError(f"epoch {number} is not closed on chain yet; run `aib rewards close-epoch` to finish it")
    leaves = {leaf["asset_id"]: leaf for leaf in row.report["paid"]}
    wanted = list(leaves) if asset_ids is None else asset_ids
    for asset_id in wanted:
        if asset_id not in leaves:
            raise NotFoundError(f"asset {asset_id} has no reward in epoch {number}")
    results = []
    for asset_id in wanted:
        leaf = leaves[asset_id]
        if rc.rewards.functions.isClaimed(number, asset_id).call():
            results.append({"asset_id": asset_id, "outcome": "claimed already"})
            continue
        if rc.excluded(asset_id):
            results.append({"asset_id": asset_id, "outcome": "excluded on chain (slashed for cheating)"})
            continue
        proof = [bytes.fromhex(p[2:]) for p in leaf["proof"]]
        receipt = rc.send(rc.rewards.functions.claim(number, asset_id, int(leaf["amount_wei"]), proof))
        event = rc.rewards.events.Claimed().process_receipt(receipt, errors=DISCARD)[0].args
        results.append(
            {
                "asset_id": asset_id,
                "outcome": "paid",
                "payee": event.payee,
                "amount_wei": str(event.amount),
                "tx": receipt.transactionHash.to_0x_hex(),
            }
        )
    return results


def epoch_dict(row: RewardEpoch) -> dict[str, Any]:
    """A recorded epoch as JSON-ready data."""
    return {
        "epoch": row.number,
        "status": row.status,
        "root": row.root,
        "total_wei": str(row.total_wei),
        "report_hash": row.report_hash,
        "close_tx": row.close_tx,
        "closed_at": row.closed_at.isoformat() if row.closed_at else None,
        "paid": len(row.report["paid"]),
        "excluded": len(row.report["excluded"]),
        "error": row.error,
    }


__all__ = [
    "DEFAULT_EPOCH_POOL_WEI",
    "EpochDraft",
    "RewardsChain",
    "claim",
    "close_epoch",
    "draft_epoch",
    "epoch_claims",
    "epoch_dict",
    "epochs",
    "get_epoch",
    "report_hash",
]
