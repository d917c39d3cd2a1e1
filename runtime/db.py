"""Database: SQLAlchemy 2 models for runs, steps, metrics, artifacts, usage, services and API keys."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from builder.files import exclusive_lock
from runtime.config import get_settings, private_home


def utcnow() -> datetime:
    """Timezone-aware now in UTC."""
    return datetime.now(UTC)


class Wei(TypeDecorator):
    """An unbounded non-negative integer amount of wei, stored as decimal text (SQLite ints stop at 2**63)."""

    impl = String(80)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        value = int(value)
        if value < 0:
            raise ValueError(f"wei amounts cannot be negative, got {value}")
        return str(value)

    def process_result_value(self, value: Any, dialect: Any) -> int | None:
        return None if value is None else int(value)


class UTCDateTime(TypeDecorator):
    """Datetimes stored in UTC and read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    pipeline_path: Mapped[str | None] = mapped_column(Text)
    pipeline_yaml: Mapped[str] = mapped_column(Text)
    pipeline_hash: Mapped[str] = mapped_column(String(64))
    overrides: Mapped[list] = mapped_column(JSON, default=list)
    plan: Mapped[dict] = mapped_column(JSON)
    plan_hash: Mapped[str] = mapped_column(String(64), index=True)
    quote_wei: Mapped[int] = mapped_column(Wei)
    device: Mapped[str | None] = mapped_column(String(40))
    pid: Mapped[int | None] = mapped_column(Integer)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    service_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    provider_id: Mapped[str | None] = mapped_column(String(40))  # rented compute: where the allocator placed it
    allocation: Mapped[str | None] = mapped_column(Text)  # the allocator's reason, for the run page
    attempt: Mapped[int | None] = mapped_column(Integer)  # rented compute: 1 + times it was preempted and resumed


class ProviderRow(Base):
    """A provider agent's compute offer: hardware, price, tier, and its last heartbeat."""

    __tablename__ = "providers"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    tier: Mapped[str] = mapped_column(String(20))
    price_wei_per_s: Mapped[int] = mapped_column(Wei)
    memory_gb: Mapped[float] = mapped_column(Float)
    slots: Mapped[int] = mapped_column(Integer)
    region: Mapped[str] = mapped_column(String(40), default="")
    hardware: Mapped[dict] = mapped_column(JSON, default=dict)
    datasets: Mapped[list] = mapped_column(JSON, default=list)  # content hashes of data it holds (locality)
    reputation: Mapped[float] = mapped_column(Float, default=1.0)
    status: Mapped[str] = mapped_column(String(20), index=True)  # online | stopped
    pid: Mapped[int | None] = mapped_column(Integer)
    asset_id: Mapped[int | None] = mapped_column(Integer)  # its compute-offer asset, paid for its compute
    wallet: Mapped[str | None] = mapped_column(String(42))  # owns the offer asset and signs its work receipts
    # "local": an agent of the operator's own with the app database; "api": a stranger speaking the provider protocol
    via: Mapped[str] = mapped_column(String(20), default="local", server_default="local")
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Step(Base):
    __tablename__ = "steps"
    __table_args__ = (UniqueConstraint("run_id", "node_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    node_id: Mapped[str] = mapped_column(String(100))
    block_id: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(40))
    position: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    cache_key: Mapped[str] = mapped_column(String(64))
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    seconds: Mapped[float | None] = mapped_column(Float)
    progress: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MetricPoint(Base):
    __tablename__ = "metric_points"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    node_id: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(100))
    step: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Artifact(Base):
    __tablename__ = "artifacts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    node_id: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Usage(Base):
    """One billable use of a block; `bill_key` makes each billing event unique (never doubled)."""

    __tablename__ = "usage"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bill_key: Mapped[str] = mapped_column(String(200), unique=True)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"), index=True)
    service_id: Mapped[str | None] = mapped_column(ForeignKey("services.id"), index=True)
    node_id: Mapped[str | None] = mapped_column(String(100))
    block_id: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(40))
    provider: Mapped[str] = mapped_column(String(42))
    quantity: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(20))
    amount_wei: Mapped[int] = mapped_column(Wei)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    settled_tx: Mapped[str | None] = mapped_column(String(80))
    # The service batch that pays this call (set when the batch is opened, before anything is sent).
    batch_id: Mapped[str | None] = mapped_column(String(80), index=True)


class Service(Base):
    __tablename__ = "services"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    name: Mapped[str] = mapped_column(String(200))
    bundle_dir: Mapped[str] = mapped_column(Text)
    plan_hash: Mapped[str] = mapped_column(String(64))
    block_id: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(40))
    provider: Mapped[str] = mapped_column(String(42))
    call_price_wei: Mapped[int] = mapped_column(Wei)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Promotion(Base):
    """Which version of a service its stable endpoint (`aib serve NAME`) serves: the latest row of a name wins; the
    rows are its history (promote, rollback, the version pinned when first served)."""

    __tablename__ = "promotions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id"))
    action: Mapped[str] = mapped_column(String(20))  # promote | rollback | pin
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(Base):
    """An API key of a service; only the sha256 of the key is stored."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Settlement(Base):
    """A run's payment on chain: written before each transaction is sent, so a crash can be reconciled."""

    __tablename__ = "settlements"
    id: Mapped[str] = mapped_column(String(60), primary_key=True)  # the run id
    chain_id: Mapped[int] = mapped_column(Integer)
    escrow: Mapped[str] = mapped_column(String(42))
    onchain_id: Mapped[str] = mapped_column(String(66))  # keccak256 of the id, the escrow's runId
    payer: Mapped[str] = mapped_column(String(42))
    # deposit_pending -> deposited -> settle_pending -> settled; not_deposited when a deposit never landed
    status: Mapped[str] = mapped_column(String(20), index=True)
    deposit_wei: Mapped[int] = mapped_column(Wei)
    deposit_tx: Mapped[str | None] = mapped_column(String(80))
    payouts: Mapped[list] = mapped_column(JSON, default=list)  # [{block_ref, asset_id, amount_wei, payee}]
    fee_wei: Mapped[int | None] = mapped_column(Wei)
    refund_wei: Mapped[int | None] = mapped_column(Wei)
    shortfall_wei: Mapped[int | None] = mapped_column(Wei)
    settle_tx: Mapped[str | None] = mapped_column(String(80))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    reward_epoch_id: Mapped[int | None] = mapped_column(Integer, index=True)  # the rewards epoch that counted it


class ServiceBatch(Base):
    """A batch of a service's served calls paid on chain in one transaction (RunEscrow.settleBatch)."""

    __tablename__ = "service_batches"
    id: Mapped[str] = mapped_column(String(80), primary_key=True)  # "<service id>:batch:<n>"
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id"), index=True)
    chain_id: Mapped[int] = mapped_column(Integer)
    escrow: Mapped[str] = mapped_column(String(42))
    onchain_id: Mapped[str] = mapped_column(String(66))  # keccak256 of the id
    payer: Mapped[str] = mapped_column(String(42))
    status: Mapped[str] = mapped_column(String(20), index=True)  # pending -> settled
    calls: Mapped[int] = mapped_column(Integer)
    first_usage_id: Mapped[int] = mapped_column(Integer)
    last_usage_id: Mapped[int] = mapped_column(Integer)
    payouts: Mapped[list] = mapped_column(JSON, default=list)  # [{block_ref, asset_id, amount_wei, payee}]
    payouts_wei: Mapped[int] = mapped_column(Wei)
    fee_wei: Mapped[int] = mapped_column(Wei)
    settle_tx: Mapped[str | None] = mapped_column(String(80))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    reward_epoch_id: Mapped[int | None] = mapped_column(Integer, index=True)  # the rewards epoch that counted it


class RewardEpoch(Base):
    """A Proof-of-Value epoch: written (pending) with its report before closeEpoch is sent, so a crash is reconciled."""

    __tablename__ = "reward_epochs"
    __table_args__ = (UniqueConstraint("contract", "number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    number: Mapped[int] = mapped_column(Integer)  # the contract's epoch number
    chain_id: Mapped[int] = mapped_column(Integer)
    contract: Mapped[str] = mapped_column(String(42))
    status: Mapped[str] = mapped_column(String(20), index=True)  # pending -> closed
    root: Mapped[str] = mapped_column(String(66))
    total_wei: Mapped[int] = mapped_column(Wei)
    report: Mapped[dict] = mapped_column(JSON)  # paid leaves with proofs, exclusions with reasons, what it counted
    report_hash: Mapped[str] = mapped_column(String(66))  # sha256 of the canonical report, stored on chain
    close_tx: Mapped[str | None] = mapped_column(String(80))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Lease(Base):
    """A training step's work leased to a provider over the coordinator API: what it may read (the job's sealed
    blobs), what it has sent back (checkpoints by hash, its commitments), and the coordinator's own clock of it."""

    __tablename__ = "leases"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    node_id: Mapped[str] = mapped_column(String(100))
    cache_key: Mapped[str] = mapped_column(String(64))
    provider_id: Mapped[str] = mapped_column(String(40), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    # offered -> claimed -> completed | preempted | released | lost | failed | cancelled
    status: Mapped[str] = mapped_column(String(20), index=True)
    job: Mapped[dict] = mapped_column(JSON)  # sealed inputs by hash with their keys, resume state, settings
    uploads: Mapped[dict] = mapped_column(JSON, default=dict)  # sha256 -> {name, size} of what it sent, checked
    commitments: Mapped[list] = mapped_column(JSON, default=list)  # its claimed checkpoint hashes, checked at the end
    progress: Mapped[dict] = mapped_column(JSON, default=dict)  # {done, total, description} (display only)
    reason: Mapped[str | None] = mapped_column(Text)  # why it ended other than completed
    flow_run_id: Mapped[str | None] = mapped_column(String(40))
    pid: Mapped[int | None] = mapped_column(Integer)  # the provider's process (its word; shown, never trusted)
    served: Mapped[dict] = mapped_column(JSON, default=dict)  # sealed blob -> bytes the coordinator sent it

    @property
    def served_bytes(self) -> int:
        """Sealed bytes the coordinator sent this lease, all blobs together."""
        return sum((self.served or {}).values())

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SealedBlob(Base):
    """A plaintext blob (a digitized shard, a training program) sealed once with its own AES-GCM key: the store
    holds only the sealed bytes; a lease hands the key to the provider it names."""

    __tablename__ = "sealed_blobs"
    plain_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    sealed_sha256: Mapped[str] = mapped_column(String(64), index=True)
    key: Mapped[str] = mapped_column(String(64))  # hex AES-256 key (the coordinator's database is trusted)
    size: Mapped[int] = mapped_column(Integer)  # plaintext bytes
    sealed_size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Host(Base):
    """A provider on another machine that hosts services for the coordinator's gateway (`aib provider serve`): where
    the gateway reaches it, its price per 1k calls, and its last heartbeat."""

    __tablename__ = "hosts"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    wallet: Mapped[str] = mapped_column(String(42), index=True)  # proved by signing in; paid for the calls it serves
    url: Mapped[str] = mapped_column(String(300))  # where the gateway sends calls (its word; only the gateway calls)
    call_price_wei: Mapped[int] = mapped_column(Wei)  # AIC wei per 1k calls it answers
    hardware: Mapped[dict] = mapped_column(JSON, default=dict)
    reputation: Mapped[float] = mapped_column(Float, default=1.0)
    status: Mapped[str] = mapped_column(String(20), index=True)  # online | stopped
    asset_id: Mapped[int | None] = mapped_column(Integer)  # its offer asset, registered at its first hosting
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Hosting(Base):
    """A service placed on a host: the sealed bundle it may download (with its key), the secret the gateway calls
    it with, and whether it is serving, or was dropped and why."""

    __tablename__ = "hostings"
    __table_args__ = (UniqueConstraint("service_id", "host_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id"), index=True)
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)  # assigned -> ready | dropped (failed) | caught
    bundle: Mapped[dict] = mapped_column(JSON)  # the sealed bundle's entry: {sha256, sealed_sha256, size, key}
    secret: Mapped[str] = mapped_column(String(64))  # the gateway's bearer token for this hosting alone
    reason: Mapped[str | None] = mapped_column(Text)  # why it was dropped
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Store(Base):
    """A provider on another machine that offers storage (`aib provider start --storage GB`): where sealed shards
    are fetched from it, its region, capacity and prices, and its last heartbeat."""

    __tablename__ = "stores"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    wallet: Mapped[str] = mapped_column(String(42), index=True)  # proved by signing in; paid for what it holds
    url: Mapped[str] = mapped_column(String(300))  # where sealed blobs are fetched from it
    region: Mapped[str] = mapped_column(String(40), default="")
    capacity_bytes: Mapped[int] = mapped_column(Wei)
    price_gb_month_wei: Mapped[int] = mapped_column(Wei)  # AIC wei per GB held for a month (30 days)
    price_gb_served_wei: Mapped[int] = mapped_column(Wei)  # AIC wei per GB a lease was sent from it
    reputation: Mapped[float] = mapped_column(Float, default=1.0)
    status: Mapped[str] = mapped_column(String(20), index=True)  # online | stopped
    asset_id: Mapped[int | None] = mapped_column(Integer)  # its offer asset, registered when first paid
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Replica(Base):
    """A sealed blob placed on a store: held once the store says so, paid only up to its last passed spot check
    (the coordinator fetched it whole and it hashed right); a failed check ends it."""

    __tablename__ = "replicas"
    __table_args__ = (UniqueConstraint("store_id", "sealed_sha256"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(ForeignKey("stores.id"), index=True)
    sealed_sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), index=True)  # assigned -> held -> failed | dropped
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    held_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the store first said it holds it
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # its last passed spot check
    checks: Mapped[int] = mapped_column(Integer, default=0)  # spot checks passed
    billed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)  # holding paid up to here


class StorageBatch(Base):
    """Storage records (GB-months held, GB served) paid on chain in one transaction (RunEscrow.settleBatch)."""

    __tablename__ = "storage_batches"
    id: Mapped[str] = mapped_column(String(80), primary_key=True)  # "storage:batch:<n>"
    chain_id: Mapped[int] = mapped_column(Integer)
    escrow: Mapped[str] = mapped_column(String(42))
    onchain_id: Mapped[str] = mapped_column(String(66))
    payer: Mapped[str] = mapped_column(String(42))
    status: Mapped[str] = mapped_column(String(20), index=True)  # opening -> pending -> settled | nothing_owed
    calls: Mapped[int] = mapped_column(Integer)  # usage records it pays
    first_usage_id: Mapped[int] = mapped_column(Integer)
    last_usage_id: Mapped[int] = mapped_column(Integer)
    payouts: Mapped[list] = mapped_column(JSON, default=list)
    payouts_wei: Mapped[int] = mapped_column(Wei)
    fee_wei: Mapped[int] = mapped_column(Wei)
    settle_tx: Mapped[str | None] = mapped_column(String(80))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Challenge(Base):
    """A sign-in challenge sent to a wallet: used once, before it expires."""

    __tablename__ = "challenges"
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    wallet: Mapped[str] = mapped_column(String(42))
    message: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the API server read while a run writes; NORMAL sync keeps commits cheap (no fsync per
    # commit) while staying safe against application crashes.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for `url` (default from settings), migrated to the latest schema."""
    url = url or get_settings().database_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            if url.startswith("sqlite:///"):
                db_file = Path(url.removeprefix("sqlite:///"))
                if db_file.parent == get_settings().home:
                    private_home()
                db_file.parent.mkdir(parents=True, exist_ok=True)
                engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = create_engine(url, pool_pre_ping=True)
            migrate(engine)
            _engines[url] = engine
        return engine


def session_factory(url: str | None = None) -> sessionmaker:
    """A sessionmaker bound to the (migrated) engine."""
    return sessionmaker(get_engine(url), expire_on_commit=False)


def migrate(engine: Engine) -> None:
    """Bring the database schema to the latest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    # Several processes may open a new database at the same moment (eight `aib run` started together): one
    # migrates, the others wait and then find it at head ("table runs already exists" otherwise).
    with _migration_lock(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7265722)")  # released with this transaction
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """An exclusive lock across processes for migrating a SQLite file (a file lock beside it); none otherwise."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    with exclusive_lock(Path(f"{database}.migrate.lock")):
        yield


def reset_engines() -> None:
    """Forget cached engines (tests point AIB_HOME somewhere else)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


__all__ = [
    "ApiKey",
    "Artifact",
    "Base",
    "MetricPoint",
    "Promotion",
    "ProviderRow",
    "RewardEpoch",
    "Run",
    "Service",
    "Step",
    "Usage",
    "Wei",
    "get_engine",
    "migrate",
    "reset_engines",
    "session_factory",
    "utcnow",
]
