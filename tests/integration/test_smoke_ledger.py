from core import ledger
from core.errors import InsufficientFunds
import pytest


async def test_hold_then_capture_moves_money(db, clock):
    now = clock.now()
    async with db.begin() as conn:
        wallet = await ledger.open_wallet(conn, now)
        topups = await ledger.system_account(conn, ledger.TOPUPS)
        revenue = await ledger.system_account(conn, ledger.REVENUE)
        await ledger.post_transfer(conn, id=ledger.new_id(), debit=topups, credit=wallet,
                                   amount=500, code="topup", now=now)
    async with db.begin() as conn:
        hold = await ledger.create_hold(conn, id=ledger.new_id(), debit=wallet, credit=revenue,
                                        amount=300, timeout_at=now, now=now)
    with pytest.raises(InsufficientFunds):
        async with db.begin() as conn:
            await ledger.create_hold(conn, id=ledger.new_id(), debit=wallet, credit=revenue,
                                     amount=300, timeout_at=now, now=now)
    async with db.begin() as conn:
        first = await ledger.post_hold(conn, hold.id, now)
        again = await ledger.post_hold(conn, hold.id, now)
        bal = await ledger.balance_of(conn, wallet)
    assert first.created and not again.created
    assert (bal.balance, bal.held, bal.available) == (200, 0, 200)
