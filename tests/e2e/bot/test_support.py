"""/support, /paysupport and /terms, and the command list the bot publishes at start."""

from __future__ import annotations

from bot import texts
from bot.app import COMMANDS
from tests.e2e.bot.conftest import Harness, shop_harness

ALICE = 8101
CONTACT = "Ops <b>desk</b> & @shop_help"


async def test_support_shows_the_default_contact_and_a_way_on(shop: Harness) -> None:
    chat = await shop.say(ALICE, "/support")
    reply = chat.last()
    assert reply.text is not None and reply.text.startswith("Support\n")
    assert "The shop's operator has not set a support contact yet." in reply.text
    assert reply.button_texts == [texts.BTN_BUY, texts.BTN_MENU]
    await shop.press(ALICE, texts.BTN_BUY)
    assert "Choose a service" in shop.tg.chat(ALICE).message(reply.message_id).text


async def test_terms_state_the_money_rules(shop: Harness) -> None:
    chat = await shop.say(ALICE, "/terms")
    reply = chat.last()
    assert reply.text is not None and reply.text.startswith("Terms\n")
    for rule in (
        "single use",
        "charged only when a code arrives",
        "comes back to your balance by itself",
        "/support",
    ):
        assert rule in reply.text
    assert "cannot be withdrawn" in reply.text
    assert reply.button_texts == [texts.BTN_BUY, texts.BTN_MENU]
    await shop.press(ALICE, texts.BTN_MENU)
    assert shop.tg.chat(ALICE).message(reply.message_id).text.startswith("Menu")


async def test_pay_support_points_at_balance(shop: Harness) -> None:
    chat = await shop.say(ALICE, "/paysupport")
    reply = chat.last()
    assert reply.text is not None and reply.text.startswith("Payment support\n")
    assert "not paid out in Stars" in reply.text
    assert reply.button_texts == [texts.BTN_BALANCE, texts.BTN_MENU]
    await shop.press(ALICE, texts.BTN_BALANCE)
    assert "Balance" in shop.tg.chat(ALICE).message(reply.message_id).text


async def test_configured_contact_and_terms_are_shown_as_plain_text(db, clock) -> None:
    settings = {"SUPPORT_CONTACT": CONTACT, "TERMS_TEXT": "Be <i>nice</i>."}
    async with shop_harness(db, clock, settings=settings) as shop:
        for command in ("/support", "/paysupport"):
            reply = (await shop.say(ALICE, command)).last()
            assert reply.text is not None and CONTACT in reply.text  # the tags shown, not applied
            assert [e["type"] for e in reply.entities].count("bold") == 1  # the heading only
        reply = (await shop.say(ALICE, "/terms")).last()
        assert reply.text == "Terms\nBe <i>nice</i>."


async def test_commands_typed_mid_top_up_are_answered(shop: Harness) -> None:
    await shop.say(ALICE, "/balance")
    await shop.press(ALICE, texts.BTN_CUSTOM_AMOUNT)
    chat = await shop.say(ALICE, "/support")
    assert chat.last().text.startswith("Support\n")


async def test_bot_publishes_its_commands_at_start(db, clock) -> None:
    async with shop_harness(db, clock, set_commands=True) as shop:
        await shop.say(ALICE, "/start")  # polling, so the command list is already set
        published = [(c.command, c.description) for c in await shop.app.bot.get_my_commands()]
        # Each language gets the list in its own words (Telegram picks it by the client's language).
        russian = {c.command: c.description for c in await shop.app.bot.get_my_commands(language_code="ru")}
    assert [c for c, _ in published] == [
        "start",
        "buy",
        "balance",
        "orders",
        "help",
        "support",
        "paysupport",
        "terms",
        "promo",
        "referral",
        "language",
    ]
    assert published == [(c.command, c.description) for c in COMMANDS]
    assert all(description for _, description in published)
    assert russian["language"] == "Сменить язык"
