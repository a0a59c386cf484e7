"""The write use cases the adapters call: each change commits with its audit row, and a
failure (in the change or in the audit row) leaves neither."""

from __future__ import annotations

import pytest
from sqlalchemy import func, insert, select

from core import audit, catalogue, support, update_log, users, webhooks
from core.db.tables import audit_log, countries, offers, price_overrides, services, webhook_events
from core.db.tables import users as users_t
from core.errors import InvalidInput
from core.price_overrides import override_price, remove_price_override
from core.providers.base import SmsMessage
from core.webhooks import WebhookOutcome
from tests.integration.orders_support import ScriptedProvider, Shop


class AuditDown(Exception):
    pass


@pytest.fixture
def audit_fails(monkeypatch):
    async def refuse(*_a: object, **_kw: object) -> int:
        raise AuditDown

    monkeypatch.setattr(audit, "record", refuse)


async def _audit(db) -> list[tuple[str, str, str | None]]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(audit_log.c.actor, audit_log.c.action, audit_log.c.target_id).order_by(audit_log.c.id)
        )
        return [tuple(r) for r in rows]


async def _count(db, table) -> int:
    async with db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)))


async def _blocked(db, telegram_id: int) -> bool:
    async with db.read() as conn:
        return bool(await conn.scalar(select(users_t.c.blocked).where(users_t.c.telegram_id == telegram_id)))


async def _catalogue(db, clock, providers=("alpha", "gone")) -> None:
    async with db.begin() as conn:
        await conn.execute(insert(services).values(code="whatsapp", name="WhatsApp", popularity=1))
        await conn.execute(insert(countries).values(code="GB", name="United Kingdom"))
        for name in providers:
            await conn.execute(
                insert(offers).values(
                    provider=name, service="whatsapp", country="GB", cost=50, stock=3, updated_at=clock.now()
                )
            )


# --- users ------------------------------------------------------------------------------


async def test_blocking_commits_the_flag_with_its_audit_row(db, clock) -> None:
    user = await users.resolve_user(db, telegram_id=7, username="u", first_name=None, now=clock.now())
    assert await users.change_blocked(db, 7, True, actor="staff:ann", reason="fraud", now=clock.now())
    assert not await users.change_blocked(db, 7, True, actor="staff:ann", reason="again", now=clock.now())
    assert await _blocked(db, 7)
    assert await _audit(db) == [("staff:ann", "user.block", str(user.id))]


async def test_a_block_whose_audit_row_fails_is_not_applied(db, clock, audit_fails) -> None:
    await users.resolve_user(db, telegram_id=7, username=None, first_name=None, now=clock.now())
    with pytest.raises(AuditDown):
        await users.change_blocked(db, 7, True, actor="staff:ann", reason="fraud", now=clock.now())
    assert not await _blocked(db, 7)


async def test_blocking_an_unknown_user_writes_nothing(db, clock) -> None:
    from core.errors import UserNotFound

    with pytest.raises(UserNotFound):
        await users.change_blocked(db, 404, True, actor="staff:ann", reason="x", now=clock.now())
    assert await _audit(db) == []


async def test_resolve_user_marks_a_returning_user_reachable(db, clock) -> None:
    await users.resolve_user(db, telegram_id=9, username="a", first_name="A", now=clock.now())
    assert await users.mark_chat_unreachable(db, 9)
    assert not await users.mark_chat_unreachable(db, 10)  # no such user: nothing to mark
    again = await users.resolve_user(db, telegram_id=9, username="b", first_name="A", now=clock.now())
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(users_t.c.unreachable, users_t.c.username).where(users_t.c.id == again.id)
            )
        ).one()
    assert (bool(row.unreachable), row.username) == (False, "b")
    assert await _count(db, users_t) == 1


# --- price overrides --------------------------------------------------------------------


async def test_a_price_override_commits_with_its_audit_row(db, clock) -> None:
    await _catalogue(db, clock)
    result = await override_price(
        db, "whatsapp", markup_percent=30, actor="staff:ann", reason="promo", now=clock.now()
    )
    assert result.markup_percent == 30
    staff = dict(actor="staff:ann", reason="done", now=clock.now())
    assert await remove_price_override(db, "whatsapp", **staff)
    assert not await remove_price_override(db, "whatsapp", **staff)
    assert await _audit(db) == [
        ("staff:ann", "price.set", "whatsapp"),
        ("staff:ann", "price.clear", "whatsapp"),
    ]


async def test_a_price_override_whose_audit_row_fails_is_not_set(db, clock, audit_fails) -> None:
    await _catalogue(db, clock)
    with pytest.raises(AuditDown):
        await override_price(db, "whatsapp", fixed_price=99, actor="staff:ann", reason="x", now=clock.now())
    assert await _count(db, price_overrides) == 0


async def test_a_refused_price_override_writes_no_audit_row(db, clock) -> None:
    from core.errors import InvalidInput, NotFound

    await _catalogue(db, clock)
    with pytest.raises(InvalidInput):
        await override_price(
            db, "whatsapp", markup_percent=5000, actor="staff:ann", reason="x", now=clock.now()
        )
    with pytest.raises(NotFound):
        await override_price(db, "nosuch", markup_percent=5, actor="staff:ann", reason="x", now=clock.now())
    assert await _audit(db) == [] and await _count(db, price_overrides) == 0


# --- catalogue pruning ------------------------------------------------------------------


async def test_pruning_the_catalogue_commits_with_its_audit_row(db, clock) -> None:
    await _catalogue(db, clock)
    assert await catalogue.prune_catalogue(db, ["alpha"], actor="scheduler", now=clock.now()) == 1
    assert await catalogue.prune_catalogue(db, ["alpha"], actor="scheduler", now=clock.now()) == 0
    assert await _count(db, offers) == 1
    assert await _audit(db) == [("scheduler", "catalogue.prune", None)]  # only when something went


async def test_a_prune_whose_audit_row_fails_removes_nothing(db, clock, audit_fails) -> None:
    await _catalogue(db, clock)
    with pytest.raises(AuditDown):
        await catalogue.prune_catalogue(db, ["alpha"], actor="scheduler", now=clock.now())
    assert await _count(db, offers) == 2


# --- provider webhooks ------------------------------------------------------------------


@pytest.fixture
async def shop(db, clock):
    s = Shop(db, clock, {"alpha": ScriptedProvider("alpha", clock)})
    await s.setup_catalogue()
    yield s
    await s.assert_books_clean()


async def _bought(shop):
    user = await shop.user(1, funds=500)
    quote = await shop.quote(user.id)
    return await shop.orders.purchase(user_id=user.id, quote_id=quote, idempotency_key="k1")


def _sms(code: str = "123456") -> SmsMessage:
    return SmsMessage("tvwh:1", code, f"Your code {code}", None)


async def test_a_webhook_sms_is_recorded_once_with_its_audit_row(shop, clock) -> None:
    order = await _bought(shop)
    args = dict(provider="alpha", event_id="ev1", activation_id=order.activation_id, now=clock.now())
    assert await webhooks.record_sms(shop.db, shop.orders, message=_sms(), **args) == WebhookOutcome.RECORDED
    assert await webhooks.record_sms(shop.db, shop.orders, message=_sms(), **args) == WebhookOutcome.DUPLICATE
    assert (await shop.orders.get_order(order.id)).status == "completed"
    assert await _audit(shop.db) == [("webhook:alpha", "webhook.sms", order.id)]
    # The same SMS under another event id (a poll got it first): remembered, not recorded again.
    again = dict(args, event_id="ev2")
    outcome = await webhooks.record_sms(shop.db, shop.orders, message=_sms(), **again)
    assert outcome == WebhookOutcome.ALREADY_POLLED
    assert await _count(shop.db, webhook_events) == 2


async def test_a_webhook_for_no_order_is_not_remembered(shop, clock) -> None:
    outcome = await webhooks.record_sms(
        shop.db,
        shop.orders,
        provider="alpha",
        event_id="ev1",
        activation_id="unknown",
        message=_sms(),
        now=clock.now(),
    )
    assert outcome == WebhookOutcome.NO_ORDER
    assert await _count(shop.db, webhook_events) == 0 and await _audit(shop.db) == []


async def test_a_webhook_event_whose_audit_row_fails_is_not_remembered(shop, clock, monkeypatch) -> None:
    order = await _bought(shop)

    async def refuse(*_a: object, **_kw: object) -> int:
        raise AuditDown

    monkeypatch.setattr(audit, "record", refuse)
    with pytest.raises(AuditDown):
        await webhooks.remember_event(
            shop.db,
            provider="alpha",
            event_id="ev1",
            order_id=order.id,
            outcome=WebhookOutcome.RECORDED,
            now=clock.now(),
        )
    assert await _count(shop.db, webhook_events) == 0  # the retry will find it unseen


# --- staff cancel -----------------------------------------------------------------------


async def test_a_staff_cancel_refunds_and_is_audited_once(shop, clock) -> None:
    order = await _bought(shop)
    first = await support.cancel_order(
        shop.db, shop.orders, order.id, actor="staff:ann", reason="stuck", now=clock.now()
    )
    second = await support.cancel_order(
        shop.db, shop.orders, order.id, actor="staff:ann", reason="stuck", now=clock.now()
    )
    assert first.refunded == 100 and second.already
    assert await _audit(shop.db) == [("staff:ann", "order.cancel", order.id)]


# --- update log -------------------------------------------------------------------------


async def test_update_ids_are_recorded_once(db, clock) -> None:
    assert await update_log.record_updates(db.kept_connection(), [1, 2], clock.now()) == {1, 2}
    assert await update_log.record_updates(db.kept_connection(), [2, 3], clock.now()) == {3}


async def test_handled_ids_are_found_among_any_number_of_ids(db, clock) -> None:
    kept = db.kept_connection()
    await update_log.record_updates(kept, [10, 11, 12], clock.now())
    assert await update_log.handled_among(kept, [9, 10, 12, 13]) == {10, 12}
    assert await update_log.handled_among(kept, [13]) == set()


async def test_a_kept_connection_survives_its_server_closing_it(db, clock) -> None:
    """The connection dies under it (a database restart, an idle timeout): the statement
    running then fails, the next one opens a fresh connection and works."""
    if not db.is_postgres:
        pytest.skip("SQLite keeps no connection open: nothing to lose")
    kept = db.kept_connection()
    await update_log.record_updates(kept, [1], clock.now())
    backend = (await kept.read(select(func.pg_backend_pid()))).rows[0][0]
    async with db.read() as conn:
        assert (await conn.execute(select(func.pg_terminate_backend(backend)))).scalar() is True
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver calls a dropped link
        await update_log.handled_among(kept, [1])
    assert await update_log.handled_among(kept, [1, 2]) == {1}
    assert (await kept.read(select(func.pg_backend_pid()))).rows[0][0] != backend


async def test_dispose_gives_back_the_kept_connections(db, clock) -> None:
    kept = db.kept_connection()
    await update_log.record_updates(kept, [1], clock.now())
    await db.dispose()
    assert db.engine.pool.checkedout() == 0


async def test_wallet_balance_reads_the_users_wallet(db, clock) -> None:
    user = await users.resolve_user(db, telegram_id=5, username=None, first_name=None, now=clock.now())
    balance = await users.wallet_balance(db, user.wallet_account_id)
    assert (balance.balance, balance.held, balance.available) == (0, 0, 0)


async def test_the_client_language_is_followed_until_the_user_picks_one(db, clock) -> None:
    first = await users.resolve_user(
        db, telegram_id=41, username=None, first_name=None, now=clock.now(), language="ru"
    )
    assert (first.language, first.language_chosen) == ("ru", False)
    assert await users.follow_client_language(db, 41, "es") is True
    assert await users.follow_client_language(db, 41, "es") is False  # nothing to change
    assert await users.user_language(db, 41) == ("es", False)
    assert await users.set_language(db, 41, "pt_BR") is True
    assert await users.user_language(db, 41) == ("pt_BR", True)
    # A picked language is never replaced by the client's, on either path.
    assert await users.follow_client_language(db, 41, "ru") is False
    again = await users.resolve_user(
        db, telegram_id=41, username=None, first_name=None, now=clock.now(), language="id"
    )
    assert (again.language, again.language_chosen) == ("pt_BR", True)
    # Unknown language: bad input, nothing written; unknown user: nothing to set.
    with pytest.raises(InvalidInput):
        await users.set_language(db, 41, "xx")
    assert await users.user_language(db, 41) == ("pt_BR", True)
    assert await users.set_language(db, 42, "ru") is False
    assert await users.user_language(db, 42) == (None, False)
    # A client language the shop does not speak is not stored.
    other = await users.resolve_user(
        db, telegram_id=43, username=None, first_name=None, now=clock.now(), language="de"
    )
    assert other.language is None
