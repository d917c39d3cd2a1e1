"""Per-call metering: one writer thread commits usage records in groups; a call is answered once billed.

A call is answered only after its record is committed (on SQLite with synchronous=FULL, so a power cut cannot roll
back a call already answered); a client's retry carrying the same Idempotency-Key is never billed twice; when the
writer thread has died, calls fail at once (503) instead of waiting; stopping writes everything queued first."""

from __future__ import annotations

import asyncio
import hashlib
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from runtime.db import Usage, utcnow
from runtime.ledger import per_call_amount

WATCH_S = 0.5  # how often a waiting call checks that the writer is still alive


class WriterDown(RuntimeError):
    """The usage writer thread is not running: calls cannot be billed, so they are refused (503)."""


@dataclass(frozen=True)
class ServiceBilling:
    """Who is paid for a service's calls, and how much per 1k calls."""

    service_id: str
    block_id: str
    version: str
    provider: str
    call_price_wei: int


@dataclass(frozen=True)
class HostBilling:
    """The provider's machine that answered a call, and its price per 1k calls."""

    host_id: str
    call_price_wei: int


class UsageWriter:
    """Queue drained by one thread; each batch of records is one transaction (no per-call fsync stalls)."""

    def __init__(
        self, engine: Engine, billing: ServiceBilling, max_group: int = 512,
        on_written: Callable[[int, int], None] | None = None,
    ) -> None:  # fmt: skip
        """`on_written(records, calls)`: told after each commit how many usage records it wrote (a retried request's
        record already there is not written again) and how many calls they bill."""
        self.engine = engine
        self.billing = billing
        self.max_group = max_group
        self.on_written = on_written
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stop = object()
        self.written = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="usage-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Write everything queued, then stop the thread."""
        if self._thread is not None:
            self._queue.put(self._stop)
            self._thread.join(timeout=30)
            self._thread = None

    def alive(self) -> bool:
        """Whether the writer thread runs (a call cannot be billed, so must not be served, without it)."""
        return self._thread is not None and self._thread.is_alive()

    async def record(
        self, quantity: int = 1, idempotency: str | None = None, host: HostBilling | None = None,
        billing: ServiceBilling | None = None,
    ) -> None:  # fmt: skip
        """Bill `quantity` calls; returns once the record is committed. Raises at once when the writer is not
        running, and as soon as it dies while this record waits; `idempotency` (a hash naming the client's
        request) bills a retried request once; `host`: the provider's machine that answered them (paid too, in the
        same transaction); `billing`: the version of the service that answered (default: the writer's)."""
        if not self.alive():
            raise WriterDown("the usage writer is not running")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._queue.put((quantity, fut, loop, idempotency, host, billing or self.billing))
        while True:
            done, _ = await asyncio.wait({fut}, timeout=WATCH_S)
            if done:
                return fut.result()
            if not self.alive():
                raise WriterDown("the usage writer stopped before this call was billed")

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is self._stop:
                self._drain()
                return
            group = [first]
            stop_after = False
            while len(group) < self.max_group:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is self._stop:
                    stop_after = True
                    break
                group.append(item)
            self._write(group)
            if stop_after:
                self._drain()
                return

    def _drain(self) -> None:
        """On stop: write whatever was queued after the stop was asked for, so no answered call goes unbilled."""
        rest = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not self._stop:
                rest.append(item)
        for start in range(0, len(rest), self.max_group):
            self._write(rest[start : start + self.max_group])

    def _write(self, group: list[Any]) -> None:
        error: BaseException | None = None
        rows = [
            {
                "bill_key": f"call:{b.service_id}:idem:{idem}" if idem else f"call:{uuid.uuid4().hex}",
                "service_id": b.service_id,
                "block_id": b.block_id,
                "version": b.version,
                "provider": b.provider,
                "quantity": quantity,
                "unit": "call",
                "amount_wei": per_call_amount(b.call_price_wei, quantity),
                "created_at": utcnow(),
            }
            for quantity, _fut, _loop, idem, _host, b in group
        ]
        # A call answered on a provider's machine (runtime/protocol/gateway.py) also owes that host its price; keyed
        # like the call, so a retried request pays its host once too.
        rows += [
            {
                "bill_key": f"host:{b.service_id}:idem:{idem}" if idem else f"host:{uuid.uuid4().hex}",
                "service_id": b.service_id,
                "block_id": "hosting",
                "version": "1",
                "provider": host.host_id,
                "quantity": quantity,
                "unit": "hosted-call",
                "amount_wei": per_call_amount(host.call_price_wei, quantity),
                "created_at": utcnow(),
            }
            for quantity, _fut, _loop, idem, host, b in group
            if host is not None
        ]
        try:
            # A Core insert: the ORM's unit of work costs ~0.5 ms more per commit, paid by every call. A retried
            # request's bill key exists already: it is skipped, the others in the group are written.
            with self.engine.connect() as conn:
                full = conn.dialect.name == "sqlite"
                if full:  # fsync at every commit of usage (the rest of the app keeps NORMAL)
                    conn.exec_driver_sql("PRAGMA synchronous=FULL")
                    conn.commit()
                try:
                    with conn.begin():
                        # RETURNING names the rows really inserted (not those a retry's bill key skipped).
                        stmt = _insert_once(conn.dialect.name).returning(Usage.unit, Usage.quantity)
                        inserted = conn.execute(stmt, rows).all()
                finally:
                    if full:
                        conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
                        conn.commit()
            self.written += len(group)
        except BaseException as exc:  # the callers answer 503: nothing was served unbilled
            error = exc
        try:
            if error is None and self.on_written is not None:  # counted before any of these calls is answered
                self.on_written(len(inserted), sum(quantity for unit, quantity in inserted if unit == "call"))
        finally:
            for _q, fut, loop, _idem, _host, _b in group:
                loop.call_soon_threadsafe(_resolve, fut, error)


def _insert_once(dialect: str) -> Any:
    """INSERT … ON CONFLICT (bill_key) DO NOTHING on SQLite and PostgreSQL."""
    module = {"sqlite": sqlite, "postgresql": postgresql}.get(dialect)
    if module is None:
        return insert(Usage)
    return module.insert(Usage).on_conflict_do_nothing(index_elements=["bill_key"])


def idempotency_hash(api_key: str, idempotency_key: str) -> str:
    """What names a client's request across retries: its API key and its Idempotency-Key, hashed (neither stored)."""
    return hashlib.sha256(f"{api_key}\0{idempotency_key}".encode()).hexdigest()[:40]


def _resolve(fut: asyncio.Future, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)


__all__ = ["HostBilling", "ServiceBilling", "UsageWriter", "WriterDown", "idempotency_hash"]
