"""The dashboard in headless Chromium, against a real server on loopback.

One person's path (log in, find a user, credit them, refund an order, see both in the audit
log), then every page at a phone's width (390 px) and a desk's (1280 px): the page itself
must never scroll sideways (wide tables scroll inside their own box) and the menu folds
behind its toggle on the phone. Screenshots go to artifacts/screenshots/admin/ (or to
``NUMBERSHOP_SHOTS_DIR``). Skipped with the reason where Chromium or Playwright is missing."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from argon2 import PasswordHasher

from admin.app import create_app
from core import audit, broadcasts, ledger, rollups, tickets
from core.clock import FakeClock
from core.db.engine import Database
from core.db.tables import job_runs, metadata, provider_balances, reconciliation_runs
from core.staff import StaffAccounts
from core.wallets import Wallets
from tests.integration.orders_support import ScriptedProvider, Shop

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(
    os.environ.get("NUMBERSHOP_SHOTS_DIR")
    or Path(__file__).resolve().parents[3] / "artifacts" / "screenshots" / "admin"
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WIDTHS = (390, 1280)

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path) -> Iterator[SimpleNamespace]:
    """A seeded shop's dashboard on a loopback port: one completed order, one waiting,
    a reconciliation run with a finding, a job heartbeat and an upstream balance."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is missing at {CHROMIUM} (Debian package 'chromium')")
    import uvicorn

    clock = FakeClock()
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/browser.db")
    staff = StaffAccounts(db, clock, PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    shop = Shop(db, clock, {"alpha": ScriptedProvider("alpha", clock)}, ADMIN_SECRET_KEY="k" * 32)

    async def seed() -> dict[str, Any]:
        async with db.begin() as conn:
            await conn.run_sync(metadata.create_all)
            await ledger.ensure_system_accounts(conn, clock.now())
        ledger.forget_system_accounts()
        await shop.setup_catalogue()
        # Two weeks of history for the overview's charts: some delivered, some not.
        today = clock.now()
        wallets = Wallets(db, clock, "USD")
        for i in range(14):
            clock.set(today - timedelta(days=14 - i, hours=i % 5))
            buyer = await shop.user(9000 + i, funds=5000)
            await wallets.top_up(
                9000 + i, 1000 + 100 * i, source="stars" if i % 3 else "crypto", reference=f"r{i}"
            )
            for j in range(1 + i % 4):
                past = await shop.orders.purchase(
                    user_id=buyer.id,
                    quote_id=await shop.quote(buyer.id, price=150 + 10 * j),
                    idempotency_key=f"h{i}-{j}",
                )
                clock.advance(30 + 40 * j)
                if (i + j) % 3:
                    shop.providers["alpha"].deliver(past.activation_id, "24680")
                    await shop.orders.check_now(past.id)
                else:
                    await shop.orders.cancel(past.id, user_id=buyer.id)
        clock.set(today)
        user = await shop.user(4242, funds=2000)
        quote = await shop.quote(user.id, price=300)
        order = await shop.orders.purchase(user_id=user.id, quote_id=quote, idempotency_key="b1")
        shop.providers["alpha"].deliver(order.activation_id, "135790")
        await shop.orders.check_now(order.id)
        ticket = await tickets.open_ticket(db, clock, order_id=order.id, user_id=user.id)
        other = await shop.user(5151, funds=1_234_567)
        waiting = await shop.orders.purchase(
            user_id=other.id, quote_id=await shop.quote(other.id, price=150), idempotency_key="b2"
        )
        now = clock.now()
        async with db.begin() as conn:
            run_id = (
                await conn.execute(
                    reconciliation_runs.insert().values(
                        mode="dry_run",
                        started_at=now,
                        finished_at=now,
                        status="findings",
                        checked={"orders": 2, "transfers": 7},
                        findings=[
                            {
                                "code": "hold_pending",
                                "message": "an order closed with its hold still pending",
                                "ref": order.id,
                            }
                        ],
                        fixes=[],
                    )
                )
            ).inserted_primary_key[0]
            await conn.execute(
                job_runs.insert().values(
                    job="poll_orders", last_started_at=now, last_finished_at=now, last_error=None
                )
            )
            await conn.execute(
                provider_balances.insert().values(
                    provider="alpha", amount=987654, currency="USD", taken_at=now
                )
            )
            await audit.record(
                conn,
                actor="staff:carol",
                action="price.set",
                target_type="service",
                target_id="whatsapp",
                reason="launch discount",
                detail={"markup_percent": 10, "fixed_price": None},
                now=now,
            )
        await staff.create("alice", "admin", "browser password")
        sent, _ = await broadcasts.create(
            db,
            nonce="browser-broadcast",
            text="<b>New:</b> numbers for Germany &amp; Spain, from $0.90. <i>Tap /start to see them.</i>",
            audience="everyone",
            audience_value=None,
            actor="staff:alice",
            now=clock.now(),
        )
        await broadcasts.enqueue_due(db, clock.now())
        await rollups.refresh(db, clock.now())
        await db.dispose()
        return {
            "order": order.id,
            "waiting": waiting.id,
            "run": run_id,
            "ticket": ticket.id,
            "broadcast": sent.id,
        }

    ids = asyncio.run(seed())
    ledger.forget_system_accounts()
    core = SimpleNamespace(
        settings=shop.settings,
        db=db,
        clock=clock,
        board=None,
        providers=shop.providers,
        wallets=Wallets(db, clock, "USD"),
        orders=shop.orders,
    )
    app = create_app(core, staff_accounts=staff, secret_key=secrets.token_hex(32))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the dashboard did not start"
        time.sleep(0.05)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            try:
                yield SimpleNamespace(base=f"http://127.0.0.1:{port}", browser=browser, **ids)
            finally:
                browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _log_in(page: Any, base: str) -> None:
    page.goto(base + "/")
    assert page.url.startswith(base + "/login")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "browser password")
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


def test_log_in_credit_refund_and_audit(served) -> None:
    base, order_id = served.base, served.order
    page = served.browser.new_page(viewport={"width": 1280, "height": 900})
    _log_in(page, base)
    assert "Orders today" in page.content()

    page.click("header nav >> text=Users")
    page.fill("input[name=q]", "4242")
    page.click("form.filters button[type=submit]")
    page.click("a[href='/users/4242']")
    credit = page.locator("form[action='/users/4242/credit']")
    credit.locator("input[name=amount]").fill("5.00")
    credit.locator("input[name=reason]").fill("browser test goodwill")
    credit.locator("button[type=submit]").click()
    page.wait_for_selector(".flash")
    assert "Credited $5.00" in page.inner_text(".flash")
    assert page.inner_text("#balance") == "$22.00"  # 20.00 − 3.00 captured + 5.00

    page.click(f"a[href='/orders/{order_id}']")
    timeline = page.inner_text("td.event >> nth=0")
    assert timeline == "Ordered for $3.00; the money is held until a code arrives."
    refund = page.locator(f"form[action='/orders/{order_id}/refund']")
    refund.locator("input[name=reason]").fill("code did not work")
    refund.locator("button[type=submit]").click()
    page.wait_for_selector(".flash")
    assert "Refunded $3.00" in page.inner_text(".flash")

    page.click("header nav >> text=Audit")
    text = page.inner_text("table")
    assert "Credited $5.00 to the wallet" in text and "Refunded $3.00 to the wallet" in text
    assert "browser test goodwill" in text and "code did not work" in text and "alice (staff)" in text
    assert "4242" in text  # the credited user, named by Telegram id
    page.close()


def _pages(served: SimpleNamespace) -> list[tuple[str, str]]:
    return [
        ("overview", "/"),
        ("orders", "/orders"),
        ("order", f"/orders/{served.order}"),
        ("order-waiting", f"/orders/{served.waiting}"),
        ("tickets", "/tickets"),
        ("ticket", f"/tickets/{served.ticket}"),
        ("users", "/users"),
        ("user", "/users/4242"),
        ("ledger", "/ledger"),
        ("audit", "/audit"),
        ("providers", "/providers"),
        ("reconciliation", "/reconciliation"),
        ("reconciliation-run", f"/reconciliation/{served.run}"),
        ("staff", "/staff"),
        ("broadcasts", "/broadcasts"),
        ("broadcast", f"/broadcasts/{served.broadcast}"),
        ("prices", "/prices"),
        ("error", "/users/999999"),
        ("bad-filter", "/orders?status=weird"),
    ]


@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_fits_the_screen(served, width: int) -> None:
    context = served.browser.new_context(viewport={"width": width, "height": 800})
    page = context.new_page()
    page.goto(served.base + "/login")
    assert _no_sideways_scroll(page), "login"
    page.screenshot(path=str(SHOTS / f"{width}-login.png"), full_page=True)
    _log_in(page, served.base)
    for name, path in _pages(served):
        response = page.goto(served.base + path)
        assert response is not None
        assert response.status < 500, (name, response.status)
        assert _no_sideways_scroll(page), (
            name,
            width,
            page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]"),
        )
        page.screenshot(path=str(SHOTS / f"{width}-{name}.png"), full_page=True)
        if name == "overview":  # two charts up close, to check they read at this width
            for chart in ("revenue", "first_code"):
                box = page.locator(f"#chart-{chart}")
                assert box.locator("svg > title").first.text_content()
                box.screenshot(path=str(SHOTS / f"{width}-chart-{chart}.png"))
    menu = page.locator("header nav.menu")
    if width < 720:  # the phone: the menu folds behind its toggle and opens on a tap
        assert not menu.is_visible()
        page.click("label.menu-button")
        assert menu.is_visible() and page.locator("header nav >> text=Ledger").is_visible()
        assert _no_sideways_scroll(page)
        page.screenshot(path=str(SHOTS / f"{width}-menu-open.png"), full_page=True)
    else:
        assert menu.is_visible() and not page.locator("label.menu-button").is_visible()
    context.close()


def _no_sideways_scroll(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))
