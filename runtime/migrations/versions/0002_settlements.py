"""settlements: on-chain payment of runs

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "settlements",
        sa.Column("id", sa.String(length=60), nullable=False),
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("escrow", sa.String(length=42), nullable=False),
        sa.Column("onchain_id", sa.String(length=66), nullable=False),
        sa.Column("payer", sa.String(length=42), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("deposit_wei", sa.String(length=80), nullable=False),
        sa.Column("deposit_tx", sa.String(length=80), nullable=True),
        sa.Column("payouts", sa.JSON(), nullable=False),
        sa.Column("fee_wei", sa.String(length=80), nullable=True),
        sa.Column("refund_wei", sa.String(length=80), nullable=True),
        sa.Column("shortfall_wei", sa.String(length=80), nullable=True),
        sa.Column("settle_tx", sa.String(length=80), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("settlements", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_settlements_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("settlements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_settlements_status"))
    op.drop_table("settlements")
