"""Named provider instances: ``PROVIDERS=grizzly,fivesim,textverified`` and their ``<NAME>_*``.

pydantic-settings declares fields statically, so the per-instance variables are read here,
from the raw environment and ``.env`` that ``core/config.py`` hands over. Every instance has a
*kind* (the adapter) and its own settings; two instances of one kind run side by side under
their own names (orders, breakers and catalogue rows carry the instance name).

A bad or missing value raises ``ConfigError`` naming the variable, so start-up stops with one
line (exit 2). Money safety decides two rules: a provider's currency is never guessed (it
comes from ``<NAME>_CURRENCY`` or a preset that documents it), and a provider whose currency is
not the shop's needs an explicit ``<NAME>_COST_RATE`` — a silent 1.0 would sell RUB-priced
numbers as if they were dollars, or the reverse.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import httpx

from core.config import ConfigError
from core.money import MoneyError, parse_positive_amount
from core.providers.handlerapi_presets import NUMERIC_CURRENCY, PRESETS

log = logging.getLogger("core.config")

KINDS = ("handlerapi", "fivesim", "textverified", "simulator")
#: an instance named like this needs no ``<NAME>_KIND``
DEFAULT_KIND: Mapping[str, str] = {
    "handlerapi": "handlerapi",
    "fivesim": "fivesim",
    "textverified": "textverified",
    "simulator": "simulator",
    "smsactivate": "handlerapi",
    **dict.fromkeys(PRESETS, "handlerapi"),
}
DEFAULT_URL: Mapping[str, str] = {
    "fivesim": "https://5sim.net/v1",
    "textverified": "https://www.textverified.com",
}
DEFAULT_CURRENCY: Mapping[str, str] = {"textverified": "USD"}  # TextVerified bills USD credits
DEFAULT_TTL: Mapping[str, int] = {"handlerapi": 1200, "fivesim": 900, "textverified": 900, "simulator": 1200}
#: the instance the old ``SMSACTIVATE_*`` settings configure
LEGACY_NAME = "smsactivate"

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_SETTINGS = (
    "KIND",
    "PRESET",
    "URL",
    "API_KEY",
    "API_USERNAME",
    "WEBHOOK_SECRET",
    "CURRENCY",
    "COST_RATE",
    "ORDER_TTL_SECONDS",
    "SEED",
    "BALANCE_ALERT_BELOW",
)
#: declared settings that *are* an instance's own (the default instances' names)
_OWN_SETTINGS = frozenset({"TEXTVERIFIED_WEBHOOK_SECRET", "SIMULATOR_SEED"})
_warned_legacy = False


@dataclass(frozen=True, slots=True)
class ProviderInstance:
    name: str
    kind: str
    preset: str | None = None
    url: str | None = None
    api_key: str | None = None
    api_username: str | None = None
    webhook_secret: str | None = None
    currency: str = "USD"  # what the provider's balance and prices are in
    cost_rate: Decimal = Decimal(1)  # shop-currency units per provider unit
    order_ttl_seconds: int = 1200
    seed: int = 1  # simulator only
    #: staff alert when the upstream balance drops below this, in ``currency`` minor units
    balance_alert_below: int | None = None

    @property
    def host(self) -> str | None:
        return httpx.URL(self.url).host if self.url else None

    def var(self, setting: str) -> str:
        return f"{self.name.upper()}_{setting}"


def check_name(name: str) -> str | None:
    """Why ``name`` cannot name an instance, or ``None``."""
    if not _NAME_RE.match(name):
        return (
            f"{name!r} is not a provider name (a letter, then up to 31 letters, digits "
            "or _; it prefixes that provider's settings)"
        )
    return None


def load_instances(
    names: Collection[str],
    env: Mapping[str, str],
    *,
    shop_currency: str,
    simulator_seed: int,
    reserved: Collection[str] = (),
) -> tuple[ProviderInstance, ...]:
    """The instances ``PROVIDERS`` lists, in its order, from ``env`` (keys upper-case)."""
    instances = tuple(_load(name, env, shop_currency, simulator_seed, reserved) for name in names)
    global _warned_legacy
    if not _warned_legacy and any(_is_legacy(i) for i in instances):
        _warned_legacy = True
        log.warning(
            "PROVIDERS names %r: SMS-Activate closed in December 2025 and SMSACTIVATE_* are "
            "deprecated; name the instance after your provider and give it a preset, e.g. "
            "PROVIDERS=grizzly with GRIZZLY_PRESET=grizzlysms",
            LEGACY_NAME,
        )
    return instances


def _is_legacy(instance: ProviderInstance) -> bool:
    return instance.name == LEGACY_NAME and instance.kind == "handlerapi"


class _Vars:
    def __init__(self, name: str, env: Mapping[str, str]) -> None:
        self.name = name
        self.prefix = name.upper() + "_"
        self.env = env

    def var(self, setting: str) -> str:
        return self.prefix + setting

    def get(self, setting: str) -> str | None:
        value = self.env.get(self.var(setting))
        if value is None:
            return None
        value = str(value).strip()
        return value or None

    def fail(self, setting: str, why: str) -> ConfigError:
        return ConfigError(f"{self.var(setting)}: {why}")


def _load(
    name: str, env: Mapping[str, str], shop_currency: str, simulator_seed: int, reserved: Collection[str]
) -> ProviderInstance:
    v = _Vars(name, env)
    clash = next((v.var(s) for s in _SETTINGS if v.var(s) in reserved), None)
    if clash is not None and clash not in _OWN_SETTINGS:
        raise ConfigError(
            f"PROVIDERS: the name {name!r} clashes with the setting {clash}; choose another name"
        )
    kind = _kind(v)
    preset = _preset(v, kind)
    if kind == "simulator":
        return ProviderInstance(
            name=name,
            kind=kind,
            currency=shop_currency,
            seed=_int(v, "SEED", simulator_seed, minimum=None),
            order_ttl_seconds=_int(v, "ORDER_TTL_SECONDS", DEFAULT_TTL[kind]),
            balance_alert_below=_threshold(v, shop_currency),
        )
    dialect = PRESETS[preset] if preset else None
    required = ["URL", *(["API_USERNAME"] if kind == "textverified" else []), "API_KEY"]
    url = v.get("URL") or (dialect.url if dialect else None) or DEFAULT_URL.get(kind)
    missing = [v.var(s) for s in required if not (url if s == "URL" else v.get(s))]
    if missing:
        hint = (
            " (SMS-Activate closed in December 2025: point it at a provider that still "
            "speaks handler_api.php, or use a preset)"
            if name == LEGACY_NAME and v.var("URL") in missing
            else " (set it in the environment or .env)"
        )
        raise ConfigError(f"{', '.join(missing)}: required when PROVIDERS includes {name}{hint}")
    assert url is not None
    _check_url(v, url)
    api_key = _secret(v, "API_KEY")
    username = _secret(v, "API_USERNAME") if kind == "textverified" else None
    raw_rate = v.get("COST_RATE")
    rate = _rate(v, raw_rate) if raw_rate is not None else None
    currency = _currency(v, kind, dialect.currency if dialect else None, shop_currency, rate)
    if rate is None:
        if currency != shop_currency:
            raise v.fail(
                "COST_RATE",
                f"required when {v.var('CURRENCY')} ({currency}) is not "
                f"SHOP_CURRENCY ({shop_currency}): shop units per {currency} unit",
            )
        rate = Decimal(1)
    if dialect is not None and dialect.currency_param and currency not in NUMERIC_CURRENCY:
        raise v.fail("CURRENCY", f"{preset} takes one of {', '.join(NUMERIC_CURRENCY)}")
    return ProviderInstance(
        name=name,
        kind=kind,
        preset=preset,
        url=url,
        api_key=api_key,
        api_username=username,
        webhook_secret=v.get("WEBHOOK_SECRET") if kind == "textverified" else None,
        currency=currency,
        cost_rate=rate,
        order_ttl_seconds=_int(v, "ORDER_TTL_SECONDS", DEFAULT_TTL[kind]),
        balance_alert_below=_threshold(v, currency),
    )


def _kind(v: _Vars) -> str:
    raw = v.get("KIND")
    if raw is not None:
        kind = raw.lower()
        if kind not in KINDS:
            raise v.fail("KIND", f"unknown kind {raw!r}; choose from {', '.join(KINDS)}")
        return kind
    default = DEFAULT_KIND.get(v.name)
    if default is None and v.get("PRESET") is not None:
        return "handlerapi"
    if default is None:
        raise ConfigError(
            f"PROVIDERS: {v.name!r} is no kind or preset; set {v.var('KIND')} (one of "
            f"{', '.join(KINDS)}) or {v.var('PRESET')} (one of {', '.join(PRESETS)})"
        )
    return default


def _preset(v: _Vars, kind: str) -> str | None:
    raw = v.get("PRESET")
    if raw is None:
        return v.name if kind == "handlerapi" and v.name in PRESETS else None
    preset = raw.lower()
    if kind != "handlerapi":
        raise v.fail("PRESET", f"only handlerapi providers take a preset, not {kind}")
    if preset not in PRESETS:
        raise v.fail("PRESET", f"unknown preset {raw!r}; choose from {', '.join(PRESETS)}")
    return preset


def _check_url(v: _Vars, url: str) -> None:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise v.fail("URL", "use an http:// or https:// URL")
    if "sms-activate." in parsed.host.lower():
        raise v.fail(
            "URL",
            "SMS-Activate closed in December 2025 (lookalike sites use its name); "
            "use a provider that still runs",
        )


def _secret(v: _Vars, setting: str) -> str:
    value = v.get(setting)
    assert value is not None
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise v.fail(setting, "contains spaces or control characters")
    return value


def _rate(v: _Vars, raw: str) -> Decimal:
    try:
        rate = Decimal(raw)
    except InvalidOperation:
        rate = Decimal("NaN")
    if not rate.is_finite() or rate <= 0:
        raise v.fail("COST_RATE", "must be a positive number (shop units per provider unit)")
    return rate


def _currency(
    v: _Vars, kind: str, preset_currency: str | None, shop_currency: str, rate: Decimal | None
) -> str:
    raw = v.get("CURRENCY")
    if raw is not None:
        code = raw.upper()
        if len(code) != 3 or not code.isalpha() or not code.isascii():
            raise v.fail("CURRENCY", "use a three-letter ISO 4217 code such as USD")
        return code
    default = preset_currency or DEFAULT_CURRENCY.get(kind)
    if default:
        return default
    if v.name == LEGACY_NAME and kind == "handlerapi" and (rate is None or rate == 1):
        return shop_currency  # as before: a rate of 1 meant prices in the shop's currency
    raise v.fail(
        "CURRENCY",
        f"required for provider {v.name!r}: the currency its balance and prices are in (e.g. RUB or USD)",
    )


def _int(v: _Vars, setting: str, default: int, *, minimum: int | None = 1) -> int:
    raw = v.get(setting)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise v.fail(setting, "must be a whole number") from None
    if minimum is not None and value < minimum:
        raise v.fail(setting, f"must be at least {minimum}")
    return value


def _threshold(v: _Vars, currency: str) -> int | None:
    """``<NAME>_BALANCE_ALERT_BELOW`` as a decimal in the provider's currency (``5.00``),
    stored in its minor units like the balances it is compared with."""
    raw = v.get("BALANCE_ALERT_BELOW")
    if raw is None:
        return None
    try:
        return parse_positive_amount(raw, currency)
    except MoneyError as exc:
        raise v.fail("BALANCE_ALERT_BELOW", f"{exc} (an amount in {currency}, e.g. 5.00)") from None
