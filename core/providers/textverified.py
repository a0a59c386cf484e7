"""The ``textverified`` adapter: TextVerified API v2 (US numbers for single-use verifications).

Protocol facts: ``shared/reference/textverified-api-v2.md`` and the OpenAPI document beside it.

Why it looks the way it does:

* **Bearer token** and authenticated calls: ``core.providers.textverified_session``.
* **Rent is idempotent.** ``POST /verifications`` carries ``Idempotency-Key`` = our order id
  and ``maxPrice``. After an unclear failure (read timeout, reset, 5xx) the create is retried
  with the same key; a purchase still running answers 409 ``IdempotencyConflict`` and is
  retried after a short, bounded wait. If the outcome is still unknown the adapter raises
  ``OutcomeUnknown``: the order stays ``reserving`` and recovery calls ``rent`` again with
  the same key, which returns the same verification (201) or a definite 400. Once a create
  may have been sent, every later failure in the same call is ``OutcomeUnknown`` — never a
  definite error that would let routing rent a second number elsewhere.
  A 400 to a retry with the same key means that purchase expired without completing: the
  spec says start over with a new key, derived from the order's (``~new``), so recovery lands
  on the replacement purchase. An ``Error`` with ``errorCode: null`` is still a refusal.
* **Follow links.** The 201's ``Location`` is fetched for the details, as the API asks; the
  details' action links (``cancel``, ``report``) are followed with the ``method`` they give,
  and only when ``canCancel`` / ``canReport`` allow — a cancel that is not allowed yet is
  ``EarlyCancelDenied`` without a request. Links are only followed on the configured origin,
  so the bearer token never leaves for another host.
* **States.** ``verificationCompleted`` (the code came) is closed everywhere: ``FINISHED``
  with its messages, not active, not cancellable. Encrypted SMS (``encrypted: true``) are
  skipped and logged, never shown. ``availableQuantity`` 9000 means "9000 or more". The
  account needs only ``username``; no ``currentBalance`` is ``NotSupported`` (no breaker
  failure), a negative one a real balance.
* **Reservation-changing calls** (create, cancel, report) go one at a time per account.
* **Money.** TextVerified bills in USD credits, only when a code arrives. ``cost_rate`` converts
  credits to the shop currency (1.0 for a USD shop); max price rounds down, costs round up.
* **Validation.** Every JSON reply is checked for the fields used; HTML or truncated JSON is
  ``MalformedResponse``; unknown verification states too.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

import httpx

from core.catalogue_data import SERVICE_CODES
from core.clock import Clock
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
from core.providers.cost_rate import CostRate, decimal
from core.providers.errors import (
    ActivationNotFound,
    AlreadyClosed,
    BadService,
    BusinessError,
    EarlyCancelDenied,
    MalformedResponse,
    NotSupported,
    OutcomeUnknown,
    PriceTooHigh,
    ProviderError,
    RateLimited,
)
from core.providers.http import (
    MalformedOutcome,
    make_client,
    parse_json,
    parse_time,
)
from core.providers.instances import ProviderInstance
from core.providers.textverified_session import TextVerifiedSession
from core.providers.textverified_wire import (
    API,
    CREATE_ERRORS,
    OPEN_STATES,
    SERVICE_ALIASES,
    STATES,
    STOCK_CAP,
    error_doc,
    restart_key,
    seg,
)

log = logging.getLogger(__name__)


class TextVerifiedProvider(TextVerifiedSession):
    name = "textverified"
    capabilities = Capabilities(idempotent_rent=True, batch_status=False, another_code=False)

    def __init__(
        self,
        *,
        url: str,
        username: str,
        api_key: str,
        clock: Clock,
        cost_rate: float | str | Decimal = 1.0,
        shop_currency: str = "USD",
        timeout: httpx.Timeout | float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        token_refresh_margin_seconds: float = 60.0,
        create_timeout_retries: int = 1,
        conflict_retry_delays: tuple[float, ...] = (0.5, 1.0, 2.0),
        early_cancel_retry_seconds: float = 60.0,
        catalogue_concurrency: int = 3,
        max_pages: int = 20,
        name: str | None = None,
    ) -> None:
        if not username or not api_key:
            raise ValueError("TextVerified needs an API username and key")
        if name:
            self.name = name
        base = httpx.URL(url.rstrip("/") + "/")
        self._origin = (base.scheme, base.host, base.port)
        self._base = base
        self._username = username
        self._api_key = api_key
        self._clock = clock
        self._rate = CostRate(cost_rate, shop_currency)
        self._client = make_client(base_url=str(base), timeout=timeout, transport=transport)
        self._lock = asyncio.Lock()  # reservation-changing calls, one at a time per account
        self._auth_lock = asyncio.Lock()
        self._token: str | None = None
        self._token_expires: datetime | None = None
        self._old_tokens: list[str] = []  # still masked in messages after a refresh
        self._refresh_margin = timedelta(seconds=token_refresh_margin_seconds)
        self._create_timeout_retries = create_timeout_retries
        self._conflict_delays = conflict_retry_delays
        self._early_cancel_retry = timedelta(seconds=early_cancel_retry_seconds)
        self._catalogue_concurrency = catalogue_concurrency
        self._max_pages = max_pages
        self._service_names: dict[str, str] = {}  # TextVerified name → canonical
        self._available: set[str] = set()  # SMS-capable names in the last service list
        self._services_loaded: datetime | None = None
        self._services_ttl = timedelta(hours=1)

    @classmethod
    def from_instance(
        cls, instance: ProviderInstance, shop_currency: str, clock: Clock
    ) -> TextVerifiedProvider:
        if not instance.url or not instance.api_username or not instance.api_key:
            raise ValueError(f"{instance.name}: a textverified instance needs a URL, a username and a key")
        return cls(
            url=instance.url,
            username=instance.api_username,
            api_key=instance.api_key,
            clock=clock,
            cost_rate=instance.cost_rate,
            shop_currency=shop_currency,
            name=instance.name,
        )

    # ------------------------------------------------------------------ catalogue

    async def catalogue_gaps(self) -> CatalogueGaps:
        """TextVerified service names (SMS-capable) no canonical service maps to. Countries:
        TextVerified sells US numbers only, so there is nothing to lose there."""
        await self._service_map(refresh=True)
        lost = {name for name in self._available if self._canonical(name) is None}
        return CatalogueGaps.of(lost, ())

    async def catalogue(self) -> list[Offer]:
        mapping = await self._service_map(refresh=True)
        gate = asyncio.Semaphore(self._catalogue_concurrency)

        async def offer(canonical: str, tv_name: str) -> Offer | None:
            async with gate:
                try:
                    price = await self._price(tv_name)
                    stock = await self._stock(tv_name)
                except BusinessError as exc:  # the service refuses this option combination
                    log.info("%s: %s not offered: %s", self.name, tv_name, exc)
                    return None
            return Offer(service=canonical, country="US", cost=self._rate.to_shop_minor(price), stock=stock)

        results = await asyncio.gather(*(offer(c, t) for c, t in sorted(mapping.items())))
        return [o for o in results if o is not None]

    async def _catalogue_post(self, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        for attempt in (1, 2):
            try:
                response = await self._authed("POST", path, what=what, json=body)
            except RateLimited as exc:  # catalogue calls are throttled; wait once if told briefly
                if attempt == 1 and exc.retry_after is not None and exc.retry_after <= 5:
                    await asyncio.sleep(exc.retry_after)
                    continue
                raise
            if response.status_code == 400:
                raise BusinessError(
                    f"{self.name}: {what}: refused ({self._error_code(response) or 'Bad Request'})",
                    provider=self.name,
                )
            if response.status_code != 200:
                raise self._malformed(what, response)
            doc = parse_json(response, provider=self.name, label=what, secrets=self._secrets)
            if not isinstance(doc, dict):
                raise self._malformed(what, repr(doc)[:200])
            return doc
        raise AssertionError("unreachable")

    async def _price(self, tv_name: str) -> Decimal:
        doc = await self._catalogue_post(
            f"{API}/pricing/verifications",
            {
                "serviceName": tv_name,
                "areaCode": False,
                "carrier": False,
                "numberType": "mobile",
                "capability": "sms",
            },
            f"pricing {tv_name}",
        )
        try:
            return decimal(doc["price"])
        except (KeyError, ValueError):
            raise self._malformed(f"pricing {tv_name}", repr(doc)[:200]) from None

    async def _stock(self, tv_name: str) -> int:
        doc = await self._catalogue_post(
            f"{API}/inventory/verifications",
            {"serviceName": tv_name, "numberType": "mobile", "capability": "sms"},
            f"inventory {tv_name}",
        )
        quantity = doc.get("availableQuantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
            raise self._malformed(f"inventory {tv_name}", repr(doc)[:200])
        return min(quantity, STOCK_CAP)  # STOCK_CAP means "at least that many"

    async def _service_map(self, *, refresh: bool = False) -> dict[str, str]:
        """canonical → TextVerified serviceName, from the service list (cached an hour)."""
        now = self._clock.now()
        if (
            not refresh
            and self._services_loaded is not None
            and now - self._services_loaded < self._services_ttl
        ):
            return {canonical: tv for tv, canonical in self._service_names.items()}
        response = await self._authed(
            "GET",
            f"{API}/services",
            what="services",
            params={"numberType": "mobile", "reservationType": "verification"},
        )
        if response.status_code != 200:
            raise self._malformed("services", response)
        doc = parse_json(response, provider=self.name, label="services", secrets=self._secrets)
        if not isinstance(doc, list):
            raise self._malformed("services", repr(doc)[:200])
        available: set[str] = set()
        for entry in doc:
            if not isinstance(entry, dict) or not isinstance(entry.get("serviceName"), str):
                raise self._malformed("services", repr(entry)[:200])
            if entry.get("capability") in ("sms", "smsAndVoiceCombo", None):
                available.add(entry["serviceName"])
        mapping: dict[str, str] = {}
        for canonical in sorted(SERVICE_CODES):
            for candidate in SERVICE_ALIASES.get(canonical, (canonical,)):
                if candidate in available:
                    mapping[canonical] = candidate
                    break
        self._service_names = {tv: canonical for canonical, tv in mapping.items()}
        self._available = available
        self._services_loaded = now
        return mapping

    def _canonical(self, tv_name: object) -> str | None:
        if not isinstance(tv_name, str):
            return None
        if tv_name in self._service_names:
            return self._service_names[tv_name]
        for canonical, aliases in SERVICE_ALIASES.items():
            if tv_name in aliases:
                return canonical
        return tv_name if tv_name in SERVICE_CODES else None

    # ------------------------------------------------------------------ rent

    async def rent(self, request: RentRequest) -> Rental:
        if request.country.upper() != "US":
            raise BadService(f"{self.name}: only US numbers, not {request.country}", provider=self.name)
        tv_name = (await self._service_map()).get(request.service)
        if tv_name is None:
            raise BadService(f"{self.name}: service {request.service!r} is not sold here", provider=self.name)
        max_price = self._rate.to_provider_max(request.max_cost)
        if max_price <= 0:
            raise PriceTooHigh(
                f"{self.name}: max cost {request.max_cost} is below one cent", provider=self.name
            )
        key = request.idempotency_key.strip()
        if not 1 <= len(key) <= 256:
            raise ValueError("an Idempotency-Key must be 1 to 256 characters")
        body = {"serviceName": tv_name, "capability": "sms", "maxPrice": float(max_price)}
        async with self._lock:
            location = await self._create(body, key)
        try:
            details = await self._get_json(location, what="verification details")
            rental = self._rental(details, request.service, request.country)
        except ProviderError as exc:
            # The verification exists (201): renting again with the same key returns it.
            raise OutcomeUnknown(
                f"{self.name}: created, but reading it failed: {exc}", provider=self.name
            ) from None
        if rental.cost > request.max_cost:
            log.warning(
                "%s: verification %s cost %s above max %s",
                self.name,
                rental.activation_id,
                rental.cost,
                request.max_cost,
            )
        return rental

    async def _create(self, body: dict[str, Any], key: str) -> str:
        """POST the verification until a definite answer; returns the details link."""
        maybe_sent = False
        restarted = False
        timeouts_left = self._create_timeout_retries
        conflict_delays = iter(self._conflict_delays)
        what = "create verification"
        while True:
            try:
                response = await self._authed(
                    "POST",
                    f"{API}/verifications",
                    what=what,
                    idempotent=False,
                    json=body,
                    headers={"Idempotency-Key": key, "Accept": "application/json"},
                )
            except OutcomeUnknown:
                maybe_sent = True
                if timeouts_left > 0:
                    timeouts_left -= 1
                    log.info("%s: create unanswered; retrying with the same Idempotency-Key", self.name)
                    continue
                raise
            except ProviderError as exc:
                if maybe_sent:
                    raise OutcomeUnknown(
                        f"{self.name}: {what}: retry failed after an unanswered attempt: {exc}",
                        provider=self.name,
                    ) from None
                raise
            status = response.status_code
            if status == 201:
                location = response.headers.get("Location")
                if not location:
                    try:
                        link = response.json()
                        location = link.get("href") if isinstance(link, dict) else None
                    except ValueError:
                        location = None
                if not isinstance(location, str) or not location:
                    raise self._malformed(what, response, MalformedOutcome)
                return location
            is_error, code, description = error_doc(response)
            if status == 409:
                # The first purchase with this key is still running: wait, same key again.
                maybe_sent = True
                delay = next(conflict_delays, None)
                if delay is None:
                    raise OutcomeUnknown(
                        f"{self.name}: {what}: still in progress upstream ({code or 'Conflict'})",
                        provider=self.name,
                    )
                await asyncio.sleep(delay)
                continue
            if status == 400 and not restarted and (maybe_sent or not is_error or code not in CREATE_ERRORS):
                # The spec: after a retry with the same key, 400 means that purchase expired
                # without completing — nothing was bought; start over with a new key. The new
                # key is derived, so recovery renting again with the order's key (400 again,
                # the expired purchase) lands on the replacement purchase, never a third one.
                # A known refusal (no numbers, price…) to a first attempt stays definite.
                log.info(
                    "%s: create expired upstream (%s); starting over with a new key",
                    self.name,
                    code or description or "400",
                )
                key, restarted, maybe_sent = restart_key(key), True, False
                continue
            if status == 400 and is_error:
                cls = CREATE_ERRORS.get(code or "", BusinessError)
                reason = code or description or "refused"
                raise cls(f"{self.name}: {what}: {reason}", provider=self.name)
            raise self._malformed(what, response, MalformedOutcome if maybe_sent else MalformedResponse)

    def _rental(self, doc: Any, service: str | None, country: str | None) -> Rental:
        try:
            activation_id = doc["id"]
            phone = doc["number"]
            if not isinstance(activation_id, str) or not activation_id:
                raise ValueError
            if not isinstance(phone, str) or not phone.strip():
                raise ValueError
            cost = self._rate.to_shop_minor(doc["totalCost"])
            expires = parse_time(doc["endsAt"])
            if expires is None:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise self._malformed("verification details", repr(doc)[:200]) from None
        return Rental(
            activation_id=activation_id,
            phone=phone.strip(),
            cost=cost,
            expires_at=expires,
            service=service or self._canonical(doc.get("serviceName")),
            country=country or "US",
            created_at=parse_time(doc.get("createdAt")),
            can_request_another=False,
        )

    # ------------------------------------------------------------------ status

    async def _details(self, activation_id: str) -> dict[str, Any]:
        doc = await self._get_json(f"{API}/verifications/{seg(activation_id)}", what="verification details")
        if not isinstance(doc, dict) or not isinstance(doc.get("state"), str):
            raise self._malformed("verification details", repr(doc)[:200])
        if doc["state"] not in STATES:
            raise self._malformed("verification details", f"unknown state {doc['state']!r}")
        return doc

    async def status(self, activation_id: str) -> ActivationStatus:
        doc = await self._details(activation_id)
        state = STATES[doc["state"]]
        messages: tuple[SmsMessage, ...] = ()
        if doc["state"] in OPEN_STATES or state is ActivationState.FINISHED:
            messages = await self.messages(activation_id, doc)
        if state is ActivationState.WAITING and messages:
            state = ActivationState.CODE
        return ActivationStatus(activation_id, state, messages)

    async def messages(
        self, activation_id: str, details: dict[str, Any] | None = None
    ) -> tuple[SmsMessage, ...]:
        link = (details or {}).get("sms")
        href = link.get("href") if isinstance(link, dict) else None
        if not href:
            href = str(httpx.URL(f"{API}/sms", params={"reservationId": activation_id}))
        out = []
        for item in await self._pages(str(href), what="sms"):
            mid = item.get("id")
            if not isinstance(mid, str) or not mid:
                raise self._malformed("sms", repr(item)[:200])
            if item.get("encrypted") is True:
                # An encrypted body (and its parsed code) is ciphertext to us: showing it
                # would hand the user garbage. Skipped, and said so.
                log.warning("%s: sms %s of %s is encrypted; not shown", self.name, mid, activation_id)
                continue
            code, text = item.get("parsedCode"), item.get("smsContent")
            out.append(
                SmsMessage(
                    message_id=mid,
                    code=code if isinstance(code, str) and code else None,
                    text=text if isinstance(text, str) else None,
                    received_at=parse_time(item.get("createdAt")),
                )
            )
        out.sort(key=lambda m: (m.received_at is None, m.received_at or datetime.min, m.message_id))
        return tuple(out)

    async def batch_status(self, activation_ids: list[str]) -> dict[str, ActivationStatus]:
        """One status call per id (the API has no batch read); unknown ids are absent."""
        gate = asyncio.Semaphore(4)
        result: dict[str, ActivationStatus] = {}

        async def one(aid: str) -> None:
            async with gate:
                try:
                    result[aid] = await self.status(aid)
                except ActivationNotFound:
                    pass

        await asyncio.gather(*(one(a) for a in dict.fromkeys(activation_ids)))
        return result

    async def active_activations(self) -> list[Rental]:
        rentals = []
        for item in await self._pages(f"{API}/verifications", what="verifications"):
            if item.get("state") != "verificationPending":
                continue
            aid = item.get("id")
            if not isinstance(aid, str) or not aid:
                raise self._malformed("verifications", repr(item)[:200])
            try:
                details = await self._details(aid)
            except ActivationNotFound:
                continue
            rentals.append(self._rental(details, None, "US"))
        return rentals

    # ------------------------------------------------------------------ lifecycle

    def _action(self, doc: dict[str, Any], name: str, allowed_key: str | None) -> tuple[bool, str, str]:
        """(allowed, method, href) of an action in the verification details, as given."""
        action = doc.get(name)
        link = action.get("link") if isinstance(action, dict) else None
        href = link.get("href") if isinstance(link, dict) else None
        method = link.get("method") if isinstance(link, dict) else None
        allowed = action.get(allowed_key) if allowed_key and isinstance(action, dict) else True
        if not isinstance(href, str) or not href or not isinstance(allowed, bool):
            raise self._malformed("verification details", f"{name}: {action!r}"[:200])
        method = method.strip().upper() if isinstance(method, str) and method.strip() else "POST"
        if method not in ("POST", "GET", "PUT", "PATCH", "DELETE"):
            raise self._malformed("verification details", f"{name}: method {method!r}")
        return allowed, method, href

    async def cancel(self, activation_id: str) -> None:
        """Cancel as the details say: ``cancel.canCancel`` decides, ``cancel.link`` is used."""
        doc = await self._details(activation_id)
        for attempt in (1, 2):
            if doc["state"] != "verificationPending":
                raise AlreadyClosed(f"{self.name}: cancel: already {doc['state']}", provider=self.name)
            allowed, method, href = self._action(doc, "cancel", "canCancel")
            if not allowed:
                raise EarlyCancelDenied(
                    f"{self.name}: cancel not allowed yet (canCancel false)",
                    provider=self.name,
                    retry_at=self._clock.now() + self._early_cancel_retry,
                )
            async with self._lock:
                response = await self._authed(method, href, what="cancel")
            if response.status_code in (200, 204):
                return
            if response.status_code == 404:
                raise ActivationNotFound(f"{self.name}: cancel: not found", provider=self.name)
            if response.status_code != 400 or attempt == 2:
                break
            doc = await self._details(activation_id)  # changed since we read it: ask again
        raise self._malformed("cancel", response)

    async def report(self, activation_id: str) -> None:
        """Report a number that did not work (refunds it upstream), if ``report.canReport``."""
        doc = await self._details(activation_id)
        allowed, method, href = self._action(doc, "report", "canReport")
        if not allowed:
            raise BusinessError(f"{self.name}: report not allowed ({doc['state']})", provider=self.name)
        async with self._lock:
            response = await self._authed(method, href, what="report")
        if response.status_code in (200, 204):
            return
        if response.status_code == 404:
            raise ActivationNotFound(f"{self.name}: report: not found", provider=self.name)
        if response.status_code == 400:
            raise BusinessError(f"{self.name}: report refused", provider=self.name)
        raise self._malformed("report", response)

    async def finish(self, activation_id: str) -> None:
        """Nothing to do: a verification closes by itself once its code arrived."""

    async def request_another_code(self, activation_id: str) -> None:
        """Not on this port: TextVerified's ways to another code (``reuse`` shortly after a
        completed verification, ``reactivate`` later) create a *new* verification with its
        own id and cost, which an order cannot follow by its old activation id. They are
        offered as :meth:`reuse` and :meth:`reactivate`, each returning the new rental."""
        raise NotSupported(
            f"{self.name}: another code needs a new verification (reuse or reactivate), not this activation",
            provider=self.name,
        )

    async def reuse(self, activation_id: str) -> Rental:
        """The same number again, while ``reuse.reusableUntil`` lies in the future."""
        doc = await self._details(activation_id)
        _, method, href = self._action(doc, "reuse", None)
        until = parse_time((doc.get("reuse") or {}).get("reusableUntil"))
        if until is None or until <= self._clock.now():
            raise NotSupported(f"{self.name}: {activation_id} is not reusable", provider=self.name)
        return await self._again(doc, "reuse", method, href)

    async def reactivate(self, activation_id: str) -> Rental:
        """A completed verification's number again, when ``reactivate.canReactivate``."""
        doc = await self._details(activation_id)
        allowed, method, href = self._action(doc, "reactivate", "canReactivate")
        if not allowed:
            raise NotSupported(f"{self.name}: {activation_id} cannot be reactivated", provider=self.name)
        return await self._again(doc, "reactivate", method, href)

    async def _again(self, doc: dict[str, Any], what: str, method: str, href: str) -> Rental:
        async with self._lock:
            response = await self._authed(
                method, href, what=what, idempotent=False, headers={"Accept": "application/json"}
            )
        if response.status_code == 400:
            raise BusinessError(
                f"{self.name}: {what} refused ({self._error_code(response) or 'not eligible'})",
                provider=self.name,
            )
        if response.status_code != 201:
            raise self._malformed(what, response, MalformedOutcome)
        location = response.headers.get("Location")
        if not location:
            raise self._malformed(what, response, MalformedOutcome)
        try:
            details = await self._get_json(location, what="verification details")
            return self._rental(details, self._canonical(doc.get("serviceName")), "US")
        except ProviderError as exc:
            raise OutcomeUnknown(
                f"{self.name}: {what} created, but reading it failed: {exc}", provider=self.name
            ) from None

    async def balance(self) -> Balance:
        doc = await self._get_json(f"{API}/account/me", what="account", not_found=False)
        if not isinstance(doc, dict) or not isinstance(doc.get("username"), str):
            raise self._malformed("account", repr(doc)[:200])
        # The spec requires only ``username``: a missing balance is an answer, not a fault,
        # and a negative one (credit owed) is a real balance.
        raw = doc.get("currentBalance")
        if raw is None:
            raise NotSupported(f"{self.name}: the account reply carries no balance", provider=self.name)
        try:
            if isinstance(raw, bool):
                raise InvalidOperation
            value = Decimal(str(raw))
            if not value.is_finite():
                raise InvalidOperation
        except InvalidOperation:
            raise self._malformed("account", repr(doc)[:200]) from None
        return Balance(amount=int(value.scaleb(2).to_integral_value(ROUND_FLOOR)), currency="USD")

    async def aclose(self) -> None:
        await self._client.aclose()


__all__ = ["SERVICE_ALIASES", "TextVerifiedProvider"]
