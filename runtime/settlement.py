"""Pay a run on chain: deposit before it starts, settle from the usage ledger after, reconcile after a crash.

Every step writes what it is about to do before sending the transaction, and every retry first asks the
chain what already happened, so a crash at any point neither loses a payment nor pays twice (the escrow
itself refuses a second settle of the same run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from builder.errors import ChainError, NotFoundError, RunError
from builder.money import format_aic
from builder.plan import Plan, compute_quote
from runtime.db import Run, Settlement, Usage
from runtime.settlement_math import SettlementMathError, deposit_for, plan_settlement

FINISHED = ("succeeded", "failed", "cancelled")
ZERO_ADDRESS = "0x" + "0" * 40


@dataclass
class Chain:
    """The contracts a settlement talks to, and the wallet that pays."""

    w3: Any
    token: Any
    escrow: Any
    payer: str
    operator: str
    asset_of: dict[str, int]

    @classmethod
    def connect(cls) -> Chain:
        from chain.accounts import use_signer
        from chain.client import connect, contract
        from runtime.chain_node import address_book, rpc_url

        w3 = connect(rpc_url())
        book = address_book()
        operator = use_signer(w3, book)  # pays deposits and batches, sends settlements
        return cls(
            w3,
            contract(w3, "AICToken", book),
            contract(w3, "RunEscrow", book),
            operator,
            operator,
            dict(book.get("assets", {})),
        )

    def onchain_id(self, run_id: str) -> bytes:
        return self.w3.keccak(text=run_id)

    def send(self, call: Any, sender: str) -> Any:
        from chain.client import send

        return send(self.w3, call, sender)

    def deposit_of(self, key: str) -> tuple[str, int, bool]:
        """(payer, amount, closed) of the escrow entry of a run or batch id (payer zero when none)."""
        payer, _at, closed, amount = self.escrow.functions.depositOf(self.onchain_id(key)).call()
        return payer, amount, closed

    def event_tx(self, event: str, key: str) -> Any:
        """The transaction of the last `event` (Deposited, Settled) the escrow emitted for a run or batch id."""
        logs = getattr(self.escrow.events, event).get_logs(
            from_block=0, argument_filters={"runId": self.onchain_id(key)}
        )
        return logs[-1].transactionHash if logs else None

    def payees(self, tx_hash: Any) -> dict[int, str]:
        """Asset id -> the address a settlement transaction paid (from its Paid events)."""
        from web3.logs import DISCARD

        receipt = self.w3.eth.get_transaction_receipt(tx_hash)
        return {
            e.args.assetId: e.args.payee for e in self.escrow.events.Paid().process_receipt(receipt, errors=DISCARD)
        }


def deposit_amount(chain: Chain, plan: Plan) -> int:
    """What a run of `plan` deposits: quote + room for compute overrun + the protocol fee."""
    return deposit_for(plan.quote_wei, compute_quote(plan.steps, plan.compute), chain.escrow.functions.feeBps().call())


def check_funds(chain: Chain, amount: int) -> None:
    """RunError (before any work) when the payer cannot cover `amount`."""
    balance = chain.token.functions.balanceOf(chain.payer).call()
    if balance < amount:
        raise RunError(
            f"the wallet {chain.payer} holds {format_aic(balance)} but this run needs a deposit of "
            f"{format_aic(amount)}; fund it (on the local chain: `aib wallet fund {chain.payer} '10 AIC'`)"
        )


def deposit(session: Session, chain: Chain, run_id: str, amount: int) -> Settlement:
    """Record, then make, the deposit of `amount` for `run_id` (approve + deposit)."""
    row = Settlement(
        id=run_id,
        chain_id=chain.w3.eth.chain_id,
        escrow=chain.escrow.address,
        onchain_id="0x" + chain.onchain_id(run_id).hex(),
        payer=chain.payer,
        status="deposit_pending",
        deposit_wei=amount,
        payouts=[],
    )
    session.add(row)
    session.commit()
    allowance = chain.token.functions.allowance(chain.payer, chain.escrow.address).call()
    if allowance < amount:
        chain.send(chain.token.functions.approve(chain.escrow.address, amount), chain.payer)
    receipt = chain.send(chain.escrow.functions.deposit(chain.onchain_id(run_id), amount), chain.payer)
    row.status, row.deposit_tx = "deposited", receipt.transactionHash.to_0x_hex()
    session.commit()
    return row


def _record_settled(session: Session, chain: Chain, row: Settlement, tx_hash: Any) -> None:
    payees = chain.payees(tx_hash)
    tx = tx_hash.to_0x_hex()
    row.payouts = [{**p, "payee": payees.get(p["asset_id"])} for p in row.payouts]
    row.status, row.settle_tx, row.error = "settled", tx, None
    for u in session.scalars(select(Usage).where(Usage.run_id == row.id, Usage.settled_tx.is_(None))):
        u.settled_tx = tx
    session.commit()  # the settlement and the ledger rows it pays, in one transaction


def _offer_refs(session: Session, chain: Chain) -> dict[str, str]:
    """Provider id → its compute-offer asset's ref, for the offers registered on this chain: the compute a run used
    on a rented machine pays that asset's owner (the provider), not the compute block's."""
    from runtime.db import ProviderRow
    from runtime.work_receipts import offer_ref

    ids = session.scalars(select(ProviderRow.id).where(ProviderRow.asset_id.is_not(None)))
    return {pid: offer_ref(pid) for pid in ids if offer_ref(pid) in chain.asset_of}


def settle_run(session: Session, chain: Chain, run_id: str) -> Settlement:
    """Settle a finished run from its usage records; idempotent, and safe to call again after any crash."""
    row = session.get(Settlement, run_id)
    if row is None:
        raise NotFoundError(f"run {run_id!r} has no deposit to settle (it was not paid on chain)")
    if row.status in ("settled", "not_deposited"):
        return row
    if row.status == "deposit_pending":  # the process may have died around the deposit transaction
        payer, _amount, _closed = chain.deposit_of(row.id)
        if payer == ZERO_ADDRESS:
            row.status, row.error = "not_deposited", "the deposit never reached the chain; nothing was charged"
            session.commit()
            return row
        tx = chain.event_tx("Deposited", row.id)
        row.status, row.deposit_tx = "deposited", tx.to_0x_hex() if tx is not None else None
        session.commit()
    run = session.get(Run, run_id)
    if run is None or run.status not in FINISHED:
        raise ChainError(f"run {run_id!r} has not finished yet; settle it when it has")
    if row.status == "deposited":
        offers = _offer_refs(session, chain)
        usage = [
            (offers.get(u.provider) or f"{u.block_id}@{u.version}", u.amount_wei)
            for u in session.scalars(select(Usage).where(Usage.run_id == run_id))
        ]
        compute = run.plan["compute"]
        try:
            plan = plan_settlement(
                usage,
                chain.asset_of,
                row.deposit_wei,
                chain.escrow.functions.feeBps().call(),
                overrun_block=offers.get(run.provider_id or "") or f"{compute['block_id']}@{compute['version']}",
            )
        except SettlementMathError as exc:
            row.error = str(exc)
            session.commit()
            raise ChainError(f"run {run_id!r} cannot be settled: {exc}") from None
        row.payouts = [
            {"block_ref": p.block_ref, "asset_id": p.asset_id, "amount_wei": p.amount_wei} for p in plan.payouts
        ]
        row.fee_wei, row.refund_wei, row.shortfall_wei = plan.fee_wei, plan.refund_wei, plan.shortfall_wei
        row.status = "settle_pending"
        session.commit()  # what will be sent is on disk before it is sent
    _payer, _amount, closed = chain.deposit_of(row.id)
    if closed:  # sent before a crash, or by another process: record it, never send again
        tx = chain.event_tx("Settled", row.id)
        if tx is None:
            raise ChainError(f"run {run_id!r} is closed on chain without a Settled event (reclaimed by its payer?)")
        _record_settled(session, chain, row, tx)
        return row
    call = chain.escrow.functions.settle(
        chain.onchain_id(row.id),
        [p["asset_id"] for p in row.payouts],
        [p["amount_wei"] for p in row.payouts],
        row.refund_wei,
    )
    receipt = chain.send(call, chain.operator)
    _record_settled(session, chain, row, receipt.transactionHash)
    return row


def settle_pending(session: Session, chain: Chain) -> list[tuple[str, str]]:
    """Settle every unsettled, finished run; returns (run id, outcome) pairs."""
    outcomes = []
    for row in list(session.scalars(select(Settlement).where(Settlement.status.not_in(("settled", "not_deposited"))))):
        try:
            outcomes.append((row.id, settle_run(session, chain, row.id).status))
        except ChainError as exc:
            session.rollback()
            outcomes.append((row.id, f"pending: {exc}"))
    return outcomes


def settlement_dict(row: Settlement) -> dict[str, Any]:
    """A settlement as JSON-ready data (`aib payouts`)."""
    return {
        "run_id": row.id,
        "status": row.status,
        "payer": row.payer,
        "deposit_wei": row.deposit_wei,
        "deposit_tx": row.deposit_tx,
        "settle_tx": row.settle_tx,
        "fee_wei": row.fee_wei,
        "refund_wei": row.refund_wei,
        "shortfall_wei": row.shortfall_wei,
        "error": row.error,
        "payouts": [{**p, "tx": row.settle_tx} for p in row.payouts],
        "updated_at": row.updated_at.isoformat() if row.updated_at else None,
    }


__all__ = [
    "Chain",
    "check_funds",
    "deposit",
    "deposit_amount",
    "settle_pending",
    "settle_run",
    "settlement_dict",
]
