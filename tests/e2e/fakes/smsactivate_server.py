"""A fake ``handler_api.php`` server, written from ``reference/sms-activate-protocol.md``.

One URL (``/stubs/handler_api.php``), GET or POST, ``api_key`` + ``action``; text replies
``KEYWORD[:field…]``, JSON for getNumberV2 / getActiveActivations / getPrices / getCountries /
getServicesList. Balances and prices are in the provider's currency (decimal strings).

``dialect`` picks one provider's documented differences ("Compatible providers today"):

* ``grizzlysms`` — country defaults to Russia when omitted; ``SERVICE_UNAVAILABLE_REGION``
  when the caller's region is blocked; plain-sentence errors (a prohibited service); cancel
  accepts status ``-1`` as well as ``8``.
* ``smsbower`` — ``STATUS_WAIT_RESEND`` while a resend is pending; ``EARLY_CANCEL_DENIED``.
* ``herosms`` — cancel refused for 2 minutes with ``EARLY_CANCEL_DENIED`` *on HTTP 400*;
  ``NO_KEY`` without a key; ``WRONG_COUNTRY`` for a country it does not sell.
* ``daisysms`` — price cap ``max_price`` (alias ``maxPrice``, inclusive);
  ``MAX_PRICE_EXCEEDED``, ``NO_MONEY``; a failed cancel (rental missing or code already
  received) answers ``ACCESS_READY``; no getNumberV2; an ``X-Price`` header on rentals;
  stock above 100 shown as 100.
* ``smshub`` — ``currency`` (ISO 4217 numeric) on getBalance/getNumber/getPrices, amounts in
  that currency; ``API_KEY_NOT_VALID``, ``NO_ACTION``, ``BAD_CURRENCY``, ``WRONG_SERVICE``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from core.clock import Clock

from .base import FakeServer

PATH = "/stubs/handler_api.php"


@dataclass
class FakeActivation:
    id: str
    phone: str
    service: str
    country: int
    cost: Decimal
    created: datetime
    state: str = "wait"  # wait | retry | resend | cancel | finish
    codes: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


class FakeSmsActivate(FakeServer):
    def __init__(
        self,
        clock: Clock,
        *,
        api_key: str = "sa-secret-key-123",
        v2: bool = True,
        balance: str = "100.00",
        early_cancel_seconds: float = 120,
        max_active: int = 20,
        active_format: str = "wrapped",
        dialect: str = "smsactivate",
    ) -> None:
        super().__init__()
        self.dialect = dialect
        self.region_blocked = False  # grizzlysms: SERVICE_UNAVAILABLE_REGION
        self.prohibited: set[str] = set()  # grizzlysms: services refused with a sentence
        self.usd_per_rub = Decimal("0.011")  # smshub: amounts in the asked-for currency
        if dialect == "daisysms":
            v2 = False
        self.clock = clock
        self.api_key = api_key
        self.v2 = v2
        self.balance = Decimal(balance)
        self.early_cancel_seconds = early_cancel_seconds
        self.max_active = max_active
        self.active_format = active_format  # "wrapped" (SMS-Activate) or "list"
        self.banned_until: str | None = None
        self.countries: dict[int, dict[str, Any]] = {
            0: {"id": 0, "rus": "Россия", "eng": "Russia", "chn": "俄罗斯", "visible": 1},
            16: {"id": 16, "rus": "Англия", "eng": "United Kingdom", "chn": "英国", "visible": 1},
            187: {"id": 187, "rus": "США", "eng": "USA", "chn": "美国", "visible": 1},
            12: {"id": 12, "rus": "США (вирт)", "eng": "USA (virtual)", "chn": "美国", "visible": 1},
            1: {"id": 1, "rus": "Украина", "eng": "Ukraine", "chn": "乌克兰", "visible": 0},
        }
        self.services: list[dict[str, str]] = [
            {"code": "wa", "name": "WhatsApp"},
            {"code": "tg", "name": "Telegram"},
            {"code": "go", "name": "Google,youtube,Gmail"},
            {"code": "zzz", "name": "Unknown"},
        ]
        self.prices: dict[int, dict[str, dict[str, Any]]] = {
            0: {
                "wa": {"cost": 15.5, "count": 120},
                "tg": {"cost": "20.00", "count": 3},
                "zzz": {"cost": 1, "count": 1},
            },
            16: {"wa": {"cost": 30, "count": 0}, "go": {"cost": 12.25, "count": 40}},
            187: {"tg": {"cost": 40, "count": 7}},
            12: {"tg": {"cost": 5, "count": 100}},
            1: {"wa": {"cost": 9, "count": 100}},
        }
        self.activations: dict[str, FakeActivation] = {}
        self._next_id = 700_000

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", PATH, self._entry)

    async def _entry(self, request: web.Request) -> web.StreamResponse:
        params = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        route = params.get("action", "")

        async def real(_: web.Request) -> web.StreamResponse:
            reply = self.handle(params)
            if isinstance(reply, tuple):  # (status, text, headers)
                status, text, headers = reply
                return web.Response(status=status, text=text, headers=headers, content_type="text/plain")
            if isinstance(reply, str):
                return web.Response(text=reply, content_type="text/plain")
            return web.Response(text=json.dumps(reply), content_type="application/json")

        return await self.dispatch(route, request, real, params)

    # --- test helpers
    def deliver(self, activation_id: str, code: str, text: str | None = None) -> None:
        act = self.activations[activation_id]
        act.codes.append(code)
        act.texts.append(text or f"Your code is {code}")
        if act.state == "retry":
            act.state = "wait"

    def add_activation(
        self, *, service: str = "wa", country: int = 0, cost: str = "15.5", phone: str = "79990001122"
    ) -> FakeActivation:
        act = self._new_activation(service, country, Decimal(cost), phone)
        return act

    def _new_activation(
        self, service: str, country: int, cost: Decimal, phone: str | None = None
    ) -> FakeActivation:
        self._next_id += 1
        aid = str(self._next_id)
        act = FakeActivation(
            aid, phone or f"7999{self._next_id:07d}", service, country, cost, self.clock.now()
        )
        self.activations[aid] = act
        return act

    # --- the protocol
    def handle(self, p: dict[str, str]) -> str | Any:
        d = self.dialect
        if d == "herosms" and not p.get("api_key"):
            return "NO_KEY"
        if p.get("api_key") != self.api_key:
            return "API_KEY_NOT_VALID" if d == "smshub" else "BAD_KEY"
        if self.banned_until:
            return f"BANNED:{self.banned_until}"
        if d == "grizzlysms" and self.region_blocked:
            return "SERVICE_UNAVAILABLE_REGION"
        action = p.get("action", "")
        handler = getattr(self, f"_a_{action}", None)
        if handler is None or (d == "daisysms" and action == "getNumberV2"):
            return "NO_ACTION" if d == "smshub" else "BAD_ACTION"
        if (
            d == "smshub"
            and action in ("getBalance", "getNumber", "getNumberV2", "getPrices")
            and p.get("currency", "643") not in ("643", "840")
        ):
            return "BAD_CURRENCY"
        return handler(p)

    def _in_currency(self, p: dict[str, str], rub: Decimal) -> Decimal:
        """smshub: an amount in the currency the request asked for (RUB unless 840)."""
        if self.dialect == "smshub" and p.get("currency") == "840":
            return (rub * self.usd_per_rub).quantize(Decimal("0.01"))
        return rub

    def _a_getBalance(self, p: dict[str, str]) -> str:
        return f"ACCESS_BALANCE:{self._in_currency(p, self.balance):.2f}"

    def _price_cap(self, p: dict[str, str]) -> Decimal | None:
        names = {"daisysms": ("max_price", "maxPrice"), "smshub": ("maxPrice", "max_price")}.get(
            self.dialect, ("maxPrice",)
        )
        for name in names:
            if name in p:
                return Decimal(p[name])
        return None

    def _rent(self, p: dict[str, str]) -> FakeActivation | str:
        d = self.dialect
        service = p.get("service", "")
        if service not in {s["code"] for s in self.services}:
            return "WRONG_SERVICE" if d == "smshub" else "BAD_SERVICE"
        if d == "grizzlysms" and service in self.prohibited:
            return "The service is prohibited for sale by administration."
        try:
            country = int(p.get("country", "0"))  # grizzlysms: Russia when omitted
        except ValueError:
            return "BAD_SERVICE"
        if d == "herosms" and country not in self.countries:
            return "WRONG_COUNTRY"
        entry = self.prices.get(country, {}).get(service)
        if entry is None or int(entry["count"]) <= 0:
            return "NO_NUMBERS"
        cost = Decimal(str(entry["cost"]))
        cap = self._price_cap(p)
        if cap is not None and cap < self._in_currency(p, cost):
            if d == "daisysms":
                return "MAX_PRICE_EXCEEDED"
            return f"WRONG_MAX_PRICE:{self._in_currency(p, cost)}"
        if self.balance < cost:
            return "NO_MONEY" if d == "daisysms" else "NO_BALANCE"
        open_count = sum(1 for a in self.activations.values() if a.state in ("wait", "retry"))
        if open_count >= self.max_active:
            return "TOO_MANY_ACTIVE_RENTALS"
        entry["count"] = int(entry["count"]) - 1
        self.balance -= cost
        return self._new_activation(service, country, cost)

    def _a_getNumber(self, p: dict[str, str]) -> str | tuple[int, str, dict[str, str]]:
        act = self._rent(p)
        if isinstance(act, str):
            return act
        if self.dialect == "daisysms":
            return 200, f"ACCESS_NUMBER:{act.id}:{act.phone}", {"X-Price": f"{act.cost:.2f}"}
        return f"ACCESS_NUMBER:{act.id}:{act.phone}"

    def _a_getNumberV2(self, p: dict[str, str]) -> str | dict[str, Any]:
        if not self.v2:
            return "NO_ACTION" if self.dialect == "smshub" else "BAD_ACTION"
        act = self._rent(p)
        if isinstance(act, str):
            return act
        return {
            "activationId": int(act.id),
            "phoneNumber": act.phone,
            "activationCost": float(act.cost),
            "currency": 643,
            "countryCode": str(act.country),
            "canGetAnotherSms": "1",
            "activationTime": act.created.strftime("%Y-%m-%d %H:%M:%S"),
            "activationOperator": "any",
        }

    def _a_getStatus(self, p: dict[str, str]) -> str:
        act = self.activations.get(p.get("id", ""))
        if act is None:
            return "NO_ACTIVATION"
        if act.state == "cancel":
            return "STATUS_CANCEL"
        if act.state == "retry":
            return f"STATUS_WAIT_RETRY:{act.codes[-1]}"
        if act.state == "resend":  # smsbower
            return "STATUS_WAIT_RESEND"
        if act.codes:
            return f"STATUS_OK:{act.codes[-1]}"
        return "STATUS_WAIT_CODE"

    def _a_setStatus(self, p: dict[str, str]) -> str | tuple[int, str, dict[str, str]]:
        act = self.activations.get(p.get("id", ""))
        status = p.get("status")
        if self.dialect == "grizzlysms" and status == "-1":
            status = "8"
        if self.dialect == "daisysms" and status == "8":
            if act is None or act.codes or act.state != "wait":
                return "ACCESS_READY"  # a failed cancel, in DaisySMS's words
            act.state = "cancel"
            self.balance += act.cost
            return "ACCESS_CANCEL"
        if act is None:
            return "NO_ACTIVATION"
        if status in ("8", "6") and act.state == "cancel":
            return "ALREADY_CANCEL"
        if status in ("8", "6") and act.state == "finish":
            return "ALREADY_FINISH"
        if status == "8":
            if act.codes:
                return "BAD_STATUS"
            age = (self.clock.now() - act.created).total_seconds()
            if age < self.early_cancel_seconds:
                if self.dialect == "herosms":
                    return 400, "EARLY_CANCEL_DENIED", {}
                return "EARLY_CANCEL_DENIED"
            act.state = "cancel"
            self.balance += act.cost
            return "ACCESS_CANCEL"
        if status == "6":
            act.state = "finish"
            return "ACCESS_ACTIVATION"
        if status == "3":
            if not act.codes:
                return "BAD_STATUS"
            act.state = "retry"
            return "ACCESS_RETRY_GET"
        if status == "1":
            return "ACCESS_READY"
        return "BAD_STATUS"

    def _a_getActiveActivations(self, p: dict[str, str]) -> Any:
        rows = [
            {
                "activationId": a.id,
                "serviceCode": a.service,
                "phoneNumber": a.phone,
                "activationCost": f"{a.cost:.2f}",
                "activationStatus": "4" if not a.codes else "2",
                "smsCode": list(a.codes) or None,
                "smsText": json.dumps(a.texts) if a.texts else None,
                "activationTime": a.created.strftime("%Y-%m-%d %H:%M:%S"),
                "discount": "0.00",
                "repeated": "0",
                "countryCode": str(a.country),
                "countryName": self.countries.get(a.country, {}).get("eng", ""),
                "canGetAnotherSms": "1",
            }
            for a in self.activations.values()
            if a.state in ("wait", "retry")
        ]
        if self.active_format == "list":
            return rows
        if not rows:
            return {"status": "error", "error": "NO_ACTIVATIONS"}
        return {"status": "success", "activeActivations": rows}

    def _a_getPrices(self, p: dict[str, str]) -> Any:
        out: dict[str, dict[str, Any]] = {}
        for country, by_service in self.prices.items():
            if "country" in p and p["country"] != str(country):
                continue
            chosen = {
                s: {
                    **v,
                    "cost": str(self._in_currency(p, Decimal(str(v["cost"]))))
                    if self.dialect == "smshub"
                    else v["cost"],
                }
                for s, v in by_service.items()
                if "service" not in p or p["service"] == s
            }
            if self.dialect == "daisysms":
                for v in chosen.values():
                    v["count"] = min(int(v["count"]), 100)
            if chosen:
                out[str(country)] = chosen
        return out

    def _a_getCountries(self, p: dict[str, str]) -> Any:
        return {str(k): v for k, v in self.countries.items()}

    def _a_getServicesList(self, p: dict[str, str]) -> Any:
        return {"status": "success", "services": self.services}
