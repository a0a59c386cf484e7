"""create_app from Settings: builds its own core, keeps a generated secret under ./data."""

from __future__ import annotations

import logging
import os
import stat

from litestar.testing import AsyncTestClient

from admin.app import create_app
from core.config import Settings


async def test_settings_build_core_and_secret_is_generated_once(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("ADMIN_SECRET_KEY", "REDIS_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None, DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/shop.db")
    with caplog.at_level(logging.WARNING, logger="admin.secret"):
        app = create_app(settings)
    path = tmp_path / "data" / "admin_secret_key"
    assert path.exists() and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "ADMIN_SECRET_KEY is not set" in caplog.text
    secret = path.read_text()
    create_app(settings)
    assert path.read_text() == secret  # kept, not regenerated
    async with AsyncTestClient(app=app) as client:
        assert (await client.get("/healthz")).text == "ok"
        assert (await client.get("/api/users")).status_code == 401
    assert app.state.admin.reconcile is not None  # core's reconciler is wired to "run now"


def test_configured_secret_is_used_and_not_written(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(
        _env_file=None, DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/shop.db", ADMIN_SECRET_KEY="s" * 40
    )
    create_app(settings)
    assert not (tmp_path / "data" / "admin_secret_key").exists()
