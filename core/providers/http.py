"""Shared HTTP plumbing for the provider adapters: one place decides what a failure *means*.

The distinction that matters for money is whether a request may have reached the provider:

* nothing was sent (connection refused, DNS, connect timeout, no free pooled connection)
  → ``ProviderUnavailable`` / ``ProviderTimeout``: safe to fail over to another provider;
* the request was sent and the reply was lost (read timeout, reset, server vanished)
  → for a request that *changes* something and has no idempotency key this is
  ``OutcomeUnknown`` (the order stays ``reserving`` until recovery finds out), otherwise a
  plain transient error;
* a reply arrived → 429 is ``RateLimited`` carrying ``Retry-After``; 5xx is
  ``ProviderUnavailable`` (``OutcomeUnknown`` for a non-idempotent request, since a gateway
  error says nothing about whether the upstream applied it); anything else is for the adapter
  to validate.

Secrets (api keys, bearer tokens) must never reach a log line or an error message: every
message built here goes through :func:`mask`, the ``httpx`` request log is filtered, and the
original httpx exception is not chained (its ``request`` carries the full URL).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from core.clock import Clock
from core.providers.errors import (
    MalformedResponse,
    OutcomeUnknown,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)

log = logging.getLogger("core.providers.http")

#: Explicit defaults: a provider that does not answer within these is treated as down.
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=20.0, write=10.0, pool=5.0)
DEFAULT_LIMITS = httpx.Limits(max_connections=20, max_keepalive_connections=10, keepalive_expiry=30)
#: A Retry-After longer than this is capped: the breaker, not a sleeping caller, waits that long.
MAX_RETRY_AFTER_SECONDS = 3600.0
_MAX_BODY_IN_MESSAGE = 120

# query/body parameters whose values are secret wherever they appear in a URL or text
_SECRET_PARAM_RE = re.compile(r"(?i)((?:api_key|apikey|token|key|password)=)[^&\s\"']+")
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/]+=*")
MASK = "***"


class MalformedOutcome(OutcomeUnknown, MalformedResponse):
    """A garbled reply to a request that may have changed something upstream (a rent).

    It is an ``OutcomeUnknown`` first — the order stays ``reserving`` and recovery finds out,
    never a blind failover — and a ``MalformedResponse`` for anything asking only whether the
    reply was valid.
    """


def mask(text: object, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every known secret and every ``api_key=…``-style value replaced."""
    out = str(text)
    for secret in secrets:
        if secret and len(secret) >= 3:
            out = out.replace(secret, MASK)
    out = _SECRET_PARAM_RE.sub(lambda m: m.group(1) + MASK, out)
    return _BEARER_RE.sub(lambda m: m.group(1) + MASK, out)


def masked_url(url: httpx.URL | str, secrets: Iterable[str | None] = ()) -> str:
    """The URL without its query string's secret values (and no userinfo)."""
    u = httpx.URL(str(url))
    if u.userinfo:
        u = u.copy_with(username=None, password=None)
    return mask(u, secrets)


def snippet(body: str | bytes, secrets: Iterable[str | None] = ()) -> str:
    """A short, single-line, masked excerpt of a reply body for an error message."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    flat = " ".join(body.split())
    if len(flat) > _MAX_BODY_IN_MESSAGE:
        flat = flat[:_MAX_BODY_IN_MESSAGE] + "…"
    return mask(flat, secrets)


class _MaskingFilter(logging.Filter):
    """Rewrites httpx's ``HTTP Request: GET <url>`` lines so query-string keys never log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(
                masked_url(a) if isinstance(a, httpx.URL) else (mask(a) if isinstance(a, str) else a)
                for a in args
            )
        elif isinstance(record.msg, str):
            record.msg = mask(record.msg)
        return True


def install_log_masking() -> None:
    """Idempotently attach the masking filter to the loggers httpx/httpcore write to."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _MaskingFilter) for f in logger.filters):
            logger.addFilter(_MaskingFilter())


install_log_masking()


def make_client(
    *,
    base_url: str = "",
    timeout: httpx.Timeout | float | None = None,
    headers: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The one pooled client an adapter keeps for its provider (closed by ``aclose``)."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=timeout if timeout is not None else DEFAULT_TIMEOUT,
        limits=DEFAULT_LIMITS,
        headers={"User-Agent": "numbershop/0.1", **(headers or {})},
        follow_redirects=False,
        transport=transport,
        trust_env=False,
    )


def retry_after_seconds(value: str | None, clock: Clock) -> float | None:
    """Parse a ``Retry-After`` header: delta-seconds or an HTTP date; ``None`` if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - clock.now()).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str | httpx.URL,
    *,
    provider: str,
    clock: Clock,
    idempotent: bool = True,
    secrets: Iterable[str | None] = (),
    what: str | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """Send one request and translate transport failures, 429 and 5xx into provider errors.

    ``idempotent=False`` marks a request that changes state upstream and cannot be safely
    repeated (SMS-Activate's getNumber): losing its reply is ``OutcomeUnknown``. Returns the
    response (body read) for any other status; the caller validates it.
    """
    secrets = tuple(secrets)
    label = what or f"{method} {masked_url(url, secrets)}"
    try:
        response = await client.request(method, url, **kwargs)
    except (
        httpx.ConnectError,
        httpx.ConnectTimeout,
        httpx.PoolTimeout,
        httpx.UnsupportedProtocol,
        httpx.ProxyError,
    ) as exc:
        # Nothing reached the provider: a definite failure, safe to try elsewhere.
        cls = ProviderTimeout if isinstance(exc, httpx.TimeoutException) else ProviderUnavailable
        raise cls(
            _msg(provider, label, f"cannot connect ({type(exc).__name__})", secrets), provider=provider
        ) from None
    except httpx.TimeoutException as exc:  # read/write timeout: the request may have landed
        if not idempotent:
            raise OutcomeUnknown(
                _msg(provider, label, f"no reply in time ({type(exc).__name__}); outcome unknown", secrets),
                provider=provider,
            ) from None
        raise ProviderTimeout(
            _msg(provider, label, f"timed out ({type(exc).__name__})", secrets), provider=provider
        ) from None
    except httpx.TransportError as exc:  # reset / closed mid-request / garbled HTTP
        if not idempotent:
            raise OutcomeUnknown(
                _msg(provider, label, f"connection lost ({type(exc).__name__}); outcome unknown", secrets),
                provider=provider,
            ) from None
        raise ProviderUnavailable(
            _msg(provider, label, f"connection lost ({type(exc).__name__})", secrets), provider=provider
        ) from None
    except httpx.DecodingError:
        raise MalformedResponse(
            _msg(provider, label, "undecodable body", secrets), provider=provider
        ) from None

    status = response.status_code
    if status == 429:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"), clock)
        raise RateLimited(
            _msg(provider, label, f"rate limited (429), retry after {retry_after}s", secrets),
            provider=provider,
            retry_after=retry_after,
        )
    if status >= 500:
        detail = f"HTTP {status}: {snippet(response.content, secrets)}"
        if not idempotent:
            raise OutcomeUnknown(
                _msg(provider, label, detail + "; outcome unknown", secrets), provider=provider
            )
        raise ProviderUnavailable(_msg(provider, label, detail, secrets), provider=provider)
    return response


def _msg(provider: str, label: str, detail: str, secrets: Iterable[str | None]) -> str:
    return mask(f"{provider}: {label}: {detail}", secrets)


def parse_json(
    response: httpx.Response, *, provider: str, label: str, secrets: Iterable[str | None] = ()
) -> Any:
    """The body as JSON, or ``MalformedResponse`` (HTML pages, truncated bodies, empty)."""
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        raise MalformedResponse(
            _msg(
                provider,
                label,
                f"not JSON (HTTP {response.status_code}): {snippet(response.content, secrets)!r}",
                secrets,
            ),
            provider=provider,
        ) from None


def parse_time(value: object) -> datetime | None:
    """ISO-8601 / ``YYYY-MM-DD HH:MM:SS`` / epoch seconds → aware UTC; ``None`` if unusable.

    A naive time is taken as UTC: callers that cannot trust that clamp the result.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(float(value), tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return parse_time(int(text))
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python 3.11 parses up to 6 fractional digits; .NET sends 7.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


__all__ = [
    "MalformedOutcome",
    "DEFAULT_TIMEOUT",
    "MASK",
    "install_log_masking",
    "make_client",
    "mask",
    "masked_url",
    "parse_json",
    "parse_time",
    "retry_after_seconds",
    "send",
    "snippet",
]
