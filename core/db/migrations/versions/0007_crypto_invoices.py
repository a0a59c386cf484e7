"""crypto invoices (Crypto Pay top-ups)

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "crypto_invoices",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("telegram_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("invoice_id", sa.BigInteger(), nullable=True),
        sa.Column("payload", sa.String(length=256), nullable=False),
        sa.Column("pay_url", sa.String(length=512), nullable=True),
        sa.Column("paid_asset", sa.String(length=16), nullable=True),
        sa.Column("paid_amount", sa.String(length=40), nullable=True),
        sa.Column("transfer_id", sa.String(length=36), nullable=True),
        sa.Column("paid_via", sa.String(length=16), nullable=True),
        sa.Column("error", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("paid_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint("amount > 0", name=op.f("ck_crypto_invoices_positive_amount")),
        sa.CheckConstraint(
            "status IN ('creating', 'active', 'paid', 'expired', 'failed')",
            name=op.f("ck_crypto_invoices_known_status"),
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_crypto_invoices_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crypto_invoices")),
        sa.UniqueConstraint("invoice_id", name=op.f("uq_crypto_invoices_invoice_id")),
    )
    op.create_index(
        "ix_crypto_invoices_status_created_at", "crypto_invoices", ["status", "created_at"], unique=False
    )
    op.create_index("ix_crypto_invoices_user_id", "crypto_invoices", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_crypto_invoices_user_id", table_name="crypto_invoices")
    op.drop_index("ix_crypto_invoices_status_created_at", table_name="crypto_invoices")
    op.drop_table("crypto_invoices")
