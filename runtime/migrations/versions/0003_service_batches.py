"""service_batches: served calls paid on chain in batches

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "service_batches",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("service_id", sa.String(length=40), nullable=False),
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
        sa.ForeignKeyConstraint(["service_id"], ["services.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("service_batches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_service_batches_service_id"), ["service_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_service_batches_status"), ["status"], unique=False)
    # A plain ADD COLUMN (no table rebuild): the usage table of a busy service is large.
    op.add_column("usage", sa.Column("batch_id", sa.String(length=80), nullable=True))
    op.create_index(op.f("ix_usage_batch_id"), "usage", ["batch_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_usage_batch_id"), table_name="usage")
    with op.batch_alter_table("usage", schema=None) as batch_op:
        batch_op.drop_column("batch_id")
    with op.batch_alter_table("service_batches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_service_batches_status"))
        batch_op.drop_index(batch_op.f("ix_service_batches_service_id"))
    op.drop_table("service_batches")
