"""Fixtures for the dashboard tests: fast password hashing, staff of each role, a shop with a
scripted provider, the app and a logged-out client; helpers to log in and post forms."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from argon2 import PasswordHasher
from litestar import Litestar
from litestar.stores.memory import MemoryStore
from litestar.testing import AsyncTestClient

from admin.app import create_app
from admin.throttle import ThrottlePolicy
from core.db.engine import Database
from core.orders import OrderService
from core.staff import StaffAccounts
from core.wallets import Wallets
from tests.integration.orders_support import ScriptedProvider, Shop

PASSWORD = "correct horse battery"
WEBHOOK_SECRET = "tv-webhook-secret-for-tests"
ROLES = ("viewer", "support", "admin")


@pytest.fixture
def hasher() -> PasswordHasher:
    # Real argon2id with tiny costs: the same code path, milliseconds instead of ~50 ms.
    return PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


@pytest.fixture
def staff_accounts(db, clock, hasher) -> StaffAccounts:
    return StaffAccounts(db, clock, hasher)


class FakeBoard:
    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {"alpha": {"state": "closed", "failures": 0}}

    def states(self) -> dict[str, dict[str, Any]]:
        return self.data


@pytest.fixture
async def shop(db, clock) -> Shop:
    s = Shop(
        db,
        clock,
        {
            "alpha": ScriptedProvider("alpha", clock),
            "textverified": ScriptedProvider("textverified", clock, cost=60),
        },
        TEXTVERIFIED_WEBHOOK_SECRET=WEBHOOK_SECRET,
        ADMIN_SECRET_KEY="k" * 32,
    )
    await s.setup_catalogue()
    return s


@pytest.fixture
def core(shop: Shop, db, clock) -> SimpleNamespace:
    """The app's own core on its own engine over the same database.

    Litestar's test client runs the app on an event loop in another thread; asyncpg
    connections belong to the loop that opened them, so the app must not share the
    fixture's engine (the app's engine is disposed on the app's loop at shutdown).
    """
    app_db = Database(db.url)
    return SimpleNamespace(
        settings=shop.settings,
        db=app_db,
        clock=clock,
        board=FakeBoard(),
        providers=shop.providers,
        wallets=Wallets(app_db, clock, "USD"),
        orders=OrderService(app_db, clock, shop.providers, shop.settings),
    )


@pytest.fixture
async def staff(staff_accounts: StaffAccounts) -> dict[str, Any]:
    return {role: await staff_accounts.create(role, role, PASSWORD) for role in ROLES}


@pytest.fixture
def app(core, clock, hasher, staff) -> Litestar:
    app = create_app(
        core,
        store=MemoryStore(),
        staff_accounts=StaffAccounts(core.db, clock, hasher),
        clock=clock,
        secret_key=secrets.token_hex(32),
        throttle_policy=ThrottlePolicy(per_account=3, per_ip=10, window_seconds=600, lockout_seconds=300),
    )
    app.on_shutdown.append(core.db.dispose)
    return app


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient]:
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as c:
        yield c


_CSRF_INPUT = re.compile(r'name="_csrf_token" value="([0-9a-f]+)"')


async def csrf(client: AsyncTestClient) -> str:
    """The token the dashboard puts in its forms for this client's session (or pre-login)."""
    page = await client.get("/login", follow_redirects=True)  # logged in: the overview's logout form
    match = _CSRF_INPUT.search(page.text)
    assert match, page.text[:300]
    return match.group(1)


async def post_form(
    client: AsyncTestClient, path: str, data: dict[str, Any], *, with_csrf: bool = True
) -> Any:
    body = dict(data)
    if with_csrf:
        body["_csrf_token"] = await csrf(client)
    return await client.post(path, data=body, follow_redirects=False)


async def login(client: AsyncTestClient, username: str, password: str = PASSWORD) -> Any:
    return await post_form(client, "/login", {"username": username, "password": password})


def nonce() -> str:
    return secrets.token_urlsafe(18)


async def buy(
    shop: Shop,
    telegram_id: int,
    *,
    funds: int = 1000,
    price: int = 100,
    key: str | None = None,
    via: str = "alpha",
) -> Any:
    """A waiting order for a (new or existing) user; ``via`` picks the provider that rents."""
    from core.providers.errors import OutOfStock

    user = await shop.user(telegram_id, funds=funds)
    if via != "alpha":
        shop.providers["alpha"].rent_script.append(OutOfStock("none"))
    quote = await shop.quote(user.id, price=price)
    return await shop.orders.purchase(
        user_id=user.id, quote_id=quote, idempotency_key=key or f"k-{telegram_id}-{quote}"
    )


async def complete(shop: Shop, order: Any, code: str = "123456") -> Any:
    provider = shop.providers[order.provider]
    provider.deliver(order.activation_id, code)
    return await shop.orders.check_now(order.id)


async def count(db, table, *where) -> int:
    from sqlalchemy import func, select

    async with db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)


async def balance(db, telegram_id: int) -> Any:
    from core import ledger
    from core.users import find_user

    async with db.read() as conn:
        user = await find_user(conn, telegram_id)
        return await ledger.balance_of(conn, user.wallet_account_id)
