"""``bot.session.JsonSession``: JSON bodies over real HTTP, the same results and errors as
aiogram's multipart session, and multipart still used when a call carries a file."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramRetryAfter
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LabeledPrice,
    Message,
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
        bot = Bot(TOKEN, session=JsonSession(api=TelegramAPIServer.from_base(base_url)),
                  default=DefaultBotProperties(parse_mode=ParseMode.HTML))
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
    view = tg.chat(USER).message(sent.message_id)
    assert view.text == "Price: 12.50"  # the default parse mode reached the server: HTML parsed
    assert [(b.text, b.callback_data) for b in view.buttons] == [("Buy", "b:1")]

    edited = await bot.edit_message_text("Done", chat_id=USER, message_id=sent.message_id,
                                         reply_markup=_keyboard("Again", "a"))
    assert isinstance(edited, Message) and edited.text == "Done"
    view = tg.chat(USER).message(sent.message_id)
    assert (view.text, view.button_texts, view.edited) == ("Done", ["Again"], True)

    invoice = await bot.send_invoice(USER, title="Stars", description="250 stars", payload="p1",
                                     currency="XTR", prices=[LabeledPrice(label="250", amount=250)])
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


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[list[str], str]]:
    """A stand-in Bot API server that records each request's content type."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.content_type)
        await request.read()
        result = {"message_id": 1, "date": 0, "chat": {"id": USER, "type": "private"}}
        return web.json_response({"ok": True, "result": result})

    app = web.Application()
    app.router.add_post("/bot{token}/{method}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield seen, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_json_without_files_multipart_with_a_file(recorder: tuple[list[str], str]) -> None:
    seen, base_url = recorder
    bot = Bot(TOKEN, session=JsonSession(api=TelegramAPIServer.from_base(base_url)))
    try:
        await bot.send_message(USER, "hi")
        await bot.send_document(USER, BufferedInputFile(b"report", filename="r.txt"))
    finally:
        await bot.session.close()
    assert seen == ["application/json", "multipart/form-data"]
