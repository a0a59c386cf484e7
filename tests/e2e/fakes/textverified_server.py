"""A fake TextVerified API v2, written from ``reference/textverified-api-v2.md`` and the OpenAPI.

Bearer tokens from ``POST /auth`` expire by the injected clock; ``Idempotency-Key`` on create
returns the same 201 for a finished purchase, 409 ``IdempotencyConflict`` while it is still
running, 400 once it expired without completing; errors are ``{errorCode, errorDescription}``
(both nullable, as the ``Error`` schema says); lists are paginated with ``links.next``; the
documented ``test_*`` service names produce the documented errors. Following the schemas:
``Account`` requires only ``username`` (``balance=None`` leaves ``currentBalance`` out);
``Sms`` carries ``encrypted``; verification details carry ``cancel {canCancel, link}``,
``report {canReport, link}``, ``reuse``, ``reactivate``, each link with its ``method``
(``action_path`` moves the action links elsewhere, to prove clients follow them).
"""

from __future__ import annotations

import itertools
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web

from core.clock import Clock

from .base import FakeServer

API = "/api/pub/v2"


@dataclass
class FakeVerification:
    id: str
    number: str
    service: str
    cost: Decimal
    created: datetime
    ends: datetime
    state: str = "verificationPending"
    sms: list[dict[str, Any]] = field(default_factory=list)
    completed: datetime | None = None


@dataclass
class Purchase:
    verification_id: str
    rounds_left: int  # further same-key requests answered 409 before the purchase completes


class FakeTextVerified(FakeServer):
    def __init__(
        self,
        clock: Clock,
        *,
        username: str = "shop@example.com",
        api_key: str = "tv-secret-key-456",
        token_seconds: float = 900,
        balance: str | None = "25.00",
        lifetime_seconds: int = 900,
        cancel_after_seconds: float = 0,
        page_size: int = 2,
    ) -> None:
        super().__init__()
        self.clock = clock
        self.username = username
        self.api_key = api_key
        self.token_seconds = token_seconds
        self.balance = None if balance is None else Decimal(balance)
        self.expired_keys: set[str] = set()  # purchases that expired without completing
        self.action_path = API + "/verifications"  # where details' action links point
        self.reuse_window = timedelta(minutes=5)  # reusable this long after completion
        self.lifetime = timedelta(seconds=lifetime_seconds)
        self.cancel_after = timedelta(seconds=cancel_after_seconds)
        self.page_size = page_size
        self.tokens: dict[str, datetime] = {}
        self.services: list[dict[str, Any]] = [
            {"serviceName": "whatsapp", "description": "WhatsApp", "capability": "sms"},
            {"serviceName": "telegram", "description": "Telegram", "capability": "sms"},
            {"serviceName": "gmail", "description": "Gmail", "capability": "sms"},
            {"serviceName": "discord", "description": "Discord", "capability": "smsAndVoiceCombo"},
            {"serviceName": "someothersite", "description": "Other", "capability": "sms"},
            {"serviceName": "voiceonly", "description": "Voice", "capability": "voice"},
        ]
        self.prices: dict[str, Decimal] = {
            "whatsapp": Decimal("1.25"),
            "telegram": Decimal("0.90"),
            "gmail": Decimal("0.75"),
            "discord": Decimal("0.80"),
            "someothersite": Decimal("0.50"),
            "test_success": Decimal("1.00"),
            "test_pending": Decimal("1.00"),
        }
        self.stock: dict[str, int] = {"whatsapp": 12000, "telegram": 0, "gmail": 35, "discord": 4}
        self.unpriceable: set[str] = set()  # pricing answers 400 for these
        self.verifications: dict[str, FakeVerification] = {}
        self.purchases: dict[str, Purchase] = {}
        self.purchase_rounds = 0  # how many retries a new purchase keeps answering 409
        self._seq = itertools.count(1)

    def routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post(f"{API}/auth", self._wrap("auth", self._auth, auth=False))
        r.add_get(f"{API}/account/me", self._wrap("account", self._account))
        r.add_get(f"{API}/services", self._wrap("services", self._services))
        r.add_post(f"{API}/pricing/verifications", self._wrap("pricing", self._pricing))
        r.add_post(f"{API}/inventory/verifications", self._wrap("inventory", self._inventory))
        r.add_post(f"{API}/verifications", self._wrap("create", self._create))
        r.add_get(f"{API}/verifications", self._wrap("list", self._list))
        r.add_get(f"{API}/verifications/{{id}}", self._wrap("details", self._details))
        for base in (f"{API}/verifications", f"{API}/actions"):
            r.add_post(f"{base}/{{id}}/cancel", self._wrap("cancel", self._cancel))
            r.add_post(f"{base}/{{id}}/report", self._wrap("report", self._report))
            r.add_post(f"{base}/{{id}}/reuse", self._wrap("reuse", self._reuse))
            r.add_post(f"{base}/{{id}}/reactivate", self._wrap("reactivate", self._reactivate))
        r.add_get(f"{API}/sms", self._wrap("sms", self._sms))

    def _wrap(self, route: str, handler: Any, auth: bool = True) -> Any:
        async def entry(request: web.Request) -> web.StreamResponse:
            body: Any = None
            if request.can_read_body:
                raw = await request.read()
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")

            async def real(req: web.Request) -> web.StreamResponse:
                if auth and not self._authorized(req):
                    return web.Response(status=401)
                return await handler(req, body)

            return await self.dispatch(route, request, real, body)

        return entry

    # --- helpers for tests
    def revoke_tokens(self) -> None:
        self.tokens.clear()

    def deliver(
        self, verification_id: str, code: str, text: str | None = None, *, encrypted: bool = False
    ) -> None:
        v = self.verifications[verification_id]
        v.sms.append(
            {
                "id": f"sms_{next(self._seq)}",
                "from": "12345",
                "to": v.number,
                "createdAt": _iso(self.clock.now()),
                "smsContent": "gAAAAABl9x…ciphertext" if encrypted else text or f"Your code is {code}",
                "parsedCode": None if encrypted else code,
                "encrypted": encrypted,
            }
        )
        v.state = "verificationCompleted"
        v.completed = v.completed or self.clock.now()

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return False
        expiry = self.tokens.get(header[len("Bearer ") :])
        return expiry is not None and self.clock.now() < expiry

    def _link(self, path: str) -> dict[str, str]:
        return {"method": "GET", "href": f"{self.base_url}{path}"}

    @staticmethod
    def _error(status: int, code: str | None, description: str = "") -> web.Response:
        return web.json_response({"errorCode": code, "errorDescription": description or code}, status=status)

    # --- endpoints
    async def _auth(self, request: web.Request, body: Any) -> web.StreamResponse:
        if (
            request.headers.get("X-API-USERNAME") != self.username
            or request.headers.get("X-API-KEY") != self.api_key
        ):
            return web.Response(status=401)
        token = "eyJh" + secrets.token_hex(12)
        expires = self.clock.now() + timedelta(seconds=self.token_seconds)
        self.tokens[token] = expires
        return web.json_response(
            {"token": token, "expiresIn": self.token_seconds, "expiresAt": _iso(expires)}
        )

    async def _account(self, request: web.Request, body: Any) -> web.StreamResponse:
        doc: dict[str, Any] = {"username": self.username}
        if self.balance is not None:
            doc["currentBalance"] = float(self.balance)
        return web.json_response(doc)

    async def _services(self, request: web.Request, body: Any) -> web.StreamResponse:
        if not request.query.get("numberType") or not request.query.get("reservationType"):
            return web.Response(status=400)
        return web.json_response(self.services)

    async def _pricing(self, request: web.Request, body: Any) -> web.StreamResponse:
        required = ("serviceName", "areaCode", "carrier", "numberType", "capability")
        if not isinstance(body, dict) or any(k not in body for k in required):
            return web.Response(status=400)
        name = body["serviceName"]
        if name not in self.prices or name in self.unpriceable:
            return web.Response(status=400)
        return web.json_response({"serviceName": name, "price": float(self.prices[name])})

    async def _inventory(self, request: web.Request, body: Any) -> web.StreamResponse:
        if not isinstance(body, dict) or any(
            k not in body for k in ("serviceName", "numberType", "capability")
        ):
            return web.Response(status=400)
        name = body["serviceName"]
        if name not in self.prices:
            return web.Response(status=400)
        return web.json_response({"availableQuantity": min(self.stock.get(name, 0), 9000)})

    async def _create(self, request: web.Request, body: Any) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            key = key.strip()
            if not 1 <= len(key) <= 256:
                return self._error(400, "InvalidIdempotencyKey")
            if key in self.expired_keys:
                return self._error(400, None, "The purchase expired; start a new one.")
            purchase = self.purchases.get(key)
            if purchase is not None:
                if purchase.rounds_left > 0:
                    purchase.rounds_left -= 1
                    return self._error(409, "IdempotencyConflict", "purchase still running")
                return self._created(purchase.verification_id)
        if not isinstance(body, dict) or "serviceName" not in body or "capability" not in body:
            return web.Response(status=400)
        name = body["serviceName"]
        if name == "test_insufficient_balance":
            return self._error(400, "InsufficientBalance")
        if name == "test_no_numbers":
            return self._error(400, "Unavailable")
        if name == "test_too_many_unfinished_verifications":
            return self._error(400, "TooManyUnfinishedVerifications")
        if name not in self.prices:
            return self._error(400, "InvalidServiceName")
        price = self.prices[name]
        if body.get("maxPrice") is not None and Decimal(str(body["maxPrice"])) < price:
            return self._error(400, "PricingFailure", "price above maxPrice")
        if name in self.stock and self.stock[name] <= 0:
            return self._error(400, "Unavailable")
        now = self.clock.now()
        vid = f"ver_{next(self._seq)}"
        self.verifications[vid] = FakeVerification(
            vid, f"20255501{len(self.verifications):02d}", name, price, now, now + self.lifetime
        )
        if name in self.stock:
            self.stock[name] -= 1
        if key is not None:
            self.purchases[key] = Purchase(vid, self.purchase_rounds)
        return self._created(vid)

    def _created(self, vid: str) -> web.Response:
        link = self._link(f"{API}/verifications/{vid}")
        return web.json_response(link, status=201, headers={"Location": link["href"]})

    def _expanded(self, v: FakeVerification) -> dict[str, Any]:
        return {
            "id": v.id,
            "number": v.number,
            "serviceName": v.service,
            "state": v.state,
            "totalCost": float(v.cost),
            "createdAt": _iso(v.created),
            "endsAt": _iso(v.ends),
            "sms": self._link(f"{API}/sms?reservationId={v.id}"),
            "calls": self._link(f"{API}/calls?reservationId={v.id}"),
            "sale": self._link(f"{API}/sales/sale_{v.id}"),
            "cancel": {
                "canCancel": v.state == "verificationPending"
                and self.clock.now() >= v.created + self.cancel_after,
                "link": {"method": "POST", "href": f"{self.base_url}{self.action_path}/{v.id}/cancel"},
            },
            "report": {
                "canReport": v.state in ("verificationPending", "verificationCompleted"),
                "link": {"method": "POST", "href": f"{self.base_url}{self.action_path}/{v.id}/report"},
            },
            "reactivate": {
                "canReactivate": self._reactivatable(v),
                "link": {"method": "POST", "href": f"{self.base_url}{self.action_path}/{v.id}/reactivate"},
            },
            "reuse": {
                "reusableUntil": _iso(v.completed + self.reuse_window) if self._reusable(v) else None,
                "link": {"method": "POST", "href": f"{self.base_url}{self.action_path}/{v.id}/reuse"},
            },
        }

    async def _details(self, request: web.Request, body: Any) -> web.StreamResponse:
        v = self.verifications.get(request.match_info["id"])
        if v is None:
            return web.Response(status=404)
        return web.json_response(self._expanded(v))

    def _page(
        self, items: list[dict[str, Any]], request: web.Request, path: str, extra: dict[str, str]
    ) -> web.Response:
        page = int(request.query.get("page", "1"))
        start = (page - 1) * self.page_size
        chunk = items[start : start + self.page_size]
        has_next = start + self.page_size < len(items)

        def link(p: int) -> dict[str, str]:
            query = "&".join(f"{k}={v}" for k, v in {**extra, "page": str(p)}.items())
            return self._link(f"{path}?{query}")

        return web.json_response(
            {
                "data": chunk,
                "hasNext": has_next,
                "hasPrevious": page > 1,
                "count": len(items),
                "links": {
                    "current": link(page),
                    "previous": link(page - 1) if page > 1 else None,
                    "next": link(page + 1) if has_next else None,
                },
            }
        )

    async def _list(self, request: web.Request, body: Any) -> web.StreamResponse:
        items = [
            {
                "id": v.id,
                "number": v.number,
                "serviceName": v.service,
                "state": v.state,
                "totalCost": float(v.cost),
                "createdAt": _iso(v.created),
                "link": self._link(f"{API}/verifications/{v.id}"),
                "sms": self._link(f"{API}/sms?reservationId={v.id}"),
                "calls": self._link(f"{API}/calls?reservationId={v.id}"),
            }
            for v in self.verifications.values()
        ]
        return self._page(items, request, f"{API}/verifications", {})

    async def _sms(self, request: web.Request, body: Any) -> web.StreamResponse:
        rid = request.query.get("reservationId")
        items = [m for v in self.verifications.values() if rid in (None, v.id) for m in v.sms]
        return self._page(items, request, f"{API}/sms", {"reservationId": rid} if rid else {})

    async def _cancel(self, request: web.Request, body: Any) -> web.StreamResponse:
        v = self.verifications.get(request.match_info["id"])
        if v is None:
            return web.Response(status=404)
        if v.state != "verificationPending" or self.clock.now() < v.created + self.cancel_after:
            return self._error(400, "CannotCancel", "this verification cannot be cancelled")
        v.state = "verificationCanceled"
        return web.Response(status=200)

    def _reusable(self, v: FakeVerification) -> bool:
        return (
            v.state == "verificationCompleted"
            and v.completed is not None
            and self.clock.now() < v.completed + self.reuse_window
        )

    def _reactivatable(self, v: FakeVerification) -> bool:
        return v.state == "verificationCompleted" and not self._reusable(v)

    def _again(self, request: web.Request, allowed: Any, new_state: str) -> web.Response:
        v = self.verifications.get(request.match_info["id"])
        if v is None:
            return web.Response(status=404)
        if not allowed(v):
            return self._error(400, "NotEligible", "not eligible")
        now = self.clock.now()
        vid = f"ver_{next(self._seq)}"
        self.verifications[vid] = FakeVerification(vid, v.number, v.service, v.cost, now, now + self.lifetime)
        v.state = new_state
        return self._created(vid)

    async def _reuse(self, request: web.Request, body: Any) -> web.StreamResponse:
        return self._again(request, self._reusable, "verificationReused")

    async def _reactivate(self, request: web.Request, body: Any) -> web.StreamResponse:
        return self._again(request, self._reactivatable, "verificationReactivated")

    async def _report(self, request: web.Request, body: Any) -> web.StreamResponse:
        v = self.verifications.get(request.match_info["id"])
        if v is None:
            return web.Response(status=404)
        if v.state not in ("verificationPending", "verificationCompleted"):
            return self._error(400, "CannotReport")
        v.state = "verificationReported"
        return web.Response(status=200)


def _iso(when: datetime) -> str:
    return when.isoformat()
