"""Secrets never reach a log line, whichever library writes it.

The filter sits on the process's log *handlers*, not on loggers: a filter on a logger sees
only records created on that very logger, so one on ``httpcore`` misses
``httpcore.http11`` — which at DEBUG prints raw response headers, including a provider's
redirect ``Location`` that repeats ``?api_key=…``. On the handler every record of every
logger passes through it, after its message is formatted and before it is written.

Masked: the configured secrets themselves (bot token, provider keys, webhook secret,
dashboard secret), ``api_key=``/``token=``/``password=``-style values, bearer tokens,
Telegram bot tokens (``/bot<id>:<secret>/`` in Bot API URLs) and URL passwords.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

MASK = "***"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"(?i)((?:api[_-]?key|(?<![\w-])(?:key|token|access_token|secret|password))=)"
            r"[^&\s\"'<>]+"
        ),
        r"\1" + MASK,
    ),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/]+=*"), r"\1" + MASK),
    (re.compile(r"((?<![A-Za-z])bot\d+:)[A-Za-z0-9_-]+"), r"\1" + MASK),  # Bot API URL: /bot<id>:<secret>/
    (re.compile(r"\b(\d{6,}:)[A-Za-z0-9_-]{30,}"), r"\1" + MASK),  # a bare Telegram token
    (re.compile(r"(://[^/\s:@]+:)[^@/\s]+@"), r"\1" + MASK + "@"),  # user:password@host
)
_SECRET_SETTINGS = ("BOT_TOKEN", "TEXTVERIFIED_WEBHOOK_SECRET", "ADMIN_SECRET_KEY", "WEBHOOK_SECRET")
_MIN_SECRET_LEN = 6  # shorter "secrets" would mask ordinary words


def secret_values(settings: Any) -> list[str]:
    """The configured secrets of a ``Settings`` (unset ones skipped)."""
    values = [getattr(settings, name, None) for name in _SECRET_SETTINGS]
    for instance in getattr(settings, "provider_instances", ()):  # each provider's own key
        values += [instance.api_key, instance.webhook_secret]
    return [v for v in values if isinstance(v, str) and v]


def mask_text(text: str, secrets: Iterable[str] = ()) -> str:
    # Shapes first, so a token in a URL keeps its readable bot id; then the values.
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    for secret in sorted(secrets, key=len, reverse=True):  # the longest first: no half-masks
        if len(secret) >= _MIN_SECRET_LEN:
            text = text.replace(secret, MASK)
    return text


class SecretMaskingFilter(logging.Filter):
    """Formats the record's message (and traceback) once, masked, in place."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: set[str] = set()
        self.add_secrets(secrets)

    def add_secrets(self, secrets: Iterable[str | None]) -> None:
        self.secrets.update(s for s in secrets if s and len(s) >= _MIN_SECRET_LEN)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: mask what there is
            message = f"{record.msg} {record.args}"
        record.msg, record.args = mask_text(message, self.secrets), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info, self.secrets)
        return True


def install_secret_masking(
    secrets: Iterable[str | None] = (), handlers: Iterable[logging.Handler] | None = None
) -> SecretMaskingFilter:
    """Put one masking filter on each handler (the root logger's by default); idempotent —
    a second call adds its secrets to the filter already there."""
    targets = list(logging.getLogger().handlers if handlers is None else handlers)
    found = next((f for h in targets for f in h.filters if isinstance(f, SecretMaskingFilter)), None)
    shared = found if found is not None else SecretMaskingFilter()
    shared.add_secrets(secrets)
    for handler in targets:
        if shared not in handler.filters:
            handler.addFilter(shared)
    return shared
