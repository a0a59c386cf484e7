"""Bot API methods: request parameters in, ``EmulatedBot.api_*`` calls, results out.

Parameters arrive as JSON (typed) or as form fields (every value a string, objects
JSON-encoded — how aiogram sends them), so each is read through ``Params`` with the type the
method expects. Unknown parameters are ignored, as Telegram ignores them.
"""

from __future__ import annotations

import builtins
import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from numbershop.emulator.errors import BotApiError, bad_request
from numbershop.emulator.numeric import finite_float
from numbershop.emulator.state import CallContext, EmulatedBot


class Params:
    # The reader methods are named for the type they return, so they shadow the builtins in
    # this class body; signatures below spell those types as ``builtins.*``.

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw

    def str(self, name: str) -> str | None:
        value = self.raw.get(name)
        if value is None:
            return None
        return (
            value
            if isinstance(value, str)
            else json.dumps(value)
            if isinstance(value, (dict, list))
            else str(value)
        )

    def int(self, name: builtins.str) -> builtins.int | None:
        value = self.raw.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            raise bad_request(f"invalid {name} specified")
        if isinstance(value, int):
            return value
        try:
            return int(str(value).strip())
        except ValueError:
            raise bad_request(f"invalid {name} specified") from None

    def chat_id(self, name: builtins.str = "chat_id") -> builtins.int | None:
        """Numeric chat ids only; "@username" names no chat the emulator has."""
        value = self.raw.get(name)
        if value is None or value == "":
            return None
        try:
            return self.int(name)
        except BotApiError:
            raise BotApiError(400, "Bad Request: chat not found") from None

    def float(self, name: builtins.str, default: builtins.float) -> builtins.float:
        value = self.raw.get(name)
        if value is None or value == "":
            return default
        try:
            return finite_float(value)
        except ValueError:
            raise bad_request(f"invalid {name} specified") from None

    def bool(self, name: builtins.str, default: builtins.bool = False) -> builtins.bool:
        value = self.raw.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in ("true", "1")

    def obj(self, name: builtins.str) -> Any:
        value = self.raw.get(name)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                if name == "reply_markup":
                    raise bad_request("can't parse reply keyboard markup JSON object") from None
                raise bad_request(f"can't parse {name} JSON object") from None
        return value


Handler = Callable[[EmulatedBot, Params, CallContext], Any | Awaitable[Any]]


@dataclass(frozen=True)
class Method:
    name: str
    handler: Handler


METHODS: dict[str, Method] = {}


def method(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        METHODS[name.lower()] = Method(name, fn)  # Telegram's method names are case-insensitive
        return fn

    return register


def chat_hint(params: Params) -> int | None:
    """The chat a call targets, for matching faults before the method runs."""
    try:
        return params.chat_id()
    except BotApiError:
        return None


async def run_method(
    bot: EmulatedBot, name: str, read_params: Callable[[], Awaitable[Params]], started: float
) -> tuple[Any, BotApiError | None]:
    """One Bot API call, however it reached the emulator (an HTTP request, or the method in a
    webhook's reply): the method looked up by name, its parameters read, an armed fault
    taken, the method run — and the call recorded in the call log, refused or not.

    ``read_params`` runs only once the method is known, so an unknown method is a 404
    whatever its body holds. Returns the result, or the error the call was refused with.
    """
    spec = METHODS.get(name.lower())
    ctx = CallContext(spec.name if spec else name, started)
    error: BotApiError | None = None
    result: Any = None
    try:
        if spec is None:
            raise BotApiError(404, "Not Found")
        params = await read_params()
        ctx.chat_id = chat_hint(params)
        fault = bot.take_fault(spec.name, ctx.chat_id)
        if fault is not None:
            raise fault
        result = spec.handler(bot, params, ctx)
        if inspect.isawaitable(result):
            result = await result
    except BotApiError as exc:
        error = exc
    bot.record_call(ctx, error)
    return result, error


@method("getMe")
def get_me(bot: EmulatedBot, p: Params, ctx: CallContext) -> Any:
    return bot.api_get_me()


@method("getUpdates")
async def get_updates(bot: EmulatedBot, p: Params, ctx: CallContext) -> Any:
    allowed = p.obj("allowed_updates")
    if allowed is not None and not isinstance(allowed, list):
        raise bad_request("allowed_updates must be an array of strings")
    return await bot.api_get_updates(p.int("offset"), p.int("limit") or 100, p.float("timeout", 0.0), allowed)


@method("deleteWebhook")
async def delete_webhook(bot: EmulatedBot, p: Params, ctx: CallContext) -> Any:
    return await bot.api_delete_webhook(p.bool("drop_pending_updates"))


@method("getWebhookInfo")
def get_webhook_info(bot: EmulatedBot, p: Params, ctx: CallContext) -> Any:
    return bot.api_webhook_info()


@method("setWebhook")
async def set_webhook(bot: EmulatedBot, p: Params, ctx: CallContext) -> Any:
    allowed = p.obj("allowed_updates")
    if allowed is not None and not (isinstance(allowed, list) and all(isinstance(a, str) for a in allowed)):
        raise bad_request("allowed_updates must be an array of strings")
    return await bot.api_set_webhook(
        p.str("url"), p.str("secret_token"), p.int("max_connections"), allowed, p.bool("drop_pending_updates")
    )


@method("sendMessage")
def send_message(bot: EmulatedBot, p: Params, ctx: CallContext) -> Any:
    ctx.chat_id = p.chat_id()
    return bot.api_send_message(
        ctx.chat_id,
        p.str("text"),
        parse_mode=p.str("parse_mode"),
        entities=p.obj("entities"),
        reply_markup=p.obj("reply_markup"),
    )


@method("editMessageText")
def edit_message_text(bot: EmulatedBot, p: Params, ctx: CallContext) -> Any:
    _no_inline(p)
    ctx.chat_id = p.chat_id()
    return bot.api_edit_text(
        ctx.chat_id,
        p.int("message_id"),
        p.str("text"),
        parse_mode=p.str("parse_mode"),
        entities=p.obj("entities"),
        reply_markup=p.obj("reply_markup"),
    )


@method("editMessageReplyMarkup")
def edit_message_reply_markup(bot: EmulatedBot, p: Params, ctx: CallContext) -> Any:
    _no_inline(p)
    ctx.chat_id = p.chat_id()
    return bot.api_edit_markup(ctx.chat_id, p.int("message_id"), p.obj("reply_markup"))


def _no_inline(p: Params) -> None:
    if p.raw.get("inline_message_id"):
        raise bad_request("MESSAGE_ID_INVALID")  # the emulator has no inline messages


@method("deleteMessage")
def delete_message(bot: EmulatedBot, p: Params, ctx: CallContext) -> Any:
    ctx.chat_id = p.chat_id()
    return bot.api_delete_message(ctx.chat_id, p.int("message_id"))


@method("answerCallbackQuery")
def answer_callback_query(bot: EmulatedBot, p: Params, ctx: CallContext) -> Any:
    ctx.chat_id = bot.api_answer_callback(
        p.str("callback_query_id"), text=p.str("text"), show_alert=p.bool("show_alert"), url=p.str("url")
    )
    return True


@method("sendInvoice")
def send_invoice(bot: EmulatedBot, p: Params, ctx: CallContext) -> Any:
    ctx.chat_id = p.chat_id()
    return bot.api_send_invoice(
        ctx.chat_id,
        title=p.str("title"),
        description=p.str("description"),
        payload=p.str("payload"),
        currency=p.str("currency"),
        prices=p.obj("prices"),
        provider_token=p.str("provider_token"),
        start_parameter=p.str("start_parameter"),
        reply_markup=p.obj("reply_markup"),
    )


@method("answerPreCheckoutQuery")
def answer_pre_checkout_query(bot: EmulatedBot, p: Params, ctx: CallContext) -> Any:
    if p.raw.get("ok") is None:
        raise bad_request("ok is required")
    ctx.chat_id = bot.api_answer_pre_checkout(
        p.str("pre_checkout_query_id"), p.bool("ok"), p.str("error_message")
    )
    return True


@method("refundStarPayment")
def refund_star_payment(bot: EmulatedBot, p: Params, ctx: CallContext) -> Any:
    ctx.chat_id = p.int("user_id")
    return bot.api_refund_star_payment(ctx.chat_id, p.str("telegram_payment_charge_id"))


@method("getChat")
def get_chat(bot: EmulatedBot, p: Params, ctx: CallContext) -> Any:
    return bot.api_get_chat(p.chat_id())


@method("sendChatAction")
def send_chat_action(bot: EmulatedBot, p: Params, ctx: CallContext) -> Any:
    ctx.chat_id = p.chat_id()
    return bot.api_chat_action(ctx.chat_id)


@method("setMyCommands")
def set_my_commands(bot: EmulatedBot, p: Params, ctx: CallContext) -> Any:
    return bot.api_set_commands(p.obj("commands"), p.obj("scope"), p.str("language_code"))


@method("getMyCommands")
def get_my_commands(bot: EmulatedBot, p: Params, ctx: CallContext) -> Any:
    return bot.api_get_commands(p.obj("scope"), p.str("language_code"))


@method("deleteMyCommands")
def delete_my_commands(bot: EmulatedBot, p: Params, ctx: CallContext) -> Any:
    return bot.api_delete_commands(p.obj("scope"), p.str("language_code"))


@method("logOut")
def log_out(bot: EmulatedBot, p: Params, ctx: CallContext) -> Any:
    return True


@method("close")
def close(bot: EmulatedBot, p: Params, ctx: CallContext) -> Any:
    return True
