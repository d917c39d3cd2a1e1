"""Pay a service's served calls on chain in batches: one RunEscrow.settleBatch transaction per batch.

A batch is opened by assigning every not-yet-batched call record of the service to it, in the same
database transaction that writes the batch with its payouts, before anything is sent. Finishing a batch
first asks the chain whether its id is already paid, so a crash between sending and recording is
reconciled from the chain's events and never pays twice (the escrow refuses a second payment of an id).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from builder.errors import ChainError, NotFoundError
from builder.money import format_aic
from runtime.db import Run, Service, ServiceBatch, Usage
from runtime.settlement import Chain
from runtime.settlement_math import call_royalties, fee_on

ZERO_ADDRESS = "0x" + "0" * 40
# The escrow can only ever pull from msg.sender (in deposit and settleBatch), so one unlimited allowance
# lets nobody but the payer spend the payer's AIC, and spares an approve transaction per batch.
UNLIMITED = 2**256 - 1


def open_batch(session: Session, chain: Chain, service: Service) -> ServiceBatch | None:
    """Put the service's unbatched calls into a new batch with its payouts (None when there are none)."""
    unbatched = (Usage.service_id == service.id, Usage.batch_id.is_(None), Usage.unit == "call")
    first_id, last_id, calls = session.execute(
        select(func.min(Usage.id), func.max(Usage.id), func.sum(Usage.quantity)).where(*unbatched)
    ).one()
    if last_id is None:
        return None
    calls = round(calls)
    run = session.get(Run, service.run_id)
    owed: dict[str, int] = {}
    for ref, amount in call_royalties(run.plan["steps"], calls):
        if ref not in chain.asset_of:
            raise ChainError(
                f"block {ref} of service {service.id} has no asset on this chain; register it with "
                f"`aib assets register {ref}`"
            )
        owed[ref] = owed.get(ref, 0) + amount
    payouts = [
        {"block_ref": ref, "asset_id": chain.asset_of[ref], "amount_wei": amount}
        for ref, amount in sorted(owed.items())
        if amount > 0
    ]
    number = session.scalar(select(func.count()).where(ServiceBatch.service_id == service.id)) + 1
    batch_id = f"{service.id}:batch:{number}"
    payouts_wei = sum(p["amount_wei"] for p in payouts)
    batch = ServiceBatch(
        id=batch_id,
        service_id=service.id,
        chain_id=chain.w3.eth.chain_id,
        escrow=chain.escrow.address,
        onchain_id="0x" + chain.onchain_id(batch_id).hex(),
        payer=chain.payer,
        status="pending" if payouts_wei else "nothing_owed",
        calls=calls,
        first_usage_id=first_id,
        last_usage_id=last_id,
        payouts=payouts,
        payouts_wei=payouts_wei,
        fee_wei=fee_on(payouts_wei, chain.escrow.functions.feeBps().call()),
    )
    session.add(batch)
    session.execute(
        update(Usage).where(*unbatched, Usage.id <= last_id).values(batch_id=batch_id),
        execution_options={"synchronize_session": False},
    )
    session.commit()  # the batch and the calls it pays, on disk before anything is sent
    return batch


def _settled_tx(chain: Chain, batch: ServiceBatch) -> Any:
    logs = chain.escrow.events.Settled.get_logs(from_block=0, argument_filters={"runId": chain.onchain_id(batch.id)})
    return logs[-1].transactionHash if logs else None


def _record(session: Session, chain: Chain, batch: ServiceBatch, tx_hash: Any) -> None:
    from web3.logs import DISCARD

    receipt = chain.w3.eth.get_transaction_receipt(tx_hash)
    payees = {e.args.assetId: e.args.payee for e in chain.escrow.events.Paid().process_receipt(receipt, errors=DISCARD)}
    tx = tx_hash.to_0x_hex()
    batch.payouts = [{**p, "payee": payees.get(p["asset_id"])} for p in batch.payouts]
    batch.status, batch.settle_tx, batch.error = "settled", tx, None
    session.execute(
        update(Usage).where(Usage.batch_id == batch.id).values(settled_tx=tx),
        execution_options={"synchronize_session": False},
    )
    session.commit()  # the batch and its calls marked paid in one transaction


def finish_batch(session: Session, chain: Chain, batch: ServiceBatch) -> ServiceBatch:
    """Pay an open batch, or record that it was already paid; idempotent and safe after any crash."""
    if batch.status != "pending":
        return batch
    onchain = chain.onchain_id(batch.id)
    if chain.escrow.functions.depositOf(onchain).call()[0] != ZERO_ADDRESS:  # paid before a crash
        tx = _settled_tx(chain, batch)
        if tx is None:
            raise ChainError(f"batch {batch.id} is taken on chain but has no Settled event")
        _record(session, chain, batch, tx)
        return batch
    need = batch.payouts_wei + batch.fee_wei
    balance = chain.token.functions.balanceOf(batch.payer).call()
    if balance < need:
        batch.error = f"the wallet {batch.payer} holds {format_aic(balance)} but the batch costs {format_aic(need)}"
        session.commit()
        raise ChainError(f"batch {batch.id} stays pending: {batch.error}; fund the wallet and run it again")
    if chain.token.functions.allowance(batch.payer, chain.escrow.address).call() < need:
        chain.send(chain.token.functions.approve(chain.escrow.address, UNLIMITED), batch.payer)
    call = chain.escrow.functions.settleBatch(
        onchain, [p["asset_id"] for p in batch.payouts], [p["amount_wei"] for p in batch.payouts]
    )
    try:
        receipt = chain.send(call, batch.payer)
    except ChainError as exc:
        session.rollback()
        batch.error = str(exc)
        session.commit()
        raise ChainError(f"batch {batch.id} stays pending: {exc}") from None
    _record(session, chain, batch, receipt.transactionHash)
    return batch


def settle_services(
    session: Session, chain: Chain, service_id: str | None = None
) -> tuple[list[ServiceBatch], list[str]]:
    """Pay every service's calls not yet paid (first finishing batches a crash left open): (batches, errors).

    One service's failure (an unregistered block, an empty wallet) leaves its batch pending and does not
    stop the others.
    """
    q = select(Service).order_by(Service.created_at)
    if service_id is not None:
        q = q.where(Service.id == service_id)
    services = list(session.scalars(q))
    if service_id is not None and not services:
        raise NotFoundError(f"no service {service_id!r} (`aib services list` shows them)")
    done: list[ServiceBatch] = []
    errors: list[str] = []
    for service in services:
        try:
            for batch in list(
                session.scalars(
                    select(ServiceBatch)
                    .where(ServiceBatch.service_id == service.id, ServiceBatch.status == "pending")
                    .order_by(ServiceBatch.created_at)
                )
            ):
                done.append(finish_batch(session, chain, batch))
            batch = open_batch(session, chain, service)
            if batch is not None:
                done.append(finish_batch(session, chain, batch))
        except ChainError as exc:
            session.rollback()
            errors.append(str(exc))
    return done, errors


def batch_dict(batch: ServiceBatch) -> dict[str, Any]:
    """A service batch as JSON-ready data (`aib settle services --json`)."""
    return {
        "batch_id": batch.id,
        "service_id": batch.service_id,
        "status": batch.status,
        "calls": batch.calls,
        "payer": batch.payer,
        "payouts_wei": batch.payouts_wei,
        "fee_wei": batch.fee_wei,
        "settle_tx": batch.settle_tx,
        "error": batch.error,
        "payouts": [{**p, "tx": batch.settle_tx} for p in batch.payouts],
    }


__all__ = ["batch_dict", "finish_batch", "open_batch", "settle_services"]
