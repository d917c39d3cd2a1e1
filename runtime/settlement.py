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
from chain.deploy import UNLIMITED
from runtime.db import Run, Settlement, Usage
from runtime.settlement_math import SettlementMathError, deposit_for, plan_settlement

FINISHED = ("succeeded", "failed", "cancelled")
ZERO_ADDRESS = "0x" + "0" * 40


@dataclass
class Chain:
    """The contracts a settlement talks to, the wallet that pays (the user's) and the one that settles (the
    coordinator's: the only holder of the escrow's settler role; a payer never settles)."""

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
        payer = use_signer(w3, book)  # the AIB_KEYSTORE wallet, else the local operator's: deposits, pays batches
        return cls(
            w3,
            contract(w3, "AICToken", book),
            contract(w3, "RunEscrow", book),
            payer,
            book["roles"]["operator"],  # the coordinator's wallet settles deposits
            dict(book.get("assets", {})),
        )

    def onchain_id(self, run_id: str) -> bytes:
        return self.w3.keccak(text=run_id)

    def send(self, call: Any, sender: str) -> Any:
        from runtime.chain_node import send

        return send(self.w3, call, sender)

    def deposit_of(self, key: str, payer: str) -> tuple[str, int, bool, int]:
        """(payer, amount, closed, fee bps) of `payer`'s escrow entry under a run or batch id (payer zero when none).

        Entries are keyed by payer and id on chain: another account's entry under the same id is never this one.
        """
        found, _at, closed, fee_bps, amount = self.escrow.functions.depositOf(payer, self.onchain_id(key)).call()
        return found, amount, closed, fee_bps

    def event_tx(self, event: str, key: str, payer: str) -> Any:
        """The transaction of the last `event` (Deposited, Settled) of `payer`'s entry under a run or batch id."""
        logs = getattr(self.escrow.events, event).get_logs(
            from_block=0, argument_filters={"runId": self.onchain_id(key), "payer": payer}
        )
        return logs[-1].transactionHash if logs else None

    def settled(self, tx_hash: Any, key: str, payer: str) -> tuple[tuple[int, int, int], list[tuple[int, str, int]]]:
        """What a transaction settled of `payer`'s entry under `key`: ((payouts, fee, refund), [(asset id, payee,
        amount)]), from its Settled and Paid events."""
        from web3.logs import DISCARD

        receipt = self.w3.eth.get_transaction_receipt(tx_hash)
        rid = self.onchain_id(key)

        def ours(e: Any) -> bool:
            return e.address == self.escrow.address and e.args.runId == rid and e.args.payer == payer

        events = self.escrow.events
        totals = [
            (e.args.payouts, e.args.fee, e.args.refund)
            for e in events.Settled().process_receipt(receipt, errors=DISCARD)
            if ours(e)
        ]
        paid = [
            (e.args.assetId, e.args.payee, e.args.amount)
            for e in events.Paid().process_receipt(receipt, errors=DISCARD)
            if ours(e)
        ]
        if len(totals) != 1:
            raise ChainError(f"transaction {tx_hash.to_0x_hex()} does not settle {key}")
        return totals[0], paid


def check_settled(chain: Chain, tx_hash: Any, key: str, payer: str, payouts: list[dict], fee: int, refund: int) -> dict:
    """Asset id -> payee of a settlement found on chain, once its amounts are checked against what we owe: an entry
    paid with other amounts (another install using the same wallet, a bug) is reported, never taken as ours."""
    (total, paid_fee, paid_refund), paid = chain.settled(tx_hash, key, payer)
    owed = sorted((int(p["asset_id"]), int(p["amount_wei"])) for p in payouts)
    if (total, paid_fee, paid_refund) != (sum(a for _, a in owed), fee, refund) or sorted(
        (a, amount) for a, _payee, amount in paid if amount
    ) != [o for o in owed if o[1]]:
        raise ChainError(
            f"{key} was settled on chain by {tx_hash.to_0x_hex()} with other amounts than recorded here "
            f"(paid {total} + fee {paid_fee} + refund {paid_refund} wei); it is not marked paid: look into it"
        )
    return {a: payee for a, payee, _amount in paid}


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
    if allowance < amount:  # unlimited, as for batches: an exact approve would replace a concurrent run's allowance
        chain.send(chain.token.functions.approve(chain.escrow.address, UNLIMITED), chain.payer)
    receipt = chain.send(chain.escrow.functions.deposit(chain.onchain_id(run_id), amount), chain.payer)
    row.status, row.deposit_tx = "deposited", receipt.transactionHash.to_0x_hex()
    session.commit()
    return row


def _record_settled(session: Session, chain: Chain, row: Settlement, tx_hash: Any) -> None:
    payees = check_settled(chain, tx_hash, row.id, row.payer, row.payouts, row.fee_wei or 0, row.refund_wei or 0)
    tx = tx_hash.to_0x_hex()
    row.payouts = [{**p, "payee": payees.get(p["asset_id"])} for p in row.payouts]
    row.status, row.settle_tx, row.error = "settled", tx, None
    for u in session.scalars(select(Usage).where(Usage.run_id == row.id, Usage.settled_tx.is_(None))):
        u.settled_tx = tx
    session.commit()  # the settlement and the ledger rows it pays, in one transaction


def merge_offer_assets(chain: Chain) -> None:
    """Add to `chain.asset_of` the offer assets registered since it was connected: offers and hosts get their asset
    when first placed on paid work, often after this connection read the address book."""
    from runtime.chain_node import address_book

    try:
        registered = address_book().get("assets", {})
    except ChainError:  # a chain given by its contracts alone (no address book): what it was built with
        registered = {}
    for ref, asset_id in registered.items():
        if ref.startswith("offer:"):
            chain.asset_of.setdefault(ref, int(asset_id))


def _offer_refs(session: Session, chain: Chain) -> dict[str, str]:
    """Provider id → its compute-offer asset's ref, for the offers registered on this chain: the compute a run used
    on a rented machine pays that asset's owner (the provider), not the compute block's."""
    from runtime.db import ProviderRow
    from runtime.work_receipts import offer_ref

    merge_offer_assets(chain)
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
        payer, _amount, _closed, _fee_bps = chain.deposit_of(row.id, row.payer)
        if payer == ZERO_ADDRESS:
            row.status, row.error = "not_deposited", "the deposit never reached the chain; nothing was charged"
            session.commit()
            return row
        tx = chain.event_tx("Deposited", row.id, row.payer)
        row.status, row.deposit_tx = "deposited", tx.to_0x_hex() if tx is not None else None
        session.commit()
    run = session.get(Run, run_id)
    if run is None or run.status not in FINISHED:
        raise ChainError(f"run {run_id!r} has not finished yet; settle it when it has")
    if row.status == "deposited":
        _payer, _amount, _closed, fee_bps = chain.deposit_of(row.id, row.payer)  # the rate quoted at the deposit
        offers = _offer_refs(session, chain)
        usage = [
            (offers.get(u.provider) or f"{u.block_id}@{u.version}", u.amount_wei)
            for u in session.scalars(select(Usage).where(Usage.run_id == run_id))
        ]
        compute = run.plan["compute"]
        # The overrun is cut from compute: the run's last provider first, then those it ran on before, latest first.
        rented = [u.provider for u in session.scalars(select(Usage).where(Usage.run_id == run_id,
                  Usage.block_id == compute["block_id"]).order_by(Usage.id.desc()))]  # fmt: skip
        providers = [p for p in [run.provider_id or "", *rented] if p in offers]
        try:
            plan = plan_settlement(
                usage,
                chain.asset_of,
                row.deposit_wei,
                fee_bps,
                overrun_block=[offers[p] for p in providers] + [f"{compute['block_id']}@{compute['version']}"],
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
    _payer, _amount, closed, _fee_bps = chain.deposit_of(row.id, row.payer)
    if closed:  # sent before a crash, or by another process: record it, never send again
        tx = chain.event_tx("Settled", row.id, row.payer)
        if tx is None:
            raise ChainError(f"run {run_id!r} is closed on chain without a Settled event (reclaimed by its payer?)")
        _record_settled(session, chain, row, tx)
        return row
    call = chain.escrow.functions.settle(
        row.payer,
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
    "merge_offer_assets",
    "check_funds",
    "check_settled",
    "deposit",
    "deposit_amount",
    "settle_pending",
    "settle_run",
    "settlement_dict",
]
