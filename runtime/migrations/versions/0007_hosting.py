"""hosting: services served on providers' machines behind the coordinator's gateway

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


def downgrade() -> None:
    for name in ("status", "host_id", "service_id"):
        op.drop_index(f"ix_hostings_{name}", "hostings")
    op.drop_table("hostings")
    op.drop_index("ix_hosts_status", "hosts")
    op.drop_index("ix_hosts_wallet", "hosts")
    op.drop_table("hosts")
