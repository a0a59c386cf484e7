"""Crypto Pay top-ups: create an invoice, credit it exactly once, poll for lost webhooks.

The money rule: a paid invoice credits the buyer's wallet exactly once, whichever path
reports it first (the webhook, the poller, a retried webhook, five of them at once), and a
delivery we cannot tie to an invoice we issued changes nothing. Three things make that hold:

* The ledger transfer id is derived from Crypto Pay's ``invoice_id``
  (``derived_id("cryptopay", invoice_id)``): a second credit of the same invoice is the same
  transfer and is refused by the ledger's idempotency, whatever else went wrong.
* The credit, the invoice row's move to ``paid`` and the buyer's message (an outbox row keyed
  ``cryptopay:<invoice_id>``) commit in one transaction, and the row moves only from an unpaid
  status (a guarded UPDATE): the loser of a race sees no row updated and does nothing.
* What is credited is what *we* issued: the signed payload names our row, the user and the
  amount, and the invoice must be in the shop currency for exactly that amount.

Creating an invoice writes our row first (``creating``, our own id in the payload), then
calls Crypto Pay with no transaction open, then records the invoice id and link. A reply
lost on the way leaves a ``creating`` row the buyer never got a link for; it is marked
``failed`` later, and should a payment for it arrive after all, the payload still finds it
and it is credited.
"""

from __future__ import annotations

import enum
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core import audit, ledger, outbox
from core.clock import Clock
from core.config import Settings
from core.cryptopay_wire import (
    CryptoPayClient,
    CryptoPayError,
    MalformedInvoice,
    PayloadSigner,
    RemoteInvoice,
    from_minor,
    parse_invoice,
    to_minor,
    webhook_signature_ok,
)
from core.db.chunks import chunks
from core.db.engine import Database
from core.db.tables import crypto_invoices, users
from core.errors import InvalidInput, ShopError
from core.system_accounts import CRYPTOPAY
from core.users import get_or_create_user
from core.wallets import MAX_AMOUNT

log = logging.getLogger(__name__)

SOURCE = "cryptopay"
OUTBOX_KIND = "crypto_topup"
EXPIRES_IN_S = 3600  # the buyer has an hour to pay; a new invoice is one tap away
STALE_CREATING_S = 600  # a row still 'creating' this long after it began never got its link
POLL_BATCH = 100  # ids per getInvoices call
GONE_AFTER_S = 3600  # an invoice Crypto Pay stopped listing is expired this long after its end
UNPAID = ("creating", "active", "expired", "failed")
STATUSES = ("creating", "active", "paid", "expired", "failed")


class CryptoPayUnavailable(ShopError):
    """Crypto Pay did not give us an invoice; nothing was charged and the buyer may retry."""


class Outcome(enum.StrEnum):
    CREDITED = "credited"
    ALREADY = "already credited"
    NOT_PAID = "not paid"
    UNKNOWN = "unknown invoice"
    MISMATCH = "does not match the invoice we issued"


@dataclass(frozen=True, slots=True)
class CreatedInvoice:
    id: str
    invoice_id: int
    amount: int
    pay_url: str
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class WebhookAnswer:
    status: int
    detail: str


@dataclass(frozen=True, slots=True)
class PollResult:
    checked: int = 0
    credited: int = 0
    expired: int = 0
    failed: int = 0


def transfer_id_for(invoice_id: int) -> str:
    return ledger.derived_id("cryptopay", invoice_id)


def dedupe_key_for(invoice_id: int) -> str:
    return f"cryptopay:{invoice_id}"


class CryptoPay:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        settings: Settings,
        *,
        client: CryptoPayClient | None = None,
    ) -> None:
        token = settings.CRYPTOPAY_TOKEN
        if not token:
            raise InvalidInput("CRYPTOPAY_TOKEN is not set")
        self.db = db
        self.clock = clock
        self.currency = settings.SHOP_CURRENCY
        self.assets = settings.CRYPTOPAY_ASSETS
        self._token = token
        self.signer = PayloadSigner(token)
        self.client = client or CryptoPayClient(settings.CRYPTOPAY_URL, token)

    async def aclose(self) -> None:
        await self.client.aclose()

    # ------------------------------------------------------------------ create
    async def create_invoice(
        self, telegram_id: int, amount: int, *, description: str, username: str | None = None
    ) -> CreatedInvoice:
        if not isinstance(amount, int) or isinstance(amount, bool) or not 0 < amount <= MAX_AMOUNT:
            raise InvalidInput("the amount must be a positive number of minor units")
        row_id = str(uuid.uuid4())
        payload = self.signer.sign(row_id, telegram_id, amount, self.currency)
        now = self.clock.now()
        async with self.db.begin() as conn:
            user = await get_or_create_user(conn, telegram_id=telegram_id, username=username, now=now)
            await conn.execute(
                crypto_invoices.insert().values(
                    id=row_id,
                    user_id=user.id,
                    telegram_id=telegram_id,
                    amount=amount,
                    currency=self.currency,
                    status="creating",
                    payload=payload,
                    created_at=now,
                    updated_at=now,
                )
            )
        try:  # no transaction is open across this call
            remote = await self.client.create_invoice(
                fiat=self.currency,
                amount=from_minor(amount, self.currency),
                accepted_assets=self.assets,
                payload=payload,
                description=description,
                expires_in=EXPIRES_IN_S,
            )
            if (
                remote.payload != payload
                or to_minor(remote.amount, self.currency) != amount
                or not remote.pay_url
            ):
                raise MalformedInvoice("the invoice does not echo our amount and payload")
        except CryptoPayError as exc:
            log.warning("crypto invoice %s not created: %s", row_id, exc)
            await self._set(row_id, ("creating",), status="failed", error=str(exc)[:255])
            raise CryptoPayUnavailable(str(exc)) from None
        expires = remote.expiration_date or now + timedelta(seconds=EXPIRES_IN_S)
        await self._set(
            row_id,
            ("creating",),
            status="active",
            invoice_id=remote.invoice_id,
            pay_url=remote.pay_url,
            expires_at=expires,
        )
        return CreatedInvoice(row_id, remote.invoice_id, amount, remote.pay_url, expires)

    async def _set(self, row_id: str, only_from: Sequence[str], **values: Any) -> bool:
        written = await self.db.write_one(
            update(crypto_invoices)
            .where(crypto_invoices.c.id == row_id, crypto_invoices.c.status.in_(only_from))
            .values(updated_at=self.clock.now(), **values)
        )
        return written.rowcount == 1

    # ------------------------------------------------------------------ credit
    async def apply_paid(self, remote: RemoteInvoice, *, via: str) -> Outcome:
        """Credit a paid invoice once; anything not exactly what we issued changes nothing."""
        if remote.status != "paid":
            return Outcome.NOT_PAID
        claimed = self.signer.verify(remote.payload)
        if claimed is None:
            return Outcome.UNKNOWN
        if (
            remote.currency_type != "fiat"
            or remote.fiat != self.currency
            or claimed.currency != self.currency
            or to_minor(remote.amount, self.currency) != claimed.amount
        ):
            log.error("crypto invoice %s: amount or currency differ from its payload", remote.invoice_id)
            return Outcome.MISMATCH
        now = self.clock.now()
        async with self.db.begin() as conn:
            row = await _lock_row(conn, claimed.row_id, self.db.is_postgres)
            if row is None:
                return Outcome.UNKNOWN
            if (
                row.telegram_id != claimed.telegram_id
                or row.amount != claimed.amount
                or row.currency != claimed.currency
                or row.payload != remote.payload
                or (row.invoice_id is not None and row.invoice_id != remote.invoice_id)
            ):
                log.error("crypto invoice %s: does not match our row %s", remote.invoice_id, row.id)
                return Outcome.MISMATCH
            if row.status == "paid":
                return Outcome.ALREADY
            moved = await conn.execute(
                update(crypto_invoices)
                .where(crypto_invoices.c.id == row.id, crypto_invoices.c.status.in_(UNPAID))
                .values(
                    status="paid",
                    invoice_id=remote.invoice_id,
                    paid_asset=remote.paid_asset,
                    paid_amount=remote.paid_amount,
                    transfer_id=transfer_id_for(remote.invoice_id),
                    paid_via=via,
                    paid_at=now,
                    updated_at=now,
                    error=None,
                )
            )
            if moved.rowcount != 1:
                return Outcome.ALREADY
            wallet: int = (
                await conn.execute(select(users.c.wallet_account_id).where(users.c.id == row.user_id))
            ).scalar_one()
            source = await ledger.system_account(conn, CRYPTOPAY)
            result = await ledger.post_transfer(
                conn,
                id=transfer_id_for(remote.invoice_id),
                debit=source,
                credit=wallet,
                amount=row.amount,
                code="topup",
                now=now,
                reference=f"{SOURCE}:{remote.invoice_id}",
            )
            if not result.created:  # the row said unpaid but the money moved: never twice
                log.error("crypto invoice %s: transfer existed for an unpaid row", remote.invoice_id)
                return Outcome.ALREADY
            available = (await ledger.balance_of(conn, wallet)).available
            await outbox.enqueue(
                conn,
                kind=OUTBOX_KIND,
                chat_id=row.telegram_id,
                payload={"amount": row.amount, "balance_after": available, "invoice_id": remote.invoice_id},
                dedupe_key=dedupe_key_for(remote.invoice_id),
                now=now,
            )
            await audit.record(
                conn,
                actor=f"{SOURCE}:{via}",
                action="wallet.crypto_topup",
                target_type="user",
                target_id=row.user_id,
                now=now,
                detail={
                    "telegram_id": row.telegram_id,
                    "amount": row.amount,
                    "invoice_id": remote.invoice_id,
                    "paid_asset": remote.paid_asset,
                    "paid_amount": remote.paid_amount,
                },
            )
        log.info(
            "crypto invoice %s: credited %s to %s via %s", remote.invoice_id, row.amount, row.telegram_id, via
        )
        return Outcome.CREDITED

    # ------------------------------------------------------------------ webhook
    async def handle_webhook(self, body: bytes, signature: str | None) -> WebhookAnswer:
        """One ``POST /webhooks/cryptopay`` delivery, answered as Crypto Pay's retries need.

        Crypto Pay retries a delivery that is not answered 200 for up to three days and then
        switches the app's webhook off, which would silence every later payment. So:

        * no or a wrong signature → 401: not from Crypto Pay (or our token is wrong, and a
          retry after the fix must still find the payment); nothing is parsed;
        * signed but not an envelope we can read → 400 (a protocol change staff must see);
        * an update type we do not use, an invoice we never issued, a mismatched amount,
          currency, user or payload, a replay of a credited invoice → 200 with what happened
          ("ignored …" / "already credited"): a retry could never change the answer, and
          refusing would only get the webhook switched off. Mismatches are logged as errors;
        * a database failure → 500 (raised): the retry, or our poller, credits it later.
        """
        if not webhook_signature_ok(body, signature, self._token):
            return WebhookAnswer(401, "bad signature")
        try:
            envelope = json.loads(body)
            if not isinstance(envelope, dict):
                raise ValueError
            update_type = envelope.get("update_type")
            data = envelope.get("payload")
        except ValueError:
            return WebhookAnswer(400, "not a Crypto Pay update")
        if update_type != "invoice_paid":
            return WebhookAnswer(200, f"ignored update type {str(update_type)[:32]!r}")
        try:
            remote = parse_invoice(data)
        except MalformedInvoice as exc:
            return WebhookAnswer(400, f"not an invoice: {exc}")
        outcome = await self.apply_paid(remote, via="webhook")
        if outcome is Outcome.CREDITED:
            return WebhookAnswer(200, "credited")
        if outcome is Outcome.ALREADY:
            return WebhookAnswer(200, "already credited")
        return WebhookAnswer(200, f"ignored: {outcome.value}")

    # ------------------------------------------------------------------ poll
    async def poll(self, *, limit: int = 1000) -> PollResult:
        """The fallback for lost webhooks: ask Crypto Pay about our unpaid invoices.

        Reads the active rows, asks ``getInvoices`` in batches with no transaction open,
        then credits the paid ones through ``apply_paid`` (the same exactly-once path as the
        webhook) and marks expired ones. Rows stuck in ``creating`` (a crash or a lost reply
        between our row and the invoice) are marked ``failed``: their buyer never got a link.
        """
        now = self.clock.now()
        async with self.db.read() as conn:
            active = (
                await conn.execute(
                    select(crypto_invoices.c.id, crypto_invoices.c.invoice_id, crypto_invoices.c.expires_at)
                    .where(crypto_invoices.c.status == "active", crypto_invoices.c.invoice_id.is_not(None))
                    .order_by(crypto_invoices.c.created_at)
                    .limit(limit)
                )
            ).all()
        stale = now - timedelta(seconds=STALE_CREATING_S)
        failed = (
            await self.db.write_one(
                update(crypto_invoices)
                .where(crypto_invoices.c.status == "creating", crypto_invoices.c.created_at < stale)
                .values(status="failed", error="no invoice link was recorded", updated_at=now)
            )
        ).rowcount
        credited = expired = checked = 0
        by_invoice = {r.invoice_id: r for r in active}
        for batch in chunks(list(by_invoice), POLL_BATCH):
            try:
                remotes = await self.client.get_invoices(batch)
            except CryptoPayError as exc:
                log.warning("crypto invoices not polled: %s", exc)
                raise
            # Crypto Pay no longer knows an invoice (deleted in the app) well past its expiry:
            # it can no longer be paid. Marking it expired is safe either way, since a paid
            # delivery still credits an expired row.
            known = {r.invoice_id for r in remotes}
            for invoice_id in batch:
                stale_row = by_invoice[invoice_id]
                ends = stale_row.expires_at
                if (
                    invoice_id not in known
                    and ends is not None
                    and ends < now - timedelta(seconds=GONE_AFTER_S)
                ):
                    expired += await self._set(
                        stale_row.id, ("active",), status="expired", error="not found upstream"
                    )
            for remote in remotes:
                row = by_invoice.get(remote.invoice_id)
                if row is None:
                    continue
                checked += 1
                if remote.status == "paid":
                    if await self.apply_paid(remote, via="poll") is Outcome.CREDITED:
                        credited += 1
                elif remote.status == "expired" and await self._set(row.id, ("active",), status="expired"):
                    expired += 1
        return PollResult(checked, credited, expired, failed)


async def _lock_row(conn: AsyncConnection, row_id: str, postgres: bool) -> Any:
    query = select(crypto_invoices).where(crypto_invoices.c.id == row_id)
    if postgres:
        query = query.with_for_update()
    return (await conn.execute(query)).one_or_none()


# ---------------------------------------------------------------------- reading
@dataclass(frozen=True, slots=True)
class InvoiceRow:
    id: str
    invoice_id: int | None
    telegram_id: int
    username: str | None
    amount: int
    currency: str
    status: str
    paid_asset: str | None
    paid_amount: str | None
    paid_via: str | None
    created_at: datetime
    paid_at: datetime | None
    expires_at: datetime | None


async def list_invoices(db: Database, *, status: str | None = None, limit: int = 100) -> list[InvoiceRow]:
    """Newest first, for the dashboard."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"unknown status {status!r}; choose from {', '.join(STATUSES)}")
    c = crypto_invoices.c
    query = (
        select(
            c.id,
            c.invoice_id,
            c.telegram_id,
            users.c.username,
            c.amount,
            c.currency,
            c.status,
            c.paid_asset,
            c.paid_amount,
            c.paid_via,
            c.created_at,
            c.paid_at,
            c.expires_at,
        )
        .join(users, users.c.id == c.user_id)
        .order_by(c.created_at.desc(), c.id)
        .limit(max(1, min(limit, 1000)))
    )
    if status:
        query = query.where(c.status == status)
    async with db.read() as conn:
        return [InvoiceRow(**r) for r in (await conn.execute(query)).mappings().all()]
