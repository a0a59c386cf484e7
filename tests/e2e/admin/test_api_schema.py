"""schemathesis against /api's generated OpenAPI schema, and generated query strings against
every GET route including the HTML pages: whatever is sent, never a 5xx.

A synchronous test on purpose: schemathesis drives the ASGI app from its own event-loop
thread, so the database is prepared in a separate loop and its pool emptied before the app
starts (SQLite connections are then opened on the app's loop).
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import hypothesis
import hypothesis.strategies as st
import pytest
import schemathesis
from argon2 import PasswordHasher
from litestar.stores.memory import MemoryStore
from litestar.testing import TestClient

from admin.app import create_app
from admin.queries import encode_cursor
from core import ledger
from core.clock import FakeClock
from core.db.engine import Database
from core.db.tables import metadata
from core.staff import StaffAccounts
from core.wallets import Wallets
from tests.integration.orders_support import ScriptedProvider, Shop

pytestmark = pytest.mark.slow


def _fuzz_app(tmp_path) -> tuple[Any, dict[str, str]]:
    """The dashboard over a small shop, and the header of an admin's API token."""
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
        await shop.setup_catalogue()
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
    core = SimpleNamespace(
        settings=shop.settings,
        db=db,
        clock=clock,
        board=None,
        providers=shop.providers,
        wallets=Wallets(db, clock, "USD"),
        orders=shop.orders,
    )
    app = create_app(
        core, store=MemoryStore(), staff_accounts=staff_accounts, secret_key=secrets.token_hex(32)
    )
    return app, {"Authorization": f"Bearer {token}"}


def test_api_never_answers_5xx(tmp_path) -> None:
    app, auth = _fuzz_app(tmp_path)
    schema = schemathesis.openapi.from_asgi("/api/schema/openapi.json", app, headers=auth)

    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    for operation in operations:

        @hypothesis.settings(
            max_examples=25,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        @hypothesis.given(case=operation.as_strategy())
        def run(case) -> None:
            response = case.call(headers=auth)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} → {response.status_code}: {response.text[:300]}"
                )

        run()
    assert failures == []
    # The fuzzing reached the handlers: authenticated, and many requests were valid.
    assert statuses[200] > 50 and 401 not in statuses, statuses


# The HTML pages are left out of the OpenAPI schema, so their query strings are generated
# here: every GET route (pages and API), every query parameter any of them reads, values that
# once crashed (non-ASCII digits, ids beyond BIGINT, NaN, empty, NUL) mixed with random text.
QUERY_KEYS = (
    "q",
    "user",
    "status",
    "service",
    "country",
    "provider",
    "date_from",
    "date_to",
    "cursor",
    "code",
    "account",
    "order_id",
    "actor",
    "action",
    "target",
    "limit",
    "next",
)
_T0 = FakeClock().now()
SPECIAL = (
    "²",
    "١",
    "１２",
    "٣٤",
    "NaN",
    "nan",
    "inf",
    "-0",
    "",
    " ",
    "-1",
    "0",
    str(2**31),
    str(2**63),
    str(2**64),
    "9" * 40,
    "-" + "9" * 25,
    "9999-12-31",
    "0001-01-01",
    "2026-02-30",
    "\x00",
    "%",
    "@",
    "@²",
    encode_cursor(_T0, 2**64),
    encode_cursor(_T0, "²"),
    encode_cursor(_T0, -1),
    "====",
)
VALUES = st.one_of(
    st.sampled_from(SPECIAL), st.text(max_size=40), st.integers(min_value=-(2**70), max_value=2**70).map(str)
)


def _query_keys(route: Any) -> tuple[str, ...]:
    """The query parameters a GET route's handler reads (its signature, minus path and request)."""
    handler = next(h for h in route.route_handlers if "GET" in h.http_methods)
    path_names = {part.split(":")[0].strip("{}") for part in route.path.split("/") if part.startswith("{")}
    return tuple(
        n
        for n in handler.parsed_fn_signature.parameters
        if n not in ("request", "data") and n not in path_names
    ) or ("q",)


def test_pages_never_answer_5xx_whatever_the_query(tmp_path) -> None:
    app, auth = _fuzz_app(tmp_path)
    routes = {
        route.path: route
        for route in app.routes
        if "GET" in getattr(route, "methods", ()) and not route.path.startswith(("/static", "/api/schema"))
    }
    assert {
        "/users",
        "/orders",
        "/ledger",
        "/ledger.csv",
        "/audit",
        "/users/{telegram_id:int}",
        "/api/orders",
    } <= set(routes), sorted(routes)
    failures: list[str] = []
    statuses: Counter[int] = Counter()

    with TestClient(app=app, base_url="http://testserver.local") as client:

        def get(route: str, path_value: str, query: dict[str, str]) -> None:
            path = route
            while "{" in path:
                start, end = path.index("{"), path.index("}")
                path = path[:start] + quote(path_value, safe="") + path[end + 1 :]
            response = client.get(path, params=query, headers=auth, follow_redirects=False)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"GET {path} {query!r} → {response.status_code}: {response.text[:200]}")

        def fuzz(path: str, keys: tuple[str, ...]) -> None:
            queries = st.dictionaries(st.sampled_from(keys), VALUES, max_size=4)

            @hypothesis.settings(
                max_examples=25,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(hypothesis.HealthCheck),
            )
            @hypothesis.given(path_value=VALUES, query=queries)
            def run(path_value: str, query: dict[str, str]) -> None:
                get(path, path_value, query)

            run()

        for path, route in sorted(routes.items()):
            keys = _query_keys(route)
            # Every value that once crashed, in every parameter (and path segment) of every route…
            for value in SPECIAL:
                get(path, value, {})
                for key in keys:
                    get(path, "1001", {key: value})

            fuzz(path, keys)  # …then random combinations

    assert failures == [], "\n".join(failures[:20])
    assert statuses[200] > 100 and statuses[400] > 50 and 401 not in statuses, statuses
