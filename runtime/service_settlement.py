"""Pay a service's served calls on chain in batches: one RunEscrow.settleBatch transaction per batch.

A batch is opened by assigning every not-yet-batched call record of the service to it, in the same
database transaction that writes the batch with its payouts, before anything is sent. Finishing a batch
first asks the chain whether its id is already paid, so a crash between sending and recording is
reconciled from the chain's events and never pays twice (the escrow refuses a second payment of an id).
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from builder.errors import ChainError, NotFoundError
from builder.money import format_aic
from chain.deploy import UNLIMITED
from runtime.db import Run, Service, ServiceBatch, StorageBatch, Usage
from runtime.protocol.hosting import HOSTED_UNIT
from runtime.settlement import ZERO_ADDRESS, Chain, check_settled, merge_offer_assets
from runtime.settlement_math import call_royalties, fee_on
from runtime.work_receipts import offer_ref

# The escrow can only ever pull from msg.sender (in deposit and settleBatch), so one unlimited allowance
# (chain.deploy.UNLIMITED) lets nobody but the payer spend the payer's AIC, and spares an approve per batch.


def open_batch(session: Session, chain: Chain, service: Service) -> ServiceBatch | None:
    """Put the service's unbatched calls into a new batch with its payouts (None when there are none).

    One database transaction claims the batch id, assigns the calls and computes the payouts from the
    calls actually assigned, so two settlements racing can neither share calls nor pay for calls they
    did not take (the loser's transaction fails and changes nothing).
    """
    # Calls, and what the hosts that answered them on their machines are owed (runtime/protocol/gateway.py).
    unbatched = (Usage.service_id == service.id, Usage.batch_id.is_(None), Usage.unit.in_(("call", HOSTED_UNIT)))
    last_id = session.scalar(select(func.max(Usage.id)).where(*unbatched))
    if last_id is None:
        return None
    steps = session.get(Run, service.run_id).plan["steps"]
    for ref, _ in call_royalties(steps, 1):
        if ref not in chain.asset_of:
            raise ChainError(
                f"block {ref} of service {service.id} has no asset on this chain; register it with "
                f"`aib assets register {ref}`"
            )
    merge_offer_assets(chain)
    for host, amount in _hosted_amounts(session, *unbatched, Usage.id <= last_id).items():
        if amount and offer_ref(host) not in chain.asset_of:
            raise ChainError(
                f"host {host}, which answered calls of service {service.id}, has no offer asset on this "
                "chain (it gets one when a service is placed on it while payments are on)"
            )
    number = session.scalar(select(func.count()).where(ServiceBatch.service_id == service.id)) + 1

    def owed_of(batch_id: str) -> tuple[dict[str, int], int]:
        calls = round(session.scalar(select(func.coalesce(func.sum(Usage.quantity), 0))
                                     .where(Usage.batch_id == batch_id, Usage.unit == "call")))  # fmt: skip
        owed: dict[str, int] = {}
        for ref, amount in call_royalties(steps, calls):
            owed[ref] = owed.get(ref, 0) + amount
        for host, amount in _hosted_amounts(session, Usage.batch_id == batch_id).items():
            owed[offer_ref(host)] = owed.get(offer_ref(host), 0) + amount
        return owed, calls

    return _open(session, chain, ServiceBatch, f"{service.id}:batch:{number}", unbatched, last_id, owed_of,
                 f"another settlement is opening a batch of service {service.id} at this moment; run it again",
                 service_id=service.id)  # fmt: skip


def _open(
    session: Session, chain: Chain, table: Any, batch_id: str, unbatched: tuple, last_id: int, owed_of: Any,
    busy: str, **columns: Any,
) -> Any:  # fmt: skip
    """A new batch `batch_id` of `table` holding the records `unbatched` up to `last_id`, priced from the records it
    actually took (`owed_of(batch_id)` → ({asset ref: wei}, count)); None when another settlement took them first.

    One database transaction claims the id, assigns the records and computes the payouts, so two settlements racing
    can neither share records nor pay for records they did not take (the loser's transaction fails and changes
    nothing); ChainError `busy` for the loser."""
    chain_id, fee_bps = chain.w3.eth.chain_id, chain.escrow.functions.feeBps().call()  # before any write
    try:
        batch = table(id=batch_id, chain_id=chain_id, escrow=chain.escrow.address,
                      onchain_id="0x" + chain.onchain_id(batch_id).hex(), payer=chain.payer, status="opening", calls=0,
                      first_usage_id=0, last_usage_id=last_id, payouts=[], payouts_wei=0, fee_wei=0,
                      **columns)  # fmt: skip
        session.add(batch)
        session.flush()  # claims the id: a concurrent opener of the same batch fails here
        session.execute(
            update(Usage).where(*unbatched, Usage.id <= last_id).values(batch_id=batch_id),
            execution_options={"synchronize_session": False},
        )
        first_id = session.scalar(select(func.min(Usage.id)).where(Usage.batch_id == batch_id))
        if first_id is None:  # another settlement took these records first
            session.rollback()
            return None
        owed, count = owed_of(batch_id)
        batch.payouts = [
            {"block_ref": ref, "asset_id": chain.asset_of[ref], "amount_wei": amount}
            for ref, amount in sorted(owed.items())
            if amount > 0
        ]
        batch.payouts_wei = sum(p["amount_wei"] for p in batch.payouts)
        batch.fee_wei = fee_on(batch.payouts_wei, fee_bps)
        batch.calls, batch.first_usage_id = count, first_id
        batch.status = "pending" if batch.payouts_wei else "nothing_owed"
        session.commit()  # the batch and the records it pays, on disk before anything is sent
    except (IntegrityError, OperationalError):
        session.rollback()
        raise ChainError(busy) from None
    return batch


def _hosted_amounts(session: Session, *where: Any) -> dict[str, int]:
    """Host id → wei owed for the hosted calls matching `where` (amounts are decimal text: summed here)."""
    owed: dict[str, int] = {}
    for host, amount in session.execute(
        select(Usage.provider, Usage.amount_wei).where(*where, Usage.unit == HOSTED_UNIT)
    ):
        owed[host] = owed.get(host, 0) + int(amount)
    return owed


def _record(session: Session, chain: Chain, batch: Any, tx_hash: Any) -> None:
    payees = check_settled(chain, tx_hash, batch.id, batch.payer, batch.payouts, batch.fee_wei, 0)
    tx = tx_hash.to_0x_hex()
    batch.payouts = [{**p, "payee": payees.get(p["asset_id"])} for p in batch.payouts]
    batch.status, batch.settle_tx, batch.error = "settled", tx, None
    session.execute(
        update(Usage).where(Usage.batch_id == batch.id).values(settled_tx=tx),
        execution_options={"synchronize_session": False},
    )
    session.commit()  # the batch and its calls marked paid in one transaction


def finish_batch(session: Session, chain: Chain, batch: Any) -> Any:
    """Pay an open batch, or record that it was already paid; idempotent and safe after any crash."""
    if batch.status != "pending":
        return batch
    # Entries are keyed by payer and id on chain: a stranger who paid this id first paid an entry of its own.
    if chain.deposit_of(batch.id, batch.payer)[0] != ZERO_ADDRESS:  # paid before a crash
        tx = chain.event_tx("Settled", batch.id, batch.payer)
        if tx is None:
            raise ChainError(f"batch {batch.id} is taken on chain but has no Settled event")
        _record(session, chain, batch, tx)
        return batch
    fee_bps = chain.escrow.functions.feeBps().call()
    if fee_on(batch.payouts_wei, fee_bps) != batch.fee_wei:  # the fee changed since the batch was opened: reprice
        batch.fee_wei = fee_on(batch.payouts_wei, fee_bps)
        session.commit()
    need = batch.payouts_wei + batch.fee_wei
    balance = chain.token.functions.balanceOf(batch.payer).call()
    if balance < need:
        batch.error = f"the wallet {batch.payer} holds {format_aic(balance)} but the batch costs {format_aic(need)}"
        session.commit()
        raise ChainError(f"batch {batch.id} stays pending: {batch.error}; fund the wallet and run it again")
    if chain.token.functions.allowance(batch.payer, chain.escrow.address).call() < need:
        chain.send(chain.token.functions.approve(chain.escrow.address, UNLIMITED), batch.payer)
    call = chain.escrow.functions.settleBatch(
        chain.onchain_id(batch.id),
        [p["asset_id"] for p in batch.payouts],
        [p["amount_wei"] for p in batch.payouts],
        fee_bps,  # the escrow refuses the payment if the fee changes before it lands: never more than priced
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
            opener = functools.partial(open_batch, session, chain, service)
            done += _finish_then_open(session, chain, ServiceBatch, opener, ServiceBatch.service_id == service.id)
        except ChainError as exc:
            session.rollback()
            errors.append(str(exc))
    return done, errors


def _finish_then_open(session: Session, chain: Chain, table: Any, opener: Any, *where: Any) -> list[Any]:
    """Finish the pending batches of `table` matching `where` (oldest first: a crash may have left them open), then
    open and pay a new one (`opener()`, None when nothing is owed): the batches handled."""
    pending = select(table).where(table.status == "pending", *where).order_by(table.created_at)
    done = [finish_batch(session, chain, b) for b in list(session.scalars(pending))]
    batch = opener()
    if batch is not None:
        done.append(finish_batch(session, chain, batch))
    return done


def open_storage_batch(session: Session, chain: Chain) -> StorageBatch | None:
    """Put the storage records not yet paid (GB-months held up to a passed spot check, GB served) into a new batch
    with its payouts, one per store (None when there are none); one database transaction, as open_batch."""
    from runtime.protocol.storage import HELD_UNIT, SERVED_UNIT

    unbatched = (Usage.unit.in_((HELD_UNIT, SERVED_UNIT)), Usage.batch_id.is_(None))
    last_id = session.scalar(select(func.max(Usage.id)).where(*unbatched))
    if last_id is None:
        return None
    merge_offer_assets(chain)
    owed: dict[str, int] = {}
    for store, amount in session.execute(
        select(Usage.provider, Usage.amount_wei).where(*unbatched, Usage.id <= last_id)
    ):
        owed[offer_ref(store)] = owed.get(offer_ref(store), 0) + int(amount)
    for ref, amount in owed.items():
        if amount and ref not in chain.asset_of:
            raise ChainError(
                f"store {ref.removeprefix('offer:')} is owed for storage but has no offer asset on this "
                "chain (`aib settle storage` registers it before paying; run it again)"
            )
    number = session.scalar(select(func.count()).select_from(StorageBatch)) + 1

    def owed_of(batch_id: str) -> tuple[dict[str, int], int]:
        rows = session.execute(select(Usage.provider, Usage.amount_wei).where(Usage.batch_id == batch_id)).all()
        owed: dict[str, int] = {}
        for store, amount in rows:  # from the records actually taken
            owed[offer_ref(store)] = owed.get(offer_ref(store), 0) + int(amount)
        return owed, len(rows)

    return _open(session, chain, StorageBatch, f"storage:batch:{number}", unbatched, last_id, owed_of,
                 "another settlement is opening a storage batch at this moment; run it again")  # fmt: skip


def settle_storage(session: Session, chain: Chain) -> tuple[list[StorageBatch], list[str]]:
    """Pay the stores what they are owed and not yet paid (first finishing batches a crash left open): the holding
    proven by spot checks so far is counted first. (batches, errors)."""
    from runtime.db import Store
    from runtime.protocol.storage import HELD_UNIT, SERVED_UNIT, accrue_held, ensure_asset

    accrue_held(session)
    session.commit()
    owed = select(Usage.provider).where(Usage.unit.in_((HELD_UNIT, SERVED_UNIT)), Usage.batch_id.is_(None))
    for store in session.scalars(select(Store).where(Store.id.in_(owed), Store.asset_id.is_(None))):
        try:
            ensure_asset(store)  # registered the first time it is paid (by the coordinator's signer)
        except ChainError as exc:
            session.rollback()
            return [], [f"store {store.id}'s offer asset could not be registered: {exc}"]
        session.commit()
    done: list[StorageBatch] = []
    errors: list[str] = []
    try:
        done += _finish_then_open(session, chain, StorageBatch, functools.partial(open_storage_batch, session, chain))
    except ChainError as exc:
        session.rollback()
        errors.append(str(exc))
    return done, errors


def batch_dict(batch: ServiceBatch | StorageBatch) -> dict[str, Any]:
    """A service batch as JSON-ready data (`aib settle services --json`)."""
    return {
        "batch_id": batch.id,
        "service_id": getattr(batch, "service_id", None),
        "status": batch.status,
        "calls": batch.calls,
        "payer": batch.payer,
        "payouts_wei": batch.payouts_wei,
        "fee_wei": batch.fee_wei,
        "settle_tx": batch.settle_tx,
        "error": batch.error,
        "payouts": [{**p, "tx": batch.settle_tx} for p in batch.payouts],
    }


__all__ = ["batch_dict", "finish_batch", "open_batch", "open_storage_batch", "settle_services", "settle_storage"]
