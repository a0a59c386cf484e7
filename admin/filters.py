"""Query-string filters for orders and transfers, shared by the pages and /api."""

from __future__ import annotations

from admin import queries
from admin.forms import FormError, parse_day


def order_filter(
    status: str | None,
    service: str | None,
    country: str | None,
    provider: str | None,
    user: str | None,
    date_from: str | None,
    date_to: str | None,
) -> queries.OrderFilter:
    try:
        flt = queries.OrderFilter(
            status=status or None,
            service=service or None,
            country=country or None,
            provider=provider or None,
            user=user or None,
            date_from=parse_day(date_from, field="from"),
            date_to=parse_day(date_to, field="to"),
        )
    except FormError as exc:
        raise queries.BadQuery(exc.message) from None
    flt.check()
    return flt


def transfer_filter(
    code: str | None,
    user: str | None,
    account: str | None,
    order_id: str | None,
    date_from: str | None,
    date_to: str | None,
) -> queries.TransferFilter:
    try:
        flt = queries.TransferFilter(
            code=code or None,
            user=user or None,
            account=account or None,
            order_id=order_id or None,
            date_from=parse_day(date_from, field="from"),
            date_to=parse_day(date_to, field="to"),
        )
    except FormError as exc:
        raise queries.BadQuery(exc.message) from None
    flt.check()
    return flt
