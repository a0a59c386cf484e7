"""Server-side sessions whose id changes at login.

Litestar's server-side backend keeps whatever session id the browser presents. Keeping it
across a login would allow session fixation (an attacker plants an id, the victim logs in
with it, the attacker is now logged in), so the backend below issues a fresh id — and drops
the old one from the store — whenever a handler calls :func:`rotate_session`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.middleware.session.server_side import (
    ServerSideSessionBackend,
    ServerSideSessionConfig,
)
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.types import Empty, Message, ScopeSession
from litestar.utils.dataclass import extract_dataclass_items

_ROTATE = "numbershop_rotate_session"
SESSION_COOKIE = "ns_session"


def rotate_session(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Ask for a new session id when this response is sent (call at login)."""
    connection.scope.setdefault("state", {})[_ROTATE] = True


class RotatingSessionBackend(ServerSideSessionBackend):
    async def store_in_message(
        self, scope_session: ScopeSession, message: Message, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> None:
        if not scope_session:  # Empty is truthy, so this is an empty dict or None
            # Litestar would store an empty session for every anonymous request, letting
            # anyone fill the store; an empty session is no session.
            if connection.cookies.get(self.config.key) in (None, "", "null"):
                return
            scope_session = Empty
        state = connection.scope.get("state") or {}
        if not state.get(_ROTATE) or scope_session is Empty:
            await super().store_in_message(scope_session, message, connection)
            return
        store = self.config.get_store_from_app(connection.scope["app"])
        old_id = connection.cookies.get(self.config.key)
        if old_id and old_id != "null":
            await self.delete(old_id, store=store)
        new_id = self.generate_session_id()
        await self.set(
            session_id=new_id, data=self.serialize_data(scope_session, connection.scope), store=store
        )
        cookie_params = dict(
            extract_dataclass_items(self.config, exclude_none=True, include=Cookie.__dict__.keys())
        )
        MutableScopeHeaders.from_message(message).add(
            "Set-Cookie", Cookie(value=new_id, key=self.config.key, **cookie_params).to_header(header="")
        )


@dataclass
class RotatingSessionConfig(ServerSideSessionConfig):
    _backend_class = RotatingSessionBackend


def session_config(*, secure: bool = False, max_age: int = 12 * 3600) -> RotatingSessionConfig:
    return RotatingSessionConfig(
        key=SESSION_COOKIE,
        httponly=True,
        samesite="lax",
        secure=secure,
        max_age=max_age,
        store="sessions",
        renew_on_access=True,
    )


def session_store(redis_url: str | None) -> Store:
    """Memory for one process; Redis when ``REDIS_URL`` is set, so replicas share sessions."""
    if redis_url:
        from litestar.stores.redis import RedisStore

        return RedisStore.with_client(url=redis_url, namespace="numbershop_admin")
    return MemoryStore()
