"""TextVerified API v2 session: the bearer token and authenticated, paginated calls.

* **Bearer token** from ``POST /auth`` (``X-API-USERNAME`` + ``X-API-KEY``), cached until
  shortly before it expires (by our clock and the reply's ``expiresIn``). A 401 on any call
  means the token died early: refresh once and repeat the call once; a second 401 is
  ``BadKey``. Concurrent callers share one refresh.
* Links are only followed on the configured origin, so the bearer token never leaves for
  another host.

The adapter (:class:`core.providers.textverified.TextVerifiedProvider`) sets the state below.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

import httpx

from core.clock import Clock
from core.providers.errors import ActivationNotFound, BadKey, MalformedResponse
from core.providers.http import parse_json, parse_time, send, snippet
from core.providers.textverified_wire import API, error_doc

log = logging.getLogger("core.providers.textverified")


class TextVerifiedSession:
    name: str
    _origin: tuple[str, str, int | None]
    _base: httpx.URL
    _username: str
    _api_key: str
    _clock: Clock
    _client: httpx.AsyncClient
    _auth_lock: asyncio.Lock
    _token: str | None
    _token_expires: datetime | None
    _old_tokens: list[str]
    _refresh_margin: timedelta
    _max_pages: int

    @property
    def _secrets(self) -> tuple[str | None, ...]:
        return (self._api_key, self._token, *self._old_tokens)

    def _url(self, href: str) -> httpx.URL:
        """A path or a returned link, pinned to the configured origin (the token stays home)."""
        url = self._base.join(href)
        if (url.scheme, url.host, url.port) != self._origin:
            url = self._base.copy_with(raw_path=url.raw_path)
        return url

    async def _bearer(self, stale: str | None = None) -> str:
        async with self._auth_lock:
            now = self._clock.now()
            if (
                self._token
                and self._token != stale
                and self._token_expires
                and now < self._token_expires - self._refresh_margin
            ):
                return self._token
            response = await send(
                self._client,
                "POST",
                self._url(f"{API}/auth"),
                provider=self.name,
                clock=self._clock,
                secrets=self._secrets,
                what="auth",
                headers={"X-API-USERNAME": self._username, "X-API-KEY": self._api_key},
            )
            if response.status_code in (401, 403):
                raise BadKey(
                    f"{self.name}: auth refused (HTTP {response.status_code}); "
                    "check TEXTVERIFIED_API_USERNAME/TEXTVERIFIED_API_KEY",
                    provider=self.name,
                )
            if response.status_code != 200:
                raise self._malformed("auth", response)
            doc = parse_json(response, provider=self.name, label="auth", secrets=self._secrets)
            token = doc.get("token") if isinstance(doc, dict) else None
            if not isinstance(token, str) or not token:
                raise self._malformed("auth", response)
            expires = None
            try:
                expires = now + timedelta(seconds=float(doc["expiresIn"]))
            except (KeyError, TypeError, ValueError):
                expires = parse_time(doc.get("expiresAt"))
            if expires is None:
                raise self._malformed("auth", response)
            if self._token:
                self._old_tokens = [self._token, *self._old_tokens][:4]
            self._token, self._token_expires = token, expires
            return token

    async def _authed(
        self,
        method: str,
        href: str,
        *,
        what: str,
        idempotent: bool = True,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """A call with the bearer token; one refresh-and-repeat on 401."""
        token = await self._bearer()
        for attempt in (1, 2):
            response = await send(
                self._client,
                method,
                self._url(href),
                provider=self.name,
                clock=self._clock,
                idempotent=idempotent,
                secrets=self._secrets,
                what=what,
                headers={"Authorization": f"Bearer {token}", **(headers or {})},
                **kwargs,
            )
            if response.status_code == 401 and attempt == 1:
                token = await self._bearer(stale=token)
                continue
            if response.status_code in (401, 403):
                raise BadKey(
                    f"{self.name}: {what}: HTTP {response.status_code} with a fresh token", provider=self.name
                )
            return response
        raise AssertionError("unreachable")

    def _malformed(
        self, what: str, response: httpx.Response | str, cls: type[MalformedResponse] = MalformedResponse
    ) -> MalformedResponse:
        if isinstance(response, httpx.Response):
            detail = f"HTTP {response.status_code}: {snippet(response.content, self._secrets)!r}"
        else:
            detail = snippet(response, self._secrets)
        return cls(f"{self.name}: {what}: unexpected reply {detail}", provider=self.name)

    async def _get_json(self, href: str, *, what: str, not_found: bool = True) -> Any:
        response = await self._authed("GET", href, what=what)
        if response.status_code == 404 and not_found:
            raise ActivationNotFound(f"{self.name}: {what}: not found", provider=self.name)
        if response.status_code != 200:
            raise self._malformed(what, response)
        return parse_json(response, provider=self.name, label=what, secrets=self._secrets)

    async def _pages(self, href: str, *, what: str) -> list[dict[str, Any]]:
        """All items of a paginated list, following ``links.next`` (bounded)."""
        items: list[dict[str, Any]] = []
        for _ in range(self._max_pages):
            doc = await self._get_json(href, what=what, not_found=False)
            if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
                raise self._malformed(what, repr(doc)[:200])
            for item in doc["data"]:
                if not isinstance(item, dict):
                    raise self._malformed(what, repr(item)[:200])
                items.append(item)
            nxt = (doc.get("links") or {}).get("next") if isinstance(doc.get("links"), dict) else None
            next_href = nxt.get("href") if isinstance(nxt, dict) else None
            if not next_href or doc.get("hasNext") is False:
                return items
            href = str(next_href)
        log.warning("%s: %s: more than %d pages; stopped", self.name, what, self._max_pages)
        return items

    @staticmethod
    def _error_code(response: httpx.Response) -> str | None:
        return error_doc(response)[1]
