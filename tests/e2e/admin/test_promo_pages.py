"""The dashboard's promo, referral and Stars refund pages: admin-only changes, CSRF, one
action per form nonce, 4xx with a reason on bad input, and the money checked."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import select

from core.db.engine import Database
from core.db.tables import audit_log, promo_codes, star_refunds
from core.orders import OrderService
from core.promo import Promos
from core.star_refunds import StarRefundRejected, StarRefunds
from core.wallets import Wallets

from .conftest import FakeBoard, balance, count, login, nonce, post_form


class FakeTelegram:
    def __init__(self) -> None:
        self.refunded: list[str] = []

    async def refund_star_payment(self, telegram_id: int, charge_id: str) -> None:
        if charge_id in self.refunded:
            raise StarRefundRejected("CHARGE_ALREADY_REFUNDED")
        self.refunded.append(charge_id)


@pytest.fixture
def telegram() -> FakeTelegram:
    return FakeTelegram()


@pytest.fixture
def core(shop, db, clock, telegram) -> SimpleNamespace:
    """The conftest's app core, with the promo and Stars refund services."""
    app_db = Database(db.url)
    return SimpleNamespace(
        settings=shop.settings,
        db=app_db,
        clock=clock,
        board=FakeBoard(),
        providers=shop.providers,
        wallets=Wallets(app_db, clock, "USD"),
        orders=OrderService(app_db, clock, shop.providers, shop.settings),
        promos=Promos(app_db, clock),
        star_refunds=StarRefunds(app_db, clock, telegram),
    )


async def _audits(db, action: str) -> int:
    async with db.read() as conn:
        return len((await conn.execute(select(audit_log).where(audit_log.c.action == action))).all())


async def test_admin_creates_and_disables_a_code_once_per_form(client, staff, db) -> None:
    await login(client, "admin")
    form = {"code": "spring", "amount": "2.50", "uses": "10", "expires": "2099-01-31", "nonce": nonce()}
    first = await post_form(client, "/promo", form)
    second = await post_form(client, "/promo", form)
    assert first.status_code == second.status_code == 303
    assert await count(db, promo_codes) == 1 and await _audits(db, "promo.create") == 1
    page = await client.get("/promo")
    assert page.status_code == 200
    assert "SPRING" in page.text and "$0.00 / $25.00" in page.text and "already submitted" in page.text
    assert "Promo &amp; referrals" in page.text  # the menu entry
    again = await post_form(client, "/promo", {**form, "nonce": nonce()})
    assert again.status_code == 409 and "already exists" in again.text
    r = await post_form(client, "/promo/SPRING/disable", {"nonce": nonce()})
    assert r.status_code == 303 and await _audits(db, "promo.disable") == 1
    assert "disabled" in (await client.get("/promo")).text


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"code": "A!", "amount": "1.00", "uses": "3"}, "3 to 32 letters"),
        ({"code": "OK1", "amount": "-1", "uses": "3"}, "must be positive"),
        ({"code": "OK1", "amount": "1.00", "uses": "0"}, "greater than zero"),
        ({"code": "OK1", "amount": "1.00", "uses": "x"}, "whole number"),
        ({"code": "OK1", "amount": "5.00", "uses": "3", "budget": "1.00"}, "budget must cover"),
        ({"code": "OK1", "amount": "1.00", "uses": "3", "expires": "2001-01-01"}, "in the past"),
        ({"code": "OK1", "amount": "1.00", "uses": "3", "expires": "soon"}, "use a date like"),
        ({"code": "OK1", "amount": "1.00", "uses": "3", "nonce": ""}, "reload the page"),
    ],
)
async def test_bad_promo_input_is_a_4xx_with_the_reason(client, staff, db, form, message) -> None:
    if db.is_postgres:
        pytest.skip("form validation is the same on both databases")
    await login(client, "admin")
    r = await post_form(client, "/promo", {"nonce": nonce(), **form})
    assert 400 <= r.status_code < 500 and message in r.text, (r.status_code, r.text[-2000:])
    assert await count(db, promo_codes) == 0


async def test_only_admins_change_and_only_with_csrf(client, staff, db) -> None:
    await login(client, "support")
    assert (await client.get("/promo")).status_code == 200  # staff may look
    form = {"code": "NOPE1", "amount": "1.00", "uses": "1", "nonce": nonce()}
    assert (await post_form(client, "/promo", form)).status_code == 403
    assert (
        await post_form(client, "/stars-refunds", {"charge_id": "x", "reason": "why", "nonce": nonce()})
    ).status_code == 403
    await login(client, "admin")
    assert (await post_form(client, "/promo", form, with_csrf=False)).status_code == 403
    assert await count(db, promo_codes) == 0


async def test_refund_stars_from_the_dashboard(client, staff, shop, db, telegram) -> None:
    await shop.user(4242, funds=0)
    await Wallets(db, shop.clock).top_up(4242, 700, source="telegram_stars", reference="stx-1")
    await Wallets(db, shop.clock).top_up(4242, 300, source="telegram_stars", reference="stx-2")
    await login(client, "admin")
    form = {"charge_id": "stx-1", "reason": "buyer asked on /paysupport", "nonce": nonce()}
    assert (await post_form(client, "/stars-refunds", form)).status_code == 303
    page = await client.get("/stars-refunds")
    assert "Refunded the Stars of stx-1; $7.00 taken from the wallet." in page.text
    assert (await post_form(client, "/stars-refunds", form)).status_code == 303  # same form: once
    assert "already submitted" in (await client.get("/stars-refunds")).text
    assert telegram.refunded == ["stx-1"]
    assert (await balance(db, 4242)).balance == 300
    # Another form for the same charge: idempotent per charge, nothing more moves.
    r = await post_form(client, "/stars-refunds", {**form, "nonce": nonce()})
    assert r.status_code == 303 and telegram.refunded == ["stx-1"]
    assert "refunded before" in (await client.get("/stars-refunds")).text
    assert await _audits(db, "stars.refund") == 1 and await _audits(db, "stars.refund_refunded") == 1

    # The buyer spent part of the second payment: refused, nothing held, nothing refunded.
    await Wallets(db, shop.clock).debit(4242, 100, reason="spent")
    r = await post_form(client, "/stars-refunds", {"charge_id": "stx-2", "reason": "asked", "nonce": nonce()})
    assert r.status_code == 409 and "not enough money" in r.text
    r = await post_form(client, "/stars-refunds", {"charge_id": "nope", "reason": "asked", "nonce": nonce()})
    assert r.status_code == 404
    r = await post_form(client, "/stars-refunds", {"charge_id": "stx-2", "reason": "", "nonce": nonce()})
    assert r.status_code == 400
    assert await count(db, star_refunds) == 1
    bal = await balance(db, 4242)
    assert (bal.balance, bal.held) == (200, 0)
