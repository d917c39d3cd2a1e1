"""Usage that was answered is never lost or doubled: the writer behind every served call, attacked by failure."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import event, func, select

from runtime.db import Run, Service, Usage, get_engine, session_factory
from runtime.metering import ServiceBilling, UsageWriter, WriterDown, idempotency_hash

BILLING = ServiceBilling("svc-metering-test", "service.api", "1.0.0", "0x" + "11" * 20, 3000)


@pytest.fixture()
def engine(tmp_path):
    """A database of its own with the run and service the usage rows belong to."""
    url = f"sqlite:///{tmp_path / 'usage.db'}"
    with session_factory(url).begin() as s:
        s.add(Run(id="run-m", name="m", status="succeeded", pipeline_yaml="", pipeline_hash="0" * 64,
                  plan_hash="0" * 64, quote_wei=0, plan={}))  # fmt: skip
        s.flush()
        s.add(Service(id=BILLING.service_id, run_id="run-m", name="m", bundle_dir="", plan_hash="0" * 64,
                      block_id=BILLING.block_id, version=BILLING.version, provider=BILLING.provider,
                      call_price_wei=BILLING.call_price_wei))  # fmt: skip
    return get_engine(url)


def rows(engine, service_id: str = BILLING.service_id) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(Usage).where(Usage.service_id == service_id))


def test_a_retry_with_the_same_idempotency_key_is_billed_once(engine):
    writer = UsageWriter(engine, BILLING)
    writer.start()
    same = idempotency_hash("aib_key", "order-42")

    async def calls() -> None:
        await writer.record(1, same)
        await asyncio.gather(writer.record(1, same), writer.record(1, same), writer.record(1))
        await writer.record(1, idempotency_hash("aib_other_key", "order-42"))  # another client's request

    asyncio.run(calls())
    writer.stop()
    assert rows(engine) == 3


def test_when_the_writer_thread_dies_waiting_and_new_calls_fail_at_once_instead_of_hanging(engine, monkeypatch):
    writer = UsageWriter(engine, BILLING)

    def die(group):
        raise SystemExit  # the thread ends without resolving the group it held

    monkeypatch.setattr(writer, "_write", die)
    writer.start()

    async def call() -> float:
        started = time.monotonic()
        with pytest.raises(WriterDown):
            await asyncio.wait_for(writer.record(1), timeout=10)
        return time.monotonic() - started

    assert asyncio.run(call()) < 2.0  # the one waiting is told
    assert asyncio.run(call()) < 0.1  # a new call is refused at once


def test_stopping_writes_every_record_queued_even_after_the_stop(engine):
    writer = UsageWriter(engine, BILLING)
    writer.start()

    async def burst() -> None:
        pending = [asyncio.ensure_future(writer.record(1)) for _ in range(200)]
        await asyncio.sleep(0)  # all 200 are queued
        await asyncio.to_thread(writer.stop)
        await asyncio.gather(*pending)

    asyncio.run(burst())
    assert rows(engine) == 200


def test_usage_is_committed_with_synchronous_full_on_sqlite(engine):
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2].split()[0] + " " + a[2][:40]))
    writer = UsageWriter(engine, BILLING)
    writer.start()
    asyncio.run(writer.record(1))
    writer.stop()
    pragmas = [s for s in seen if "synchronous" in s]
    inserts = [i for i, s in enumerate(seen) if s.startswith("INSERT")]
    assert pragmas and "synchronous=FULL" in pragmas[0] and inserts
    assert seen.index(pragmas[0]) < inserts[0]
    with engine.connect() as conn:  # the pooled connection is handed back as the rest of the app expects it
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
