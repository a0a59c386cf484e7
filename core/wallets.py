"""User wallets: show, staff credit/debit, payment top-ups, history.

Every balance change is one ledger transfer with a deterministic id when the caller has an
idempotency key (a CLI ``--idempotency-key``, a dashboard form nonce, a payment's charge id),
so a retried request finds its own transfer and returns it instead of moving money twice.
The transfer, the user row it may create and the audit row commit in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from core import audit, ledger, outbox
from core.clock import Clock
from core.db.engine import Database
from core.db.tables import transfers
from core.errors import IdempotencyConflict, InvalidInput, TransferConflict, UserNotFound
from core.users import UserRow, check_telegram_id, find_user, get_or_create_user

MAX_AMOUNT = 10**13  # far above any real payment; keeps sums far from BIGINT overflow
MAX_REFERENCE = 128  # transfers.reference


@dataclass(frozen=True, slots=True)
class WalletView:
    user_id: int
    telegram_id: int
    balance: int  # credits_posted - debits_posted
    held: int  # debits_pending: open purchase holds
    available: int  # balance - held: what the user can spend now


@dataclass(frozen=True, slots=True)
class WalletChange:
    transfer_id: str
    created: bool  # False: an earlier call with the same key already did this
    amount: int
    wallet: WalletView  # the balance after the change (or now, for a replay)


class Wallets:
    def __init__(self, db: Database, clock: Clock, currency: str = "USD") -> None:
        self.db = db
        self.clock = clock
        self.currency = currency

    async def show(self, telegram_id: int) -> WalletView:
        check_telegram_id(telegram_id)
        async with self.db.read() as conn:
            user = await find_user(conn, telegram_id)
            if user is None:
                raise UserNotFound(f"no user with Telegram id {telegram_id}")
            return await _view(conn, user)

    async def credit(
        self,
        telegram_id: int,
        amount: int,
        *,
        reason: str,
        idempotency_key: str | None = None,
        actor: str = "cli",
        notify: bool = False,
    ) -> WalletChange:
        """Staff grant: adjustments → wallet. Creates the user if the shop has not seen them."""
        return await self._adjust("credit", telegram_id, amount, reason, idempotency_key, actor, notify)

    async def debit(
        self,
        telegram_id: int,
        amount: int,
        *,
        reason: str,
        idempotency_key: str | None = None,
        actor: str = "cli",
        notify: bool = False,
    ) -> WalletChange:
        """Staff deduction: wallet → adjustments, refused (InsufficientFunds) beyond available."""
        return await self._adjust("debit", telegram_id, amount, reason, idempotency_key, actor, notify)

    async def _adjust(
        self,
        direction: str,
        telegram_id: int,
        amount: int,
        reason: str,
        idempotency_key: str | None,
        actor: str,
        notify: bool = False,
    ) -> WalletChange:
        check_telegram_id(telegram_id)
        _check_amount(amount)
        reason = (reason or "").strip()
        if not reason:
            raise InvalidInput("a reason is required")
        if idempotency_key is not None:
            idempotency_key = idempotency_key.strip()
            if not idempotency_key or len(idempotency_key) > MAX_REFERENCE:
                raise InvalidInput(f"the idempotency key must be 1 to {MAX_REFERENCE} characters")
        action = f"wallet.{direction}"
        transfer_id = ledger.derived_id(action, idempotency_key) if idempotency_key else ledger.new_id()
        now = self.clock.now()
        async with self.db.begin() as conn:
            if direction == "credit":
                user = await get_or_create_user(conn, telegram_id=telegram_id, now=now)
            else:
                found = await find_user(conn, telegram_id)
                if found is None:
                    raise UserNotFound(f"no user with Telegram id {telegram_id}")
                user = found
            if idempotency_key:
                # The key names one staff action: the same key on the other direction is a
                # conflict, not a second, opposite movement.
                other = "wallet.debit" if direction == "credit" else "wallet.credit"
                if await _exists(conn, ledger.derived_id(other, idempotency_key)):
                    raise IdempotencyConflict(
                        f"idempotency key {idempotency_key!r} was already used for a {other[7:]}"
                    )
            adjustments = await ledger.system_account(conn, ledger.ADJUSTMENTS)
            wallet = user.wallet_account_id
            debit, credit = (adjustments, wallet) if direction == "credit" else (wallet, adjustments)
            try:
                result = await ledger.post_transfer(
                    conn,
                    id=transfer_id,
                    debit=debit,
                    credit=credit,
                    amount=amount,
                    code="adjustment",
                    now=now,
                    reference=idempotency_key,
                    memo=reason,
                )
            except TransferConflict as exc:
                raise IdempotencyConflict(
                    f"idempotency key {idempotency_key!r} was already used for a different "
                    f"{direction} (another amount or user)"
                ) from exc
            if result.created:
                await audit.record(
                    conn,
                    actor=actor,
                    action=action,
                    target_type="user",
                    target_id=user.id,
                    reason=reason,
                    now=now,
                    detail={
                        "telegram_id": telegram_id,
                        "amount": amount,
                        "transfer_id": transfer_id,
                        "idempotency_key": idempotency_key,
                    },
                )
            view = await _view(conn, user)
            if notify and result.created:
                # Queued with the movement, keyed by its transfer: a retried action (same
                # idempotency key, same transfer) never tells the user twice.
                await outbox.enqueue(
                    conn,
                    kind="wallet_adjusted",
                    chat_id=telegram_id,
                    payload={
                        "amount": amount,
                        "direction": direction,
                        # The staff reason stays in the audit log: it may be an internal note.
                        "balance_after": view.available,
                    },
                    dedupe_key=f"wallet:{transfer_id}",
                    now=now,
                )
        return WalletChange(transfer_id, result.created, amount, view)

    async def top_up(
        self,
        telegram_id: int,
        amount: int,
        *,
        source: str,
        reference: str,
        username: str | None = None,
    ) -> WalletChange:
        """Money paid in (topups → wallet), exactly once per ``(source, reference)``.

        The transfer id is derived from the payment's own reference (e.g. Telegram's
        ``telegram_payment_charge_id``), so a redelivered payment update, a retry after a
        crash, or two workers handling the same payment at once all land on one transfer.
        The same reference with a different amount or user is an IdempotencyConflict.
        """
        check_telegram_id(telegram_id)
        _check_amount(amount)
        source, reference = (source or "").strip(), (reference or "").strip()
        if not source or not reference:
            raise InvalidInput("a top-up needs a source and a payment reference")
        ref = f"{source}:{reference}"
        if len(ref) > MAX_REFERENCE:
            raise InvalidInput(f"payment reference longer than {MAX_REFERENCE} characters")
        transfer_id = ledger.derived_id("topup", source, reference)
        now = self.clock.now()
        async with self.db.begin() as conn:
            user = await get_or_create_user(conn, telegram_id=telegram_id, username=username, now=now)
            topups = await ledger.system_account(conn, ledger.TOPUPS, spread=ref)
            try:
                result = await ledger.post_transfer(
                    conn,
                    id=transfer_id,
                    debit=topups,
                    credit=user.wallet_account_id,
                    amount=amount,
                    code="topup",
                    now=now,
                    reference=ref,
                )
            except TransferConflict as exc:
                raise IdempotencyConflict(
                    f"payment {ref} was already credited with a different amount or user"
                ) from exc
            view = await _view(conn, user)
        return WalletChange(transfer_id, result.created, amount, view)


def _check_amount(amount: object) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise InvalidInput(f"{amount!r} is not an amount in minor units")
    if amount <= 0:
        raise InvalidInput("the amount must be greater than zero")
    if amount > MAX_AMOUNT:
        raise InvalidInput("the amount is too large")


async def _exists(conn: AsyncConnection, transfer_id: str) -> bool:
    return await conn.scalar(select(transfers.c.id).where(transfers.c.id == transfer_id)) is not None


async def _view(conn: AsyncConnection, user: UserRow) -> WalletView:
    bal = await ledger.balance_of(conn, user.wallet_account_id)
    return WalletView(user.id, user.telegram_id, bal.balance, bal.held, bal.available)
