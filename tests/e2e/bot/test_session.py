"""``bot.session.JsonSession``: JSON bodies over real HTTP, the same results and errors as
aiogram's multipart session, multipart still used when a call carries a file, and the two
things it leaves unparsed (an edit's echo, the keyboard under a pressed button)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramRetryAfter,
)
from aiogram.methods import (
    AnswerCallbackQuery,
    AnswerPreCheckoutQuery,
    BanChatMember,
    EditMessageText,
    SendInvoice,
    SendMessage,
    TelegramMethod,
)
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LabeledPrice,
    Message,
    MessageEntity,
)
from aiohttp import web

from bot.session import JsonSession
from numbershop.emulator import EmulatedBot, running_emulator

TOKEN = "777002:json-session-test"
USER = 4242


@pytest.fixture
async def served() -> AsyncIterator[tuple[EmulatedBot, Bot]]:
    async with running_emulator() as (emulator, base_url):
        tg = emulator.add_bot(TOKEN)
        tg.add_user(USER, first_name="Ann")
        bot = Bot(
            TOKEN,
            session=JsonSession(api=TelegramAPIServer.from_base(base_url)),
            default=DefaultBotProperties(parse_mode=ParseMode.HTML),
        )
        yield tg, bot
        await bot.session.close()


def _keyboard(text: str, data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text=text, callback_data=data)]])


async def test_send_and_edit_arrive_as_sent_and_return_typed_results(
    served: tuple[EmulatedBot, Bot],
) -> None:
    tg, bot = served
    sent = await bot.send_message(USER, "Price: <b>12.50</b>", reply_markup=_keyboard("Buy", "b:1"))
    assert isinstance(sent, Message)
    assert (sent.chat.id, sent.text) == (USER, "Price: 12.50")
    assert sent.reply_markup is None  # the echoed keyboard is not parsed: nobody reads it
    view = tg.chat(USER).message(sent.message_id)
    assert view.text == "Price: 12.50"  # the default parse mode reached the server: HTML parsed
    assert [(b.text, b.callback_data) for b in view.buttons] == [("Buy", "b:1")]

    edited = await bot.edit_message_text(
        "Done", chat_id=USER, message_id=sent.message_id, reply_markup=_keyboard("Again", "a")
    )
    assert edited is True  # the echoed message is not parsed: nobody reads it
    view = tg.chat(USER).message(sent.message_id)
    assert (view.text, view.button_texts, view.edited) == ("Done", ["Again"], True)

    invoice = await bot.send_invoice(
        USER,
        title="Stars",
        description="250 stars",
        payload="p1",
        currency="XTR",
        prices=[LabeledPrice(label="250", amount=250)],
    )
    assert tg.chat(USER).message(invoice.message_id).invoice is not None


async def test_errors_are_aiograms_typed_errors(served: tuple[EmulatedBot, Bot]) -> None:
    tg, bot = served
    sent = await bot.send_message(USER, "same")
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text("same", chat_id=USER, message_id=sent.message_id)

    tg.fail_next("sendMessage", error_code=429, retry_after=7)
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(USER, "hello")
    assert caught.value.retry_after == 7

    tg.block(USER)
    with pytest.raises(TelegramForbiddenError):
        await bot.send_message(USER, "hello")
    assert tg.chat(USER).texts() == ["same"]  # nothing failed half-way into the chat


@contextlib.asynccontextmanager
async def _stand_in(handle: Callable[[web.Request], Awaitable[web.Response]]) -> AsyncIterator[str]:
    """A stand-in Bot API server on loopback; yields its base URL."""
    app = web.Application()
    app.router.add_post("/bot{token}/{method}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[list[str], str]]:
    """A stand-in server that records each request's content type."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.content_type)
        await request.read()
        result = {"message_id": 1, "date": 0, "chat": {"id": USER, "type": "private"}}
        return web.json_response({"ok": True, "result": result})

    async with _stand_in(handle) as base_url:
        yield seen, base_url


async def test_json_without_files_multipart_with_a_file(recorder: tuple[list[str], str]) -> None:
    seen, base_url = recorder
    bot = Bot(TOKEN, session=JsonSession(api=TelegramAPIServer.from_base(base_url)))
    try:
        await bot.send_message(USER, "hi")
        await bot.send_document(USER, BufferedInputFile(b"report", filename="r.txt"))
    finally:
        await bot.session.close()
    assert seen == ["application/json", "multipart/form-data"]


async def test_updates_arrive_without_the_pressed_messages_keyboard(
    served: tuple[EmulatedBot, Bot],
) -> None:
    tg, bot = served
    sent = await bot.send_message(USER, "Pick <b>one</b>", reply_markup=_keyboard("One", "pick:1"))
    text_update = tg.send_text(USER, "hello")
    pressed = tg.press_button(USER, sent.message_id, data="pick:1")
    updates = await bot.get_updates(timeout=0)
    assert [u.update_id for u in updates] == [text_update, pressed.update_id]
    assert updates[0].message is not None and updates[0].message.text == "hello"
    query = updates[1].callback_query
    assert query is not None and query.data == "pick:1" and query.from_user.id == USER
    message = query.message
    assert isinstance(message, Message)
    assert (message.message_id, message.chat.id, message.text) == (sent.message_id, USER, "Pick one")
    assert message.reply_markup is None  # left out: the handlers render the next screen
    assert query.bot is bot  # still bound, so shortcuts such as query.answer() work
    assert tg.chat(USER).message(sent.message_id).button_texts == ["One"]  # the chat itself is unchanged


async def test_a_failed_edit_and_a_garbled_answer_are_still_errors(
    recorder_body: tuple[list[bytes], str],
) -> None:
    bodies, base_url = recorder_body
    bot = Bot(TOKEN, session=JsonSession(api=TelegramAPIServer.from_base(base_url)))
    try:
        bodies.append(
            b'{"ok": false, "error_code": 400, "description": "Bad Request: message to edit not found"}'
        )
        with pytest.raises(TelegramBadRequest, match="not found"):
            await bot.edit_message_text("x", chat_id=USER, message_id=99)
        bodies.append(b"<html>bad gateway</html>")
        with pytest.raises(ClientDecodeError):
            await bot.edit_message_text("x", chat_id=USER, message_id=99)
        bodies.append(b'{"ok": true, "result": [{"update_id": "not a number"}]}')
        with pytest.raises(ClientDecodeError):
            await bot.get_updates(timeout=0)
        bodies.append(b'{"ok": true, "result": {"message_id": "not a number"}}')
        with pytest.raises(ClientDecodeError):
            await bot.send_message(USER, "x")
    finally:
        await bot.session.close()


@pytest.fixture
async def recorder_body() -> AsyncIterator[tuple[list[bytes], str]]:
    """A stand-in server answering each request with the next queued body (status 400 for
    an ``ok: false`` body, as Telegram does)."""
    bodies: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        body = bodies.pop(0)
        status = 400 if b'"ok": false' in body else 200
        return web.Response(body=body, status=status, content_type="application/json")

    async with _stand_in(handle) as base_url:
        yield bodies, base_url


def _aiogram_body(session: JsonSession, bot: Bot, method: TelegramMethod[Any]) -> dict[str, Any]:
    """The body as aiogram's own ``prepare_value`` builds it, field by field."""
    files: dict[str, Any] = {}
    body = {}
    for key, value in method.model_dump(warnings=False).items():
        prepared = session.prepare_value(value, bot=bot, files=files, _dumps_json=False)
        if prepared is not None and prepared != "":
            body[key] = prepared
    return body


def test_json_bodies_are_what_aiogram_would_send() -> None:
    session = JsonSession()
    bot = Bot(
        TOKEN,
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True),
    )
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=f"Country {i}", callback_data=f"c:wa:{i}")] for i in range(5)
        ]
        + [[InlineKeyboardButton(text="Site", url="https://example.org")]]
    )
    methods: list[TelegramMethod[Any]] = [
        SendMessage(chat_id=USER, text="Price: <b>1</b>", reply_markup=keyboard),
        SendMessage(
            chat_id=USER,
            text="*x*",
            parse_mode=ParseMode.MARKDOWN_V2,
            entities=[MessageEntity(type="bold", offset=0, length=1)],
        ),
        EditMessageText(chat_id=USER, message_id=3, text="", reply_markup=keyboard),
        AnswerCallbackQuery(callback_query_id="q1", text="Refunded", show_alert=False),
        SendInvoice(
            chat_id=USER,
            title="Stars",
            description="250",
            payload="p",
            currency="XTR",
            prices=[LabeledPrice(label="250", amount=250)],
        ),
        BanChatMember(chat_id=-100, user_id=USER, until_date=datetime(2030, 1, 2, tzinfo=UTC)),
        AnswerPreCheckoutQuery(pre_checkout_query_id="pc", ok=False, error_message="No"),
    ]
    for method in methods:
        body = session.json_body(bot, method)
        assert body is not None
        assert json.loads(body) == _aiogram_body(session, bot, method), type(method).__name__
