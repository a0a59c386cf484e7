"""The control API over HTTP: the user side of ``EmulatedBot`` for other processes and the
browser sandbox. Every route mirrors a Python method; bodies and answers are JSON,
``{"ok": true, "result": …}`` or ``{"ok": false, "error": "…"}`` (404 unknown object,
400 impossible request, 504 a wait that timed out).

``{bot}`` is a bot id or ``default`` (the first bot registered).

    GET    /control/health
    GET    /control/bots                                   POST /control/bots {token, username?, first_name?}
    GET    /control/bots/{bot}/chats
    GET    /control/bots/{bot}/chats/{chat_id}[?since=V&timeout=S]   long-polls while version <= V
    POST   /control/bots/{bot}/users/{user_id}                {first_name?, username?, language_code?}
    POST   /control/bots/{bot}/users/{user_id}/messages       {text, first_name?, username?}
    POST   /control/bots/{bot}/users/{user_id}/block | /unblock
    POST   /control/bots/{bot}/chats/{chat_id}/press          {message_id?, data?, text?, forge?}
    POST   /control/bots/{bot}/chats/{chat_id}/pay            {message_id?, timeout?}
    GET    /control/bots/{bot}/callbacks/{query_id}[?timeout=S]
    POST   /control/bots/{bot}/payments/{charge_id}/resend
    GET    /control/bots/{bot}/updates/{update_id}
    GET    /control/bots/{bot}/updates/{update_id}/reply[?timeout=S]
    POST   /control/bots/{bot}/updates/{update_id}/redeliver
    POST   /control/bots/{bot}/faults                         {method?, chat_id?, count?, error_code?,
                                                               retry_after?, description?}
    DELETE /control/bots/{bot}/faults
    GET    /control/bots/{bot}/calls[?since=SEQ]
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from numbershop.emulator.errors import EmulatorError, UnknownObject
from numbershop.emulator.numeric import finite_float, strict_json
from numbershop.emulator.server import EMULATOR_KEY
from numbershop.emulator.state import EmulatedBot
from numbershop.emulator.views import to_json

MAX_WAIT = 60.0

Route = Callable[[web.Request], Awaitable[Any]]


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(body, ensure_ascii=False), status=status, content_type="application/json"
    )


def _wrap(route: Route) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        try:
            return _json({"ok": True, "result": to_json(await route(request))})
        except UnknownObject as exc:
            return _json({"ok": False, "error": str(exc)}, 404)
        except (EmulatorError, ValueError, TypeError) as exc:
            return _json({"ok": False, "error": str(exc)}, 400)
        except TimeoutError as exc:
            return _json({"ok": False, "error": str(exc)}, 504)

    return handler


def _bot(request: web.Request) -> EmulatedBot:
    return request.app[EMULATOR_KEY].bot(request.match_info["bot"])


def _int(request: web.Request, name: str) -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise EmulatorError(f"{name} must be an integer") from None


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = strict_json(await request.text() or "{}")
    except ValueError:
        raise EmulatorError("the body must be JSON") from None
    if not isinstance(body, dict):
        raise EmulatorError("the body must be a JSON object")
    return body


def _timeout(
    request: web.Request, body: dict[str, Any] | None = None, default: float | None = None
) -> float | None:
    raw = (body or {}).get("timeout", request.query.get("timeout"))
    if raw is None:
        return default
    try:
        seconds = finite_float(raw)
    except ValueError:
        raise EmulatorError("timeout must be a finite number of seconds") from None
    return min(max(seconds, 0.0), MAX_WAIT)


async def health(request: web.Request) -> Any:
    return {"bots": len(request.app[EMULATOR_KEY].bots)}


async def list_bots(request: web.Request) -> Any:
    return [
        {"id": b.id, "username": b.username, "first_name": b.first_name}
        for b in request.app[EMULATOR_KEY].bots
    ]


async def add_bot(request: web.Request) -> Any:
    body = await _body(request)
    bot = request.app[EMULATOR_KEY].add_bot(
        str(body.get("token", "")), username=body.get("username"), first_name=body.get("first_name")
    )
    return {"id": bot.id, "username": bot.username, "first_name": bot.first_name}


async def list_chats(request: web.Request) -> Any:
    return _bot(request).chats()


async def get_chat(request: web.Request) -> Any:
    bot, chat_id = _bot(request), _int(request, "chat_id")
    since = request.query.get("since")
    if since is None:
        return bot.chat(chat_id)
    try:
        return await bot.wait_for_change(chat_id, int(since), _timeout(request, default=25.0) or 0.0)
    except TimeoutError:
        return bot.chat(chat_id)  # a long poll that saw no change: the chat as it is


async def add_user(request: web.Request) -> Any:
    body = await _body(request)
    return _bot(request).add_user(
        _int(request, "user_id"),
        first_name=body.get("first_name"),
        username=body.get("username"),
        language_code=body.get("language_code"),
    )


async def send_message(request: web.Request) -> Any:
    bot, user_id, body = _bot(request), _int(request, "user_id"), await _body(request)
    update_id = bot.send_text(
        user_id,
        str(body.get("text", "")),
        first_name=body.get("first_name"),
        username=body.get("username"),
        language_code=body.get("language_code"),
    )
    return {"update_id": update_id, "chat_id": user_id, "version": bot.version(user_id)}


async def block(request: web.Request) -> Any:
    _bot(request).block(_int(request, "user_id"))
    return True


async def unblock(request: web.Request) -> Any:
    _bot(request).unblock(_int(request, "user_id"))
    return True


async def press(request: web.Request) -> Any:
    body = await _body(request)
    message_id = body.get("message_id")
    return _bot(request).press_button(
        _int(request, "chat_id"),
        int(message_id) if message_id is not None else None,
        data=body.get("data"),
        text=body.get("text"),
        forge=bool(body.get("forge", False)),
    )


async def pay(request: web.Request) -> Any:
    body = await _body(request)
    message_id = body.get("message_id")
    return await _bot(request).pay_invoice(
        _int(request, "chat_id"),
        int(message_id) if message_id is not None else None,
        timeout=_timeout(request, body, default=10.0) or 0.0,
    )


async def callback_answer(request: web.Request) -> Any:
    bot, query_id = _bot(request), request.match_info["query_id"]
    timeout = _timeout(request)
    if timeout is None:
        return bot.callback_answer(query_id)
    return await bot.wait_for_callback_answer(query_id, timeout)


async def resend_payment(request: web.Request) -> Any:
    return {"update_id": _bot(request).resend_payment(request.match_info["charge_id"])}


async def get_update(request: web.Request) -> Any:
    return _bot(request).update(_int(request, "update_id"))


async def wait_reply(request: web.Request) -> Any:
    return await _bot(request).wait_for_reply(
        _int(request, "update_id"), _timeout(request, default=5.0) or 0.0
    )


async def redeliver(request: web.Request) -> Any:
    return {"update_id": _bot(request).redeliver(_int(request, "update_id"))}


async def add_fault(request: web.Request) -> Any:
    body = await _body(request)
    chat_id = body.get("chat_id")
    retry_after = body.get("retry_after")
    _bot(request).fail_next(
        body.get("method"),
        chat_id=int(chat_id) if chat_id is not None else None,
        count=int(body.get("count", 1)),
        error_code=int(body.get("error_code", 429)),
        retry_after=int(retry_after) if retry_after is not None else None,
        description=body.get("description"),
    )
    return True


async def clear_faults(request: web.Request) -> Any:
    _bot(request).clear_faults()
    return True


async def calls(request: web.Request) -> Any:
    since = int(request.query.get("since", 0))
    return _bot(request).calls[since:]  # seq n sits at index n - 1


def add_control_routes(app: web.Application) -> None:
    bot = "/control/bots/{bot}"
    routes = [
        ("GET", "/control/health", health),
        ("GET", "/control/bots", list_bots),
        ("POST", "/control/bots", add_bot),
        ("GET", f"{bot}/chats", list_chats),
        ("GET", f"{bot}/chats/{{chat_id}}", get_chat),
        ("POST", f"{bot}/users/{{user_id}}", add_user),
        ("POST", f"{bot}/users/{{user_id}}/messages", send_message),
        ("POST", f"{bot}/users/{{user_id}}/block", block),
        ("POST", f"{bot}/users/{{user_id}}/unblock", unblock),
        ("POST", f"{bot}/chats/{{chat_id}}/press", press),
        ("POST", f"{bot}/chats/{{chat_id}}/pay", pay),
        ("GET", f"{bot}/callbacks/{{query_id}}", callback_answer),
        ("POST", f"{bot}/payments/{{charge_id}}/resend", resend_payment),
        ("GET", f"{bot}/updates/{{update_id}}", get_update),
        ("GET", f"{bot}/updates/{{update_id}}/reply", wait_reply),
        ("POST", f"{bot}/updates/{{update_id}}/redeliver", redeliver),
        ("POST", f"{bot}/faults", add_fault),
        ("DELETE", f"{bot}/faults", clear_faults),
        ("GET", f"{bot}/calls", calls),
    ]
    for method, path, route in routes:
        app.router.add_route(method, path, _wrap(route))
