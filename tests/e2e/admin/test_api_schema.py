"""schemathesis against /api's generated OpenAPI schema: whatever it sends, never a 5xx.

A synchronous test on purpose: schemathesis drives the ASGI app from its own event-loop
thread, so the database is prepared in a separate loop and its pool emptied before the app
starts (SQLite connections are then opened on the app's loop).
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from types import SimpleNamespace

import hypothesis
import pytest
import schemathesis
from argon2 import PasswordHasher
from litestar.stores.memory import MemoryStore

from admin.app import create_app
from core import ledger
from core.clock import FakeClock
from core.db.engine import Database
from core.db.tables import metadata
from core.staff import StaffAccounts
from core.wallets import Wallets
from tests.integration.orders_support import ScriptedProvider, Shop

pytestmark = pytest.mark.slow


def test_api_never_answers_5xx(tmp_path) -> None:  # noqa: ANN001
    clock = FakeClock()
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/fuzz.db")
    hasher = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    staff_accounts = StaffAccounts(db, clock, hasher)
    shop = Shop(db, clock, {"alpha": ScriptedProvider("alpha", clock)}, ADMIN_SECRET_KEY="k" * 32)

    async def setup() -> str:
        async with db.begin() as conn:
            await conn.run_sync(metadata.create_all)
            await ledger.ensure_system_accounts(conn, clock.now())
        ledger.forget_system_accounts()
        await shop.setup_catalog()
        for tid in (1001, 1002):
            user = await shop.user(tid, funds=5000)
            quote = await shop.quote(user.id)
            await shop.orders.purchase(user_id=user.id, quote_id=quote, idempotency_key=f"k{tid}")
        await staff_accounts.create("root", "admin", "fuzzing password")
        token = await staff_accounts.create_token("root", "fuzz")
        await db.dispose()
        return token

    token = asyncio.run(setup())
    ledger.forget_system_accounts()
    core = SimpleNamespace(settings=shop.settings, db=db, clock=clock, board=None, providers=shop.providers,
                           wallets=Wallets(db, clock, "USD"), orders=shop.orders)
    app = create_app(core, store=MemoryStore(), staff_accounts=staff_accounts, secret_key=secrets.token_hex(32))
    auth = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_asgi("/api/schema/openapi.json", app, headers=auth)

    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    for operation in operations:
        @hypothesis.settings(max_examples=25, deadline=None, database=None, derandomize=True,
                             suppress_health_check=list(hypothesis.HealthCheck))
        @hypothesis.given(case=operation.as_strategy())
        def run(case) -> None:  # noqa: ANN001
            response = case.call(headers=auth)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} → {response.status_code}: {response.text[:300]}")

        run()
    assert failures == []
    # The fuzzing reached the handlers: authenticated, and many requests were valid.
    assert statuses[200] > 50 and 401 not in statuses, statuses
