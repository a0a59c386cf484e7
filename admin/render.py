"""Rendering pages: the common context every template gets, flash messages, redirects."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast
from urllib.parse import urlencode

from litestar import Request
from litestar.response import Redirect, Template

from admin import words
from admin.context import AdminContext
from admin.forms import new_nonce
from core.staff import StaffMember

NAV = [
    ("/", "Overview", "viewer"),
    ("/users", "Users", "viewer"),
    ("/orders", "Orders", "viewer"),
    ("/tickets", "Tickets", "viewer"),
    ("/ledger", "Ledger", "viewer"),
    ("/providers", "Providers", "viewer"),
    ("/reconciliation", "Reconciliation", "viewer"),
    ("/audit", "Audit", "viewer"),
    ("/crypto", "Crypto", "admin"),
    ("/staff", "Staff", "admin"),
    ("/promo", "Promo & referrals", "viewer"),
    ("/stars-refunds", "Stars refunds", "viewer"),
    ("/broadcasts", "Broadcasts", "admin"),
    ("/prices", "Prices", "viewer"),
]


def ctx_of(request: Request[Any, Any, Any]) -> AdminContext:
    return cast(AdminContext, request.app.state.admin)  # set once by admin.app.create_app


def flash(request: Request[Any, Any, Any], message: str, kind: str = "ok") -> None:
    if not isinstance(request.scope.get("session"), dict):
        return
    messages = list(request.session.get("flash", []))
    messages.append([kind, message])
    request.set_session({**request.session, "flash": messages[-5:]})


def _pop_flash(request: Request[Any, Any, Any]) -> list[list[str]]:
    session = request.scope.get("session")
    if not isinstance(session, dict) or not session.get("flash"):
        return []
    messages: list[list[str]] = session["flash"]  # [kind, text] pairs, written by flash()
    request.set_session({k: v for k, v in session.items() if k != "flash"})
    return messages


def page(
    request: Request[Any, Any, Any],
    template: str,
    *,
    status: int = 200,
    error: str | None = None,
    **context: Any,
) -> Template:
    ctx = ctx_of(request)
    me = request.scope.get("user")
    me = me if isinstance(me, StaffMember) else None
    currency = ctx.currency
    base = {
        "me": me,
        "nav": [(href, label) for href, label, role in NAV if me and me.allows(role)],
        "path": request.url.path,
        "flashes": _pop_flash(request),
        "error": error,
        "currency": currency,
        "now": ctx.clock.now(),
        "nonce": new_nonce,
        "money": lambda minor: words.money(minor, currency),
        "can": (lambda role: bool(me and me.allows(role))),
        "qs": _qs,
    }
    base.update(context)
    return Template(template_name=template, context=base, status_code=status)


def _qs(params: dict[str, Any], **changes: Any) -> str:
    merged = {k: v for k, v in {**params, **changes}.items() if v not in (None, "")}
    return ("?" + urlencode(merged)) if merged else ""


def see_other(path: str) -> Redirect:
    return Redirect(path=path, status_code=303)


def fmt_dt(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.strftime("%Y-%m-%d %H:%M:%S")


def fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def install_filters(env: Any, currency: str) -> None:
    """The template filters: dates, ages, and the plain words of ``admin.words``."""
    env.filters["dt"] = fmt_dt
    env.filters["age"] = fmt_age
    env.filters["money"] = lambda minor: words.money(minor, currency)
    env.filters["number"] = words.number
    env.filters["plural"] = words.plural
    env.filters["country"] = words.country_name
    env.filters["service"] = words.service_name
    env.filters["transfer_kind"] = words.transfer_kind
    env.filters["transfer_meaning"] = words.transfer_meaning
    env.filters["transfer_state"] = words.transfer_state
    env.filters["account"] = words.account_name
    env.filters["actor"] = words.actor_name
    env.globals["order_event"] = lambda e: words.order_event(
        e["event"], e.get("detail"), currency, e.get("actor")
    )
    env.globals["audit_action"] = lambda a: words.audit_action(a["action"], a.get("detail"), currency)
    env.globals["audit_detail"] = lambda a: words.audit_detail(a["action"], a.get("detail"), currency)
    env.globals["user_label"] = words.user_label
    env.globals["money_in"] = words.money
    env.globals["transfer_words"] = words.TRANSFER_WORDS
    env.globals["audience_words"] = words.AUDIENCE_WORDS
    env.globals["broadcast_status_words"] = words.BROADCAST_STATUS_WORDS
    env.filters["upstream"] = words.upstream_state
