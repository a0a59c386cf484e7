"""/metrics in the Prometheus text format, written by hand (a few gauges need no client
library). Every value comes from an indexed query or the system accounts, so a scrape stays
cheap on a large database. Needs a staff session or API token (Prometheus sends a bearer
token with ``authorization: {credentials: …}``): the numbers are business data."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response import Response

from admin import queries
from admin.context import breaker_states

BREAKER_VALUES = {"closed": 0, "half-opened": 1, "half_open": 1, "half-open": 1, "opened": 2, "open": 2}


def _esc(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@get("/metrics", opt={"role": "viewer"}, include_in_schema=False)
async def metrics(request: Request[Any, Any, Any]) -> Response[str]:
    ctx = request.app.state.admin
    now = ctx.clock.now()
    async with ctx.db.read() as conn:
        ov = await queries.overview(conn, now)
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[dict[str, object], float]]) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{label_text}}} {value}" if label_text else f"{name} {value}")

    metric("numbershop_orders_today", "gauge", "Orders created since 00:00 UTC, by status.",
           [({"status": s}, ov.orders_today.get(s, 0)) for s in queries.ORDER_STATUSES])
    metric("numbershop_orders_open", "gauge", "Orders holding money now, by status.",
           [({"status": s}, ov.open_orders.get(s, 0)) for s in queries.OPEN_STATUSES])
    metric("numbershop_refunds_today_minor", "gauge", "Staff refunds posted today, minor units.",
           [({}, ov.refunds_today)])
    metric("numbershop_refunds_today", "gauge", "Staff refunds posted today, count.", [({}, ov.refund_count_today)])
    metric("numbershop_released_holds_today", "gauge", "Holds voided today (cancel, expiry, failure).",
           [({}, ov.released_count_today)])
    metric("numbershop_captured_today_minor", "gauge", "Revenue captured today, minor units.", [({}, ov.captured_today)])
    metric("numbershop_held_minor", "gauge", "Money held by open orders now, minor units.", [({}, ov.held_now)])
    metric("numbershop_wallets_minor", "gauge", "Sum of all wallet balances, minor units.", [({}, ov.wallet_total)])
    breakers = await breaker_states(ctx.board)
    metric("numbershop_breaker_state", "gauge", "Circuit breaker per provider: 0 closed, 1 half-open, 2 open, -1 unknown.",
           [({"provider": n}, BREAKER_VALUES.get(str(b.get("state")).lower(), -1)) for n, b in sorted(breakers.items())])
    metric("numbershop_breaker_failures", "gauge", "Consecutive failures counted by each breaker.",
           [({"provider": n}, b.get("failures") or 0) for n, b in sorted(breakers.items())])
    metric("numbershop_outbox_backlog", "gauge", "Notifications waiting to be sent.", [({}, ov.outbox_backlog)])
    oldest = (now - ov.outbox_oldest).total_seconds() if ov.outbox_oldest else 0
    metric("numbershop_outbox_oldest_seconds", "gauge", "Age of the oldest pending notification.", [({}, round(oldest, 3))])
    metric("numbershop_outbox_failed", "gauge", "Notifications given up on.", [({}, ov.outbox_failed)])
    metric("numbershop_job_lag_seconds", "gauge", "Seconds since each scheduler job last finished.",
           [({"job": j["job"]}, round(j["lag_seconds"], 3)) for j in ov.jobs if j["lag_seconds"] is not None])
    metric("numbershop_provider_balance_minor", "gauge", "Last upstream balance seen, provider's minor units.",
           [({"provider": n, "currency": b["currency"]}, b["amount"]) for n, b in sorted(ov.provider_balances.items())])
    return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4; charset=utf-8")
