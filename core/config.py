"""Settings from the environment and ``.env``.

The variable names are a contract with operators and later features: they are read exactly
as written here (no prefix). A bad value fails at start with one line naming the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

KNOWN_PROVIDERS = ("simulator", "smsactivate", "textverified", "fivesim")
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/numbershop.db"


class ConfigError(Exception):
    """One line an operator can act on: which variable is wrong and why."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False,
        allow_inf_nan=False,  # "nan" or "inf" in a number is a typo, never a setting
    )

    DATABASE_URL: str = DEFAULT_DATABASE_URL
    REDIS_URL: str | None = None
    BOT_TOKEN: str | None = None
    TELEGRAM_API_URL: str = "https://api.telegram.org"
    PROVIDERS: Annotated[tuple[str, ...], NoDecode] = ("simulator",)
    SIMULATOR_SEED: int = 1
    SMSACTIVATE_URL: str = "https://api.sms-activate.ae/stubs/handler_api.php"
    SMSACTIVATE_API_KEY: str | None = None
    SMSACTIVATE_COST_RATE: float = Field(default=1.0, gt=0)
    SMSACTIVATE_ORDER_TTL_SECONDS: int = Field(default=1200, gt=0)
    TEXTVERIFIED_URL: str = "https://www.textverified.com"
    TEXTVERIFIED_API_USERNAME: str | None = None
    TEXTVERIFIED_API_KEY: str | None = None
    TEXTVERIFIED_WEBHOOK_SECRET: str | None = None
    # 5sim.net (API v1): amounts are in the account's currency; rate = shop units per 5sim unit.
    FIVESIM_URL: str = "https://5sim.net/v1"
    FIVESIM_API_KEY: str | None = None
    FIVESIM_COST_RATE: float = Field(default=1.0, gt=0)
    FIVESIM_ORDER_TTL_SECONDS: int = Field(default=900, gt=0)
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
    RECONCILE_INTERVAL_SECONDS: int = Field(default=900, gt=0)
    ADMIN_SECRET_KEY: str | None = None

    # --- Web servers' Host check (core.hosts) -------------------------------------------
    # Names the dashboard and the sandbox answer besides localhost, 127.0.0.1, [::1] and the
    # address they are bound to; anything else gets 421 (DNS rebinding). "*" turns it off.
    ALLOWED_HOSTS: Annotated[tuple[str, ...], NoDecode] = ()

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
            names = tuple(str(p).strip().lower() for p in value)  # type: ignore[union-attr]
        if not names:
            raise ValueError("name at least one provider")
        unknown = [n for n in names if n not in KNOWN_PROVIDERS]
        if unknown:
            raise ValueError(
                f"unknown provider {unknown[0]!r}; choose from {', '.join(KNOWN_PROVIDERS)}"
            )
        if len(set(names)) != len(names):
            raise ValueError("a provider is listed twice")
        return names

    @field_validator("SHOP_CURRENCY")
    @classmethod
    def _currency(cls, value: str) -> str:
        value = value.strip().upper()
        if len(value) != 3 or not value.isalpha():
            raise ValueError("use a three-letter ISO 4217 code such as USD")
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


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning pydantic's report into one line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        name = ".".join(str(p) for p in err.get("loc", ())) or "settings"
        msg = err.get("msg", "invalid value").removeprefix("Value error, ")
        raise ConfigError(f"{name}: {msg}") from None
