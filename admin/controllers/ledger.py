"""The ledger: transfers with filters, and the same selection as CSV (streamed in keyset
batches, each in its own short read transaction, so a large export never holds a snapshot
or the whole result in memory)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

from litestar import Request, get
from litestar.response import Stream, Template

from admin import queries
from admin.filters import transfer_filter
from admin.params import OptQ
from admin.render import ctx_of, page
from core.ledger import SYSTEM_ACCOUNTS
from core.money import format_amount

CSV_BATCH = 2000
CSV_MAX_ROWS = 1_000_000


@get("/ledger", opt={"role": "viewer"})
async def ledger_page(
    request: Request[Any, Any, Any],
    code: OptQ = None,
    user: OptQ = None,
    account: OptQ = None,
    order_id: OptQ = None,
    date_from: OptQ = None,
    date_to: OptQ = None,
    cursor: OptQ = None,
) -> Template:
    ctx = ctx_of(request)
    flt = transfer_filter(code, user, account, order_id, date_from, date_to)
    async with ctx.db.read() as conn:
        result = await queries.list_transfers(conn, flt, cursor=cursor, limit=100)
        names = await queries.account_names(
            conn, [t["debit_account_id"] for t in result.rows] + [t["credit_account_id"] for t in result.rows]
        )
    return page(
        request,
        "ledger.html",
        transfers=result.rows,
        names=names,
        next_cursor=result.next_cursor,
        flt=flt,
        params=flt.as_params(),
        codes=queries.TRANSFER_CODES,
        accounts=SYSTEM_ACCOUNTS,
        first_page=not cursor,
    )


def _cell(value: Any) -> Any:
    # Spreadsheet formula injection: text starting with = + - @ is shown, never evaluated.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@get("/ledger.csv", opt={"role": "viewer"})
async def ledger_csv(
    request: Request[Any, Any, Any],
    code: OptQ = None,
    user: OptQ = None,
    account: OptQ = None,
    order_id: OptQ = None,
    date_from: OptQ = None,
    date_to: OptQ = None,
) -> Stream:
    ctx = ctx_of(request)
    flt = transfer_filter(code, user, account, order_id, date_from, date_to)
    async with ctx.db.read() as conn:  # validate the filter (unknown user → 400) before streaming
        await queries.list_transfers(conn, flt, limit=1)

    async def rows() -> AsyncIterator[str]:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(
            [
                "created_at",
                "id",
                "kind",
                "code",
                "debit_account",
                "credit_account",
                "amount_minor",
                "amount",
                "order_id",
                "pending_id",
                "reference",
                "memo",
            ]
        )
        cursor, sent = None, 0
        while True:
            async with ctx.db.read() as conn:
                batch = await queries.list_transfers(conn, flt, cursor=cursor, limit=queries.MAX_PAGE)
                names = await queries.account_names(
                    conn,
                    [t["debit_account_id"] for t in batch.rows]
                    + [t["credit_account_id"] for t in batch.rows],
                )
            for t in batch.rows:
                writer.writerow(
                    [
                        _cell(x)
                        for x in (
                            t["created_at"].isoformat(),
                            t["id"],
                            t["kind"],
                            t["code"],
                            names.get(t["debit_account_id"]),
                            names.get(t["credit_account_id"]),
                            t["amount"],
                            format_amount(t["amount"], ctx.currency, symbol=False),
                            t["order_id"] or "",
                            t["pending_id"] or "",
                            t["reference"] or "",
                            t["memo"] or "",
                        )
                    ]
                )
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
            sent += len(batch.rows)
            if batch.next_cursor is None or sent >= CSV_MAX_ROWS:
                return
            cursor = batch.next_cursor

    stamp = ctx.clock.now().strftime("%Y%m%d-%H%M%S")
    return Stream(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="transfers-{stamp}.csv"'},
    )


HANDLERS = [ledger_page, ledger_csv]
