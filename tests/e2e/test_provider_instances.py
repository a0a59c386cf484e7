"""Named provider instances: ``PROVIDERS`` plus each instance's ``<NAME>_*`` settings.

Bad configuration is checked end to end through the command line (a real subprocess, as
``test_cli.py`` does): exit code 2, one line on stderr naming the variable, no traceback.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from core.clock import FakeClock
from core.config import ConfigError, Settings, load_settings
from core.providers import instances
from core.providers.breaker import BreakerBoard
from core.providers.handlerapi import HandlerApiProvider
from core.providers.handlerapi_presets import PRESETS
from core.providers.registry import build_providers
from numbershop.cli import main

REPO = Path(__file__).resolve().parents[2]


def _cli(tmp_path: Path, env_extra: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            (
                "SMSACTIVATE_",
                "TEXTVERIFIED_",
                "FIVESIM_",
                "GRIZZLY",
                "PROVIDERS",
                "REDIS_URL",
                "SHOP_CURRENCY",
            )
        )
    }
    env["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", "numbershop", *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


GRIZZLY = {
    "PROVIDERS": "grizzly",
    "GRIZZLY_PRESET": "grizzlysms",
    "GRIZZLY_API_KEY": "k-123",
    "GRIZZLY_CURRENCY": "RUB",
    "GRIZZLY_COST_RATE": "0.011",
}

BAD_CONFIG = [
    pytest.param({**GRIZZLY, "GRIZZLY_API_KEY": ""}, "GRIZZLY_API_KEY", id="missing-key"),
    pytest.param({**GRIZZLY, "GRIZZLY_API_KEY": "two words"}, "GRIZZLY_API_KEY", id="bad-key"),
    pytest.param({**GRIZZLY, "GRIZZLY_CURRENCY": ""}, "GRIZZLY_CURRENCY", id="missing-currency"),
    pytest.param({**GRIZZLY, "GRIZZLY_CURRENCY": "roubles"}, "GRIZZLY_CURRENCY", id="bad-currency"),
    pytest.param({**GRIZZLY, "GRIZZLY_URL": "grizzly.example"}, "GRIZZLY_URL", id="bad-url"),
    pytest.param({**GRIZZLY, "GRIZZLY_COST_RATE": "-1"}, "GRIZZLY_COST_RATE", id="bad-rate"),
    pytest.param({**GRIZZLY, "GRIZZLY_COST_RATE": ""}, "GRIZZLY_COST_RATE", id="rate-for-rub"),
    pytest.param({**GRIZZLY, "GRIZZLY_PRESET": "smsactivate"}, "GRIZZLY_PRESET", id="bad-preset"),
    pytest.param({**GRIZZLY, "GRIZZLY_ORDER_TTL_SECONDS": "soon"}, "GRIZZLY_ORDER_TTL_SECONDS", id="bad-ttl"),
    pytest.param({"PROVIDERS": "grizzly", "GRIZZLY_API_KEY": "k"}, "GRIZZLY_KIND", id="no-kind"),
    pytest.param({"PROVIDERS": "x", "X_KIND": "rest"}, "X_KIND", id="unknown-kind"),
    pytest.param(
        {"PROVIDERS": "smsactivate", "SMSACTIVATE_API_KEY": "k"},
        "SMSACTIVATE_URL",
        id="smsactivate-needs-its-url",
    ),
    pytest.param(
        {
            "PROVIDERS": "smsactivate",
            "SMSACTIVATE_API_KEY": "k",
            "SMSACTIVATE_URL": "https://api.sms-activate.ae/stubs/handler_api.php",
        },
        "SMSACTIVATE_URL",
        id="closed-host",
    ),
    pytest.param({"PROVIDERS": "grizzly-sms"}, "PROVIDERS", id="bad-name"),
]


@pytest.mark.parametrize(("env", "variable"), BAD_CONFIG)
def test_bad_instance_setting_exits_2_naming_the_variable(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    variable: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # no developer .env
    for name in [*os.environ, *env]:
        if name.startswith(("SMSACTIVATE_", "GRIZZLY", "PROVIDERS", "X_", "SHOP_CURRENCY")):
            monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    code = main(["providers", "status"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "", (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert variable in lines[0] and "Traceback" not in err
    assert "k-123" not in err  # a key is never echoed


@pytest.mark.parametrize(
    ("env", "variable"),
    [p for p in BAD_CONFIG if p.id in ("missing-key", "bad-currency", "smsactivate-needs-its-url")],
)
def test_bad_instance_setting_in_a_subprocess(tmp_path: Path, env: dict[str, str], variable: str) -> None:
    result = _cli(tmp_path, env, "providers", "status")
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0] and "Traceback" not in result.stderr


def test_dotenv_variables_configure_instances_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "PROVIDERS=grizzly,hero\nGRIZZLY_PRESET=grizzlysms\n"
        "GRIZZLY_API_KEY=from-file\nGRIZZLY_CURRENCY=RUB\nGRIZZLY_COST_RATE=0.011\n"
        "HERO_PRESET=herosms\nHERO_API_KEY=hero-key\n"
    )
    monkeypatch.setenv("GRIZZLY_API_KEY", "from-env")
    settings = Settings(_env_file=env_file)
    grizzly, hero = settings.provider_instances
    assert (grizzly.name, grizzly.kind, grizzly.preset) == ("grizzly", "handlerapi", "grizzlysms")
    assert grizzly.api_key == "from-env"
    assert grizzly.url == PRESETS["grizzlysms"].url and grizzly.host == "api.grizzlysms.com"
    assert (grizzly.currency, grizzly.cost_rate) == ("RUB", Decimal("0.011"))
    # Hero-SMS documents USD balances: the preset supplies the currency, a USD shop the rate
    assert (hero.currency, hero.cost_rate, hero.url) == (
        "USD",
        1,
        "https://hero-sms.com/stubs/handler_api.php",
    )
    # keyword arguments win over both
    assert Settings(_env_file=env_file, GRIZZLY_API_KEY="kw").provider_instances[0].api_key == "kw"


async def test_two_instances_of_one_kind_run_side_by_side(clock: FakeClock) -> None:
    settings = load_settings(
        _env_file=None,
        PROVIDERS="daisysms,backup,simulator",
        DAISYSMS_API_KEY="d",
        BACKUP_KIND="handlerapi",
        BACKUP_URL="http://127.0.0.1:9/stubs/handler_api.php",
        BACKUP_API_KEY="b",
        BACKUP_CURRENCY="USD",
    )
    board = BreakerBoard(clock=clock)
    providers = build_providers(settings, clock, board)
    try:
        assert list(providers) == ["daisysms", "backup", "simulator"]
        daisy = providers["daisysms"].inner  # type: ignore[attr-defined]
        backup = providers["backup"].inner  # type: ignore[attr-defined]
        assert isinstance(daisy, HandlerApiProvider) and isinstance(backup, HandlerApiProvider)
        assert daisy.dialect is PRESETS["daisysms"] and backup.dialect.name == "handlerapi"
        assert [p.name for p in providers.values()] == list(providers)
        assert list(board.states()) == ["daisysms", "backup", "simulator"]
    finally:
        for provider in providers.values():
            await provider.aclose()


def test_legacy_smsactivate_settings_warn_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(instances, "_warned_legacy", False)
    caplog.set_level(logging.WARNING, logger="core.config")
    kw = dict(
        _env_file=None,
        PROVIDERS="smsactivate",
        SMSACTIVATE_API_KEY="k",
        SMSACTIVATE_URL="https://handler.example/stubs/handler_api.php",
    )
    first = load_settings(**kw)
    load_settings(**kw)
    (instance,) = first.provider_instances
    assert (instance.kind, instance.preset, instance.currency) == ("handlerapi", None, "USD")
    warnings = [r for r in caplog.records if "deprecated" in r.getMessage()]
    assert len(warnings) == 1 and "SMSACTIVATE_" in warnings[0].getMessage()
    # a rate other than 1 says the prices are not the shop's: the currency must be named
    with pytest.raises(ConfigError, match="^SMSACTIVATE_CURRENCY: required"):
        load_settings(**kw, SMSACTIVATE_COST_RATE="0.011")


def test_instance_names_cannot_shadow_shop_settings() -> None:
    with pytest.raises(ConfigError, match="^PROVIDERS: the name 'shop' clashes with"):
        load_settings(_env_file=None, PROVIDERS="shop", SHOP_KIND="simulator")
    with pytest.raises(ConfigError, match="^PROVIDERS: a provider is listed twice"):
        load_settings(_env_file=None, PROVIDERS="simulator,Simulator")


def test_smshub_needs_a_currency_it_can_send() -> None:
    with pytest.raises(ConfigError, match="^SMSHUB_CURRENCY: smshub takes one of RUB, USD"):
        load_settings(
            _env_file=None,
            PROVIDERS="smshub",
            SMSHUB_API_KEY="k",
            SMSHUB_CURRENCY="GBP",
            SMSHUB_COST_RATE="1.25",
        )


def test_preset_on_another_kind_is_refused() -> None:
    with pytest.raises(ConfigError, match="^FIVESIM_PRESET: only handlerapi"):
        load_settings(
            _env_file=None,
            PROVIDERS="fivesim",
            FIVESIM_API_KEY="k",
            FIVESIM_CURRENCY="USD",
            FIVESIM_PRESET="daisysms",
        )


# ---------------------------------------------------------------- numbershop providers status


async def test_providers_status_lists_instances_and_what_could_not_be_mapped(
    tmp_path: Path, clock: FakeClock
) -> None:
    import asyncio
    import json

    from .fakes.smsactivate_server import PATH, FakeSmsActivate

    fake = FakeSmsActivate(clock, dialect="daisysms")
    await fake.start()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SMSACTIVATE_", "DAISYSMS_", "PROVIDERS", "REDIS_URL", "SHOP_CURRENCY"))
    }
    env.update(
        {
            "PROVIDERS": "daisysms,simulator",
            "DAISYSMS_URL": fake.base_url + PATH,
            "DAISYSMS_API_KEY": fake.api_key,
            "SHOP_CURRENCY": "USD",
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db",
            "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        }
    )

    async def status(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "numbershop",
            "providers",
            "status",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=tmp_path,
            env=env,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    try:
        code, out, err = await status("--json")
        assert code == 0, err
        rows = {r["name"]: r for r in json.loads(out)["providers"]}
        assert list(rows) == ["daisysms", "simulator"]
        daisy = rows["daisysms"]
        assert (daisy["kind"], daisy["preset"], daisy["host"]) == ("handlerapi", "daisysms", "127.0.0.1")
        assert daisy["breaker"]["state"] == "closed"
        assert daisy["balance"]["currency"] == "USD"
        # the fake lists service "zzz" and the virtual-US id 12, which the shop cannot name
        assert daisy["unmapped"] == {"services": ["zzz"], "countries": ["12"]}
        assert (rows["simulator"]["kind"], rows["simulator"]["unmapped"]) == ("simulator", None)
        code, out, err = await status()
        assert code == 0, err
        header, first = out.splitlines()[:2]
        assert header.split()[:5] == ["PROVIDER", "KIND", "PRESET", "HOST", "BREAKER"]
        assert first.split()[:5] == ["daisysms", "handlerapi", "daisysms", "127.0.0.1", "closed"]
        assert "daisysms: not mapped, never sold: services zzz; countries 12" in out
        assert fake.api_key not in out + err
    finally:
        await fake.stop()


def test_a_copy_with_other_providers_builds_only_those() -> None:
    """The sandbox runs on a copy with PROVIDERS=("simulator",): play money must never reach
    the real provider the shop's own settings name."""
    settings = load_settings(
        _env_file=None, PROVIDERS="fivesim,simulator", FIVESIM_API_KEY="k", FIVESIM_CURRENCY="USD"
    )
    sandbox = settings.model_copy(update={"PROVIDERS": ("simulator",)})
    assert [i.name for i in sandbox.provider_instances] == ["simulator"]
    assert [i.name for i in settings.provider_instances] == ["fivesim", "simulator"]
