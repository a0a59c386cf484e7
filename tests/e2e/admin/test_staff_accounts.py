from __future__ import annotations

import io
import sys

import pytest
from sqlalchemy import select

from core.db.engine import Database
from core.db.tables import audit_log, metadata
from core.errors import InvalidInput
from core.staff import StaffAccounts, role_allows
from numbershop import cli

from .conftest import PASSWORD


async def test_create_and_authenticate(staff_accounts: StaffAccounts, db) -> None:
    member = await staff_accounts.create("alice", "support", PASSWORD, actor="cli")
    assert member.role == "support" and not member.disabled
    assert (await staff_accounts.authenticate("alice", PASSWORD)).id == member.id
    assert await staff_accounts.authenticate("alice", PASSWORD + "x") is None
    assert await staff_accounts.authenticate("nobody", PASSWORD) is None
    async with db.read() as conn:
        actions = (await conn.execute(select(audit_log.c.action, audit_log.c.target_id))).all()
    assert [tuple(a) for a in actions] == [("staff.create", "alice")]


async def test_bad_input_is_refused(staff_accounts: StaffAccounts) -> None:
    with pytest.raises(InvalidInput):
        await staff_accounts.create("alice", "owner", PASSWORD)
    with pytest.raises(InvalidInput):
        await staff_accounts.create("alice", "admin", "")
    with pytest.raises(InvalidInput):
        await staff_accounts.create("bad name", "admin", PASSWORD)
    await staff_accounts.create("alice", "admin", PASSWORD)
    with pytest.raises(InvalidInput, match="already exists"):
        await staff_accounts.create("alice", "viewer", PASSWORD)
    assert [m.username for m in await staff_accounts.members()] == ["alice"]


async def test_password_change_changes_epoch_and_login(staff_accounts: StaffAccounts) -> None:
    before = await staff_accounts.create("bob", "viewer", PASSWORD)
    after = await staff_accounts.set_password("bob", "another password")
    assert before.password_epoch != after.password_epoch
    assert await staff_accounts.authenticate("bob", PASSWORD) is None
    assert await staff_accounts.authenticate("bob", "another password") is not None


async def test_disabled_staff_cannot_log_in_and_last_admin_is_kept(staff_accounts: StaffAccounts) -> None:
    await staff_accounts.create("root", "admin", PASSWORD)
    await staff_accounts.create("eve", "support", PASSWORD)
    with pytest.raises(InvalidInput, match="last enabled admin"):
        await staff_accounts.set_disabled("root", True, actor="staff:root")
    with pytest.raises(InvalidInput, match="last enabled admin"):
        await staff_accounts.set_role("root", "viewer", actor="staff:root")
    await staff_accounts.set_disabled("eve", True, actor="staff:root")
    assert await staff_accounts.authenticate("eve", PASSWORD) is None


async def test_api_tokens(staff_accounts: StaffAccounts) -> None:
    await staff_accounts.create("carol", "admin", PASSWORD)
    token = await staff_accounts.create_token("carol", "ci")
    member = await staff_accounts.authenticate_token(token)
    assert member is not None and member.username == "carol"
    assert await staff_accounts.authenticate_token(token + "x") is None
    assert await staff_accounts.authenticate_token("") is None
    [tok] = await staff_accounts.tokens(member.id)
    assert tok.last_used_at is not None
    await staff_accounts.revoke_token(tok.id, actor="staff:carol")
    assert await staff_accounts.authenticate_token(token) is None


def test_role_order() -> None:
    assert role_allows("admin", "support") and role_allows("support", "viewer")
    assert not role_allows("viewer", "support") and not role_allows("support", "admin")
    assert not role_allows("owner", "viewer")


@pytest.fixture
def cli_db(tmp_path, monkeypatch):
    url = f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)
    import asyncio

    async def create() -> None:
        db = Database(url)
        async with db.begin() as conn:
            await conn.run_sync(metadata.create_all)
        await db.dispose()

    asyncio.run(create())
    return url


def _run_cli(monkeypatch, argv: list[str], stdin: str) -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return cli.main(argv)


def test_cli_staff_add_and_passwd(cli_db, monkeypatch, capsys) -> None:
    assert _run_cli(monkeypatch, ["staff", "add", "alice", "--role", "admin"], PASSWORD + "\n") == 0
    assert "alice added with role admin" in capsys.readouterr().out
    assert _run_cli(monkeypatch, ["staff", "passwd", "alice"], "new password 123\n") == 0
    import asyncio

    from core.clock import SystemClock

    async def check() -> tuple[object, object]:
        db = Database(cli_db)
        accounts = StaffAccounts(db, SystemClock())
        try:
            return (
                await accounts.authenticate("alice", "new password 123"),
                await accounts.authenticate("alice", PASSWORD),
            )
        finally:
            await db.dispose()

    good, old = asyncio.run(check())
    assert good is not None and old is None


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["staff", "add", "alice", "--role", "owner"], PASSWORD + "\n", "unknown role"),
        (["staff", "add", "alice", "--role", "admin"], "\n", "password is empty"),
        (["staff", "add", "alice", "--role", "admin"], "", "password is empty"),
        (["staff", "passwd", "ghost"], PASSWORD + "\n", "no staff member"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(cli_db, monkeypatch, capsys, argv, stdin, message) -> None:
    assert _run_cli(monkeypatch, argv, stdin) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
