"""The ``fivesim`` adapter: 5sim.net's JSON REST API v1.

Protocol facts: ``shared/reference/5sim-api-v1.md``.

Why it looks the way it does:

* **Errors are plain text.** 5sim answers an error with a short text body (``no free phones``,
  ``order not found`` …), usually HTTP 400 but sometimes 200 or 404. The body text decides
  first (``fivesim_wire.ERRORS``), the HTTP status second; a body that is neither a known
  error nor the expected JSON — an HTML page, a truncated document — is
  ``MalformedResponse``, never a success. HTTP 401 is ``BadKey``.
* **Buying has no idempotency key.** Losing the reply to ``/user/buy/activation/…`` (read
  timeout, reset, 5xx, garbled body) may mean a number was bought and billed: that is
  ``OutcomeUnknown``. The order stays ``reserving`` and recovery looks for it through
  ``active_activations``, which reads the order history (``/user/orders``) — the open orders
  nobody owns, of the same product and country, created around the request. Unmapped
  products and countries are reported under their raw slug, never ``None``, so recovery can
  never hand an order someone else's unrelated number.
* **Price cap.** Every buy goes with operator ``any`` and ``maxPrice`` (5sim honours
  ``maxPrice`` only with ``any``), so 5sim picks a live operator and can never charge more
  than the user's confirmed price.
* **Catalogue** comes from one ``/guest/prices?country=…`` call per sold country (never the
  ≈9 MB all-prices call), a few at a time. An offer's cost is the cheapest operator with
  numbers in stock; its stock is the sum over operators. Countries come from
  ``/guest/countries`` (cached an hour), mapped to ISO codes through their ``iso`` key with
  ``fivesim_countries`` as fallback; products through ``fivesim_countries.PRODUCTS``.
  Unmapped products are skipped and counted in the log, not guessed.
* **Money.** 5sim quotes decimals in the account's currency (RUB or USD; the docs do not
  say). ``FIVESIM_COST_RATE`` is how many shop-currency units one 5sim unit is worth; costs
  round up, the ``maxPrice`` sent rounds down (``core/providers/cost_rate.py``).
* **Deadline** = the order's own lifetime (``expires − created_at``, 15 minutes in the docs)
  capped at ``FIVESIM_ORDER_TTL_SECONDS``, counted from its creation clamped to
  ``[now − ttl, now]``, so a skewed upstream clock can never push it beyond ``now + ttl``.
* **States.** ``RECEIVED`` means "number live", not "code arrived": the ``sms`` list decides.
  ``CANCELED`` and ``BANNED`` are closed without billing, ``TIMEOUT`` is expired,
  ``FINISHED`` closed and billed. There is no "another code" call: an open order keeps
  collecting SMS and each poll returns them all.
* **One call at a time** for buy, finish, cancel and ban per account; the API key travels
  only in the ``Authorization`` header of ``/user/*`` calls (guest calls go without it) and
  is masked in every message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import httpx

from core.catalogue_data import COUNTRY_CODES
from core.clock import Clock
from core.money import exponent
from core.providers import fivesim_countries as data
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
    BadKey,
    BadService,
    BusinessError,
    EarlyCancelDenied,
    MalformedResponse,
    NotSupported,
    PriceTooHigh,
    RateLimited,
)
from core.providers.fivesim_wire import (
    CLOSE_OPS,
    ERRORS,
    LONGEST_LIFETIME,
    OPEN_STATES,
    STATES,
    is_phone,
    message_id,
    order_id,
    seg,
)
from core.providers.http import MalformedOutcome, make_client, parse_time, send, snippet
from core.providers.instances import ProviderInstance

log = logging.getLogger(__name__)

DEFAULT_URL = "https://5sim.net/v1"


class FiveSimProvider:
    name = "fivesim"
    capabilities = Capabilities(idempotent_rent=False, batch_status=False, another_code=False)

    def __init__(
        self,
        *,
        url: str = DEFAULT_URL,
        api_key: str,
        clock: Clock,
        cost_rate: float | str | Decimal = 1.0,
        order_ttl_seconds: int = 900,
        shop_currency: str = "USD",
        provider_currency: str | None = None,
        timeout: httpx.Timeout | float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        early_cancel_retry_seconds: float = 60.0,
        reference_cache_seconds: float = 3600.0,
        catalogue_countries: Iterable[str] | None = None,
        catalogue_concurrency: int = 4,
        history_page_size: int = 100,
        history_max_pages: int = 5,
        name: str | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("a 5sim API key is required")
        if name:
            self.name = name
        self._api_key = api_key
        self._clock = clock
        self._rate = CostRate(cost_rate, shop_currency)
        self._ttl = timedelta(seconds=order_ttl_seconds)
        # With a rate of 1 the account bills in the shop's currency; otherwise the label is
        # informational only (balances are reported in 5sim's own units).
        self.provider_currency = (
            provider_currency or (shop_currency if Decimal(str(cost_rate)) == 1 else "RUB")
        ).upper()
        self._client = make_client(base_url=url.rstrip("/"), timeout=timeout, transport=transport)
        self._lock = asyncio.Lock()  # buy/finish/cancel/ban, one at a time per account
        self._early_cancel_retry = timedelta(seconds=early_cancel_retry_seconds)
        self._reference_ttl = timedelta(seconds=reference_cache_seconds)
        self._catalogue_countries = frozenset(
            c.upper() for c in (catalogue_countries if catalogue_countries is not None else COUNTRY_CODES)
        )
        self._catalogue_concurrency = catalogue_concurrency
        self._page_size = history_page_size
        self._max_pages = history_max_pages
        self._countries: tuple[datetime, dict[str, str]] | None = None  # ISO → slug
        self._lost_countries: set[str] = set()  # slugs with no ISO code

    @classmethod
    def from_instance(cls, instance: ProviderInstance, shop_currency: str, clock: Clock) -> FiveSimProvider:
        if not instance.url or not instance.api_key:
            raise ValueError(f"{instance.name}: a fivesim instance needs a URL and a key")
        return cls(
            url=instance.url,
            api_key=instance.api_key,
            clock=clock,
            cost_rate=instance.cost_rate,
            order_ttl_seconds=instance.order_ttl_seconds,
            shop_currency=shop_currency,
            provider_currency=instance.currency,
            name=instance.name,
        )

    # ------------------------------------------------------------------ transport

    async def _get(
        self,
        path: str,
        *,
        what: str,
        idempotent: bool = True,
        user: bool = True,
        params: dict[str, str] | None = None,
    ) -> Any:
        """One GET; the parsed JSON body after raising known errors."""
        headers = {"Accept": "application/json"}
        if user:
            headers["Authorization"] = f"Bearer {self._api_key}"
        response = await send(
            self._client,
            "GET",
            path,
            provider=self.name,
            clock=self._clock,
            idempotent=idempotent,
            secrets=(self._api_key,),
            what=what,
            headers=headers,
            params=params,
        )
        if response.status_code in (401, 403):
            raise BadKey(
                f"{self.name}: {what}: HTTP {response.status_code}; check FIVESIM_API_KEY", provider=self.name
            )
        try:
            body = response.content.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise self._malformed(what, response, idempotent) from None
        self._raise_for_error(what, body)
        if response.status_code != 200 or not body.startswith(("{", "[")):
            raise self._malformed(what, response, idempotent)
        try:
            return response.json()
        except ValueError:
            raise self._malformed(what, response, idempotent) from None

    def _raise_for_error(self, what: str, body: str) -> None:
        text = " ".join(body.lower().split())
        cls = ERRORS.get(text)
        if cls is None:
            return
        message = snippet(f"{self.name}: {what}: {text}", (self._api_key,))
        if cls is EarlyCancelDenied:
            raise EarlyCancelDenied(
                message, provider=self.name, retry_at=self._clock.now() + self._early_cancel_retry
            )
        if cls is RateLimited:  # 5sim sends no Retry-After
            raise RateLimited(message, provider=self.name, retry_after=None)
        raise cls(message, provider=self.name)

    def _malformed(self, what: str, body: httpx.Response | str, idempotent: bool = True) -> MalformedResponse:
        cls = MalformedResponse if idempotent else MalformedOutcome
        if isinstance(body, httpx.Response):
            detail = f"HTTP {body.status_code}: {snippet(body.content, (self._api_key,))!r}"
        else:
            detail = repr(snippet(body, (self._api_key,)))
        return cls(f"{self.name}: {what}: unexpected reply {detail}", provider=self.name)

    # ------------------------------------------------------------------ catalogue

    async def catalogue_gaps(self) -> CatalogueGaps:
        """Country slugs (``/guest/countries``) and activation products
        (``/guest/products/any/any``) that map to no ISO country / canonical service."""
        self._countries = None  # fresh, so the slugs lost in the mapping are counted
        await self._country_map()
        doc = await self._get("/guest/products/any/any", what="products", user=False)
        if not isinstance(doc, dict):
            raise self._malformed("products", repr(doc)[:200])
        products = {
            str(p)
            for p, entry in doc.items()
            if data.canonical_service(p) is None
            and not (isinstance(entry, dict) and entry.get("Category") == "hosting")
        }
        return CatalogueGaps.of(products, self._lost_countries)

    async def catalogue(self) -> list[Offer]:
        countries = await self._country_map()
        wanted = sorted((iso, slug) for iso, slug in countries.items() if iso in self._catalogue_countries)
        gate = asyncio.Semaphore(self._catalogue_concurrency)
        unmapped: set[str] = set()

        async def one(iso: str, slug: str) -> list[Offer]:
            what = f"prices {slug}"
            async with gate:
                try:
                    doc = await self._get("/guest/prices", what=what, user=False, params={"country": slug})
                except BusinessError as exc:  # "bad country": 5sim dropped it since the list
                    log.info("%s: %s not priced: %s", self.name, slug, exc)
                    return []
            return self._offers(iso, slug, doc, unmapped)

        results = await asyncio.gather(*(one(iso, slug) for iso, slug in wanted))
        if unmapped:
            log.info(
                "%s: %d products not mapped to a service, skipped: %s",
                self.name,
                len(unmapped),
                ", ".join(sorted(unmapped)[:20]),
            )
        return [offer for offers in results for offer in offers]

    def _offers(self, iso: str, slug: str, doc: Any, unmapped: set[str]) -> list[Offer]:
        what = f"prices {slug}"
        if not isinstance(doc, dict):
            raise self._malformed(what, repr(doc)[:200])
        by_product = doc.get(slug)
        if by_product is None:
            if doc:
                raise self._malformed(what, repr(doc)[:200])
            return []  # nothing sold there now
        if not isinstance(by_product, dict):
            raise self._malformed(what, repr(by_product)[:200])
        offers = []
        for product, operators in by_product.items():
            if not isinstance(operators, dict):
                raise self._malformed(what, f"{product}: {operators!r}"[:200])
            canonical = data.canonical_service(product)
            if canonical is None:
                unmapped.add(str(product))
                continue
            best = self._best_price(what, operators)
            if best is not None:
                cost, stock = best
                offers.append(
                    Offer(service=canonical, country=iso, cost=self._rate.to_shop_minor(cost), stock=stock)
                )
        return offers

    def _best_price(self, what: str, operators: dict[str, Any]) -> tuple[Decimal, int] | None:
        """(cheapest cost among operators in stock — or among all if none is, total stock)."""
        leaves: list[tuple[Decimal, int]] = []
        for operator, leaf in operators.items():
            if not isinstance(leaf, dict) or "cost" not in leaf:
                raise self._malformed(what, f"{operator}: {leaf!r}"[:200])
            try:
                cost = decimal(leaf["cost"])
                count = leaf.get("count", 0)
                if isinstance(count, bool):
                    raise ValueError
                count = int(count)
            except (TypeError, ValueError):
                raise self._malformed(what, f"{operator}: {leaf!r}"[:200]) from None
            leaves.append((cost, max(count, 0)))
        if not leaves:
            return None
        stocked = [cost for cost, count in leaves if count > 0]
        cost = min(stocked) if stocked else min(cost for cost, _ in leaves)
        return cost, sum(count for _, count in leaves)

    async def _country_map(self) -> dict[str, str]:
        """ISO → slug from ``/guest/countries`` (cached); the static map breaks ties."""
        now = self._clock.now()
        if self._countries and now - self._countries[0] < self._reference_ttl:
            return self._countries[1]
        doc = await self._get("/guest/countries", what="countries", user=False)
        if not isinstance(doc, dict):
            raise self._malformed("countries", repr(doc)[:200])
        candidates: dict[str, set[str]] = {}
        lost: set[str] = set()
        for slug, entry in doc.items():
            if not isinstance(entry, dict):
                raise self._malformed("countries", f"{slug}: {entry!r}"[:200])
            iso_keys = entry.get("iso")
            codes = (
                [k.upper() for k in iso_keys if isinstance(k, str) and len(k) == 2]
                if isinstance(iso_keys, dict)
                else []
            )
            iso = codes[0] if len(codes) == 1 else data.country_iso(slug)
            if iso is not None:
                candidates.setdefault(iso, set()).add(str(slug))
            else:
                lost.add(str(slug))
        mapping: dict[str, str] = {}
        for iso, slugs in candidates.items():
            preferred = data.country_slug(iso)
            if preferred in slugs:
                mapping[iso] = preferred
            elif len(slugs) == 1:
                mapping[iso] = next(iter(slugs))
            else:
                log.warning(
                    "%s: %s has several slugs (%s); not sold", self.name, iso, ", ".join(sorted(slugs))
                )
        self._countries = (now, mapping)
        self._lost_countries = lost
        return mapping

    def _slug(self, iso: str) -> str | None:
        if self._countries is not None:
            return self._countries[1].get(iso.upper())
        return data.country_slug(iso)

    def _iso(self, slug: object) -> str | None:
        if self._countries is not None and isinstance(slug, str):
            for iso, known in self._countries[1].items():
                if known == slug:
                    return iso
        return data.country_iso(slug)

    # ------------------------------------------------------------------ rent

    async def rent(self, request: RentRequest) -> Rental:
        product = data.product(request.service)
        if product is None:
            raise BadService(f"{self.name}: service {request.service!r} is not sold here", provider=self.name)
        slug = self._slug(request.country)
        if slug is None:
            raise BadService(f"{self.name}: country {request.country!r} is not sold here", provider=self.name)
        max_price = self._rate.to_provider_max(request.max_cost)
        if max_price <= 0:
            raise PriceTooHigh(
                f"{self.name}: max cost {request.max_cost} is below one 5sim unit", provider=self.name
            )
        path = f"/user/buy/activation/{seg(slug)}/any/{seg(product)}"
        async with self._lock:
            doc = await self._get(
                path, what="buy", idempotent=False, params={"maxPrice": format_provider_amount(max_price)}
            )
        rental = self._rental(
            doc, "buy", service=request.service, country=request.country, idempotent=False, fresh=True
        )
        if rental.cost > request.max_cost:
            log.warning(
                "%s: order %s cost %s above max %s",
                self.name,
                rental.activation_id,
                rental.cost,
                request.max_cost,
            )
        return rental

    def _rental(
        self,
        doc: Any,
        what: str,
        *,
        service: str | None = None,
        country: str | None = None,
        idempotent: bool = True,
        fresh: bool = False,
    ) -> Rental:
        try:
            if not isinstance(doc, dict):
                raise ValueError
            activation_id = order_id(doc.get("id"))
            phone = doc.get("phone")
            if not isinstance(phone, str) or not is_phone(phone):
                raise ValueError
            cost = self._rate.to_shop_minor(doc["price"])
            if doc.get("status") not in STATES:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise self._malformed(what, repr(doc)[:200], idempotent) from None
        now = self._clock.now()
        raw_created = parse_time(doc.get("created_at"))
        if fresh:
            # Just bought: a creation time outside [now − ttl, now] is clock skew.
            created = (
                raw_created if raw_created is not None and now - self._ttl <= raw_created <= now else now
            )
        elif raw_created is not None:
            # From the history: an old order keeps its age (recovery matches on it).
            created = min(raw_created, now)
        else:
            raise self._malformed(what, repr(doc)[:200], idempotent)
        lifetime = self._ttl
        raw_expires = parse_time(doc.get("expires"))
        if raw_created is not None and raw_expires is not None and raw_expires > raw_created:
            lifetime = min(lifetime, raw_expires - raw_created)
        product, slug = doc.get("product"), doc.get("country")
        return Rental(
            activation_id=activation_id,
            phone=phone.strip(),
            cost=cost,
            expires_at=created + lifetime,
            # An unmapped product/country keeps its raw slug: recovery must not match it.
            service=service or data.canonical_service(product) or f"5sim:{product}",
            country=country or self._iso(slug) or f"5sim:{slug}",
            created_at=created,
            can_request_another=False,
        )

    # ------------------------------------------------------------------ status

    async def _order(self, activation_id: str, op: str) -> dict[str, Any]:
        doc = await self._get(f"/user/{op}/{seg(activation_id)}", what=op)
        if (
            not isinstance(doc, dict)
            or doc.get("status") not in STATES
            or str(doc.get("id", "")).strip() != activation_id.strip()
        ):
            raise self._malformed(op, repr(doc)[:200])
        return doc

    async def status(self, activation_id: str) -> ActivationStatus:
        doc = await self._order(activation_id, "check")
        messages = self._messages(activation_id, doc.get("sms"))
        state = STATES[doc["status"]]
        if state is ActivationState.WAITING and messages:
            state = ActivationState.CODE
        return ActivationStatus(activation_id, state, messages)

    def _messages(self, activation_id: str, sms: object) -> tuple[SmsMessage, ...]:
        if sms is None:
            return ()
        if not isinstance(sms, list):
            raise self._malformed("check", repr(sms)[:200])
        out = []
        for entry in sms:
            if not isinstance(entry, dict):
                raise self._malformed("check", repr(entry)[:200])
            code, text = entry.get("code"), entry.get("text")
            code = code.strip() if isinstance(code, str) and code.strip() else None
            text = text if isinstance(text, str) else None
            if code is None and not text:
                continue
            received = parse_time(entry.get("date")) or parse_time(entry.get("created_at"))
            out.append(SmsMessage(message_id(activation_id, entry, code, text), code, text, received))
        # oldest first; a stable sort keeps 5sim's own order for SMS of the same second
        out.sort(key=lambda m: (m.received_at is None, m.received_at or datetime.min))
        return tuple(out)

    async def batch_status(self, activation_ids: list[str]) -> dict[str, ActivationStatus]:
        """One ``check`` per id (5sim has no batch read); unknown ids are absent."""
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
        """Open orders (``PENDING``/``RECEIVED``) from the order history, oldest first.

        This is the recovery hook for a buy whose reply was lost: the newest pages are read
        until an order older than the longest lifetime shows up (it cannot be open).
        """
        # 5sim keeps some orders open up to 30 minutes, whatever our own deadline
        horizon = self._clock.now() - max(self._ttl, LONGEST_LIFETIME) - timedelta(minutes=5)
        open_orders: list[Rental] = []
        offset = 0
        for _ in range(self._max_pages):
            doc = await self._get(
                "/user/orders",
                what="orders",
                params={
                    "category": "activation",
                    "limit": str(self._page_size),
                    "offset": str(offset),
                    "order": "id",
                    "reverse": "true",
                },
            )
            if not isinstance(doc, dict):
                raise self._malformed("orders", repr(doc)[:200])
            entries = doc.get("Data")
            if entries is None:
                entries = []
            if not isinstance(entries, list):
                raise self._malformed("orders", repr(doc)[:200])
            older = False
            for entry in entries:
                if not isinstance(entry, dict) or entry.get("status") not in STATES:
                    raise self._malformed("orders", repr(entry)[:200])
                created = parse_time(entry.get("created_at"))
                if created is not None and created < horizon:
                    older = True
                if entry["status"] in OPEN_STATES:
                    open_orders.append(self._rental(entry, "orders"))
            offset += len(entries)
            total = doc.get("Total")
            if older or len(entries) < self._page_size or (isinstance(total, int) and offset >= total):
                break
        else:
            log.warning("%s: order history longer than %d pages; stopped", self.name, self._max_pages)
        open_orders.sort(key=lambda r: (r.created_at or datetime.min, r.activation_id))
        return open_orders

    # ------------------------------------------------------------------ lifecycle

    async def _close(self, activation_id: str, op: str) -> None:
        async with self._lock:
            doc = await self._order(activation_id, op)
        status = doc["status"]
        if status == CLOSE_OPS[op]:
            return
        if status in OPEN_STATES:
            raise self._malformed(op, repr(doc)[:200])
        message = f"{self.name}: {op}: order {activation_id} is {status}"
        if op != "finish" and status == "FINISHED":
            # Billed upstream: not the unbilled close that was asked for.
            raise BusinessError(message, provider=self.name)
        raise AlreadyClosed(message, provider=self.name)

    async def cancel(self, activation_id: str) -> None:
        await self._close(activation_id, "cancel")

    async def finish(self, activation_id: str) -> None:
        await self._close(activation_id, "finish")

    async def ban(self, activation_id: str) -> None:
        """Report the number as already used: closed unbilled, never offered to us again."""
        await self._close(activation_id, "ban")

    async def request_another_code(self, activation_id: str) -> None:
        raise NotSupported(
            f"{self.name}: an open order keeps receiving SMS; there is no request for another code",
            provider=self.name,
        )

    async def balance(self) -> Balance:
        doc = await self._get("/user/profile", what="profile")
        try:
            if not isinstance(doc, dict):
                raise ValueError
            value = decimal(doc["balance"])
        except (KeyError, ValueError):
            raise self._malformed("profile", repr(doc)[:200]) from None
        minor = int((value.scaleb(exponent(self.provider_currency))).to_integral_value(ROUND_FLOOR))
        return Balance(amount=minor, currency=self.provider_currency)

    async def aclose(self) -> None:
        await self._client.aclose()
