"""Nobody disables or demotes themselves from the dashboard; another admin must do it."""

from __future__ import annotations

import pytest

from core.staff import SelfChangeRefused, StaffAccounts

from .conftest import PASSWORD, login, nonce, post_form


async def test_core_refuses_self_disable_and_self_demote(staff_accounts: StaffAccounts) -> None:
    root = await staff_accounts.create("root", "admin", PASSWORD)
    await staff_accounts.create("second", "admin", PASSWORD)
    with pytest.raises(SelfChangeRefused, match="disable your own"):
        await staff_accounts.set_disabled("root", True, actor=root.actor, acting_id=root.id)
    with pytest.raises(SelfChangeRefused, match="lower your own role"):
        await staff_accounts.set_role("root", "support", actor=root.actor, acting_id=root.id)
    after = await staff_accounts.find("root")
    assert after is not None and after.role == "admin" and not after.disabled
    # Keeping one's own role is not a demotion; another admin may demote.
    assert (
        await staff_accounts.set_role("root", "admin", actor=root.actor, acting_id=root.id)
    ).role == "admin"
    second = await staff_accounts.find("second")
    assert second is not None
    changed = await staff_accounts.set_role("root", "viewer", actor=second.actor, acting_id=second.id)
    assert changed.role == "viewer"


async def test_dashboard_refuses_self_disable_and_self_demote(client, staff, staff_accounts) -> None:
    await staff_accounts.create("root2", "admin", PASSWORD)  # "admin" is not the last admin
    await login(client, "admin")
    r = await post_form(client, "/staff/admin/disabled", {"disabled": "1", "nonce": nonce()})
    assert r.status_code == 403 and "disable your own account" in r.text
    r = await post_form(client, "/staff/admin/role", {"role": "viewer", "nonce": nonce()})
    assert r.status_code == 403 and "lower your own role" in r.text
    me = await staff_accounts.find("admin")
    assert me is not None and me.role == "admin" and not me.disabled
    # Acting on someone else still works.
    r = await post_form(client, "/staff/root2/disabled", {"disabled": "1", "nonce": nonce()})
    assert r.status_code == 303
    other = await staff_accounts.find("root2")
    assert other is not None and other.disabled
