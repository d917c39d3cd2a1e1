"""rewards: Proof-of-Value epochs; settlements and service batches remember the epoch that rewarded them;
providers remember the wallet that owns their compute-offer asset

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reward_epochs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("contract", sa.String(length=42), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("root", sa.String(length=66), nullable=False),
        sa.Column("total_wei", sa.String(length=80), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("report_hash", sa.String(length=66), nullable=False),
        sa.Column("close_tx", sa.String(length=80), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("contract", "number"),
    )
    op.create_index("ix_reward_epochs_status", "reward_epochs", ["status"])
    for table in ("settlements", "service_batches"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("reward_epoch_id", sa.Integer(), nullable=True))
            batch.create_index(f"ix_{table}_reward_epoch_id", ["reward_epoch_id"])
    with op.batch_alter_table("providers") as batch:
        batch.add_column(sa.Column("wallet", sa.String(length=42), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("providers") as batch:
        batch.drop_column("wallet")
    for table in ("settlements", "service_batches"):
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_reward_epoch_id")
            batch.drop_column("reward_epoch_id")
    op.drop_index("ix_reward_epochs_status", "reward_epochs")
    op.drop_table("reward_epochs")
