"""Concurrent logins cannot beat the throttle: at most the limit reach the password hash.

The requests run truly concurrently (httpx's ASGI transport on this test's loop; Litestar's
test client would serialise them). Every password check waits at a gate until each of the 30
requests has either been answered or reached that gate, so the test does not depend on timing:
with the check-hash-record order all 30 reach the gate.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import threading
from collections import Counter
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from admin.app import create_app
from admin.throttle import ThrottlePolicy
from core.staff import StaffAccounts

from .conftest import PASSWORD

REDIS_ENV = "NUMBERSHOP_TEST_REDIS_URL"
POLICY = ThrottlePolicy(per_account=5, per_ip=50, window_seconds=600, lockout_seconds=300)
ATTEMPTS = 30


class CountingHasher(PasswordHasher):
    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=64, parallelism=1)
        self.verify_calls = 0
        self._lock = threading.Lock()

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        with self._lock:
            self.verify_calls += 1
        return super().verify(hash, password)


class GatedStaff(StaffAccounts):
    """Holds every password check at a gate the test opens."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()
        self.waiting = 0

    async def _verify(self, password_hash: str, password: str) -> bool:
        self.waiting += 1
        await self.gate.wait()
        return await super()._verify(password_hash, password)


@pytest.fixture(params=["memory", "redis"])
def store_kind(request: pytest.FixtureRequest, db: Any) -> str:
    if request.param == "redis":
        if not os.environ.get(REDIS_ENV):
            pytest.skip(f"Redis variant skipped: set {REDIS_ENV} to run it")
        if db.is_postgres:
            pytest.skip("about the throttle's store, not the database")
    return str(request.param)


async def test_concurrent_wrong_logins_reach_the_hash_at_most_the_limit(
    core, clock, staff, store_kind
) -> None:
    store = None
    if store_kind == "redis":
        from litestar.stores.redis import RedisStore

        store = RedisStore.with_client(url=os.environ[REDIS_ENV], namespace=f"nstest-{secrets.token_hex(4)}")
    else:
        from litestar.stores.memory import MemoryStore

        store = MemoryStore()
    hasher = CountingHasher()
    accounts = GatedStaff(core.db, clock, hasher)
    app = create_app(
        core,
        store=store,
        staff_accounts=accounts,
        clock=clock,
        secret_key=secrets.token_hex(32),
        throttle_policy=POLICY,
    )
    transport = httpx.ASGITransport(app=app, client=("10.0.0.7", 4000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as client:
            page = await client.get("/login")
            token = re.search(r'name="_csrf_token" value="([0-9a-f]+)"', page.text)
            assert token
            form = {"username": "admin", "password": "wrong password", "_csrf_token": token.group(1)}

            tasks = [asyncio.create_task(client.post("/login", data=form)) for _ in range(ATTEMPTS)]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while sum(t.done() for t in tasks) + accounts.waiting < ATTEMPTS:
                assert loop.time() < deadline, (accounts.waiting, sum(t.done() for t in tasks))
                await asyncio.sleep(0.01)
            accounts.gate.set()
            responses = [await t for t in tasks]

            statuses = Counter(r.status_code for r in responses)
            assert hasher.verify_calls <= POLICY.per_account, statuses
            assert statuses == {401: hasher.verify_calls, 429: ATTEMPTS - hasher.verify_calls}

            right = {**form, "password": PASSWORD}
            r = await client.post("/login", data=right)
            assert r.status_code == 429 and "Too many failed logins" in r.text
            assert hasher.verify_calls <= POLICY.per_account  # refused without hashing
            clock.advance(POLICY.lockout_seconds - 5)
            assert (await client.post("/login", data=right)).status_code == 429
            clock.advance(10)  # the lock has ended
            r = await client.post("/login", data=right)
            assert r.status_code == 303, r.text
    finally:
        await core.db.dispose()
        if store_kind == "redis":
            await store.delete_all()
            await store._redis.aclose()
