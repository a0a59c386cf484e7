"""Staff support actions on orders that need more than ``OrderService`` records itself."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from core import audit
from core.db.tables import audit_log

if TYPE_CHECKING:
    from core.db.engine import Database
    from core.orders import CancelResult, OrderService

CANCEL_ACTION = "order.cancel"


async def cancel_order(
    db: Database, orders_service: OrderService, order_id: str, *, actor: str, reason: str, now: datetime
) -> CancelResult:
    """A staff cancel: refund through ``OrderService.cancel``, then one audit row.

    ``OrderService.cancel`` records the staff actor and reason in the order's event, in the
    refund's transaction, but not in the audit log; the audit row follows in the next
    transaction, written once per order (a retry after a crash between the two adds it; a
    repeated cancel does not add another). Once ``OrderService.cancel`` writes the audit row
    itself, this becomes a no-op around it.
    """
    result = await orders_service.cancel(order_id, actor=actor, reason=reason)
    if result.refunded and not result.already:
        async with db.begin() as conn:
            exists = await conn.scalar(
                select(audit_log.c.id)
                .where(audit_log.c.action == CANCEL_ACTION, audit_log.c.target_id == order_id)
                .limit(1)
            )
            if exists is None:
                await audit.record(
                    conn,
                    actor=actor,
                    action=CANCEL_ACTION,
                    target_type="order",
                    target_id=order_id,
                    reason=reason,
                    now=now,
                    detail={"refunded": result.refunded},
                )
    return result
