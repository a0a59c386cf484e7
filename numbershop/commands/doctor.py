"""``numbershop doctor``: check a production configuration, one line per check.

Each line starts with ``ok``, ``warn``, ``note`` or ``FAIL``; a failing line ends with the
fix. Exit 0 when nothing failed, 1 when something did, 2 on bad arguments or settings that
do not even load. Every network call is bounded by ``--timeout`` and the checks run side by
side, so the command answers within about one timeout whatever is down.

It only looks: it never migrates, never registers a webhook, and asks the providers for
their balance through a private breaker board, so a failing check cannot open the breaker
the running shop shares through Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from core.bootstrap import display_url
from core.clock import SystemClock
from core.config import ConfigError, Settings, load_settings
from core.db import migrate
from core.providers.breaker import BreakerBoard
from core.providers.instances import ProviderInstance
from core.providers.registry import build_instance

DEFAULT_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 120.0
MIN_SECRET_LENGTH = 32
_TOKEN_SHAPE = re.compile(r"\d{1,20}:[A-Za-z0-9_-]{20,}")
_NEW_SECRET = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    state: str  # 'ok' | 'warn' | 'note' | 'FAIL'
    detail: str
    fix: str | None = None

    @property
    def failed(self) -> bool:
        return self.state == "FAIL"

    def line(self) -> str:
        text = f"{self.state:<4}  {self.name}: {self.detail}"
        return f"{text} -- fix: {self.fix}" if self.fix else text


def ok(name: str, detail: str) -> Check:
    return Check(name, "ok", detail)


def fail(name: str, detail: str, fix: str) -> Check:
    return Check(name, "FAIL", detail, fix)


def _one_line(exc: BaseException) -> str:
    inner = getattr(exc, "orig", None) or exc
    lines = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {lines[0]}" if lines else type(inner).__name__


def optional_setting(settings: Settings, name: str) -> str | None:
    """A setting that may not exist yet in this version (read from the settings or the
    environment); empty counts as not set."""
    value = getattr(settings, name, None) or os.environ.get(name)
    return str(value) if value else None


# --- database ------------------------------------------------------------------------------


def _sqlite_file_problem(url: str) -> Check | None:
    """Looking at a SQLite file that is not there would create it: say so instead."""
    shown = display_url(url)
    path = make_url(url).database
    if not path or path == ":memory:":
        return fail(
            "database",
            f"{shown} is in memory: nothing would survive a restart",
            "point DATABASE_URL at a file or at PostgreSQL",
        )
    if not Path(path).exists():
        return fail("database", f"{shown}: the file does not exist", "run `numbershop db upgrade`")
    return None


async def check_database(settings: Settings) -> Check:
    url = settings.DATABASE_URL
    shown = display_url(url)
    problem = _sqlite_file_problem(url) if url.startswith("sqlite") else None
    if problem is not None:
        return problem
    try:
        current = await migrate.current_revision(url)
    except Exception as exc:  # any driver failure is this check's answer
        return fail(
            "database",
            f"cannot use {shown}: {_one_line(exc)}",
            "check DATABASE_URL and that the database server is running",
        )
    head = migrate.head_revision()
    if current != head:
        return fail(
            "database",
            f"{shown} is at revision {current or 'none'}, the code expects {head}",
            "run `numbershop db upgrade`",
        )
    return ok("database", f"{shown} reachable, at revision {head} (head)")


# --- redis ---------------------------------------------------------------------------------


async def check_redis(settings: Settings, timeout: float) -> Check:
    url = settings.REDIS_URL
    if not url:
        return Check(
            "redis",
            "note",
            "REDIS_URL not set: fine for one process, needed for several bot workers or dashboard replicas",
        )
    import redis.asyncio as aioredis

    client = aioredis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        await client.ping()
    except Exception as exc:  # reported as the check's result
        return fail(
            "redis",
            f"cannot reach {display_url(url)}: {type(exc).__name__}",
            "check REDIS_URL and that Redis is running",
        )
    finally:
        await client.aclose()
    return ok("redis", f"{display_url(url)} answers PING")


# --- telegram ------------------------------------------------------------------------------


async def _bot_api(settings: Settings, http: httpx.AsyncClient, method: str) -> tuple[int, dict[str, Any]]:
    base = settings.TELEGRAM_API_URL.rstrip("/")
    response = await http.get(f"{base}/bot{settings.BOT_TOKEN}/{method}")
    try:
        body = response.json()
    except ValueError:
        body = {}
    return response.status_code, body if isinstance(body, dict) else {}


def _unreachable(settings: Settings, exc: BaseException) -> str:
    # Never the exception's text: httpx puts the request URL, with the token, in it.
    return f"cannot reach {settings.TELEGRAM_API_URL}: {type(exc).__name__}"


async def check_bot_token(settings: Settings, http: httpx.AsyncClient) -> Check:
    token = settings.BOT_TOKEN
    if not token:
        return Check("bot token", "note", "BOT_TOKEN not set: skipped (the shop runs its sandbox)")
    if not _TOKEN_SHAPE.fullmatch(token):
        return fail(
            "bot token",
            "BOT_TOKEN does not look like a bot token ('<digits>:<secret>')",
            "copy the token @BotFather gave into BOT_TOKEN",
        )
    try:
        status, body = await _bot_api(settings, http, "getMe")
    except httpx.HTTPError as exc:
        return fail(
            "bot token",
            _unreachable(settings, exc),
            "check TELEGRAM_API_URL and outbound HTTPS from this machine",
        )
    if status == 200 and body.get("ok"):
        me = body.get("result") or {}
        return ok(
            "bot token",
            f"accepted by {settings.TELEGRAM_API_URL}: @{me.get('username', '?')} (id {me.get('id', '?')})",
        )
    return fail(
        "bot token",
        f"refused by {settings.TELEGRAM_API_URL}: {status} {body.get('description', '')}".rstrip(),
        "copy the current token from @BotFather into BOT_TOKEN",
    )


async def check_webhook(settings: Settings, http: httpx.AsyncClient) -> Check:
    url = optional_setting(settings, "WEBHOOK_URL")
    if not url:
        return Check("webhook", "note", "WEBHOOK_URL not set: the bot long-polls (one bot process at a time)")
    if not url.startswith("https://"):
        return fail(
            "webhook",
            f"WEBHOOK_URL {url} is not https",
            "Telegram delivers only to https URLs: put the TLS proxy (deploy/Caddyfile) "
            "in front and use its https address",
        )
    if not settings.BOT_TOKEN:
        return Check("webhook", "note", "registration not checked: BOT_TOKEN not set")
    try:
        status, body = await _bot_api(settings, http, "getWebhookInfo")
    except httpx.HTTPError as exc:
        return fail(
            "webhook",
            _unreachable(settings, exc),
            "check TELEGRAM_API_URL and outbound HTTPS from this machine",
        )
    if status != 200 or not body.get("ok"):
        return fail(
            "webhook",
            f"getWebhookInfo refused: {status} {body.get('description', '')}".rstrip(),
            "fix the bot token first",
        )
    info = body.get("result") or {}
    registered = info.get("url") or ""
    if registered != url:
        return fail(
            "webhook",
            f"Telegram has {registered or 'no webhook'} registered, not {url}",
            "start the bot in webhook mode (it registers WEBHOOK_URL) or call setWebhook",
        )
    last_error = info.get("last_error_message")
    if last_error:
        return fail(
            "webhook",
            f"registered, but Telegram's last delivery failed: {last_error}",
            "check that the proxy forwards WEBHOOK_URL to a bot worker",
        )
    return ok("webhook", f"{url} registered, {info.get('pending_update_count', 0)} updates pending")


# --- providers -----------------------------------------------------------------------------


async def _check_provider(
    instance: ProviderInstance, settings: Settings, board: BreakerBoard, clock: SystemClock, timeout: float
) -> Check:
    label = f"provider {instance.name}"
    if instance.kind == "simulator":
        return Check(
            label,
            "warn",
            "the built-in simulator sells made-up numbers; set PROVIDERS to real providers for production",
        )
    # A missing key or URL already stopped the settings from loading (exit 2, naming it).
    keys = " and ".join(instance.var(s) for s in ("URL", "API_KEY"))
    try:
        provider = board.guard(build_instance(instance, settings, clock))
    except ConfigError as exc:
        return fail(label, str(exc), f"set {keys}")
    try:
        balance = await asyncio.wait_for(provider.balance(), timeout)
    except TimeoutError:
        return fail(
            label,
            f"no answer within {timeout:g}s",
            "check the provider URL and outbound HTTPS from this machine",
        )
    except Exception as exc:  # the provider's refusal is the finding
        return fail(
            label,
            f"balance call failed: {type(exc).__name__}: {exc}",
            f"check {keys} (and the account) at the provider",
        )
    finally:
        with contextlib.suppress(Exception):  # closing is best effort
            await provider.aclose()
    return ok(label, f"key accepted, balance {balance.amount} {balance.currency} (provider minor units)")


async def check_providers(settings: Settings, timeout: float) -> list[Check]:
    """Side by side, so three slow providers still answer within one timeout."""
    clock = SystemClock()
    board = BreakerBoard(clock=clock)  # private: never the shared (Redis) breaker state
    try:
        return list(
            await asyncio.gather(
                *(
                    _check_provider(instance, settings, board, clock, timeout)
                    for instance in settings.provider_instances
                )
            )
        )
    finally:
        await board.aclose()


# --- secrets and the dashboard -------------------------------------------------------------


def check_secrets(settings: Settings) -> list[Check]:
    checks: list[Check] = []
    key = settings.ADMIN_SECRET_KEY
    if not key:
        checks.append(
            fail(
                "ADMIN_SECRET_KEY",
                "not set: each dashboard process keeps its own "
                "secret on disk, so sessions break across replicas and redeploys",
                f"set ADMIN_SECRET_KEY to the output of {_NEW_SECRET}",
            )
        )
    elif len(key) < MIN_SECRET_LENGTH:
        checks.append(
            fail(
                "ADMIN_SECRET_KEY",
                f"only {len(key)} characters",
                f"use at least {MIN_SECRET_LENGTH}: {_NEW_SECRET}",
            )
        )
    else:
        checks.append(ok("ADMIN_SECRET_KEY", "set"))
    if optional_setting(settings, "WEBHOOK_URL"):
        if optional_setting(settings, "WEBHOOK_SECRET"):
            checks.append(ok("WEBHOOK_SECRET", "set"))
        else:
            checks.append(
                fail(
                    "WEBHOOK_SECRET",
                    "not set while WEBHOOK_URL is: anyone could post fake updates to the webhook",
                    f"set WEBHOOK_SECRET to {_NEW_SECRET}",
                )
            )
    if "textverified" in settings.PROVIDERS and not settings.TEXTVERIFIED_WEBHOOK_SECRET:
        checks.append(
            Check(
                "TEXTVERIFIED_WEBHOOK_SECRET",
                "note",
                "not set: TextVerified webhooks are refused; codes arrive by polling",
            )
        )
    return checks


async def check_dashboard(settings: Settings, http: httpx.AsyncClient, url: str | None) -> list[Check]:
    checks: list[Check] = []
    if not settings.ALLOWED_HOSTS:
        checks.append(
            Check(
                "ALLOWED_HOSTS",
                "warn",
                "empty: behind a proxy the dashboard answers 421 to its public name",
                "add the public host name (deploy/numbershop.env)",
            )
        )
    if url is None:
        checks.append(
            Check(
                "dashboard cookies",
                "note",
                "not checked: pass --dashboard-url "
                "https://… (the deploy units run `admin run --secure-cookies`)",
            )
        )
        return checks
    if not url.startswith("https://"):
        checks.append(
            fail(
                "dashboard cookies",
                f"{url} is not https: cookies would travel in clear",
                "serve the dashboard through the TLS proxy (deploy/Caddyfile)",
            )
        )
        return checks
    try:
        response = await http.get(url.rstrip("/") + "/login")
    except httpx.HTTPError as exc:
        checks.append(
            fail(
                "dashboard cookies",
                f"cannot reach {url}: {type(exc).__name__}",
                "check the proxy and `numbershop admin run`",
            )
        )
        return checks
    cookies = response.headers.get_list("set-cookie")
    insecure = [
        c.split("=", 1)[0] for c in cookies if "secure" not in (a.strip().lower() for a in c.split(";")[1:])
    ]
    if not cookies:
        checks.append(Check("dashboard cookies", "note", f"{url}/login set no cookie to inspect"))
    elif insecure:
        checks.append(
            fail(
                "dashboard cookies",
                f"not marked Secure: {', '.join(insecure)}",
                "run `numbershop admin run --secure-cookies` behind the proxy",
            )
        )
    else:
        checks.append(ok("dashboard cookies", "marked Secure"))
    return checks


# --- running -------------------------------------------------------------------------------


async def _bounded(name: str, work: Awaitable[Check | list[Check]], timeout: float) -> list[Check]:
    """A check that cannot hang: past ``timeout`` (plus a little for closing) it fails."""
    try:
        result = await asyncio.wait_for(work, timeout + 1)
    except TimeoutError:
        return [fail(name, f"no answer within {timeout:g}s", "check that the service is up and reachable")]
    return result if isinstance(result, list) else [result]


async def run_checks(
    settings: Settings, *, timeout: float = DEFAULT_TIMEOUT_S, dashboard_url: str | None = None
) -> list[Check]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout), follow_redirects=False) as http:
        groups = await asyncio.gather(
            _bounded("database", check_database(settings), timeout),
            _bounded("redis", check_redis(settings, timeout), timeout),
            _bounded("bot token", check_bot_token(settings, http), timeout),
            _bounded("webhook", check_webhook(settings, http), timeout),
            _bounded("providers", check_providers(settings, timeout), timeout),
            _bounded("dashboard", check_dashboard(settings, http, dashboard_url), timeout),
        )
    *services, dashboard = groups
    return [*(c for group in services for c in group), *check_secrets(settings), *dashboard]


async def cmd_doctor(args: argparse.Namespace) -> int:
    settings = load_settings()  # a setting that does not load: exit 2 with its one line
    checks = await run_checks(settings, timeout=args.timeout, dashboard_url=args.dashboard_url)
    for check in checks:
        sys.stdout.write(check.line() + "\n")
    failed = sum(c.failed for c in checks)
    sys.stdout.write(f"{failed} check(s) failed\n" if failed else "all checks passed\n")
    return 1 if failed else 0


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= MAX_TIMEOUT_S:
        raise argparse.ArgumentTypeError(f"use a timeout between 0 and {MAX_TIMEOUT_S:g} seconds")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = subparsers.add_parser(
        "doctor", help="check a production configuration (database, Redis, Telegram, providers, secrets)"
    )
    doctor.add_argument(
        "--timeout",
        type=_timeout,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds each network check may take ({DEFAULT_TIMEOUT_S:g})",
    )
    doctor.add_argument(
        "--dashboard-url",
        metavar="URL",
        help="the dashboard's public https address, to check its cookies are Secure",
    )
    doctor.set_defaults(func=cmd_doctor)
