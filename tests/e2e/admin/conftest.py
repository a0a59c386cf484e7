"""Fixtures for the dashboard tests: fast password hashing, staff of each role, an app."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from core.staff import StaffAccounts

PASSWORD = "correct horse battery"


@pytest.fixture
def hasher() -> PasswordHasher:
    # Real argon2id with tiny costs: the same code path, milliseconds instead of ~50 ms.
    return PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


@pytest.fixture
def staff_accounts(db, clock, hasher) -> StaffAccounts:  # noqa: ANN001
    return StaffAccounts(db, clock, hasher)
