"""routing by delivered codes: delivery statistics, their watermark, quotes.avoid_provider

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "delivery_stats",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("rented", sa.Float(), nullable=False),
        sa.Column("delivered", sa.Float(), nullable=False),
        sa.Column("first_code_seconds", sa.Float(), nullable=False),
        sa.Column("rented_total", sa.Integer(), nullable=False),
        sa.Column("delivered_total", sa.Integer(), nullable=False),
        sa.Column("decayed_at", sa.DateTime(), nullable=False),
        sa.Column("last_closed_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("provider", "service", "country", name=op.f("pk_delivery_stats")),
    )
    op.create_table(
        "delivery_watermark",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.Column("order_id", sa.String(length=36), nullable=True),
        sa.Column("folded", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_delivery_watermark")),
    )
    with op.batch_alter_table("quotes") as batch:
        batch.add_column(sa.Column("avoid_provider", sa.String(length=32), nullable=True))
    op.create_index("ix_orders_closed_at_id", "orders", ["closed_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_orders_closed_at_id", table_name="orders")
    with op.batch_alter_table("quotes") as batch:
        batch.drop_column("avoid_provider")
    op.drop_table("delivery_watermark")
    op.drop_table("delivery_stats")
