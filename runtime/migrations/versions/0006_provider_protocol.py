"""provider protocol: leases of training work to providers on other machines, sealed blobs, sign-in challenges

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("providers") as batch:
        batch.add_column(sa.Column("via", sa.String(length=20), nullable=False, server_default="local"))
    op.create_table(
        "leases",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("node_id", sa.String(length=100), nullable=False),
        sa.Column("cache_key", sa.String(length=64), nullable=False),
        sa.Column("provider_id", sa.String(length=40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("job", sa.JSON(), nullable=False),
        sa.Column("uploads", sa.JSON(), nullable=False),
        sa.Column("commitments", sa.JSON(), nullable=False),
        sa.Column("progress", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("flow_run_id", sa.String(length=40), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("served", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_leases_run_id", "leases", ["run_id"])
    op.create_index("ix_leases_provider_id", "leases", ["provider_id"])
    op.create_index("ix_leases_status", "leases", ["status"])
    op.create_table(
        "sealed_blobs",
        sa.Column("plain_sha256", sa.String(length=64), nullable=False),
        sa.Column("sealed_sha256", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sealed_size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("plain_sha256"),
    )
    op.create_index("ix_sealed_blobs_sealed_sha256", "sealed_blobs", ["sealed_sha256"])
    op.create_table(
        "challenges",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("wallet", sa.String(length=42), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("nonce"),
    )


def downgrade() -> None:
    op.drop_table("challenges")
    op.drop_index("ix_sealed_blobs_sealed_sha256", "sealed_blobs")
    op.drop_table("sealed_blobs")
    op.drop_index("ix_leases_status", "leases")
    op.drop_index("ix_leases_provider_id", "leases")
    op.drop_index("ix_leases_run_id", "leases")
    op.drop_table("leases")
    with op.batch_alter_table("providers") as batch:
        batch.drop_column("via")
