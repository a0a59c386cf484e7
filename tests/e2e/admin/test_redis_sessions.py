"""With REDIS_URL, sessions and login throttling are shared by dashboard replicas."""

from __future__ import annotations

import os
import secrets
from types import SimpleNamespace

import pytest
from litestar.testing import AsyncTestClient

from admin.app import create_app
from admin.sessions import SESSION_COOKIE
from admin.throttle import ThrottlePolicy
from core.db.engine import Database
from core.staff import StaffAccounts

from .conftest import login

REDIS_ENV = "NUMBERSHOP_TEST_REDIS_URL"


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"Redis session test skipped: set {REDIS_ENV} to run it")
    return url


def _replica(core, clock, hasher, redis_url, secret):
    app_db = Database(core.db.url)
    settings = core.settings.model_copy(update={"REDIS_URL": redis_url})
    replica = SimpleNamespace(**{**core.__dict__, "db": app_db, "settings": settings})
    app = create_app(
        replica,
        staff_accounts=StaffAccounts(app_db, clock, hasher),
        clock=clock,
        secret_key=secret,
        throttle_policy=ThrottlePolicy(per_account=2, per_ip=50),
    )
    app.on_shutdown.append(app_db.dispose)
    return app


async def test_two_replicas_share_sessions_and_throttling(core, clock, hasher, staff, redis_url, db) -> None:
    if db.is_postgres:
        pytest.skip("about the session store, not the database")
    secret = secrets.token_hex(32)  # replicas share ADMIN_SECRET_KEY
    one, two = (
        _replica(core, clock, hasher, redis_url, secret),
        _replica(core, clock, hasher, redis_url, secret),
    )
    async with (
        AsyncTestClient(app=one, base_url="http://one.local") as a,
        AsyncTestClient(app=two, base_url="http://one.local") as b,
    ):
        assert (await login(a, "viewer")).status_code == 303
        b.cookies.set(SESSION_COOKIE, a.cookies.get(SESSION_COOKIE))
        assert (await b.get("/users")).status_code == 200  # the other replica knows the session
        user = f"ghost-{secrets.token_hex(4)}"
        for _ in range(2):
            assert (await login(a, user, "wrong")).status_code == 401
        assert (await login(b, user, "wrong")).status_code == 429  # failures counted across replicas
