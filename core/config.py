"""Settings from the environment and ``.env``.

The variable names are a contract with operators and later features: they are read exactly
as written here (no prefix). A bad value fails at start with one line naming the variable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from core.money import is_currency

if TYPE_CHECKING:
    from core.providers.instances import ProviderInstance

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/numbershop.db"


class ConfigError(Exception):
    """One line an operator can act on: which variable is wrong and why."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        allow_inf_nan=False,  # "nan" or "inf" in a number is a typo, never a setting
    )

    DATABASE_URL: str = DEFAULT_DATABASE_URL
    REDIS_URL: str | None = None
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    BOT_TOKEN: str | None = None
    TELEGRAM_API_URL: str = "https://api.telegram.org"
    # Providers: ``PROVIDERS`` names instances in priority order; each instance's own settings
    # (``<NAME>_KIND``, ``<NAME>_URL``, ``<NAME>_API_KEY``, ``<NAME>_CURRENCY``, …) are read by
    # core/providers/instances.py from the same environment and .env (see provider_instances).
    PROVIDERS: Annotated[tuple[str, ...], NoDecode] = ("simulator",)
    SIMULATOR_SEED: int = 1
    # The dashboard's TextVerified webhook endpoint checks signatures with this secret.
    TEXTVERIFIED_WEBHOOK_SECRET: str | None = None
    _provider_variables: dict[str, str] = PrivateAttr(default_factory=dict)
    _provider_instances: tuple[tuple[object, ...], tuple[ProviderInstance, ...]] | None = PrivateAttr(
        default=None
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        raw = _RawVariables(settings_cls, (dotenv_settings, env_settings, init_settings))
        return init_settings, env_settings, dotenv_settings, file_secret_settings, raw

    @model_validator(mode="wrap")
    @classmethod
    def _load_provider_instances(cls, data: Any, handler: ModelWrapValidatorHandler[Settings]) -> Settings:
        raw: dict[str, str] = {}
        if isinstance(data, dict):
            data = dict(data)
            raw = data.pop(_RAW_KEY, None) or {}
        settings = handler(data)
        settings._provider_variables = raw
        settings.provider_instances  # noqa: B018 - checked now: a bad value stops start-up
        return settings

    @property
    def provider_instances(self) -> tuple[ProviderInstance, ...]:
        """``PROVIDERS``' instances with their settings, in priority order. Loaded again when
        a copy changed what they depend on (``model_copy(update={"PROVIDERS": …})``)."""
        from core.providers.instances import load_instances

        key = (self.PROVIDERS, self.SHOP_CURRENCY, self.SIMULATOR_SEED)
        if self._provider_instances is None or self._provider_instances[0] != key:
            loaded = load_instances(
                self.PROVIDERS,
                self._provider_variables,
                shop_currency=self.SHOP_CURRENCY,
                simulator_seed=self.SIMULATOR_SEED,
                reserved={name.upper() for name in type(self).model_fields},
            )
            self._provider_instances = (key, loaded)
        return self._provider_instances[1]

    SHOP_CURRENCY: str = "USD"
    MARKUP_PERCENT: float = Field(default=20, ge=0, le=1000)
    STAFF_CHAT_ID: int | None = None
    # Telegram Stars top-ups: how many Stars buy one whole unit of SHOP_CURRENCY (50 → one
    # Star credits $0.02). The credited amount is fixed into the signed invoice payload.
    STARS_PER_CURRENCY_UNIT: float = Field(default=50, gt=0, le=1_000_000)
    QUOTE_TTL_SECONDS: int = Field(default=600, gt=0)
    ORDER_MAX_TTL_SECONDS: int = Field(default=1800, gt=0)
    HOLD_GRACE_SECONDS: int = Field(default=900, gt=0)
    RECOVERY_AFTER_SECONDS: int = Field(default=120, gt=0)
    SMS_POLL_INTERVAL_SECONDS: float = Field(default=3, gt=0)
    # After its first code an order's number stays open (more codes, free) until the buyer
    # taps Done or the deadline passes; it is polled this often meanwhile.
    OPEN_ORDER_POLL_SECONDS: float = Field(default=15, gt=0)
    # A waiting order's message is redrawn with the minutes left about this often; redraws
    # (and broadcasts) take at most OUTBOX_LOW_PRIORITY_SHARE of the sender's budget.
    ORDER_REDRAW_SECONDS: float = Field(default=60, gt=0)
    OUTBOX_LOW_PRIORITY_SHARE: float = Field(default=0.2, gt=0, le=1)
    RECONCILE_INTERVAL_SECONDS: int = Field(default=900, gt=0)
    ADMIN_SECRET_KEY: str | None = None
    # Dashboard security: a staff session ends this long after login however active it is;
    # support staff may credit at most SUPPORT_CREDIT_LIMIT minor units per action (admins
    # have no limit); the interactive API docs page (CDN script) is for development only.
    ADMIN_SESSION_MAX_AGE_SECONDS: int = Field(default=7 * 24 * 3600, gt=0)
    SUPPORT_CREDIT_LIMIT: int = Field(default=10_000, ge=0)
    ADMIN_API_DOCS: bool = False

    # --- What the bot tells buyers (/support, /paysupport, /terms) -----------------------
    # Plain text (shown escaped, never as markup). SUPPORT_CONTACT is where buyers reach a
    # person, e.g. "@shop_support"; Telegram expects bots taking Stars to answer /paysupport.
    SUPPORT_CONTACT: str = Field(
        default="The shop's operator has not set a support contact yet.", min_length=1, max_length=500
    )
    TERMS_TEXT: str = Field(
        default=(
            "• Each number is for a single use.\n"
            "• The price is held when you buy and charged only when a code arrives.\n"
            "• No code before the deadline: the held money comes back to your balance by itself, in full.\n"
            "• Balance topped up with Telegram Stars cannot be withdrawn or paid out.\n"
            "• Questions or problems: /support."
        ),
        min_length=1,
        max_length=3000,
    )

    # --- Web servers' Host check (core.hosts) -------------------------------------------
    # Names the dashboard and the sandbox answer besides localhost, 127.0.0.1, [::1] and the
    # address they are bound to; anything else gets 421 (DNS rebinding). "*" turns it off.
    ALLOWED_HOSTS: Annotated[tuple[str, ...], NoDecode] = ()

    @field_validator("LOG_LEVEL", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("ALLOWED_HOSTS", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> tuple[str, ...]:
        from core.hosts import split_hosts

        return split_hosts(value if isinstance(value, str) else tuple(value))  # type: ignore[arg-type]

    # ------------------------------------------------------------------------------------

    # --- Bot webhook mode (`numbershop bot run --webhook`) -------------------------------
    # Telegram POSTs updates to WEBHOOK_URL (https) with WEBHOOK_SECRET in a header; the bot
    # listens on WEBHOOK_HOST:WEBHOOK_PORT behind a TLS-terminating proxy. Polling ignores them.
    WEBHOOK_URL: str | None = None
    WEBHOOK_SECRET: str | None = None
    WEBHOOK_HOST: str = "127.0.0.1"
    WEBHOOK_PORT: int = Field(default=8081, ge=1, le=65535)
    WEBHOOK_MAX_CONNECTIONS: int = Field(default=40, ge=1, le=100)

    @field_validator("WEBHOOK_URL")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        from urllib.parse import urlsplit

        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("Telegram delivers webhooks over https only: use https://host/path")
        if parts.port not in (None, 443, 80, 88, 8443):
            raise ValueError("Telegram delivers webhooks to ports 443, 80, 88 and 8443 only")
        return value

    @field_validator("WEBHOOK_SECRET")
    @classmethod
    def _webhook_secret(cls, value: str | None) -> str | None:
        import re

        if not value:
            return None  # unset; webhook mode refuses to start without one
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value):
            raise ValueError("use 1-256 characters from A-Z a-z 0-9 _ - (Telegram's rule)")
        return value

    # ------------------------------------------------------------------------------------

    @field_validator("PROVIDERS", mode="before")
    @classmethod
    def _split_providers(cls, value: object) -> tuple[str, ...]:
        if isinstance(value, str):
            names = tuple(p.strip().lower() for p in value.split(",") if p.strip())
        else:
            names = tuple(str(p).strip().lower() for p in cast(Iterable[object], value))
        if not names:
            raise ValueError("name at least one provider")
        from core.providers.instances import check_name

        for name in names:
            problem = check_name(name)
            if problem:
                raise ValueError(problem)
        if len(set(names)) != len(names):
            raise ValueError("a provider is listed twice")
        return names

    @field_validator("SHOP_CURRENCY")
    @classmethod
    def _currency(cls, value: str) -> str:
        value = value.strip().upper()
        if len(value) != 3 or not value.isalpha():
            raise ValueError("use a three-letter ISO 4217 code such as USD")
        if not is_currency(value):
            raise ValueError(f"{value!r} is not an ISO 4217 currency code; use one such as USD")
        return value

    @field_validator("DATABASE_URL")
    @classmethod
    def _db_url(cls, value: str) -> str:
        if value.startswith("sqlite:///"):
            value = "sqlite+aiosqlite:///" + value[len("sqlite:///") :]
        elif value.startswith(("postgres://", "postgresql://")):
            value = "postgresql+asyncpg://" + value.split("://", 1)[1]
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("use sqlite+aiosqlite:///path.db or postgresql+asyncpg://…")
        return value

    @property
    def data_dir(self) -> Path:
        return Path("data")

    # --- Retention (core.retention): how long the logs are kept; the books are never deleted
    RETENTION_UPDATE_LOG_DAYS: int = Field(default=7, gt=0, le=3650)  # processed_updates
    RETENTION_OUTBOX_DAYS: int = Field(default=7, gt=0, le=3650)  # settled rows only
    RETENTION_ORDER_EVENTS_DAYS: int = Field(default=90, gt=0, le=3650)  # closed orders only
    RETENTION_QUOTES_HOURS: int = Field(default=24, gt=0, le=87600)  # expired, unused quotes
    RETENTION_BATCH_SIZE: int = Field(default=500, gt=0, le=10_000)  # rows per transaction
    RETENTION_MAX_ROWS_PER_RUN: int = Field(default=50_000, gt=0)  # per kind, per run

    # --- Crypto Pay (@CryptoBot) top-ups (core.cryptopay) ---------------------------------
    # With a token the top-up screen offers "Pay with crypto"; the dashboard serves the
    # webhook and the scheduler polls unpaid invoices. The URL is mainnet or testnet (a
    # loopback http URL is accepted too, for the sandbox's simulated server and tests).
    CRYPTOPAY_TOKEN: str | None = None
    CRYPTOPAY_URL: str = "https://pay.crypt.bot"
    CRYPTOPAY_ASSETS: Annotated[tuple[str, ...], NoDecode] = ("USDT", "TON", "BTC")

    @field_validator("CRYPTOPAY_TOKEN")
    @classmethod
    def _cryptopay_token(cls, value: str | None, info: ValidationInfo) -> str | None:
        from core.cryptopay_wire import FIATS

        if value is None or not value.strip():
            return None
        value = value.strip()
        if len(value) > 256 or any(c.isspace() for c in value):
            raise ValueError("paste the app token from @CryptoBot (Crypto Pay → My Apps → API token)")
        currency = info.data.get("SHOP_CURRENCY")
        if currency is not None and currency not in FIATS:
            raise ValueError(f"Crypto Pay cannot price invoices in SHOP_CURRENCY {currency}")
        return value

    @field_validator("CRYPTOPAY_URL")
    @classmethod
    def _cryptopay_url(cls, value: str) -> str:
        from core.cryptopay_wire import check_base_url

        return check_base_url(value)

    @field_validator("CRYPTOPAY_ASSETS", mode="before")
    @classmethod
    def _cryptopay_assets(cls, value: object) -> tuple[str, ...]:
        from core.cryptopay_wire import check_assets

        items = (
            value.split(",") if isinstance(value, str) else [str(v) for v in cast(Iterable[object], value)]
        )
        return check_assets(items)

    # --- Referrals (core.referrals): a referrer earns REFERRAL_PERCENT of each captured order
    # of a buyer they brought, for REFERRAL_DAYS after that buyer joined (0 percent: off).
    REFERRAL_PERCENT: float = Field(default=5, ge=0, le=50)
    REFERRAL_DAYS: int = Field(default=30, ge=0, le=3650)

    # --- Routing by delivered codes (core.routing, core.delivery_stats) -----------------
    # Each offer is ranked by cost / smoothed success rate; the rate is a Beta(successes,
    # failures) prior updated with rentals that weigh half as much every half-life.
    ROUTING_PRIOR_SUCCESSES: float = Field(default=2.0, gt=0, le=1000)
    ROUTING_PRIOR_FAILURES: float = Field(default=1.0, gt=0, le=1000)
    ROUTING_HALF_LIFE_HOURS: float = Field(default=3.0, gt=0, le=24 * 365)
    # Below this smoothed rate (once ROUTING_FLOOR_MIN_RENTALS weighted rentals are known) an
    # offer is tried only after every other one with stock.
    ROUTING_SUCCESS_FLOOR: float = Field(default=0.2, ge=0, lt=1)
    ROUTING_FLOOR_MIN_RENTALS: float = Field(default=5.0, ge=0)
    # Share of purchases sent to the least-known other offer, so a new or recovered one gets
    # traffic; 0 turns exploration off.
    ROUTING_EXPLORATION: float = Field(default=0.05, ge=0, le=0.5)
    # After a number expires without a code, the buyer's next number for that service and
    # country within this many seconds goes to another provider first.
    ROUTING_AVOID_AFTER_EXPIRY_SECONDS: int = Field(default=900, ge=0)
    # A cancel counts as "no code" only after the number was held this long (earlier, the
    # buyer changed their mind).
    ROUTING_CANCEL_COUNTS_AFTER_SECONDS: int = Field(default=180, ge=0)
    # Closed orders are folded into the statistics this long after closing (a close still
    # committing is never skipped by the watermark).
    ROUTING_FOLD_LAG_SECONDS: int = Field(default=30, ge=0, le=3600)
    # A rent whose outcome is unknown is resolved this many seconds after the failure (the
    # provider's list of activations/orders, or an idempotent retry); the recovery job
    # (RECOVERY_AFTER_SECONDS) stays the fallback. 0 turns the fast path off.
    RECOVERY_FAST_AFTER_SECONDS: float = Field(default=3.0, ge=0, le=600)


_RAW_KEY = "__provider_variables__"


class _RawVariables(PydanticBaseSettingsSource):
    """Every variable of ``.env``, the environment and the keyword arguments (later wins),
    upper-cased, for the provider instance loader: pydantic-settings only reads declared
    fields, and ``<NAME>_*`` cannot be declared."""

    def __init__(
        self, settings_cls: type[BaseSettings], sources: tuple[PydanticBaseSettingsSource, ...]
    ) -> None:
        super().__init__(settings_cls)
        self._sources = sources

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        merged: dict[str, str] = {}
        for source in self._sources:
            found: Mapping[str, Any] = (
                getattr(source, "env_vars", None) or getattr(source, "init_kwargs", None) or {}
            )
            for key, value in found.items():
                if value is not None and not isinstance(value, (dict, list, tuple)):
                    merged[str(key).upper()] = str(value)
        return {_RAW_KEY: merged}


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning pydantic's report into one line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        name = ".".join(str(p) for p in err.get("loc", ())) or "settings"
        msg = err.get("msg", "invalid value").removeprefix("Value error, ")
        raise ConfigError(f"{name}: {msg}") from None
