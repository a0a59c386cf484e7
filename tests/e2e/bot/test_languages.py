"""The shop in the buyer's language: whole journeys in English and Russian with the books
checked as in ``test_journeys``, the /language picker, and notices the sender delivers later
in the recipient's language."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import pytest
from sqlalchemy import select

from core.db.tables import users
from core.staff import StaffMember, adjust_wallet
from tests.e2e.bot.conftest import Harness

NBSP = "\u00a0"


@dataclass(frozen=True)
class Lang:
    code: str  # the Telegram client's language_code
    price: str  # regex: the confirm screen's price, whole and cents
    hello: str
    buy: str
    buy_for: str
    topped_up: str
    choose_country: str
    confirm: str
    waiting: str
    cancel: str
    refunded: str
    cancelled: str
    history: str
    code_arrived: str
    code_for: str

    def money(self, cents: int) -> str:
        whole, frac = divmod(cents, 100)
        return f"${whole}.{frac:02d}" if self.code == "en" else f"{whole},{frac:02d}{NBSP}$"


EN = Lang(
    code="en",
    price=r"Price: \$(\d+)\.(\d\d)",
    hello="👋 Hi, Alice!",
    buy="🛒 Buy number",
    buy_for="✅ Buy for",
    topped_up="Payment received: {money} added",
    choose_country="choose a country",
    confirm="Confirm your order",
    waiting="Waiting for the code",
    cancel="❌ Cancel & refund",
    refunded="{money} refunded",
    cancelled="cancelled",
    history="My orders",
    code_arrived="The code has arrived!",
    code_for="📩 Code for WhatsApp",
)
RU = Lang(
    code="ru",
    price=rf"Цена: (\d+),(\d\d){NBSP}\$",
    hello="👋 Привет, Alice!",
    buy="🛒 Купить номер",
    buy_for="✅ Купить за",
    topped_up="Платёж получен: зачислено {money}",
    choose_country="выберите страну",
    confirm="Подтвердите заказ",
    waiting="Ждём код",
    cancel="❌ Отменить и вернуть",
    refunded="Возвращено {money}",
    cancelled="отменён",
    history="Мои заказы",
    code_arrived="Код пришёл!",
    code_for="📩 Код для WhatsApp",
)
USER = 5101


async def buy_first_whatsapp(shop: Harness, lang: Lang) -> tuple[int, int]:
    await shop.say(USER, "/start")
    await shop.press(USER, lang.buy)
    await shop.press(USER, "WhatsApp")
    countries = shop.tg.chat(USER).last()
    assert lang.choose_country in countries.text
    await shop.press(USER, data=countries.buttons[0].callback_data, message_id=countries.message_id)
    confirm = shop.tg.chat(USER).last()
    assert lang.confirm in confirm.text
    match = re.search(lang.price, confirm.text)
    assert match, confirm.text
    price = int(match.group(1)) * 100 + int(match.group(2))
    answer = await shop.press(USER, lang.buy_for)
    assert answer.text is None, answer
    return price, confirm.message_id


@pytest.mark.parametrize("lang", [EN, RU], ids=["en", "ru"])
async def test_top_up_buy_cancel_history_and_code_in_the_buyers_language(shop: Harness, lang: Lang) -> None:
    shop.tg.add_user(USER, first_name="Alice", language_code=lang.code)
    greeting = (await shop.say(USER, "/start")).last()
    assert greeting.text.startswith(lang.hello)
    assert lang.money(0) in greeting.text

    # Top up 250 Stars = $5.00; the package button shows the amount the locale's way.
    await shop.press(USER, "💰")
    await shop.press(USER, f"⭐ 250 → {lang.money(500)}")
    await shop.pay_last_invoice(USER)
    assert lang.topped_up.format(money=lang.money(500)) in shop.last_text(USER)
    wallet = await shop.wallet(USER)
    assert (wallet.balance, wallet.held, wallet.available) == (500, 0, 500)

    # Buy, then cancel: the whole price comes back at once.
    price, message_id = await buy_first_whatsapp(shop, lang)
    assert lang.waiting in shop.tg.chat(USER).message(message_id).text
    wallet = await shop.wallet(USER)
    assert (wallet.balance, wallet.held, wallet.available) == (500, price, 500 - price)
    answer = await shop.press(USER, lang.cancel)
    assert answer.text is not None and lang.refunded.format(money=lang.money(price)) in answer.text
    wallet = await shop.wallet(USER)
    assert (wallet.balance, wallet.held, wallet.available) == (500, 0, 500)

    # Buy again; the code arrives and the sender delivers it in the buyer's language.
    shop.clock.advance(60)
    price2, _ = await buy_first_whatsapp(shop, lang)
    order = (await shop.orders_of(USER))[0]
    shop.sim.deliver_code(order.activation_id, code="424242")
    assert (await shop.press(USER, "🔄")).text == lang.code_arrived
    assert await shop.drain() == 1
    code_msg = shop.tg.chat(USER).last()
    assert code_msg.text.startswith(lang.code_for) and "424242" in code_msg.text
    wallet = await shop.wallet(USER)
    assert (wallet.balance, wallet.held, wallet.available) == (500 - price2, 0, 500 - price2)

    # History: newest first, status words in the buyer's language.
    listing = (await shop.say(USER, "/orders")).last()
    assert listing.text.startswith(lang.history)
    assert lang.cancelled.lower() in listing.text.lower()
    await shop.assert_books_clean()


async def test_language_picker_stores_the_choice_and_the_sender_uses_it(shop: Harness) -> None:
    shop.tg.add_user(USER, first_name="Ana", language_code="ru")
    assert (await shop.say(USER, "/start")).last().button_texts[0] == "🛒 Купить номер"
    async with shop.core.db.read() as conn:
        stored = await conn.scalar(select(users.c.language).where(users.c.telegram_id == USER))
    assert stored == "ru"  # remembered at first sight, for messages sent later

    picker = (await shop.say(USER, "/language")).last()
    assert "✓ 🇷🇺 Русский" in picker.button_texts
    await shop.press(USER, "🇪🇸 Español")
    assert shop.tg.chat(USER).message(picker.message_id).text.startswith("Listo: a partir de ahora te hablo")
    async with shop.core.db.read() as conn:
        stored = await conn.scalar(select(users.c.language).where(users.c.telegram_id == USER))
    assert stored == "es"
    # The client still says Russian; the buyer's choice wins.
    assert (await shop.say(USER, "/start")).last().button_texts[0] == "🛒 Comprar número"

    # A notice queued by staff while no update of this user is running: in Spanish.
    admin = StaffMember(1, "admin", "admin", False, datetime(2026, 1, 1), "x")
    await adjust_wallet(
        shop.core.wallets,
        admin,
        "credit",
        USER,
        500,
        reason="gift",
        idempotency_key="gift-1",
        support_credit_limit=0,
    )
    assert await shop.drain() == 1
    assert shop.tg.chat(USER).last().text == (
        f"💳 Soporte añadió 5,00{NBSP}US$ a tu monedero. Saldo: 5,00{NBSP}US$."
    )


@pytest.mark.parametrize(
    ("client", "button"),
    [
        ("pt-br", "🛒 Comprar número"),
        ("pt", "🛒 Comprar número"),
        ("id", "🛒 Beli nomor"),
        ("es-419", "🛒 Comprar número"),
        ("de", "🛒 Buy number"),
        (None, "🛒 Buy number"),
    ],
)
async def test_the_clients_language_picks_the_first_language(
    shop: Harness, client: str | None, button: str
) -> None:
    shop.tg.add_user(USER, language_code=client)
    assert (await shop.say(USER, "/start")).last().button_texts[0] == button


async def test_a_bad_language_button_changes_nothing(shop: Harness) -> None:
    shop.tg.add_user(USER, language_code="en")
    await shop.say(USER, "/start")
    answer = await shop.press(USER, data="l:xx", message_id=shop.tg.chat(USER).last().message_id, forge=True)
    assert answer.text is not None and "/start" in answer.text
    async with shop.core.db.read() as conn:
        stored = await conn.scalar(select(users.c.language).where(users.c.telegram_id == USER))
    assert stored == "en"


async def test_a_changed_client_language_is_followed_until_the_buyer_picks_one(shop: Harness) -> None:
    async def start_in(client: str) -> str:
        update_id = shop.tg.send_text(USER, "/start", language_code=client)
        return (await shop.tg.wait_for_reply(update_id, 10)).last().button_texts[0]

    assert await start_in("ru") == "🛒 Купить номер"
    assert await start_in("es") == "🛒 Comprar número"
    await shop.say(USER, "/language")
    await shop.press(USER, "🇮🇩 Bahasa Indonesia")
    assert await start_in("ru") == "🛒 Beli nomor"


async def test_cached_list_screens_are_kept_per_language(shop: Harness) -> None:
    """The service and country screens are cached for everyone; a Russian reader's copy must
    never be served to a Spanish one."""
    first, second = USER, USER + 1
    shop.tg.add_user(first, language_code="ru")
    shop.tg.add_user(second, language_code="es")
    for user, services, countries in (
        (first, "Выберите сервис", "выберите страну"),
        (second, "Elige un servicio", "elige un país"),
    ):
        await shop.say(user, "/buy")
        assert shop.last_text(user).startswith(services)
        await shop.press(user, "WhatsApp")
        assert countries in shop.last_text(user)
