"""A fake 5sim.net API v1, written from ``reference/5sim-api-v1.md``.

JSON REST under ``/v1``: ``/guest/*`` needs no key, ``/user/*`` wants
``Authorization: Bearer <key>`` (401 with an empty body otherwise). Errors are short
plain-text bodies (``no free phones``, ``order not found`` …), usually HTTP 400
(``order not found`` on ``check`` is 404). Amounts are decimals in the account's currency;
times ISO-8601 UTC; phones with a leading ``+``; ``maxPrice`` is honoured only with
operator ``any``.

Route names for ``script()``: countries, prices, products, profile, orders, buy, check,
finish, cancel, ban.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web

from core.clock import Clock

from .base import FakeServer, Handler

PREFIX = "/v1"
LIFETIME = timedelta(minutes=15)
STATUSES = ["PENDING", "RECEIVED", "CANCELED", "TIMEOUT", "FINISHED", "BANNED"]


def iso_time(when: datetime) -> str:
    """The docs' style: nanosecond fraction, ``Z``."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


@dataclass
class FakeSms:
    created: datetime
    text: str
    code: str
    sender: str = "Service"


@dataclass
class FakeOrder:
    id: int
    phone: str
    operator: str
    product: str
    price: Decimal
    country: str
    created: datetime
    status: str = "RECEIVED"
    sms: list[FakeSms] | None = None  # null right after purchase
    checked: bool = False
    lifetime: timedelta = LIFETIME  # 15 minutes in the docs; 6–30 for some operators

    @property
    def expires(self) -> datetime:
        return self.created + self.lifetime

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "phone": self.phone,
            "operator": self.operator,
            "product": self.product,
            "price": float(self.price),
            "status": self.status,
            "expires": iso_time(self.expires),
            "sms": None
            if self.sms is None
            else [
                {
                    "created_at": iso_time(s.created),
                    "date": iso_time(s.created),
                    "sender": s.sender,
                    "text": s.text,
                    "code": s.code,
                }
                for s in self.sms
            ],
            "created_at": iso_time(self.created),
            "forwarding": False,
            "forwarding_number": "",
            "country": self.country,
        }


class FakeFiveSim(FakeServer):
    def __init__(
        self,
        clock: Clock,
        *,
        api_key: str = "eyJhbGciOiJSUzUxMiJ9.fivesim-secret-jwt.sig",
        balance: str = "100.00",
        rating: float = 96.0,
        cancel_wait_seconds: float = 0.0,
        initial_status: str = "RECEIVED",
    ) -> None:
        super().__init__()
        self.clock = clock
        self.api_key = api_key
        self.balance = Decimal(balance)
        self.rating = rating
        self.cancel_wait_seconds = cancel_wait_seconds  # "you need to wait time" before this age
        self.initial_status = initial_status
        self.countries: dict[str, dict[str, Any]] = {}
        self.prices: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        self.orders: dict[int, FakeOrder] = {}
        self.next_id = 53_533_955
        if not self.countries:
            self.countries = {
                "england": {
                    "iso": {"gb": 1},
                    "prefix": {"+44": 1},
                    "text_en": "England",
                    "text_ru": "Англия",
                    "virtual21": {"activation": 1},
                    "vodafone": {"activation": 1},
                },
                "russia": {
                    "iso": {"ru": 1},
                    "prefix": {"+7": 1},
                    "text_en": "Russia",
                    "text_ru": "Россия",
                    "mts": {"activation": 1},
                    "beeline": {"activation": 1},
                },
                "usa": {
                    "iso": {"us": 1},
                    "prefix": {"+1": 1},
                    "text_en": "USA",
                    "text_ru": "США",
                    "virtual52": {"activation": 1},
                },
                # a second slug claiming GB: the adapter must keep "england"
                "uk": {
                    "iso": {"gb": 1},
                    "prefix": {"+44": 1},
                    "text_en": "United Kingdom",
                    "text_ru": "Великобритания",
                    "virtual4": {"activation": 1},
                },
                # a country the shop does not sell
                "bhutane": {
                    "iso": {"bt": 1},
                    "prefix": {"+975": 1},
                    "text_en": "Bhutan",
                    "text_ru": "Бутан",
                    "virtual": {"activation": 1},
                },
            }
        if not self.prices:
            self.prices = {
                "england": {
                    "whatsapp": {
                        "virtual21": {"cost": 25.5, "count": 0, "rate": 80.0},
                        "vodafone": {"cost": 30.0, "count": 12, "rate": 99.5},
                    },
                    "telegram": {"virtual21": {"cost": 18.25, "count": 40}},
                    "google": {"virtual21": {"cost": 8.0, "count": 0}, "vodafone": {"cost": 9.0, "count": 0}},
                    "amazon2": {"virtual21": {"cost": 5.0, "count": 3}},  # no canonical service
                },
                "russia": {
                    "whatsapp": {
                        "mts": {"cost": 15.5, "count": 120, "rate": 91.2},
                        "beeline": {"cost": 14.0, "count": 0},
                    },
                    "google": {"mts": {"cost": 8.0, "count": 0}, "beeline": {"cost": 9.0, "count": 0}},
                },
                "usa": {"telegram": {"virtual52": {"cost": 40.0, "count": 7}}},
                "uk": {"telegram": {"virtual4": {"cost": 1.0, "count": 999}}},
                "bhutane": {"telegram": {"virtual": {"cost": 1.0, "count": 5}}},
            }

    def routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get(f"{PREFIX}/guest/countries", self._wrap("countries", self._countries))
        r.add_get(f"{PREFIX}/guest/prices", self._wrap("prices", self._prices))
        r.add_get(PREFIX + "/guest/products/{country}/{operator}", self._wrap("products", self._products))
        r.add_get(f"{PREFIX}/user/profile", self._wrap("profile", self._profile, user=True))
        r.add_get(f"{PREFIX}/user/orders", self._wrap("orders", self._orders, user=True))
        r.add_get(
            PREFIX + "/user/buy/activation/{country}/{operator}/{product}",
            self._wrap("buy", self._buy, user=True),
        )
        for op in ("check", "finish", "cancel", "ban"):
            r.add_get(PREFIX + f"/user/{op}/{{id}}", self._wrap(op, getattr(self, f"_{op}"), user=True))

    def _wrap(
        self, route: str, handler: Callable[[web.Request], web.StreamResponse], *, user: bool = False
    ) -> Handler:
        async def entry(request: web.Request) -> web.StreamResponse:
            async def real(req: web.Request) -> web.StreamResponse:
                if user and req.headers.get("Authorization") != f"Bearer {self.api_key}":
                    return web.Response(status=401, body=b"")
                return handler(req)

            return await self.dispatch(route, request, real)

        return entry

    # --- test helpers
    def deliver(self, order_id: int | str, code: str, text: str | None = None) -> None:
        order = self.orders[int(order_id)]
        if order.sms is None:
            order.sms = []
        order.sms.append(FakeSms(self.clock.now(), text or f"Your code is {code}", code))

    def add_order(
        self,
        *,
        product: str = "whatsapp",
        country: str = "russia",
        price: str = "15.5",
        status: str = "RECEIVED",
        created: datetime | None = None,
        lifetime: timedelta = LIFETIME,
    ) -> FakeOrder:
        order = self._new_order(country, "mts", product, Decimal(price), status, created)
        order.lifetime = lifetime
        return order

    def _new_order(
        self,
        country: str,
        operator: str,
        product: str,
        price: Decimal,
        status: str,
        created: datetime | None = None,
    ) -> FakeOrder:
        self.next_id += 1
        order = FakeOrder(
            self.next_id,
            f"+7999{self.next_id % 10**7:07d}",
            operator,
            product,
            price,
            country,
            created or self.clock.now(),
            status,
        )
        self.orders[order.id] = order
        return order

    def _expire(self, order: FakeOrder) -> None:
        if order.status in ("PENDING", "RECEIVED") and self.clock.now() >= order.expires:
            if order.sms:
                order.status = "FINISHED"  # auto-finished after a code: charged
            else:
                order.status = "TIMEOUT"
                self.balance += order.price

    # --- guest
    @staticmethod
    def _json(doc: Any) -> web.Response:
        return web.Response(text=json.dumps(doc), content_type="application/json")

    @staticmethod
    def _text(text: str, status: int = 400) -> web.Response:
        return web.Response(status=status, text=text, content_type="text/plain")

    def _countries(self, request: web.Request) -> web.Response:
        return self._json(self.countries)

    def _prices(self, request: web.Request) -> web.Response:
        country, product = request.query.get("country"), request.query.get("product")
        if country is not None and country not in self.countries:
            return self._text("bad country")
        out: dict[str, Any] = {}
        for slug, by_product in self.prices.items():
            if country is not None and slug != country:
                continue
            chosen = {
                p: {o: dict(leaf) for o, leaf in ops.items()}
                for p, ops in by_product.items()
                if product in (None, p)
            }
            if chosen:
                out[slug] = chosen
        return self._json(out)

    def _products(self, request: web.Request) -> web.Response:
        country = request.match_info["country"]
        operator = request.match_info["operator"]
        out: dict[str, Any] = {}
        for slug, by_product in self.prices.items():
            if country not in ("any", slug):
                continue
            for product, ops in by_product.items():
                leaves = [leaf for op, leaf in ops.items() if operator in ("any", op)]
                if leaves:
                    out[product] = {
                        "Category": "activation",
                        "Qty": sum(int(leaf["count"]) for leaf in leaves),
                        "Price": min(float(leaf["cost"]) for leaf in leaves),
                    }
        return self._json(out)

    # --- user
    def _profile(self, request: web.Request) -> web.Response:
        return self._json(
            {
                "id": 1,
                "email": "shop@example.com",
                "vendor": "",
                "balance": float(self.balance),
                "frozen_balance": 0,
                "rating": self.rating,
                "default_country": {"name": "england", "iso": "gb", "prefix": "+44"},
                "default_operator": {"name": "any"},
                "default_forwarding_number": "",
            }
        )

    def _orders(self, request: web.Request) -> web.Response:
        if request.query.get("category") not in ("activation", "hosting"):
            return self._text("bad category")
        for order in self.orders.values():
            self._expire(order)
        rows = sorted(
            self.orders.values(), key=lambda o: o.id, reverse=request.query.get("reverse") == "true"
        )
        offset = int(request.query.get("offset", "0"))
        limit = int(request.query.get("limit", "15"))
        page = rows[offset : offset + limit]
        return self._json(
            {
                "Data": [o.as_json() for o in page],
                "ProductNames": sorted({o.product for o in page}),
                "Statuses": STATUSES,
                "Total": len(rows),
            }
        )

    def _buy(self, request: web.Request) -> web.Response:
        country = request.match_info["country"]
        operator = request.match_info["operator"]
        product = request.match_info["product"]
        if country not in self.countries:
            return self._text("bad country")
        operators = self.prices.get(country, {}).get(product)
        if operators is None:
            return self._text("no product")
        if operator != "any" and operator not in operators:
            return self._text("bad operator")
        candidates = [
            (Decimal(str(leaf["cost"])), op)
            for op, leaf in operators.items()
            if int(leaf["count"]) > 0 and operator in ("any", op)
        ]
        if operator == "any" and "maxPrice" in request.query:  # honoured only with "any"
            cap = Decimal(request.query["maxPrice"])
            candidates = [(cost, op) for cost, op in candidates if cost <= cap]
        if not candidates:
            return self._text("no free phones")
        if self.rating <= 0:
            return self._text("not enough rating")
        cost, chosen = min(candidates)
        if self.balance < cost:
            return self._text("not enough user balance")
        operators[chosen]["count"] = int(operators[chosen]["count"]) - 1
        self.balance -= cost
        order = self._new_order(country, chosen, product, cost, self.initial_status)
        return self._json(order.as_json())

    def _find(self, request: web.Request) -> FakeOrder | None:
        try:
            order = self.orders.get(int(request.match_info["id"]))
        except ValueError:
            return None
        if order is not None:
            self._expire(order)
        return order

    def _check(self, request: web.Request) -> web.Response:
        order = self._find(request)
        if order is None:
            return self._text("order not found", 404)
        if order.checked and order.status == "PENDING":
            order.status = "RECEIVED"
        if order.checked and order.sms is None:
            order.sms = []
        order.checked = True
        return self._json(order.as_json())

    def _finish(self, request: web.Request) -> web.Response:
        order = self._find(request)
        if order is None:
            return self._text("order not found")
        if order.status not in ("PENDING", "RECEIVED"):
            return self._text("order expired")
        if not order.sms:
            return self._text("order no sms")
        order.status = "FINISHED"
        return self._json(order.as_json())

    def _close_unbilled(self, request: web.Request, status: str) -> web.Response:
        order = self._find(request)
        if order is None:
            return self._text("order not found")
        if order.status not in ("PENDING", "RECEIVED"):
            return self._text("order expired")
        if order.sms:
            return self._text("order has sms")
        if (self.clock.now() - order.created).total_seconds() < self.cancel_wait_seconds:
            return self._text("you need to wait time")
        order.status = status
        self.balance += order.price
        return self._json(order.as_json())

    def _cancel(self, request: web.Request) -> web.Response:
        return self._close_unbilled(request, "CANCELED")

    def _ban(self, request: web.Request) -> web.Response:
        return self._close_unbilled(request, "BANNED")
