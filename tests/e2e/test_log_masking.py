"""Secrets never reach the process's log output, whichever logger writes them: the masking
filter sits on the handlers the command line installs, so child loggers such as
``httpcore.http11`` (raw response headers at DEBUG) are masked too."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from numbershop import cli

API_KEY = "sa-key-0123456789abcdef"
BOT_TOKEN = "7000000001:AAH-real-looking-bot-token-secret-value"
WEBHOOK_SECRET = "tv-webhook-secret-value"


@pytest.fixture
def output(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[io.StringIO]:
    """The root logger with one stream handler, masked by the command line's own start-up step."""
    monkeypatch.chdir(tmp_path)  # no .env of the repository
    monkeypatch.setenv("PROVIDERS", "smsactivate")
    monkeypatch.setenv("SMSACTIVATE_URL", "https://api.example/stubs/handler_api.php")
    monkeypatch.setenv("SMSACTIVATE_API_KEY", API_KEY)
    monkeypatch.setenv("BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("TEXTVERIFIED_WEBHOOK_SECRET", WEBHOOK_SECRET)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.handlers = [handler]
    try:
        cli.configure_logging(verbose=True)  # what the command line does before any command
        root.setLevel(logging.DEBUG)
        yield buffer
    finally:
        root.handlers = saved_handlers
        root.setLevel(saved_level)


def test_httpcore_headers_with_a_redirect_location_do_not_show_the_key(output: io.StringIO) -> None:
    location = f"https://api.example/stubs/handler_api.php?api_key={API_KEY}&action=getBalance"
    logging.getLogger("httpcore.http11").debug(
        "receive_response_headers.complete return_value=%r",
        (b"HTTP/1.1", 302, b"Found", [(b"Location", location.encode())]),
    )
    text = output.getvalue()
    assert "receive_response_headers.complete" in text
    assert API_KEY not in text and "api_key=***" in text


def test_any_logger_masks_configured_secrets_and_bot_tokens(output: io.StringIO) -> None:
    logging.getLogger("aiogram.event").info("POST https://api.telegram.org/bot%s/getMe", BOT_TOKEN)
    logging.getLogger("numbershop.anything").warning("webhook secret is %s", WEBHOOK_SECRET)
    logging.getLogger("sandbox").info("url http://127.0.0.1:8088/bot8088000001:numbershop-sandbox/getMe")
    try:
        raise RuntimeError(f"GET /stubs/handler_api.php?api_key={API_KEY} failed")
    except RuntimeError:
        logging.getLogger("core.providers.smsactivate").exception("upstream failed")
    text = output.getvalue()
    for secret in (API_KEY, BOT_TOKEN, WEBHOOK_SECRET, "numbershop-sandbox"):
        assert secret not in text, secret
    assert "/bot7000000001:***/getMe" in text and "upstream failed" in text
    assert "RuntimeError" in text  # the traceback is kept, only masked


def test_every_provider_instance_key_and_the_webhook_secret_are_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core.config import Settings
    from core.logmask import secret_values

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        PROVIDERS="grizzly,fivesim",
        GRIZZLY_PRESET="grizzlysms",
        GRIZZLY_API_KEY="grizzly-key-123",
        GRIZZLY_CURRENCY="RUB",
        GRIZZLY_COST_RATE="0.011",
        FIVESIM_API_KEY="fivesim-key-456",
        FIVESIM_CURRENCY="RUB",
        FIVESIM_COST_RATE="0.011",
        WEBHOOK_SECRET="hook-secret-789",
    )
    found = secret_values(settings)
    assert {"grizzly-key-123", "fivesim-key-456", "hook-secret-789"} <= set(found)
