"""The Bot API emulator, driven by the real aiogram client over real HTTP.

Every wait is on an emulator condition with a bounded timeout (``wait_for_reply``,
``wait_for_change``, ``wait_for_callback_answer``, ``wait_for_confirmation``), never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramRetryAfter,
)
from aiogram.filters import Command, CommandObject
from aiogram.types import (
    BotCommand,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    LabeledPrice,
    Message,
    PreCheckoutQuery,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from aiohttp import web

from numbershop.emulator import (
    BotApiError,
    EmulatedBot,
    Emulator,
    EmulatorError,
    UnknownObject,
    running_emulator,
)
from numbershop.emulator.errors import NOT_MODIFIED
from numbershop.emulator.formatting import render

TOKEN = "424242:emulator-test-token"
USER = 1001
WAIT = 5.0


@pytest.fixture
async def served() -> AsyncIterator[tuple[Emulator, str]]:
    async with running_emulator() as (emulator, base_url):
        yield emulator, base_url


@pytest.fixture
async def tg(served: tuple[Emulator, str]) -> EmulatedBot:
    return served[0].add_bot(TOKEN, username="shop_test_bot", first_name="Shop")


@pytest.fixture
async def bot(served: tuple[Emulator, str]) -> AsyncIterator[Bot]:
    session = AiohttpSession(api=TelegramAPIServer.from_base(served[1]))
    bot = Bot(TOKEN, session=session)
    yield bot
    await session.close()


def keyboard(*buttons: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=t, callback_data=d) for t, d in buttons]]
    )


@dataclass
class EchoBot:
    """A minimal bot polling the emulator; ``seen`` lists the update ids it received."""

    tg: EmulatedBot
    bot: Bot
    seen: list[int] = field(default_factory=list)


@pytest.fixture
async def echo(tg: EmulatedBot, bot: Bot) -> AsyncIterator[EchoBot]:
    dp = Dispatcher()
    state = EchoBot(tg, bot)

    @dp.update.outer_middleware()
    async def remember(handler, event: Update, data):
        state.seen.append(event.update_id)
        return await handler(event, data)

    @dp.message(Command("invoice"))
    async def invoice(message: Message, command: CommandObject) -> None:
        amount, _, payload = (command.args or "").partition(" ")
        await message.answer_invoice(
            title="Stars top-up",
            description="Adds to your balance",
            payload=payload or f"topup:{amount}",
            currency="XTR",
            prices=[LabeledPrice(label="Top-up", amount=int(amount))],
        )

    @dp.pre_checkout_query()
    async def pre_checkout(query: PreCheckoutQuery) -> None:
        if query.invoice_payload == "decline":
            await query.answer(ok=False, error_message="This invoice has expired")
        else:
            await query.answer(ok=True)

    @dp.message(F.successful_payment)
    async def paid(message: Message) -> None:
        sp = message.successful_payment
        assert sp is not None
        await message.answer(f"paid {sp.total_amount} {sp.telegram_payment_charge_id}")

    @dp.message(F.text)
    async def reply(message: Message) -> None:
        await message.answer(
            f"<b>echo</b>: {html.escape(message.text or '')}",
            parse_mode="HTML",
            reply_markup=keyboard(("Again", "again"), ("Same", "same")),
        )

    @dp.callback_query(F.data == "again")
    async def again(query: CallbackQuery) -> None:
        await query.answer(f"pressed {query.data} on {query.message.message_id}")

    @dp.callback_query(F.data == "same")
    async def same(query: CallbackQuery) -> None:
        assert isinstance(query.message, Message)
        try:  # re-render the message unchanged: Telegram refuses, the bot ignores it
            await query.message.edit_text(
                query.message.html_text, parse_mode="HTML", reply_markup=query.message.reply_markup
            )
        except TelegramBadRequest as exc:
            await query.answer(exc.message)

    @dp.callback_query()
    async def other(query: CallbackQuery) -> None:
        await query.answer("unknown button", show_alert=True)

    task = asyncio.create_task(dp.start_polling(bot, handle_signals=False, polling_timeout=10))
    yield state
    if dp._running_lock.locked():
        await dp.stop_polling()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# ------------------------------------------------------------------ through a polling bot


async def test_a_users_text_gets_a_reply_visible_in_the_chat(echo: EchoBot) -> None:
    tg = echo.tg
    update_id = tg.send_text(USER, "hello <world>", first_name="Ann", username="ann")

    chat = await tg.wait_for_reply(update_id, timeout=WAIT)

    assert [m.sender for m in chat.messages] == ["user", "bot"]
    reply = chat.last()
    assert reply.text == "echo: hello <world>"  # markup parsed away, entities escaped back
    assert reply.entities == ({"type": "bold", "offset": 0, "length": 4},)
    assert reply.button_texts == ["Again", "Same"]
    assert chat.user == {"id": USER, "is_bot": False, "first_name": "Ann", "username": "ann"}
    first = tg.first_reply(update_id)
    assert first is not None and first.method == "sendMessage" and first.chat_id == USER
    assert first.started >= tg.update(update_id).created_at
    assert echo.seen == [update_id]


async def test_a_button_press_produces_a_callback_query_and_records_the_answer(
    echo: EchoBot,
) -> None:
    tg = echo.tg
    chat = await tg.wait_for_reply(tg.send_text(USER, "hi"), timeout=WAIT)
    message_id = chat.last().message_id

    press = tg.press_button(USER, text="Again")
    answer = await tg.wait_for_callback_answer(press.query_id, timeout=WAIT)

    assert (press.message_id, press.data) == (message_id, "again")
    assert answer.text == f"pressed again on {message_id}" and not answer.show_alert
    by_data = tg.press_button(USER, message_id, data="again")
    await tg.wait_for_callback_answer(by_data.query_id, timeout=WAIT)
    assert [a.query_id for a in tg.chat(USER).callback_answers] == [press.query_id, by_data.query_id]


async def test_a_forged_press_reaches_the_bot_and_a_missing_button_is_refused(
    echo: EchoBot,
) -> None:
    tg = echo.tg
    await tg.wait_for_reply(tg.send_text(USER, "hi"), timeout=WAIT)

    with pytest.raises(EmulatorError, match="no message .* has a button"):
        tg.press_button(USER, data="order:someone-else")
    forged = tg.press_button(USER, data="order:someone-else", forge=True)
    answer = await tg.wait_for_callback_answer(forged.query_id, timeout=WAIT)

    assert answer.text == "unknown button" and answer.show_alert
    assert tg.update(forged.update_id).payload["callback_query"]["data"] == "order:someone-else"


async def test_an_unchanged_edit_is_refused_with_message_is_not_modified(echo: EchoBot) -> None:
    tg = echo.tg
    await tg.wait_for_reply(tg.send_text(USER, "hi"), timeout=WAIT)
    before = tg.chat(USER).last()

    answer = await tg.wait_for_callback_answer(tg.press_button(USER, text="Same").query_id, timeout=WAIT)

    assert answer.text == NOT_MODIFIED
    assert tg.chat(USER).last() == before


async def test_edits_follow_telegram_rules(tg: EmulatedBot, bot: Bot) -> None:
    tg.add_user(USER)
    sent = await bot.send_message(USER, "Balance: 1", reply_markup=keyboard(("Top up", "t")))

    with pytest.raises(TelegramBadRequest) as same:
        await bot.edit_message_text(
            "Balance: 1", chat_id=USER, message_id=sent.message_id, reply_markup=keyboard(("Top up", "t"))
        )
    assert same.value.message == NOT_MODIFIED
    with pytest.raises(TelegramBadRequest) as same_markup:
        await bot.edit_message_reply_markup(
            chat_id=USER, message_id=sent.message_id, reply_markup=keyboard(("Top up", "t"))
        )
    assert same_markup.value.message == NOT_MODIFIED
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=USER, message_id=999)

    # Same text without a keyboard is a change: editMessageText drops the keyboard.
    edited = await bot.edit_message_text("Balance: 1", chat_id=USER, message_id=sent.message_id)
    assert edited.reply_markup is None and edited.edit_date is not None
    view = tg.chat(USER).message(sent.message_id)
    assert view.edited and view.keyboard == ()

    await bot.edit_message_reply_markup(
        chat_id=USER, message_id=sent.message_id, reply_markup=keyboard(("Cancel", "c"))
    )
    assert tg.chat(USER).message(sent.message_id).button_texts == ["Cancel"]

    assert await bot.delete_message(USER, sent.message_id) is True
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(USER, sent.message_id)
    assert tg.chat(USER).messages == ()


async def test_callback_data_is_limited_to_64_bytes(tg: EmulatedBot, bot: Bot) -> None:
    tg.add_user(USER)
    with pytest.raises(TelegramBadRequest) as too_long:
        await bot.send_message(USER, "menu", reply_markup=keyboard(("Buy", "x" * 65)))
    assert too_long.value.message == "Bad Request: BUTTON_DATA_INVALID"
    assert tg.chat(USER).messages == ()

    exactly = "é" * 32  # 32 characters, 64 bytes: bytes are what counts
    sent = await bot.send_message(USER, "menu", reply_markup=keyboard(("Buy", exactly)))
    assert tg.chat(USER).message(sent.message_id).button("Buy").callback_data == exactly
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(USER, "menu", reply_markup=keyboard(("Buy", exactly + "a")))


async def test_bad_requests_look_like_telegram(tg: EmulatedBot, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest) as no_chat:
        await bot.send_message(777, "hi")
    assert no_chat.value.message == "Bad Request: chat not found"

    tg.add_user(USER)
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(USER, "   ")
    with pytest.raises(TelegramBadRequest) as markup:
        await bot.send_message(USER, "Hi <Ann>", parse_mode="HTML")  # forgot to escape a name
    assert markup.value.message == (
        'Bad Request: can\'t parse entities: Unsupported start tag "ann" at byte offset 3'
    )
    assert tg.chat(USER).messages == ()


async def test_429_carries_retry_after_for_the_next_n_matching_calls(tg: EmulatedBot, bot: Bot) -> None:
    tg.add_user(USER)
    tg.add_user(USER + 1)
    tg.fail_next("sendMessage", chat_id=USER, count=2, retry_after=7)

    for _ in range(2):
        with pytest.raises(TelegramRetryAfter) as limited:
            await bot.send_message(USER, "code: 1234")
        assert limited.value.retry_after == 7
        assert "Too Many Requests: retry after 7" in limited.value.message
    await bot.send_message(USER + 1, "another chat is not limited")
    await bot.send_message(USER, "code: 1234")

    assert tg.chat(USER).texts() == ["code: 1234"]
    assert [(c.chat_id, c.error_code) for c in tg.calls if c.method == "sendMessage"] == [
        (USER, 429),
        (USER, 429),
        (USER + 1, None),
        (USER, None),
    ]


async def test_a_user_who_blocked_the_bot_gives_403(tg: EmulatedBot, bot: Bot) -> None:
    tg.send_text(USER, "/start")
    tg.block(USER)

    with pytest.raises(TelegramForbiddenError) as blocked:
        await bot.send_message(USER, "your code")
    assert blocked.value.message == "Forbidden: bot was blocked by the user"
    with pytest.raises(EmulatorError, match="blocked"):
        tg.send_text(USER, "hello?")
    assert tg.chat(USER).blocked

    tg.unblock(USER)
    await bot.send_message(USER, "your code")
    updates = await bot.get_updates(timeout=0)
    members = [u.my_chat_member for u in updates if u.my_chat_member]
    assert [(m.old_chat_member.status, m.new_chat_member.status) for m in members] == [
        ("member", "kicked"),
        ("kicked", "member"),
    ]


async def test_stars_invoice_is_paid_through_pre_checkout_then_successful_payment(
    echo: EchoBot,
) -> None:
    tg = echo.tg
    chat = await tg.wait_for_reply(tg.send_text(USER, "/invoice 50"), timeout=WAIT)
    invoice = chat.last()
    assert invoice.invoice is not None
    assert (invoice.invoice.currency, invoice.invoice.total_amount) == ("XTR", 50)
    assert invoice.invoice.payload == "topup:50" and not invoice.invoice.paid
    assert invoice.buttons[0].pay and invoice.buttons[0].text == "Pay ⭐️50"

    payment = await tg.pay_invoice(USER, timeout=WAIT)

    assert payment.status == "paid" and payment.charge_id
    assert tg.update(payment.pre_checkout_update_id).kind == "pre_checkout_query"
    chat = await tg.wait_for_reply(payment.update_id, timeout=WAIT)
    assert chat.last().text == f"paid 50 {payment.charge_id}"
    assert chat.message(payment.message_id).successful_payment == {
        "currency": "XTR",
        "total_amount": 50,
        "invoice_payload": "topup:50",
        "telegram_payment_charge_id": payment.charge_id,
        "provider_payment_charge_id": "",
    }
    assert chat.message(invoice.message_id).invoice.paid
    with pytest.raises(EmulatorError, match="no unpaid invoice"):
        await tg.pay_invoice(USER, timeout=WAIT)

    # The same payment reported again: a new update, the same charge id.
    again = tg.resend_payment(payment.charge_id)
    chat = await tg.wait_for_reply(again, timeout=WAIT)
    assert again != payment.update_id
    assert chat.texts()[-2:] == [f"paid 50 {payment.charge_id}"] * 2


async def test_a_declined_pre_checkout_pays_nothing(echo: EchoBot) -> None:
    tg = echo.tg
    await tg.wait_for_reply(tg.send_text(USER, "/invoice 10 decline"), timeout=WAIT)

    payment = await tg.pay_invoice(USER, timeout=WAIT)

    assert payment.status == "declined" and payment.charge_id is None
    assert payment.error_message == "This invoice has expired"
    chat = tg.chat(USER)
    assert not chat.last().invoice.paid
    assert all(m.successful_payment is None for m in chat.messages)


async def test_an_unanswered_pre_checkout_times_out_and_a_late_answer_is_refused(
    tg: EmulatedBot, bot: Bot
) -> None:
    tg.send_text(USER, "/start")
    await bot.send_invoice(
        USER,
        title="t",
        description="d",
        payload="p",
        currency="XTR",
        prices=[LabeledPrice(label="x", amount=5)],
    )

    payment = await tg.pay_invoice(USER, timeout=0.2)

    assert payment.status == "timeout"
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_pre_checkout_query(payment.pre_checkout_query_id, ok=True)


async def test_a_redelivered_update_keeps_its_update_id(echo: EchoBot) -> None:
    tg = echo.tg
    update_id = tg.send_text(USER, "once")
    await tg.wait_for_reply(update_id, timeout=WAIT)
    await tg.wait_for_confirmation(update_id, timeout=WAIT)

    assert tg.redeliver(update_id) == update_id
    chat = await tg.wait_for_change(USER, timeout=WAIT)  # the echo bot answers again
    await tg.wait_for_confirmation(update_id, timeout=WAIT)

    assert echo.seen == [update_id, update_id]
    assert chat.texts() == ["echo: once", "echo: once"]
    assert tg.update(update_id).deliveries == 2
    with pytest.raises(UnknownObject):
        tg.redeliver(10_000)


# ----------------------------------------------------------- getUpdates, directly


async def test_updates_stay_queued_until_a_higher_offset_confirms_them(tg: EmulatedBot, bot: Bot) -> None:
    first, second = tg.send_text(USER, "a"), tg.send_text(USER, "b")

    assert [u.update_id for u in await bot.get_updates(timeout=0)] == [first, second]
    assert [u.update_id for u in await bot.get_updates(timeout=0)] == [first, second]
    assert [u.update_id for u in await bot.get_updates(offset=second, timeout=0)] == [second]
    assert await bot.get_updates(offset=second + 1, timeout=0) == []
    assert tg.update(first).confirmed_at is not None and tg.pending_update_count == 0

    # A redelivery goes alone, so the client's next offset confirms just it.
    third = tg.send_text(USER, "c")
    tg.redeliver(first)
    assert [u.update_id for u in await bot.get_updates(offset=second + 1, timeout=0)] == [third]
    assert [u.update_id for u in await bot.get_updates(offset=third + 1, timeout=0)] == [first]
    assert await bot.get_updates(offset=first + 1, timeout=0) == []


async def test_a_long_poll_returns_as_soon_as_an_update_arrives(tg: EmulatedBot, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=30))
    await tg.wait_until(lambda: tg.is_polling, timeout=WAIT, what="a long poll")
    update_id = tg.send_text(USER, "now")

    updates = await asyncio.wait_for(poll, WAIT)

    assert [u.update_id for u in updates] == [update_id]
    assert updates[0].message.text == "now"


async def test_a_second_poller_terminates_the_first_with_409(tg: EmulatedBot, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=30))
    await tg.wait_until(lambda: tg.is_polling, timeout=WAIT, what="a long poll")
    second = asyncio.create_task(bot.get_updates(timeout=30))

    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates"):
        await asyncio.wait_for(first, WAIT)
    update_id = tg.send_text(USER, "for the survivor")
    assert [u.update_id for u in await asyncio.wait_for(second, WAIT)] == [update_id]


async def test_allowed_updates_drops_the_kinds_a_bot_did_not_ask_for(tg: EmulatedBot, bot: Bot) -> None:
    await bot.get_updates(timeout=0, allowed_updates=["message"])
    sent = tg.send_text(USER, "hi")
    await bot.send_message(USER, "menu", reply_markup=keyboard(("Go", "go")))
    press = tg.press_button(USER, text="Go")

    assert [u.update_id for u in await bot.get_updates(timeout=0)] == [sent]
    assert tg.update(press.update_id).dropped


async def test_startup_calls_and_reply_keyboards(tg: EmulatedBot, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.username, me.is_bot) == (424242, "shop_test_bot", True)
    assert await bot.delete_webhook(drop_pending_updates=True)
    assert (await bot.get_webhook_info()).url == ""
    assert await bot.set_my_commands([BotCommand(command="start", description="Menu")])
    assert [c.command for c in await bot.get_my_commands()] == ["start"]
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Bad-Name", description="x")])

    tg.send_text(USER, "/start")
    chat = await bot.get_chat(USER)
    assert (chat.id, chat.type) == (USER, "private")
    menu = ReplyKeyboardMarkup(keyboard=[[KeyboardButton(text="Buy"), KeyboardButton(text="Balance")]])
    await bot.send_message(USER, "Menu", reply_markup=menu)
    assert tg.chat(USER).reply_keyboard == (("Buy", "Balance"),)
    await bot.send_message(USER, "Bye", reply_markup=ReplyKeyboardRemove())
    assert tg.chat(USER).reply_keyboard == ()


async def test_waits_are_bounded(tg: EmulatedBot) -> None:
    update_id = tg.send_text(USER, "nobody is polling")

    with pytest.raises(TimeoutError, match="bot reply to update"):
        await tg.wait_for_reply(update_id, timeout=0.05)
    with pytest.raises(TimeoutError, match="change in chat"):
        await tg.wait_for_change(USER, timeout=0.05)


# ------------------------------------------------------------------- over HTTP


async def test_the_control_api_drives_a_bot_over_http(served: tuple[Emulator, str], echo: EchoBot) -> None:
    _, base_url = served
    root = f"{base_url}/control/bots/default"
    async with aiohttp.ClientSession() as http:

        async def call(method: str, path: str, **kwargs: object) -> object:
            async with http.request(method, root + path, **kwargs) as resp:
                body = await resp.json()
                assert body["ok"], body
                return body["result"]

        sent = await call("POST", f"/users/{USER}/messages", json={"text": "over http"})
        chat = await call("GET", f"/chats/{USER}", params={"since": str(sent["version"]), "timeout": "5"})
        assert chat["messages"][-1]["text"] == "echo: over http"

        press = await call("POST", f"/chats/{USER}/press", json={"text": "Again"})
        answer = await call("GET", f"/callbacks/{press['query_id']}", params={"timeout": "5"})
        assert answer["text"].startswith("pressed again")

        await call("POST", f"/users/{USER}/messages", json={"text": "/invoice 30"})
        await echo.tg.wait_until(lambda: echo.tg.chat(USER).last().invoice, timeout=WAIT)
        payment = await call("POST", f"/chats/{USER}/pay", json={"timeout": 5})
        assert payment["status"] == "paid" and payment["total_amount"] == 30

        await call("POST", "/faults", json={"method": "sendMessage", "count": 1, "retry_after": 2})
        await call("POST", f"/users/{USER}/block")
        assert (await call("GET", f"/chats/{USER}"))["blocked"] is True

        async with http.get(f"{root}/chats/999") as missing:
            assert missing.status == 404 and not (await missing.json())["ok"]
        calls = await call("GET", "/calls")
        assert {
            "getUpdates",
            "sendMessage",
            "answerCallbackQuery",
            "sendInvoice",
            "answerPreCheckoutQuery",
        } <= {c["method"] for c in calls}


async def test_the_bot_api_accepts_json_and_form_bodies(
    served: tuple[Emulator, str], tg: EmulatedBot
) -> None:
    _, base_url = served
    tg.add_user(USER)
    markup = {"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]}
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base_url}/bot{TOKEN}/sendMessage",
            json={"chat_id": USER, "text": "json", "reply_markup": markup},
        ) as r:
            assert r.status == 200 and (await r.json())["result"]["reply_markup"] == markup
        async with http.post(
            f"{base_url}/bot{TOKEN}/SENDMESSAGE", data={"chat_id": str(USER), "text": "form"}
        ) as r:
            assert r.status == 200 and (await r.json())["result"]["text"] == "form"
        async with http.get(f"{base_url}/bot{TOKEN}/noSuchMethod") as r:
            assert r.status == 404 and (await r.json())["description"] == "Not Found"
        async with http.get(f"{base_url}/bot424242:wrong-secret/getMe") as r:
            assert r.status == 401 and (await r.json())["description"] == "Unauthorized"
    assert tg.chat(USER).texts() == ["json", "form"]


# ------------------------------------------------------------ text as Telegram keeps it


@pytest.mark.parametrize(
    ("source", "text", "entities"),
    [
        ("<b>Balance</b>: 5 &lt;USD&gt;", "Balance: 5 <USD>", [{"type": "bold", "offset": 0, "length": 7}]),
        ("Code: <code>1234</code>", "Code: 1234", [{"type": "code", "offset": 6, "length": 4}]),
        (
            '<pre><code class="language-py">x</code></pre>',
            "x",
            [{"type": "pre", "offset": 0, "length": 1, "language": "py"}],
        ),
        (
            '<a href="https://t.me">🙂 go</a>',
            "🙂 go",
            [{"type": "text_link", "offset": 0, "length": 5, "url": "https://t.me"}],
        ),
        ("  <i>padded</i>\n", "padded", [{"type": "italic", "offset": 0, "length": 6}]),
    ],
)
def test_html_is_parsed_into_text_and_entities(
    source: str, text: str, entities: list[dict[str, object]]
) -> None:
    assert render(source, "HTML") == (text, entities)


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("<b>open", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ('<span class="x">s</span>', 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ],
)
def test_malformed_html_is_refused_like_telegram(source: str, error: str) -> None:
    with pytest.raises(BotApiError) as refused:
        render(source, "HTML")
    assert refused.value.description == f"Bad Request: can't parse entities: {error}"


# --------------------------------------------------------------- non-finite numbers (nan, inf)


@pytest.mark.parametrize("timeout", ["nan", "inf", "-inf", "NaN", "Infinity"])
async def test_get_updates_refuses_a_non_finite_timeout_at_once(served, timeout: str) -> None:
    """A NaN deadline passes every clamp and never expires; it must be refused, not waited."""
    emulator, base_url = served
    emulator.add_bot(TOKEN)
    async with aiohttp.ClientSession() as http:
        async with asyncio.timeout(WAIT):
            async with http.get(f"{base_url}/bot{TOKEN}/getUpdates", params={"timeout": timeout}) as r:
                assert r.status == 400
                assert await r.json() == {
                    "ok": False,
                    "error_code": 400,
                    "description": "Bad Request: invalid timeout specified",
                }
            async with http.post(
                f"{base_url}/bot{TOKEN}/getUpdates", data={"timeout": timeout}
            ) as r:  # aiogram's form encoding
                assert r.status == 400


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
async def test_json_bodies_with_non_finite_literals_are_refused(served, literal: str) -> None:
    emulator, base_url = served
    emulator.add_bot(TOKEN)
    async with aiohttp.ClientSession() as http:
        async with asyncio.timeout(WAIT):
            async with http.post(
                f"{base_url}/bot{TOKEN}/getUpdates",
                data=f'{{"timeout": {literal}}}',
                headers={"Content-Type": "application/json"},
            ) as r:
                assert r.status == 400
                assert (await r.json())["error_code"] == 400
            async with http.post(
                f"{base_url}/control/bots/default/chats/{USER}/pay",
                data=f'{{"timeout": {literal}}}',
                headers={"Content-Type": "application/json"},
            ) as r:
                assert r.status == 400


@pytest.mark.parametrize("timeout", ["nan", "inf"])
async def test_control_long_polls_refuse_a_non_finite_timeout_at_once(served, timeout: str) -> None:
    emulator, base_url = served
    bot = emulator.add_bot(TOKEN)
    update_id = bot.send_text(USER, "/start")
    async with aiohttp.ClientSession() as http:
        async with asyncio.timeout(WAIT):
            for path in (
                f"chats/{USER}?since={bot.version(USER)}&timeout={timeout}",
                f"updates/{update_id}/reply?timeout={timeout}",
            ):
                async with http.get(f"{base_url}/control/bots/default/{path}") as r:
                    assert r.status == 400, path
                    assert "finite" in (await r.json())["error"]


# ------------------------------------------------------------ browsers: Host and same-origin


async def test_a_rebound_host_name_is_refused_and_local_names_served(served) -> None:
    emulator, base_url = served
    emulator.add_bot(TOKEN)
    port = base_url.rsplit(":", 1)[1]
    async with aiohttp.ClientSession() as http:
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example"):
            async with http.get(f"{base_url}/bot{TOKEN}/getMe", headers={"Host": host}) as r:
                assert r.status == 421, host
                body = await r.json()
                assert body["ok"] is False and "not served here" in body["description"]
            async with http.get(f"{base_url}/control/bots", headers={"Host": host}) as r:
                assert r.status == 421, host
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
            async with http.get(f"{base_url}/bot{TOKEN}/getMe", headers={"Host": host}) as r:
                assert r.status == 200, host


async def test_browsers_cannot_post_as_the_bot_from_another_site(served) -> None:
    """Any page in the same browser can reach loopback; the Bot API path must refuse what
    the browser marks as cross-site, on POST and on GET (the Bot API acts on GET too)."""
    emulator, base_url = served
    bot = emulator.add_bot(TOKEN)
    bot.send_text(USER, "/start")
    send = f"{base_url}/bot{TOKEN}/sendMessage"
    forged = [
        ("POST", {"Origin": "http://evil.example"}),
        ("POST", {"Origin": "null"}),
        ("POST", {"Sec-Fetch-Site": "cross-site"}),
        ("POST", {"Sec-Fetch-Site": "same-site", "Origin": "http://sub.localhost"}),
        ("GET", {"Sec-Fetch-Site": "cross-site"}),  # <img src=".../sendMessage?…">
    ]
    async with aiohttp.ClientSession() as http:
        for method, headers in forged:
            async with http.request(
                method, send, params={"chat_id": USER, "text": "pwned"}, headers=headers
            ) as r:
                assert r.status == 403, (method, headers)
                assert (await r.json())["description"] == "Forbidden: cross-origin request refused"
        for path in (f"users/{USER}/messages", f"chats/{USER}/press"):
            async with http.post(
                f"{base_url}/control/bots/default/{path}",
                json={"text": "x"},
                headers={"Origin": "http://evil.example"},
            ) as r:
                assert r.status == 403, path
        assert all(m.text != "pwned" for m in bot.chat(USER).messages)

        # No Origin, no Sec-Fetch-Site: a bot library (aiogram) or curl, not a browser.
        async with http.post(send, data={"chat_id": USER, "text": "from aiogram"}) as r:
            assert r.status == 200
        # The page itself: same origin.
        origin = base_url
        async with http.post(
            f"{base_url}/control/bots/default/users/{USER}/messages",
            json={"text": "hello"},
            headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"},
        ) as r:
            assert r.status == 200


# ------------------------------------------------------------------ webhooks


@dataclass
class Receiver:
    """A webhook endpoint on loopback: records each POST, answers with the queued statuses
    (then 200); ``gate`` holds requests until set, to see how many arrive at once.
    ``reply`` makes the body of a 200 from the update (a dict is sent as JSON)."""

    url: str = ""
    seen: list[tuple[int, str | None]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    reply: Callable[[dict[str, Any]], dict[str, Any] | str] | None = None
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    inflight: int = 0
    most_inflight: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.seen.append((body["update_id"], request.headers.get("X-Telegram-Bot-Api-Secret-Token")))
        self.inflight += 1
        self.most_inflight = max(self.most_inflight, self.inflight)
        self.arrived.set()
        try:
            await self.gate.wait()
        finally:
            self.inflight -= 1
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200 and self.reply is not None:
            answer = self.reply(body)
            if isinstance(answer, dict):
                return web.json_response(answer)
            return web.Response(text=answer)
        return web.Response(status=status)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()
    state.gate.set()
    app = web.Application()
    app.router.add_post("/hook", state.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield state
    state.gate.set()
    await runner.cleanup()


async def test_a_webhook_gets_updates_with_the_secret_and_getupdates_conflicts(
    tg: EmulatedBot, bot: Bot, receiver: Receiver
) -> None:
    assert await bot.set_webhook(
        receiver.url,
        secret_token="s3cret-Token_1",
        max_connections=3,
        allowed_updates=["message", "callback_query"],
    )
    first = tg.send_text(USER, "hello")
    assert (await tg.wait_for_confirmation(first, WAIT)).deliveries == 1
    assert receiver.seen == [(first, "s3cret-Token_1")]

    with pytest.raises(TelegramConflictError) as conflict:
        await bot.get_updates(timeout=0)
    assert "can't use getUpdates method while webhook is active" in conflict.value.message
    info = await bot.get_webhook_info()
    assert (info.url, info.pending_update_count, info.max_connections) == (receiver.url, 0, 3)
    assert info.allowed_updates == ["message", "callback_query"]
    assert info.last_error_message is None


async def test_a_failed_webhook_delivery_is_retried_and_reported(
    tg: EmulatedBot, bot: Bot, receiver: Receiver
) -> None:
    tg.webhook_retry_base_s = 0.001
    receiver.statuses = [500, 401]
    await bot.set_webhook(receiver.url, secret_token="s")
    update_id = tg.send_text(USER, "hello")
    record = await tg.wait_for_confirmation(update_id, WAIT)
    assert record.deliveries == 3 and not record.dropped
    assert [u for u, _ in receiver.seen] == [update_id] * 3
    info = await bot.get_webhook_info()
    assert info.last_error_message == "Wrong response from the webhook: 401 Unauthorized"
    assert info.last_error_date is not None and info.pending_update_count == 0


async def test_a_webhook_delivery_is_given_up_after_the_last_attempt(
    tg: EmulatedBot, bot: Bot, receiver: Receiver
) -> None:
    tg.webhook_retry_base_s = 0.001
    tg.webhook_max_attempts = 3
    receiver.statuses = [503] * 10
    await bot.set_webhook(receiver.url)
    update_id = tg.send_text(USER, "hello")
    record = await tg.wait_until(
        lambda: tg.update(update_id).dropped and tg.update(update_id), WAIT, "the delivery given up"
    )
    assert record.deliveries == 3 and record.confirmed_at is None
    assert (await bot.get_webhook_info()).pending_update_count == 0


async def test_webhook_deliveries_run_in_parallel_up_to_max_connections(
    tg: EmulatedBot, bot: Bot, receiver: Receiver
) -> None:
    receiver.gate.clear()
    await bot.set_webhook(receiver.url, max_connections=2)
    ids = [tg.send_text(USER + i, f"hello {i}") for i in range(5)]
    async with asyncio.timeout(WAIT):
        while receiver.inflight < 2:
            receiver.arrived.clear()
            await receiver.arrived.wait()
    assert (await bot.get_webhook_info()).pending_update_count == 5
    receiver.gate.set()
    for update_id in ids:
        await tg.wait_for_confirmation(update_id, WAIT)
    assert receiver.most_inflight == 2
    assert sorted(u for u, _ in receiver.seen) == ids


async def test_delete_webhook_brings_getupdates_back_with_the_queue_kept(
    tg: EmulatedBot, bot: Bot, receiver: Receiver
) -> None:
    receiver.gate.clear()  # the webhook never answers: the update stays queued
    await bot.set_webhook(receiver.url)
    update_id = tg.send_text(USER, "hello")
    async with asyncio.timeout(WAIT):
        await receiver.arrived.wait()
    assert await bot.delete_webhook()
    assert (await bot.get_webhook_info()).url == ""
    updates = await bot.get_updates(timeout=0)
    assert [u.update_id for u in updates] == [update_id]


async def test_a_waiting_long_poll_ends_with_409_when_a_webhook_is_set(
    tg: EmulatedBot, bot: Bot, receiver: Receiver
) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=30))
    await tg.wait_until(lambda: tg.is_polling, WAIT, "the long poll")
    await bot.set_webhook(receiver.url)
    with pytest.raises(TelegramConflictError):
        await poll


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"url": "https://example.com/hook"}, "loopback"),
        ({"url": "ftp://127.0.0.1/hook"}, "loopback"),
        ({"url": "http://127.0.0.1:9/hook", "secret_token": "no spaces"}, "secret token"),
        ({"url": "http://127.0.0.1:9/hook", "max_connections": 101}, "max_connections"),
    ],
)
async def test_set_webhook_refuses_what_telegram_refuses(
    tg: EmulatedBot, bot: Bot, kwargs: dict[str, object], error: str
) -> None:
    with pytest.raises(TelegramBadRequest) as refused:
        await bot.set_webhook(**kwargs)  # type: ignore[arg-type]
    assert error in refused.value.message
    assert (await bot.get_webhook_info()).url == ""


async def test_a_method_in_a_webhook_reply_is_run_and_logged_like_a_call(
    tg: EmulatedBot, bot: Bot, receiver: Receiver
) -> None:
    await bot.set_webhook(receiver.url)
    tg.add_user(USER)
    await bot.send_message(USER, "pick", reply_markup=keyboard(("Go", "go")))
    receiver.reply = lambda update: {
        "method": "answerCallbackQuery",
        "callback_query_id": update["callback_query"]["id"],
        "text": "went",
        "show_alert": True,
    }
    calls_before = len(tg.calls)
    press = tg.press_button(USER, text="Go")
    answer = await tg.wait_for_callback_answer(press.query_id, WAIT)
    record = await tg.wait_for_confirmation(press.update_id, WAIT)

    assert (answer.text, answer.show_alert) == ("went", True)
    (call,) = tg.calls[calls_before:]  # the receiver made no request: this is the reply's
    assert (call.method, call.ok, call.chat_id) == ("answerCallbackQuery", True, USER)
    assert record.delivered_at is not None and record.confirmed_at is not None
    assert record.delivered_at <= call.started <= record.confirmed_at
    assert record.deliveries == 1


async def test_a_refused_method_in_a_webhook_reply_is_logged_and_the_update_confirmed(
    tg: EmulatedBot, bot: Bot, receiver: Receiver
) -> None:
    await bot.set_webhook(receiver.url)
    replies: list[dict[str, Any]] = [
        {"method": "answerCallbackQuery", "callback_query_id": "no-such-query"},
        {"method": "noSuchMethod", "chat_id": USER},
        {"method": "sendMessage", "chat_id": USER},  # no text
        {"method": "sendMessage", "chat_id": USER, "text": "hi"},  # meets an armed fault
    ]
    receiver.reply = lambda update: replies.pop(0)
    calls_before = len(tg.calls)
    for i in range(4):
        if i == 3:
            tg.fail_next("sendMessage", chat_id=USER, error_code=429, retry_after=3)
        update_id = tg.send_text(USER, f"hello {i}")
        record = await tg.wait_for_confirmation(update_id, WAIT)
        assert record.deliveries == 1 and not record.dropped

    got = [(c.method, c.ok, c.error_code) for c in tg.calls[calls_before:]]
    assert got == [
        ("answerCallbackQuery", False, 400),
        ("noSuchMethod", False, 404),
        ("sendMessage", False, 400),
        ("sendMessage", False, 429),
    ]
    assert tg.chat(USER).bot_messages() == []
    info = await bot.get_webhook_info()
    assert info.last_error_message is None and info.pending_update_count == 0


@pytest.mark.parametrize(
    "reply",
    [
        "ok",
        '{"method": "sendMessage", "chat_id": 1001, "text": "not JSON by its type"}',
        {},
        {"ok": True},
        {"method": "getMe"},
        {"method": "deleteWebhook"},
    ],
    ids=["text", "json-as-text", "empty-object", "no-method", "getter", "delete-webhook"],
)
async def test_a_webhook_reply_without_a_method_to_run_changes_nothing(
    tg: EmulatedBot, bot: Bot, receiver: Receiver, reply: dict[str, Any] | str
) -> None:
    await bot.set_webhook(receiver.url)
    receiver.reply = lambda update: reply
    calls_before = len(tg.calls)
    update_id = tg.send_text(USER, "hello")
    record = await tg.wait_for_confirmation(update_id, WAIT)
    assert record.deliveries == 1
    assert tg.calls[calls_before:] == []
    assert tg.chat(USER).bot_messages() == []
    assert (await bot.get_webhook_info()).url == receiver.url
