"""``numbershop staff …``: dashboard accounts from the command line.

The password never appears in argv (where ``ps`` and shell history would keep it): it is read
with a hidden prompt on a terminal, or as one line from stdin when stdin is piped, so scripts
and the one-command sandbox can create the first admin without a TTY.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import DBAPIError

from core.clock import SystemClock
from core.config import load_settings
from core.db.engine import Database
from core.staff import ROLES, StaffAccounts, check_password, check_role
from numbershop.cli import CliError


def read_password(*, confirm: bool = True) -> str:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Repeat password: ") != password:
            raise CliError("the passwords do not match")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    return check_password(password)


def _accounts() -> tuple[Database, StaffAccounts]:
    settings = load_settings()
    db = Database(settings.DATABASE_URL)
    return db, StaffAccounts(db, SystemClock())


async def _run(coro_factory: Callable[[StaffAccounts], Awaitable[int]]) -> int:
    db, accounts = _accounts()
    try:
        return await coro_factory(accounts)
    except DBAPIError as exc:
        raise CliError(
            f"the database is not ready ({type(exc.orig).__name__}); run `numbershop db upgrade`"
        ) from None
    finally:
        await db.dispose()


async def cmd_add(args: argparse.Namespace) -> int:
    role = check_role(args.role)  # before the prompt: a typo should not cost a password
    password = read_password()

    async def go(accounts: StaffAccounts) -> int:
        member = await accounts.create(args.username, role, password, actor="cli")
        print(f"staff {member.username} added with role {member.role}")
        return 0

    return await _run(go)


async def cmd_passwd(args: argparse.Namespace) -> int:
    password = read_password()

    async def go(accounts: StaffAccounts) -> int:
        member = await accounts.set_password(args.username, password, actor="cli")
        print(f"password changed for {member.username}")
        return 0

    return await _run(go)


async def cmd_role(args: argparse.Namespace) -> int:
    async def go(accounts: StaffAccounts) -> int:
        member = await accounts.set_role(args.username, args.role, actor="cli")
        print(f"{member.username} is now {member.role}")
        return 0

    return await _run(go)


async def cmd_list(args: argparse.Namespace) -> int:
    async def go(accounts: StaffAccounts) -> int:
        for m in await accounts.members():
            state = "disabled" if m.disabled else "active"
            print(f"{m.username}\t{m.role}\t{state}")
        return 0

    return await _run(go)


async def cmd_token(args: argparse.Namespace) -> int:
    async def go(accounts: StaffAccounts) -> int:
        token = await accounts.create_token(args.username, args.name, actor="cli")
        print(token)
        return 0

    return await _run(go)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser("staff", help="dashboard staff accounts")
    sub = group.add_subparsers(dest="staff_command", metavar="ACTION")
    sub.required = True

    add = sub.add_parser("add", help="add a staff member (password from a prompt or stdin)")
    add.add_argument("username")
    add.add_argument("--role", required=True, help=" | ".join(ROLES))
    add.set_defaults(func=cmd_add)

    passwd = sub.add_parser("passwd", help="set a staff member's password")
    passwd.add_argument("username")
    passwd.set_defaults(func=cmd_passwd)

    role = sub.add_parser("role", help="change a staff member's role")
    role.add_argument("username")
    role.add_argument("role", help=" | ".join(ROLES))
    role.set_defaults(func=cmd_role)

    lst = sub.add_parser("list", help="list staff members")
    lst.set_defaults(func=cmd_list)

    token = sub.add_parser("token", help="create an API token (printed once)")
    token.add_argument("username")
    token.add_argument("--name", default=None)
    token.set_defaults(func=cmd_token)
