"""The ``handlerapi`` adapter: the ``handler_api.php`` text protocol SMS-Activate started.

SMS-Activate closed in December 2025; GrizzlySMS, SMSBower, Hero-SMS, DaisySMS, SMSHub and
others still speak the protocol with small differences (protocol facts:
``shared/reference/sms-activate-protocol.md``). Those differences are data — a ``Dialect``
from ``handlerapi_presets`` (price-cap parameter, a refused cancel answered ``ACCESS_READY``,
a currency parameter, extra error keywords, the early-cancel window) — not branches here.

Why it looks the way it does:

* **Every reply is validated.** A reply is a known keyword (``ACCESS_NUMBER:…``,
  ``NO_NUMBERS``, …) or, for the JSON actions, a JSON document of the expected shape. Anything
  else — an HTML error page, a truncated body, a keyword we do not know — is
  ``MalformedResponse`` (transient), never a success. Known error keywords map onto the
  provider error tree (``handlerapi_wire.ERRORS`` plus the dialect's ``extra_errors``).
* **getNumber has no idempotency key.** Losing its reply (read timeout, reset, 5xx, garbled
  body) may mean a number was rented and billed: that is ``OutcomeUnknown`` — the order stays
  ``reserving`` and recovery looks for the activation in ``getActiveActivations``. Only a
  failure *before* sending (connect error) is a plain ``ProviderUnavailable``.
* **getNumberV2 where available.** It returns the real cost and activation time as JSON. A
  provider that does not know it answers ``BAD_ACTION`` (a definite "not done"), after which
  the adapter uses ``getNumber`` for good; the cost is then looked up in ``getPrices`` (capped
  at the max price; the max price itself if the lookup fails).
* **Money.** The provider quotes decimal amounts in its own currency (RUB at SMS-Activate,
  USD at DaisySMS). ``<NAME>_COST_RATE`` is how many *shop-currency units* one provider
  unit is worth (``shop = provider × rate``; e.g. RUB prices in a USD shop: ``0.011``).
  Costs round up, the ``maxPrice`` sent upstream rounds down (``core/providers/cost_rate.py``),
  so the provider can never charge more than the user's confirmed price.
* **Deadline** = the reply's ``activationTime`` + ``<NAME>_ORDER_TTL_SECONDS``. The
  protocol does not say which time zone ``activationTime`` is in (SMS-Activate uses Moscow
  time); a naive time is read as UTC and clamped to ``[now − ttl, now]``, so a zone mismatch
  can never push the deadline beyond ``now + ttl``.
* **One call at a time** for reservation-changing actions (getNumber, setStatus) per account,
  as providers rate-limit and ban per account.
* **Secrets.** The api key travels as a query parameter; it is masked in every error message
  and in httpx's request log (``core/providers/http.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import httpx

from core.clock import Clock
from core.money import exponent
from core.providers import smsactivate_countries as data
from core.providers.base import (
    ActivationState,
    ActivationStatus,
    Balance,
    Capabilities,
    Offer,
    Rental,
    RentRequest,
    SmsMessage,
)
from core.providers.catalogue_gaps import CatalogueGaps
from core.providers.cost_rate import CostRate, decimal, format_provider_amount
from core.providers.errors import (
    ActivationNotFound,
    AlreadyClosed,
    BadService,
    BusinessError,
    EarlyCancelDenied,
    MalformedResponse,
    NotSupported,
    PriceTooHigh,
    ProviderError,
)
from core.providers.handlerapi_presets import NUMERIC_CURRENCY, Dialect, dialect
from core.providers.handlerapi_wire import (
    CURRENCY_ACTIONS,
    ERRORS,
    SET_STATUS_OK,
    is_phone,
    message_id,
    sms_messages,
    truthy,
)
from core.providers.http import MalformedOutcome, make_client, parse_time, send, snippet
from core.providers.instances import ProviderInstance

log = logging.getLogger(__name__)


class HandlerApiProvider:
    name = "handlerapi"
    capabilities = Capabilities(idempotent_rent=False, batch_status=True, another_code=True)

    def __init__(
        self,
        *,
        url: str,
        api_key: str,
        clock: Clock,
        cost_rate: float | str | Decimal = 1.0,
        order_ttl_seconds: int = 1200,
        shop_currency: str = "USD",
        provider_currency: str | None = None,
        timeout: httpx.Timeout | float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        early_cancel_retry_seconds: float | None = None,
        reference_cache_seconds: float = 3600.0,
        name: str | None = None,
        preset: str | Dialect | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("a handler_api api key is required")
        if name:
            self.name = name
        self.dialect = preset if isinstance(preset, Dialect) else dialect(preset)
        self._errors: dict[str, type[ProviderError]] = {
            **ERRORS,
            **{k: v for k, v in self.dialect.extra_errors.items() if k.isupper()},
        }
        self._sentences = {k.lower(): v for k, v in self.dialect.extra_errors.items() if not k.isupper()}
        if early_cancel_retry_seconds is None:
            early_cancel_retry_seconds = self.dialect.early_cancel_seconds
        self._url = url
        self._api_key = api_key
        self._clock = clock
        self._rate = CostRate(cost_rate, shop_currency)
        self._ttl = timedelta(seconds=order_ttl_seconds)
        # With a rate of 1 the provider bills in the shop's currency; otherwise the label is
        # informational only (balances are reported in the provider's own units).
        self.provider_currency = (
            provider_currency or (shop_currency if Decimal(str(cost_rate)) == 1 else "RUB")
        ).upper()
        self._client = make_client(timeout=timeout, transport=transport)
        self._lock = asyncio.Lock()  # reservation-changing calls, one at a time per account
        self._early_cancel_retry = timedelta(seconds=early_cancel_retry_seconds)
        self._reference_ttl = timedelta(seconds=reference_cache_seconds)
        self._v2: bool | None = None  # getNumberV2 supported? None = not yet known
        self._countries: tuple[datetime, dict[int, bool]] | None = None
        self._services: tuple[datetime, set[str]] | None = None
        self._prices: dict[tuple[str, int], Decimal] = {}
        self._unmapped = CatalogueGaps()

    @classmethod
    def from_instance(
        cls, instance: ProviderInstance, shop_currency: str, clock: Clock
    ) -> HandlerApiProvider:
        if not instance.url or not instance.api_key:
            raise ValueError(f"{instance.name}: a handlerapi instance needs a URL and a key")
        return cls(
            url=instance.url,
            api_key=instance.api_key,
            clock=clock,
            cost_rate=instance.cost_rate,
            order_ttl_seconds=instance.order_ttl_seconds,
            shop_currency=shop_currency,
            provider_currency=instance.currency,
            name=instance.name,
            preset=instance.preset,
        )

    @property
    def unmapped(self) -> CatalogueGaps:
        """What the last catalogue held that the shop cannot name (see ``catalogue_gaps``)."""
        return self._unmapped

    async def catalogue_gaps(self) -> CatalogueGaps:
        """Service codes and country ids the provider lists that we cannot map (fresh)."""
        await self.catalogue()
        return self._unmapped

    # ------------------------------------------------------------------ transport

    async def _call(self, action: str, *, idempotent: bool = True, **params: object) -> str:
        """One protocol request; returns the stripped reply text after raising known errors."""
        query = {
            "api_key": self._api_key,
            "action": action,
            **{k: str(v) for k, v in params.items() if v is not None},
        }
        if self.dialect.currency_param and action in CURRENCY_ACTIONS:
            query["currency"] = str(NUMERIC_CURRENCY[self.provider_currency])
        response = await send(
            self._client,
            "GET",
            self._url,
            params=query,
            provider=self.name,
            clock=self._clock,
            idempotent=idempotent,
            secrets=(self._api_key,),
            what=action,
        )
        try:
            body = response.content.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise self._malformed(action, response.content, idempotent) from None
        self._raise_for_error(action, body)
        if response.status_code != 200:
            raise self._malformed(action, f"HTTP {response.status_code}: {body}", idempotent)
        return body

    def _raise_for_error(self, action: str, body: str) -> None:
        keyword, _, detail = body.partition(":")
        cls = self._errors.get(keyword.strip())
        if cls is None:
            cls = self._sentences.get(body.strip().rstrip(".").lower())
            keyword, detail = body.strip(), ""
        if cls is None:
            return
        message = f"{self.name}: {action}: {keyword}" + (f" {detail}" if detail else "")
        message = snippet(message, (self._api_key,))
        if cls is PriceTooHigh:
            min_price = None
            if detail:
                try:
                    min_price = self._rate.to_shop_minor(detail)
                except ValueError:
                    min_price = None
            raise PriceTooHigh(message, provider=self.name, min_price=min_price)
        if cls is EarlyCancelDenied:
            raise EarlyCancelDenied(
                message, provider=self.name, retry_at=self._clock.now() + self._early_cancel_retry
            )
        raise cls(message, provider=self.name)

    def _malformed(self, action: str, body: object, idempotent: bool = True) -> MalformedResponse:
        cls = MalformedResponse if idempotent else MalformedOutcome
        if isinstance(body, str):
            text = body
        elif isinstance(body, bytes | bytearray):
            text = bytes(body).decode("utf-8", "replace")
        else:
            text = repr(body)
        return cls(
            f"{self.name}: {action}: unexpected reply {snippet(text, (self._api_key,))!r}", provider=self.name
        )

    async def _call_json(self, action: str, *, idempotent: bool = True, **params: object) -> Any:
        body = await self._call(action, idempotent=idempotent, **params)
        if not body.startswith(("{", "[")):
            raise self._malformed(action, body, idempotent)
        try:
            doc = json.loads(body)
        except ValueError:
            raise self._malformed(action, body, idempotent) from None
        if isinstance(doc, dict) and str(doc.get("status", "")).lower() == "error":
            error = str(doc.get("error") or doc.get("message") or "")
            if error == "NO_ACTIVATIONS":
                return doc
            self._raise_for_error(action, error)
            raise self._malformed(action, body, idempotent)
        return doc

    # ------------------------------------------------------------------ catalogue

    async def catalogue(self) -> list[Offer]:
        countries, services, prices = await asyncio.gather(
            self._country_visibility(), self._service_codes(), self._call_json("getPrices")
        )
        if not isinstance(prices, dict):
            raise self._malformed("getPrices", json.dumps(prices)[:200])
        offers: list[Offer] = []
        fresh: dict[tuple[str, int], Decimal] = {}
        lost_services = {c for c in services if data.canonical_service(c) is None}
        lost_countries = {str(c) for c in countries if data.country_iso(c) is None}
        for raw_country, by_service in prices.items():
            iso = data.country_iso(raw_country)
            if not isinstance(by_service, dict):
                raise self._malformed("getPrices", f"{raw_country}: {by_service!r}")
            if iso is None:
                lost_countries.add(str(raw_country))
            if iso is None or not countries.get(int(raw_country), True):
                continue
            for code, entry in by_service.items():
                canonical = data.canonical_service(code)
                if canonical is None:
                    lost_services.add(str(code))
                if canonical is None or (services and code not in services):
                    continue
                cost, count = self._price_entry(entry)
                fresh[(code, int(raw_country))] = cost
                offers.append(
                    Offer(service=canonical, country=iso, cost=self._rate.to_shop_minor(cost), stock=count)
                )
        self._prices = fresh
        self._unmapped = CatalogueGaps.of(lost_services, lost_countries)
        return offers

    def _price_entry(self, entry: object) -> tuple[Decimal, int]:
        if not isinstance(entry, dict) or "cost" not in entry:
            raise self._malformed("getPrices", repr(entry))
        try:
            cost = decimal(entry["cost"])
            count = int(str(entry.get("count", 0)).strip() or 0)
        except ValueError:
            raise self._malformed("getPrices", repr(entry)) from None
        return cost, max(count, 0)

    async def _country_visibility(self) -> dict[int, bool]:
        now = self._clock.now()
        if self._countries and now - self._countries[0] < self._reference_ttl:
            return self._countries[1]
        doc = await self._call_json("getCountries")
        entries = doc.values() if isinstance(doc, dict) else doc
        if not isinstance(entries, Iterable) or isinstance(entries, (str, bytes)):
            raise self._malformed("getCountries", repr(doc)[:200])
        visible: dict[int, bool] = {}
        for entry in entries:
            if not isinstance(entry, dict) or "id" not in entry:
                raise self._malformed("getCountries", repr(entry)[:200])
            try:
                visible[int(entry["id"])] = str(entry.get("visible", 1)) not in ("0", "False", "false")
            except (TypeError, ValueError):
                raise self._malformed("getCountries", repr(entry)[:200]) from None
        self._countries = (now, visible)
        return visible

    async def _service_codes(self) -> set[str]:
        now = self._clock.now()
        if self._services and now - self._services[0] < self._reference_ttl:
            return self._services[1]
        doc = await self._call_json("getServicesList")
        entries = doc.get("services") if isinstance(doc, dict) else doc
        if not isinstance(entries, list):
            raise self._malformed("getServicesList", repr(doc)[:200])
        codes: set[str] = set()
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("code"), str):
                raise self._malformed("getServicesList", repr(entry)[:200])
            codes.add(entry["code"])
        self._services = (now, codes)
        return codes

    # ------------------------------------------------------------------ rent

    async def rent(self, request: RentRequest) -> Rental:
        code = data.service_code(request.service)
        if code is None:
            raise BadService(f"{self.name}: service {request.service!r} is not sold here", provider=self.name)
        cid = data.country_id(request.country)
        if cid is None:
            raise BadService(f"{self.name}: country {request.country!r} is not sold here", provider=self.name)
        max_price = self._rate.to_provider_max(request.max_cost)
        if max_price <= 0:
            raise PriceTooHigh(
                f"{self.name}: max cost {request.max_cost} is below one provider unit", provider=self.name
            )
        params: dict[str, object] = {"service": code, "country": cid}
        for param in self.dialect.max_price_params:
            params[param] = format_provider_amount(max_price)
        async with self._lock:
            if self._v2 is not False:
                try:
                    doc = await self._call_json("getNumberV2", idempotent=False, **params)
                except NotSupported:
                    log.info("%s: getNumberV2 refused; using getNumber", self.name)
                    self._v2 = False
                else:
                    self._v2 = True
                    return self._rental_from_v2(doc, request)
            body = await self._call("getNumber", idempotent=False, **params)
        keyword, _, rest = body.partition(":")
        activation_id, _, phone = rest.partition(":")
        if keyword != "ACCESS_NUMBER" or not activation_id.strip() or not is_phone(phone):
            raise self._malformed("getNumber", body, idempotent=False)
        cost = await self._known_cost(code, cid, max_price)
        now = self._clock.now()
        return Rental(
            activation_id=activation_id.strip(),
            phone=phone.strip(),
            cost=min(self._rate.to_shop_minor(cost), request.max_cost),
            expires_at=now + self._ttl,
            service=request.service,
            country=request.country,
            created_at=now,
            can_request_another=True,
        )

    def _rental_from_v2(self, doc: Any, request: RentRequest) -> Rental:
        try:
            activation_id = str(doc["activationId"]).strip()
            phone = str(doc["phoneNumber"]).strip()
            cost = decimal(doc["activationCost"])
            if not activation_id or not is_phone(phone):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise self._malformed("getNumberV2", json.dumps(doc)[:200], idempotent=False) from None
        created = self._clamped_start(doc.get("activationTime"))
        shop_cost = self._rate.to_shop_minor(cost)
        if shop_cost > request.max_cost:
            log.warning(
                "%s: activation %s cost %s above max %s",
                self.name,
                activation_id,
                shop_cost,
                request.max_cost,
            )
        return Rental(
            activation_id=activation_id,
            phone=phone,
            cost=shop_cost,
            expires_at=created + self._ttl,
            service=request.service,
            country=request.country,
            created_at=created,
            can_request_another=truthy(doc.get("canGetAnotherSms", True)),
        )

    async def _known_cost(self, code: str, cid: int, max_price: Decimal) -> Decimal:
        """Best-effort cost of a getNumber rental (the protocol does not return it)."""
        try:
            doc = await self._call_json("getPrices", service=code, country=cid)
            entry = doc[str(cid)][code] if isinstance(doc, dict) else None
            cost, _ = self._price_entry(entry)
        except (ProviderError, KeyError, TypeError):
            cost = self._prices.get((code, cid), max_price)
        return min(cost, max_price)

    def _clamped_start(self, raw: object) -> datetime:
        now = self._clock.now()
        parsed = parse_time(raw)
        if parsed is None or parsed > now or parsed < now - self._ttl:
            return now
        return parsed

    # ------------------------------------------------------------------ status

    async def status(self, activation_id: str) -> ActivationStatus:
        body = await self._call("getStatus", id=activation_id)
        keyword, _, detail = body.partition(":")
        if keyword == "STATUS_WAIT_CODE" and not detail:
            return ActivationStatus(activation_id, ActivationState.WAITING)
        if keyword == "STATUS_WAIT_RESEND" and not detail:
            return ActivationStatus(activation_id, ActivationState.WAITING)
        if keyword == "STATUS_CANCEL" and not detail:
            return ActivationStatus(activation_id, ActivationState.CANCELLED)
        if keyword in ("STATUS_OK", "STATUS_WAIT_RETRY") and detail.strip():
            code = detail.strip()
            return ActivationStatus(
                activation_id,
                ActivationState.CODE,
                (SmsMessage(message_id(activation_id, code), code, None),),
            )
        raise self._malformed("getStatus", body)

    async def batch_status(self, activation_ids: list[str]) -> dict[str, ActivationStatus]:
        wanted = set(activation_ids)
        result: dict[str, ActivationStatus] = {}
        for entry in await self._active_entries():
            aid = str(entry["activationId"]).strip()
            if aid not in wanted:
                continue
            messages = sms_messages(aid, entry.get("smsCode"), entry.get("smsText"))
            state = ActivationState.CODE if messages else ActivationState.WAITING
            result[aid] = ActivationStatus(aid, state, messages)
        return result

    async def active_activations(self) -> list[Rental]:
        rentals = []
        now = self._clock.now()
        for entry in await self._active_entries():
            try:
                cost = self._rate.to_shop_minor(entry.get("activationCost", 0) or 0)
            except ValueError:
                raise self._malformed("getActiveActivations", repr(entry)[:200]) from None
            created = parse_time(entry.get("activationTime"))
            if created is None or created > now:
                created = now
            rentals.append(
                Rental(
                    activation_id=str(entry["activationId"]).strip(),
                    phone=str(entry.get("phoneNumber") or "").strip(),
                    cost=cost,
                    expires_at=created + self._ttl,
                    service=data.canonical_service(entry.get("serviceCode")),
                    country=data.country_iso(entry.get("countryCode")),
                    created_at=created,
                    can_request_another=truthy(entry.get("canGetAnotherSms", False)),
                )
            )
        return rentals

    async def _active_entries(self) -> list[dict[str, Any]]:
        doc = await self._call_json("getActiveActivations")
        if isinstance(doc, dict):
            if str(doc.get("error", "")) == "NO_ACTIVATIONS":
                return []
            entries = doc.get("activeActivations")
        else:
            entries = doc
        if entries is None and isinstance(doc, dict) and str(doc.get("status")) == "success":
            return []
        if not isinstance(entries, list):
            raise self._malformed("getActiveActivations", repr(doc)[:200])
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("activationId") in (None, ""):
                raise self._malformed("getActiveActivations", repr(entry)[:200])
        return entries

    # ------------------------------------------------------------------ lifecycle

    async def _set_status(self, activation_id: str, status: int) -> None:
        async with self._lock:
            body = await self._call("setStatus", id=activation_id, status=status)
        if body != SET_STATUS_OK[status]:
            raise self._malformed(f"setStatus {status}", body)

    async def cancel(self, activation_id: str) -> None:
        if not self.dialect.cancel_refused_access_ready:
            await self._set_status(activation_id, 8)
            return
        async with self._lock:
            body = await self._call("setStatus", id=activation_id, status=8)
        if body == "ACCESS_CANCEL":
            return
        if body != "ACCESS_READY":
            raise self._malformed("setStatus 8", body)
        await self._refused_cancel(activation_id)

    async def _refused_cancel(self, activation_id: str) -> None:
        """Why a cancel answered ``ACCESS_READY`` (DaisySMS: "rental missing or code already
        received") — asked of getStatus, so the caller gets the error that fits."""
        try:
            status = await self.status(activation_id)
        except ActivationNotFound:
            raise ActivationNotFound(f"{self.name}: cancel: no such activation", provider=self.name) from None
        if status.state is ActivationState.CANCELLED:
            raise AlreadyClosed(f"{self.name}: cancel: already cancelled", provider=self.name)
        if status.state is ActivationState.CODE:
            raise BusinessError(
                f"{self.name}: cancel refused: a code was already received", provider=self.name
            )
        raise EarlyCancelDenied(
            f"{self.name}: cancel refused while waiting",
            provider=self.name,
            retry_at=self._clock.now() + self._early_cancel_retry,
        )

    async def finish(self, activation_id: str) -> None:
        await self._set_status(activation_id, 6)

    async def request_another_code(self, activation_id: str) -> None:
        await self._set_status(activation_id, 3)

    async def balance(self) -> Balance:
        body = await self._call("getBalance")
        keyword, _, amount = body.partition(":")
        if keyword != "ACCESS_BALANCE":
            raise self._malformed("getBalance", body)
        try:
            value = decimal(amount)
        except ValueError:
            raise self._malformed("getBalance", body) from None
        minor = int((value.scaleb(exponent(self.provider_currency))).to_integral_value(ROUND_FLOOR))
        return Balance(amount=minor, currency=self.provider_currency)

    async def aclose(self) -> None:
        await self._client.aclose()


#: the name this adapter had while SMS-Activate ran (tests and old imports use it)
SmsActivateProvider = HandlerApiProvider
