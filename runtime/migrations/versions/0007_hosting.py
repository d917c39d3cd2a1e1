"""hosting and storage: services served on providers' machines behind the coordinator's gateway, and sealed shards
held by storage providers

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hosts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("wallet", sa.String(length=42), nullable=False),
        sa.Column("url", sa.String(length=300), nullable=False),
        sa.Column("call_price_wei", sa.String(length=80), nullable=False),
        sa.Column("hardware", sa.JSON(), nullable=False),
        sa.Column("reputation", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_hosts_wallet", "hosts", ["wallet"])
    op.create_index("ix_hosts_status", "hosts", ["status"])
    op.create_table(
        "hostings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("service_id", sa.String(length=40), nullable=False),
        sa.Column("host_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("bundle", sa.JSON(), nullable=False),
        sa.Column("secret", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("ready_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["service_id"], ["services.id"]),
        sa.ForeignKeyConstraint(["host_id"], ["hosts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("service_id", "host_id"),
    )
    op.create_index("ix_hostings_service_id", "hostings", ["service_id"])
    op.create_index("ix_hostings_host_id", "hostings", ["host_id"])
    op.create_index("ix_hostings_status", "hostings", ["status"])

    op.create_table(
        "stores",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("wallet", sa.String(length=42), nullable=False),
        sa.Column("url", sa.String(length=300), nullable=False),
        sa.Column("region", sa.String(length=40), nullable=False),
        sa.Column("capacity_bytes", sa.String(length=80), nullable=False),
        sa.Column("price_gb_month_wei", sa.String(length=80), nullable=False),
        sa.Column("price_gb_served_wei", sa.String(length=80), nullable=False),
        sa.Column("reputation", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_stores_wallet", "stores", ["wallet"])
    op.create_index("ix_stores_status", "stores", ["status"])
    op.create_table(
        "replicas",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("store_id", sa.String(length=40), nullable=False),
        sa.Column("sealed_sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("held_at", sa.DateTime(), nullable=True),
        sa.Column("checked_at", sa.DateTime(), nullable=True),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.Column("billed_until", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["store_id"], ["stores.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("store_id", "sealed_sha256"),
    )
    op.create_index("ix_replicas_store_id", "replicas", ["store_id"])
    op.create_index("ix_replicas_sealed_sha256", "replicas", ["sealed_sha256"])
    op.create_index("ix_replicas_status", "replicas", ["status"])
    op.create_table(
        "storage_batches",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("escrow", sa.String(length=42), nullable=False),
        sa.Column("onchain_id", sa.String(length=66), nullable=False),
        sa.Column("payer", sa.String(length=42), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("first_usage_id", sa.Integer(), nullable=False),
        sa.Column("last_usage_id", sa.Integer(), nullable=False),
        sa.Column("payouts", sa.JSON(), nullable=False),
        sa.Column("payouts_wei", sa.String(length=80), nullable=False),
        sa.Column("fee_wei", sa.String(length=80), nullable=False),
        sa.Column("settle_tx", sa.String(length=80), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_storage_batches_status", "storage_batches", ["status"])


def downgrade() -> None:
    op.drop_index("ix_storage_batches_status", "storage_batches")
    op.drop_table("storage_batches")
    for name in ("status", "sealed_sha256", "store_id"):
        op.drop_index(f"ix_replicas_{name}", "replicas")
    op.drop_table("replicas")
    op.drop_index("ix_stores_status", "stores")
    op.drop_index("ix_stores_wallet", "stores")
    op.drop_table("stores")
    for name in ("status", "host_id", "service_id"):
        op.drop_index(f"ix_hostings_{name}", "hostings")
    op.drop_table("hostings")
    op.drop_index("ix_hosts_status", "hosts")
    op.drop_index("ix_hosts_wallet", "hosts")
    op.drop_table("hosts")
