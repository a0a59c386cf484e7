"""deploy/: there is no Docker engine or systemd to run them here, so check what can be checked:
the compose file parses, every numbershop command the units and services name exists with
exactly those flags, the env example loads as settings and holds placeholders only."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config import Settings
from numbershop.cli import build_parser

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
ENTRY = "/opt/numbershop/.venv/bin/numbershop"


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def compose_commands() -> dict[str, list[str]]:
    """numbershop argv of every service built from the numbershop image."""
    return {
        name: svc["command"]
        for name, svc in compose()["services"].items()
        if svc.get("image") == "numbershop:latest"
    }


def unit_commands() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for unit in UNITS:
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                argv = shlex.split(line.removeprefix("ExecStart="))
                assert argv[0] == ENTRY, f"{unit.name} runs {argv[0]}"
                out[unit.name] = argv[1:]
    return out


def all_commands() -> dict[str, list[str]]:
    return {
        **{f"compose:{k}": v for k, v in compose_commands().items()},
        **{f"systemd:{k}": v for k, v in unit_commands().items()},
    }


def test_compose_has_every_process():
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "migrate", "bot", "scheduler", "admin", "caddy"}
    assert compose_commands() == {
        "migrate": ["db", "upgrade"],
        "bot": ["bot", "run", "--webhook", "--workers", "2"],
        "scheduler": ["scheduler", "run"],
        "admin": [
            "admin",
            "run",
            "--host",
            "0.0.0.0",
            "--port",
            "8000",
            "--proxy-headers",
            "--forwarded-allow-ips",
            "*",
            "--secure-cookies",
        ],
    }
    assert services["bot"]["deploy"]["replicas"] == 1  # one container, its workers share a port
    assert services["bot"]["environment"]["WEBHOOK_HOST"] == "0.0.0.0"
    assert services["scheduler"]["deploy"]["replicas"] == 2  # one leads, one stands by
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published == {"caddy"}
    assert services["caddy"]["environment"]["ADMIN_UPSTREAM"] == "admin:8000"


def test_units_cover_every_process():
    assert unit_commands() == {
        "numbershop-migrate.service": ["db", "upgrade"],
        "numbershop-bot@.service": ["bot", "run", "--webhook"],
        "numbershop-scheduler@.service": ["scheduler", "run"],
        "numbershop-admin.service": [
            "admin",
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            "8000",
            "--proxy-headers",
            "--forwarded-allow-ips",
            "127.0.0.1",
            "--secure-cookies",
        ],
    }
    for unit in UNITS:
        text = unit.read_text()
        assert "EnvironmentFile=/etc/numbershop/numbershop.env" in text
        assert "User=numbershop" in text


@pytest.mark.parametrize("where", sorted(all_commands()))
def test_every_named_command_parses(where: str):
    """The exact argv (subcommand and flags) is accepted by the real parser."""
    args = build_parser().parse_args(all_commands()[where])
    assert callable(args.func)


def test_every_named_command_has_help():
    """``numbershop <cmd> --help`` answers for each distinct command, and each flag the
    deploy files pass is in that help."""
    top = subprocess.run(
        [sys.executable, "-m", "numbershop", "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    by_command: dict[tuple[str, ...], set[str]] = {}
    for argv in all_commands().values():
        words = tuple(a for a in argv[:2] if not a.startswith("-"))
        by_command.setdefault(words, set()).update(a for a in argv if a.startswith("--"))
    assert set(by_command) == {("db", "upgrade"), ("bot", "run"), ("scheduler", "run"), ("admin", "run")}
    for words, flags in by_command.items():
        assert re.search(rf"^\s+{words[0]}\s", top, re.M), f"{words[0]} missing from numbershop --help"
        result = subprocess.run(
            [sys.executable, "-m", "numbershop", *words, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        for flag in flags:
            assert flag in result.stdout, f"{' '.join(words)} --help does not mention {flag}"


def test_the_env_example_loads_and_holds_no_secret():
    path = DEPLOY / "numbershop.env.example"
    pairs = dict(
        line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")
    )
    outside = {"SHOP_DOMAIN", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}
    s = Settings(_env_file=str(path))  # type: ignore[call-arg]
    instances = tuple(f"{name.upper()}_" for name in s.PROVIDERS)  # <NAME>_* per instance
    read = {name for name in pairs if name in Settings.model_fields or name.startswith(instances)}
    assert set(pairs) - outside <= read, "a variable the shop does not read"
    for name, value in pairs.items():
        if re.search(r"KEY|TOKEN|SECRET|PASSWORD", name):
            assert value.startswith("CHANGE_ME"), f"{name} must be a placeholder"
    assert "CHANGE_ME_DB_PASSWORD@" in pairs["DATABASE_URL"]
    assert s.DATABASE_URL.startswith("postgresql+asyncpg://") and s.PROVIDERS == ("grizzly",)
    assert [(i.kind, i.preset) for i in s.provider_instances] == [("handlerapi", "grizzlysms")]
    assert s.RETENTION_ORDER_EVENTS_DAYS == 90


def test_the_proxy_fronts_the_dashboard_port():
    caddy = (DEPLOY / "Caddyfile").read_text()
    assert "{$SHOP_DOMAIN}" in caddy
    assert "reverse_proxy {$ADMIN_UPSTREAM:127.0.0.1:8000}" in caddy
