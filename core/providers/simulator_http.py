"""The simulator served over HTTP, speaking the SMS-Activate ``handler_api.php`` protocol.

So the real ``smsactivate`` adapter, demos and end-to-end tests run over real HTTP against a
deterministic upstream (``numbershop simulator serve``; point ``SMSACTIVATE_URL`` at
``http://127.0.0.1:8089/stubs/handler_api.php``, ``SMSACTIVATE_API_KEY=sandbox``,
``SMSACTIVATE_COST_RATE=1``).

Protocol endpoint — ``GET|POST /stubs/handler_api.php?api_key=…&action=…``:

* ``getBalance`` → ``ACCESS_BALANCE:<amount>``
* ``getNumber`` / ``getNumberV2`` (``service``, ``country``, optional ``maxPrice``) →
  ``ACCESS_NUMBER:<id>:<phone>`` / JSON ``{activationId, phoneNumber, activationCost, currency,
  countryCode, canGetAnotherSms, activationTime, activationOperator}``
* ``getStatus`` (``id``) → ``STATUS_WAIT_CODE`` | ``STATUS_WAIT_RETRY:<code>`` |
  ``STATUS_OK:<code>`` | ``STATUS_CANCEL``
* ``setStatus`` (``id``, ``status`` 1/3/6/8) → ``ACCESS_READY`` | ``ACCESS_RETRY_GET`` |
  ``ACCESS_ACTIVATION`` | ``ACCESS_CANCEL``
* ``getActiveActivations``, ``getPrices`` (optional ``service``, ``country``),
  ``getCountries``, ``getServicesList`` → JSON as SMS-Activate sends it.

Errors: wrong ``api_key`` → ``BAD_KEY``; unknown action → ``BAD_ACTION``; unknown activation
→ ``NO_ACTIVATION``; unknown service/country → ``BAD_SERVICE``; no stock → ``NO_NUMBERS``; price
above ``maxPrice`` → ``WRONG_MAX_PRICE:<cost>``; cancel inside the early window →
``EARLY_CANCEL_DENIED``; closed → ``ALREADY_CANCEL`` / ``ALREADY_FINISH``; a simulated transient
fault → ``ERROR_SQL``; a simulated *outcome unknown* rent → the number is rented and the
connection is dropped without a reply.

Amounts are decimal units of the simulator's currency (its minor units ÷ 10^exponent), so with
``SMSACTIVATE_COST_RATE=1`` and the same shop currency prices round-trip exactly. Service codes
and country ids are SMS-Activate's (``core/providers/smsactivate_countries.py``); times are UTC.

Control API (JSON; unauthenticated — the server binds to loopback unless told otherwise):

* ``POST /control/deliver`` ``{"activation_id": "…", "code"?: "123456", "text"?: "…"}`` — an
  SMS arrives now → ``{"activation_id", "message_id", "code", "text"}``; 404 unknown, 409 closed.
* ``GET /control/faults`` — the current knobs. ``POST /control/faults`` with any of
  ``latency_s``, ``transient_error_rate``, ``outcome_unknown_rate`` (0..1),
  ``out_of_stock`` (``true``/``false`` or ``[["whatsapp", "GB"], …]``),
  ``early_cancel_window_s``, ``code_delay_s`` (``[min, max]`` or ``null`` = never by itself),
  ``ttl_s`` → the knobs after the change; 400 with a reason on a bad value.
* ``POST /control/offers`` ``{"service", "country", "cost"?, "stock"?}`` — set one catalogue
  entry (``cost`` in minor units).
* ``GET /control/activations`` — every activation with its state and messages.
* ``GET /control/calls`` — the protocol requests received (action, parameters without the
  key, reply), oldest first; ``?since=N`` skips the first N.
"""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from core.catalogue_data import COUNTRIES, SERVICES_BY_CODE
from core.money import exponent
from core.providers import smsactivate_countries as sa
from core.providers.base import ActivationState, RentRequest
from core.providers.errors import (
    ActivationNotFound,
    AlreadyClosed,
    BadService,
    BusinessError,
    EarlyCancelDenied,
    InsufficientProviderBalance,
    NotSupported,
    OutcomeUnknown,
    OutOfStock,
    PriceTooHigh,
    ProviderError,
    TransientError,
)
from core.providers.simulator import SimActivation, SimulatorProvider

log = logging.getLogger(__name__)

HANDLER_PATH = "/stubs/handler_api.php"
DEFAULT_API_KEY = "sandbox"
_MAX_CALLS_KEPT = 10_000
_NO_LIMIT = 10**15

_KNOBS = (
    "latency_s",
    "transient_error_rate",
    "outcome_unknown_rate",
    "out_of_stock",
    "early_cancel_window_s",
    "code_delay_s",
    "ttl_s",
)


class _DropConnection(Exception):
    """Reply with nothing: the request had its effect but the client never hears of it."""


class _MaskedAccessLogger(AbstractAccessLogger):
    """Access log without the query string: the api_key travels there."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s action=%s %d %.3fs",
            request.remote,
            request.method,
            request.path,
            request.query.get("action", "-"),
            response.status,
            time,
        )


class SimulatorHttp:
    """The protocol and control handlers around one ``SimulatorProvider``."""

    def __init__(self, simulator: SimulatorProvider, api_key: str = DEFAULT_API_KEY) -> None:
        self.sim = simulator
        self.api_key = api_key
        self.calls: list[dict[str, Any]] = []
        self._keys = itertools.count(1)
        self._retry_wanted: dict[str, int] = {}  # id → message count when another code was asked
        self._exp = exponent(simulator.currency)

    # ------------------------------------------------------------------ money

    def _units(self, minor: int) -> str:
        return f"{Decimal(minor).scaleb(-self._exp):.{self._exp}f}"

    def _minor(self, text: str) -> int:
        return int(Decimal(text).scaleb(self._exp).to_integral_value(rounding="ROUND_FLOOR"))

    # ------------------------------------------------------------------ protocol

    async def handle(self, request: web.Request) -> web.StreamResponse:
        params = dict(request.query.items())
        if request.method == "POST":
            form = await request.post()
            params.update({k: str(v) for k, v in form.items()})
        action = params.get("action", "")
        record = {
            "at": self.sim.clock.now().isoformat(),
            "action": action,
            "params": {k: v for k, v in params.items() if k not in ("api_key", "action")},
        }
        try:
            reply = await self._reply(params, action)
        except _DropConnection:
            record["reply"] = "<connection dropped>"
            self._record(record)
            if request.transport is not None:
                request.transport.abort()
            return web.Response(text="")
        if isinstance(reply, str):
            record["reply"] = reply
            self._record(record)
            return web.Response(text=reply, content_type="text/plain")
        record["reply"] = "<json>"
        self._record(record)
        return web.Response(text=json.dumps(reply), content_type="application/json")

    def _record(self, record: dict[str, Any]) -> None:
        self.calls.append(record)
        if len(self.calls) > _MAX_CALLS_KEPT:
            del self.calls[: len(self.calls) - _MAX_CALLS_KEPT]

    async def _reply(self, p: dict[str, str], action: str) -> str | Any:
        if p.get("api_key") != self.api_key:
            return "BAD_KEY"
        handler = _ACTIONS.get(action)
        if handler is None:
            return "BAD_ACTION"
        try:
            return await handler(self, p)
        except OutcomeUnknown:
            raise _DropConnection from None
        except ProviderError as exc:
            return self._keyword(exc)

    def _keyword(self, exc: ProviderError) -> str:
        if isinstance(exc, TransientError):
            return "ERROR_SQL"
        if isinstance(exc, ActivationNotFound):
            return "NO_ACTIVATION"
        if isinstance(exc, OutOfStock):
            return "NO_NUMBERS"
        if isinstance(exc, PriceTooHigh):
            return f"WRONG_MAX_PRICE:{self._units(exc.min_price)}" if exc.min_price else "WRONG_MAX_PRICE"
        if isinstance(exc, BadService):
            return "BAD_SERVICE"
        if isinstance(exc, InsufficientProviderBalance):
            return "NO_BALANCE"
        if isinstance(exc, EarlyCancelDenied):
            return "EARLY_CANCEL_DENIED"
        if isinstance(exc, NotSupported | BusinessError):
            return "BAD_STATUS"
        return "ERROR_SQL"

    async def _get_balance(self, p: dict[str, str]) -> str:
        balance = await self.sim.balance()
        return f"ACCESS_BALANCE:{self._units(balance.amount)}"

    def _rent_request(self, p: dict[str, str]) -> RentRequest:
        service = sa.canonical_service(p.get("service"))
        country = sa.country_iso(p.get("country", "0"))
        if service is None or country is None:
            raise BadService("unknown service or country", provider=self.sim.name)
        try:
            max_cost = self._minor(p["maxPrice"]) if p.get("maxPrice") else _NO_LIMIT
        except ArithmeticError:
            raise BadService("bad maxPrice", provider=self.sim.name) from None
        return RentRequest(
            service=service, country=country, max_cost=max_cost, idempotency_key=f"http-{next(self._keys)}"
        )

    async def _get_number(self, p: dict[str, str]) -> str:
        rental = await self.sim.rent(self._rent_request(p))
        return f"ACCESS_NUMBER:{rental.activation_id}:{_digits(rental.phone)}"

    async def _get_number_v2(self, p: dict[str, str]) -> Any:
        rental = await self.sim.rent(self._rent_request(p))
        return {
            "activationId": int(rental.activation_id),
            "phoneNumber": _digits(rental.phone),
            "activationCost": self._units(rental.cost),
            "currency": self.sim.currency,
            "countryCode": str(sa.country_id(rental.country or "") or ""),
            "canGetAnotherSms": "1" if rental.can_request_another else "0",
            "activationTime": _protocol_time(rental.created_at),
            "activationOperator": "any",
        }

    async def _get_status(self, p: dict[str, str]) -> str:
        aid = p.get("id", "")
        status = await self.sim.status(aid)
        codes = [m.code for m in status.messages if m.code]
        if status.state is ActivationState.WAITING:
            return "STATUS_WAIT_CODE"
        if status.state is ActivationState.CODE:
            asked_at = self._retry_wanted.get(aid)
            if asked_at is not None and asked_at == len(status.messages) and codes:
                return f"STATUS_WAIT_RETRY:{codes[-1]}"
            return f"STATUS_OK:{codes[-1]}" if codes else "STATUS_WAIT_CODE"
        if status.state is ActivationState.FINISHED and codes:
            return f"STATUS_OK:{codes[-1]}"
        return "STATUS_CANCEL"

    async def _set_status(self, p: dict[str, str]) -> str:
        aid, status = p.get("id", ""), p.get("status", "")
        try:
            if status == "8":
                await self.sim.cancel(aid)
                return "ACCESS_CANCEL"
            if status == "6":
                await self.sim.finish(aid)
                return "ACCESS_ACTIVATION"
            if status == "3":
                current = await self.sim.status(aid)
                if current.state is not ActivationState.CODE:
                    return "BAD_STATUS"
                await self.sim.request_another_code(aid)
                self._retry_wanted[aid] = len(current.messages)
                return "ACCESS_RETRY_GET"
            if status == "1":
                await self.sim.status(aid)
                return "ACCESS_READY"
        except AlreadyClosed:
            act = self.sim.activations.get(aid)
            return "ALREADY_FINISH" if act and act.state is ActivationState.FINISHED else "ALREADY_CANCEL"
        return "BAD_STATUS"

    async def _get_active(self, p: dict[str, str]) -> Any:
        rentals = await self.sim.active_activations()
        rows = []
        for r in rentals:
            act = self.sim.activations[r.activation_id]
            codes = [m.code for m in act.messages if m.code]
            rows.append(
                {
                    "activationId": r.activation_id,
                    "serviceCode": sa.service_code(r.service or ""),
                    "phoneNumber": _digits(r.phone),
                    "activationCost": self._units(r.cost),
                    "activationStatus": "2" if codes else "4",
                    "smsCode": codes or None,
                    "smsText": json.dumps([m.text for m in act.messages]) if act.messages else None,
                    "activationTime": _protocol_time(r.created_at),
                    "discount": "0.00",
                    "repeated": "0",
                    "countryCode": str(sa.country_id(r.country or "") or ""),
                    "countryName": r.country,
                    "canGetAnotherSms": "1" if r.can_request_another else "0",
                }
            )
        if not rows:
            return {"status": "error", "error": "NO_ACTIVATIONS"}
        return {"status": "success", "activeActivations": rows}

    async def _get_prices(self, p: dict[str, str]) -> Any:
        out: dict[str, dict[str, Any]] = {}
        for offer in await self.sim.catalogue():
            code, cid = sa.service_code(offer.service), sa.country_id(offer.country)
            if code is None or cid is None:
                continue
            if p.get("service") and p["service"] != code:
                continue
            if p.get("country") not in (None, "") and p["country"] != str(cid):
                continue
            out.setdefault(str(cid), {})[code] = {"cost": self._units(offer.cost), "count": offer.stock}
        return out

    async def _get_countries(self, p: dict[str, str]) -> Any:
        out = {}
        for country in COUNTRIES:
            cid = sa.country_id(country.code)
            if cid is not None:
                out[str(cid)] = {
                    "id": cid,
                    "rus": country.name,
                    "eng": country.name,
                    "chn": country.name,
                    "visible": 1,
                    "retry": 1,
                    "rent": 0,
                    "multiService": 0,
                }
        return out

    async def _get_services(self, p: dict[str, str]) -> Any:
        return {
            "status": "success",
            "services": [
                {"code": code, "name": SERVICES_BY_CODE[canonical].name}
                for canonical, code in sa.SERVICE_CODES.items()
                if canonical in SERVICES_BY_CODE
            ],
        }

    # ------------------------------------------------------------------ control

    async def control_deliver(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        aid = body.get("activation_id")
        if not isinstance(aid, str | int) or isinstance(aid, bool):
            return _bad("activation_id: required")
        code, text = body.get("code"), body.get("text")
        if code is not None and not isinstance(code, str):
            return _bad("code: a string")
        if text is not None and not isinstance(text, str):
            return _bad("text: a string")
        try:
            message = self.sim.deliver_code(str(aid), code=code, text=text)
        except ActivationNotFound:
            return web.json_response({"error": f"no activation {aid}"}, status=404)
        except AlreadyClosed as exc:
            return web.json_response({"error": str(exc)}, status=409)
        return web.json_response(
            {
                "activation_id": str(aid),
                "message_id": message.message_id,
                "code": message.code,
                "text": message.text,
            }
        )

    def _knobs(self) -> dict[str, Any]:
        oos = self.sim.out_of_stock
        return {
            "latency_s": self.sim.latency_s,
            "transient_error_rate": self.sim.transient_error_rate,
            "outcome_unknown_rate": self.sim.outcome_unknown_rate,
            "out_of_stock": oos if isinstance(oos, bool) else sorted(list(p) for p in oos),
            "early_cancel_window_s": self.sim.early_cancel_window_s,
            "code_delay_s": list(self.sim.code_delay_s) if self.sim.code_delay_s else None,
            "ttl_s": self.sim.ttl_s,
        }

    async def control_get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self._knobs())

    async def control_set_faults(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        unknown = sorted(set(body) - set(_KNOBS))
        if unknown:
            return _bad(f"unknown knob {unknown[0]!r}; known: {', '.join(_KNOBS)}")
        changes = dict(body)
        if isinstance(changes.get("code_delay_s"), list):
            changes["code_delay_s"] = tuple(changes["code_delay_s"])
        for name in (
            "latency_s",
            "transient_error_rate",
            "outcome_unknown_rate",
            "early_cancel_window_s",
            "ttl_s",
        ):
            if name in changes and (
                isinstance(changes[name], bool) or not isinstance(changes[name], int | float)
            ):
                return _bad(f"{name}: a number")
        try:
            self.sim.set_faults(**changes)
        except (TypeError, ValueError) as exc:
            return _bad(str(exc))
        return web.json_response(self._knobs())

    async def control_offers(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        service, country = body.get("service"), body.get("country")
        if service not in SERVICES_BY_CODE or not isinstance(country, str) or sa.country_id(country) is None:
            return _bad("service and country: a known service code and ISO country")
        for name in ("cost", "stock"):
            value = body.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                return _bad(f"{name}: a non-negative integer")
        offer = self.sim.set_offer(service, country.upper(), cost=body.get("cost"), stock=body.get("stock"))
        return web.json_response(
            {"service": offer.service, "country": offer.country, "cost": offer.cost, "stock": offer.stock}
        )

    async def control_activations(self, request: web.Request) -> web.Response:
        now = self.sim.clock.now()
        return web.json_response([_activation_json(a, now) for a in self.sim.activations.values()])

    async def control_calls(self, request: web.Request) -> web.Response:
        try:
            since = max(int(request.query.get("since", "0")), 0)
        except ValueError:
            return _bad("since: a whole number")
        return web.json_response(self.calls[since:])


_ACTIONS = {
    "getBalance": SimulatorHttp._get_balance,
    "getNumber": SimulatorHttp._get_number,
    "getNumberV2": SimulatorHttp._get_number_v2,
    "getStatus": SimulatorHttp._get_status,
    "setStatus": SimulatorHttp._set_status,
    "getActiveActivations": SimulatorHttp._get_active,
    "getPrices": SimulatorHttp._get_prices,
    "getCountries": SimulatorHttp._get_countries,
    "getServicesList": SimulatorHttp._get_services,
}


SIMULATOR_HTTP = web.AppKey("simulator_http", SimulatorHttp)


def make_app(simulator: SimulatorProvider, api_key: str = DEFAULT_API_KEY) -> web.Application:
    """The aiohttp application: the protocol endpoint and the control API."""
    sim_http = SimulatorHttp(simulator, api_key)
    app = web.Application()
    app[SIMULATOR_HTTP] = sim_http
    app.router.add_route("GET", HANDLER_PATH, sim_http.handle)
    app.router.add_route("POST", HANDLER_PATH, sim_http.handle)
    app.router.add_post("/control/deliver", sim_http.control_deliver)
    app.router.add_get("/control/faults", sim_http.control_get_faults)
    app.router.add_post("/control/faults", sim_http.control_set_faults)
    app.router.add_post("/control/offers", sim_http.control_offers)
    app.router.add_get("/control/activations", sim_http.control_activations)
    app.router.add_get("/control/calls", sim_http.control_calls)
    return app


@dataclass
class RunningSimulator:
    """A started server: ``url`` is the handler endpoint, ``base_url`` the server root."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url + HANDLER_PATH

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_server(
    simulator: SimulatorProvider, *, api_key: str = DEFAULT_API_KEY, host: str = "127.0.0.1", port: int = 0
) -> RunningSimulator:
    """Serve in the running event loop; ``port=0`` picks a free port (see ``.port``)."""
    runner = web.AppRunner(
        make_app(simulator, api_key),
        handle_signals=False,
        access_log_class=_MaskedAccessLogger,
        access_log=logging.getLogger("numbershop.simulator.access"),
        shutdown_timeout=1.0,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1] if runner.addresses else port
    return RunningSimulator(runner=runner, host=host, port=int(bound))


def _digits(phone: str) -> str:
    return phone.lstrip("+")


def _protocol_time(when: datetime | None) -> str | None:
    return when.strftime("%Y-%m-%d %H:%M:%S") if when else None


def _activation_json(act: SimActivation, now: datetime) -> dict[str, Any]:
    return {
        "id": act.id,
        "service": act.service,
        "country": act.country,
        "phone": act.phone,
        "cost": act.cost,
        "state": str(act.state),
        "created_at": act.created_at.isoformat(),
        "expires_at": act.expires_at.isoformat(),
        "closed_at": act.closed_at.isoformat() if act.closed_at else None,
        "messages": [
            {
                "message_id": m.message_id,
                "code": m.code,
                "text": m.text,
                "received_at": m.received_at.isoformat() if m.received_at else None,
            }
            for m in act.messages
        ],
        "pending_codes": sum(1 for due, _ in act.pending if due > now),
    }


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "send a JSON object"}), content_type="application/json"
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "send a JSON object"}), content_type="application/json"
        )
    return body


def _bad(reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=400)
