"""The overview: today's orders and money, thirty days of charts, providers, the books' last
check. The charts read ``core.rollups`` (pre-aggregated days), never the orders themselves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from litestar import Request, get
from litestar.response import Template
from markupsafe import Markup

from admin import charts, queries, words
from admin.charts import Bar
from admin.context import breaker_states
from admin.render import ctx_of, page
from core import rollups

TOP = 10  # services and countries shown in a delivery chart (the table has them all)


@dataclass
class Chart:
    key: str
    title: str
    svg: Markup
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""


def _tick(i: int, n: int, day: Any) -> str:
    """A date under every seventh column, counted back from today so today always has one."""
    return day.strftime("%d %b") if (n - 1 - i) % 7 == 0 else ""


def build_charts(r: rollups.Rollups, currency: str) -> list[Chart]:
    def money(minor: float) -> str:
        return words.money(int(minor), currency)

    days = r.days
    span = f"{days[0]:%d %b} to {days[-1]:%d %b %Y} (UTC)"
    out: list[Chart] = []

    revenue = r.series("revenue", use_total=True)
    captures = dict(r.series("revenue"))
    out.append(
        Chart(
            "revenue",
            "Revenue per day",
            charts.columns(
                "Revenue per day",
                f"Money captured for delivered codes each day, {span}; "
                f"{money(sum(v for _, v in revenue))} in all.",
                [Bar(f"{d:%d %b}", v, money(v), _tick(i, len(days), d)) for i, (d, v) in enumerate(revenue)],
                top_text=money,
            ),
            ["Day", "Revenue", "Codes"],
            [[f"{d:%a %d %b}", money(v), words.number(captures.get(d, 0))] for d, v in reversed(revenue)],
        )
    )
    orders = r.series("orders")
    out.append(
        Chart(
            "orders",
            "Orders per day",
            charts.columns(
                "Orders per day",
                f"Orders placed each day, {span}; {words.number(sum(v for _, v in orders))} in all.",
                [
                    Bar(f"{d:%d %b}", v, words.plural(v, "order"), _tick(i, len(days), d))
                    for i, (d, v) in enumerate(orders)
                ],
                top_text=lambda v: words.number(int(v)),
            ),
            ["Day", "Orders"],
            [[f"{d:%a %d %b}", words.number(v)] for d, v in reversed(orders)],
        )
    )
    for metric, what, name_of in (
        ("delivery_provider", "provider", lambda k: k),
        ("delivery_service", "service", words.service_name),
        ("delivery_country", "country", words.country_name),
    ):
        items = r.breakdown(metric)
        bars = [
            Bar(name_of(k), 100 * d / n if n else 0, f"{words.percent(d, n)} of {words.number(n)}")
            for k, n, d in items[:TOP]
        ]
        title = f"Code delivery rate by {what}"
        out.append(
            Chart(
                metric,
                title,
                charts.rows(
                    title,
                    f"Share of finished orders that delivered a code, by {what}, {span}"
                    + (f"; the {TOP} busiest shown." if len(items) > TOP else "."),
                    bars,
                    peak=100,
                ),
                [what.capitalize(), "Finished", "Delivered", "Rate"],
                [[name_of(k), words.number(n), words.number(d), words.percent(d, n)] for k, n, d in items],
            )
        )
    buckets = r.by_key.get("first_code", {})
    count = sum(n for n, _ in buckets.values())
    n_sum, seconds = r.by_key.get("first_code_sum", {}).get("", (0, 0))
    mean = f"mean {seconds / n_sum:.0f} s" if n_sum else "no codes yet"
    ordered = [(label, buckets.get(label, (0, 0))[0]) for label, _ in rollups.FIRST_CODE_BUCKETS]
    out.append(
        Chart(
            "first_code",
            "Time to first code",
            charts.rows(
                "Time to first code",
                f"How long buyers waited from ordering to their first code, {span}; {mean}.",
                [Bar(label, n, f"{words.number(n)} ({words.percent(n, count)})") for label, n in ordered],
            ),
            ["Waited", "Codes", "Share"],
            [[label, words.number(n), words.percent(n, count)] for label, n in ordered],
            note=f"{words.plural(count, 'code')}, {mean}.",
        )
    )
    back = r.breakdown("money_back")
    out.append(
        Chart(
            "money_back",
            "Money back by reason",
            charts.rows(
                "Money back by reason",
                f"Holds voided and refunds by staff, by reason, {span}.",
                [Bar(words.money_back_reason(k), t, money(t)) for k, _, t in back],
            ),
            ["Reason", "Orders", "Amount"],
            [[words.money_back_reason(k), words.number(n), money(t)] for k, n, t in back],
        )
    )
    topups = sorted(r.breakdown("topup"), key=lambda row: -row[2])
    out.append(
        Chart(
            "topup",
            "Top-ups by method",
            charts.rows(
                "Top-ups by method",
                f"Money paid into wallets, by payment method, {span}.",
                [Bar(words.topup_method(k), t, money(t)) for k, _, t in topups],
            ),
            ["Method", "Top-ups", "Amount"],
            [[words.topup_method(k), words.number(n), money(t)] for k, n, t in topups],
        )
    )
    return out


@get("/", opt={"role": "viewer"}, name="overview")
async def overview_page(request: Request[Any, Any, Any]) -> Template:
    ctx = ctx_of(request)
    now = ctx.clock.now()
    async with ctx.db.read() as conn:
        ov = await queries.overview(conn, now)
        figures = await rollups.read(conn, now)
    return page(
        request,
        "overview.html",
        ov=ov,
        charts=build_charts(figures, ctx.currency),
        charts_at=figures.computed_at,
        breakers=await breaker_states(ctx.board),
        providers=sorted(set(ctx.providers) | set(ov.provider_balances)),
    )
