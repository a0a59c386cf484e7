"""The ledger invariants, checked with aggregate SQL: the five of DESIGN §2, a sixth for
crypto top-ups and a seventh for the promo, referral and Stars refund programmes.

The ledger keeps these by construction; this checker exists to prove it (after every test
scenario, in the reconciliation job and in ``numbershop ledger check``) and to catch what
construction cannot: a bug elsewhere, a hand-edited row, a half-applied migration.

All queries run in one read transaction with a single snapshot (REPEATABLE READ on
PostgreSQL, a deferred read transaction under WAL on SQLite), so the accounts and the
transfers are compared at the same instant even while the shop keeps writing; under READ
COMMITTED each statement would see a different moment and report violations that never were.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.engine import Database
from core.db.tables import UTCDateTime
from core.ledger import TransferKind
from core.order_states import HOLD_STATE

# What each order status requires of its hold, from the order lifecycle's own table.
OPEN_STATUSES = tuple(sorted(s.value for s, h in HOLD_STATE.items() if h == TransferKind.HOLD))
VOIDED_STATUSES = tuple(sorted(s.value for s, h in HOLD_STATE.items() if h == TransferKind.VOID))
POSTED_STATUSES = tuple(sorted(s.value for s, h in HOLD_STATE.items() if h == TransferKind.CAPTURE))
ORDER_STATUSES = OPEN_STATUSES + VOIDED_STATUSES + POSTED_STATUSES
# The transfer kinds as SQL literals, so the queries below say hold/capture/void too.
_KINDS = {
    "posted": f"'{TransferKind.POSTED}'",
    "hold": f"'{TransferKind.HOLD}'",
    "capture": f"'{TransferKind.CAPTURE}'",
    "void": f"'{TransferKind.VOID}'",
}


INVARIANT_COUNT = 7  # what "all invariants hold" covers, for people reading a report


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: int  # 1..5, numbered as in DESIGN §2; 6: crypto top-ups; 7: promo, referrals, Stars refunds
    code: str  # stable machine name of what is broken
    message: str
    ref: str | None = None  # the account, transfer or order concerned


async def check_invariants(db: Database, now: datetime, grace_seconds: int = 120) -> list[Violation]:
    """Every violation found, grouped by invariant; an empty list means the books are sound."""
    cutoff = now - timedelta(seconds=grace_seconds)
    found: list[Violation] = []
    async with db.scan() as conn:
        for check in (
            _global_balance,
            _cached_sums,
            _overdrawn,
            _holds,
            _orders,
            _crypto_topups,
            _programmes,
        ):
            found.extend(await check(conn, cutoff))
    return found


# 1. Σ debits = Σ credits, posted and pending, over all accounts.
async def _global_balance(conn: AsyncConnection, cutoff: datetime) -> list[Violation]:
    row = (
        await conn.execute(
            text(
                "SELECT COALESCE(SUM(debits_posted), 0), COALESCE(SUM(credits_posted), 0),"
                " COALESCE(SUM(debits_pending), 0), COALESCE(SUM(credits_pending), 0) FROM accounts"
            )
        )
    ).one()
    dp, cp, dpe, cpe = (int(v) for v in row)
    out = []
    if dp != cp:
        out.append(
            Violation(
                1, "global_posted_unbalanced", f"sum of debits_posted {dp} != sum of credits_posted {cp}"
            )
        )
    if dpe != cpe:
        out.append(
            Violation(
                1, "global_pending_unbalanced", f"sum of debits_pending {dpe} != sum of credits_pending {cpe}"
            )
        )
    return out


# 2. Each account's cached columns equal what its transfers add up to. A pending transfer
# counts as pending until resolved; a capture moves its amount to posted; a void removes
# it. The pending row's own amount and accounts are used, so a
# resolution row that disagrees with its hold is reported under invariant 4, not counted here.
_EFFECTS = """
    SELECT p.debit_account_id AS debit_id, p.credit_account_id AS credit_id,
           CASE WHEN p.kind = {posted} THEN p.amount
                WHEN p.kind = {hold} AND r.kind = {capture} THEN p.amount
                ELSE 0 END AS posted,
           CASE WHEN p.kind = {hold} AND r.id IS NULL THEN p.amount ELSE 0 END AS pending
    FROM transfers p
    LEFT JOIN transfers r ON r.pending_id = p.id
    WHERE p.kind IN ({posted}, {hold})
""".format(**_KINDS)
_SUMS = f"""
    WITH effects AS ({_EFFECTS}),
    sides AS (
        SELECT debit_id AS account_id, posted AS dp, 0 AS cp, pending AS dpe, 0 AS cpe FROM effects
        UNION ALL
        SELECT credit_id, 0, posted, 0, pending FROM effects
    ),
    sums AS (
        SELECT account_id, SUM(dp) AS dp, SUM(cp) AS cp, SUM(dpe) AS dpe, SUM(cpe) AS cpe
        FROM sides GROUP BY account_id
    )
    SELECT a.id, a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending,
           COALESCE(s.dp, 0), COALESCE(s.cp, 0), COALESCE(s.dpe, 0), COALESCE(s.cpe, 0)
    FROM accounts a LEFT JOIN sums s ON s.account_id = a.id
    WHERE a.debits_posted <> COALESCE(s.dp, 0) OR a.credits_posted <> COALESCE(s.cp, 0)
       OR a.debits_pending <> COALESCE(s.dpe, 0) OR a.credits_pending <> COALESCE(s.cpe, 0)
    ORDER BY a.id
"""
_COLUMNS = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")


async def _cached_sums(conn: AsyncConnection, cutoff: datetime) -> list[Violation]:
    out = []
    for row in (await conn.execute(text(_SUMS))).all():
        account_id, cached, summed = row[0], row[1:5], row[5:9]
        diffs = ", ".join(
            f"{name} is {int(c)} but transfers sum to {int(s)}"
            for name, c, s in zip(_COLUMNS, cached, summed, strict=True)
            if int(c) != int(s)
        )
        out.append(Violation(2, "account_sums_mismatch", f"account {account_id}: {diffs}", str(account_id)))
    return out


# 3. No wallet is over-drawn, and every wallet carries the rule that prevents it.
async def _overdrawn(conn: AsyncConnection, cutoff: datetime) -> list[Violation]:
    out = []
    rows = await conn.execute(
        text(
            "SELECT id, debits_posted, debits_pending, credits_posted FROM accounts"
            " WHERE (kind = 'wallet' OR debits_must_not_exceed_credits)"
            " AND debits_posted + debits_pending > credits_posted ORDER BY id"
        )
    )
    for acc, dp, dpe, cp in rows.all():
        out.append(
            Violation(
                3,
                "wallet_overdrawn",
                f"wallet account {acc}: debits_posted {dp} + debits_pending {dpe} > credits_posted {cp}",
                str(acc),
            )
        )
    rows = await conn.execute(
        text(
            "SELECT id FROM accounts WHERE kind = 'wallet' AND NOT debits_must_not_exceed_credits ORDER BY id"
        )
    )
    for (acc,) in rows.all():
        out.append(
            Violation(
                3, "wallet_unguarded", f"wallet account {acc} lacks debits_must_not_exceed_credits", str(acc)
            )
        )
    return out


# 4. Each hold is resolved at most once, by a resolution that matches it, and none outlives
# its timeout plus the grace (the safety-net job's interval).
async def _holds(conn: AsyncConnection, cutoff: datetime) -> list[Violation]:
    out = []
    rows = await conn.execute(
        text(
            "SELECT pending_id, COUNT(*) FROM transfers WHERE pending_id IS NOT NULL"
            " GROUP BY pending_id HAVING COUNT(*) > 1 ORDER BY pending_id"
        )
    )
    for pid, n in rows.all():
        out.append(Violation(4, "hold_resolved_twice", f"hold {pid} has {n} resolutions", pid))

    rows = await conn.execute(
        text(
            (
                "SELECT r.id, r.kind, r.pending_id, p.kind FROM transfers r"
                " LEFT JOIN transfers p ON p.id = r.pending_id"
                " WHERE (r.kind IN ({capture}, {void})"
                "        AND (p.id IS NULL OR p.kind <> {hold} OR p.amount <> r.amount"
                "             OR p.debit_account_id <> r.debit_account_id"
                "             OR p.credit_account_id <> r.credit_account_id))"
                "    OR (r.kind NOT IN ({capture}, {void}) AND r.pending_id IS NOT NULL)"
                " ORDER BY r.id"
            ).format(**_KINDS)
        )
    )
    for rid, rkind, pid, pkind in rows.all():
        out.append(
            Violation(
                4,
                "resolution_mismatch",
                f"transfer {rid} ({rkind}) does not match the hold it resolves ({pid}, {pkind})",
                rid,
            )
        )

    rows = await conn.execute(
        text(
            "SELECT p.id, p.timeout_at FROM transfers p"
            f" WHERE p.kind = {_KINDS['hold']} AND p.timeout_at IS NULL ORDER BY p.id"
        )
    )
    for pid, _t in rows.all():
        out.append(Violation(4, "hold_without_timeout", f"hold {pid} has no timeout", pid))

    stmt = (
        text(
            "SELECT p.id, p.timeout_at FROM transfers p"
            f" WHERE p.kind = {_KINDS['hold']} AND p.timeout_at < :cutoff"
            " AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = p.id)"
            " ORDER BY p.timeout_at, p.id"
        )
        .bindparams(bindparam("cutoff", value=cutoff, type_=UTCDateTime()))
        .columns(id=String(), timeout_at=UTCDateTime())
    )
    for pid, timeout_at in (await conn.execute(stmt)).all():
        out.append(
            Violation(
                4,
                "hold_overdue",
                f"hold {pid} is still pending past its timeout {timeout_at.isoformat()}",
                pid,
            )
        )
    return out


# 5. Orders agree with the ledger.
_ORDERS = """
    SELECT o.id, o.status, o.price, h.id, h.kind, h.amount, h.debit_account_id,
           u.wallet_account_id, r.kind,
           CASE WHEN EXISTS (SELECT 1 FROM transfers f WHERE f.code = 'refund'
                             AND f.order_id = o.id) THEN 1 ELSE 0 END
    FROM orders o
    JOIN users u ON u.id = o.user_id
    LEFT JOIN transfers h ON h.id = o.hold_transfer_id
    LEFT JOIN transfers r ON r.pending_id = o.hold_transfer_id
    WHERE h.id IS NULL OR h.kind <> {hold} OR h.amount <> o.price
       OR h.debit_account_id <> u.wallet_account_id
       OR o.status NOT IN ({statuses})
       OR (o.status IN ({open}) AND r.kind IS NOT NULL)
       OR (o.status IN ({voided}) AND (r.kind IS NULL OR r.kind <> {void}))
       OR (o.status IN ({posted}) AND (r.kind IS NULL OR r.kind <> {capture}))
       OR (o.status = 'refunded' AND NOT EXISTS (
              SELECT 1 FROM transfers f WHERE f.code = 'refund' AND f.order_id = o.id))
    ORDER BY o.id
"""


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


_ORDERS_SQL = _ORDERS.format(
    statuses=_in(ORDER_STATUSES),
    open=_in(OPEN_STATUSES),
    voided=_in(VOIDED_STATUSES),
    posted=_in(POSTED_STATUSES),
    hold=_KINDS["hold"],
    capture=_KINDS["capture"],
    void=_KINDS["void"],
)

# Refund transfers must belong to a refunded order and never give back more than was paid.
_REFUNDS = """
    SELECT f.order_id, o.status, o.price, SUM(f.amount)
    FROM transfers f LEFT JOIN orders o ON o.id = f.order_id
    WHERE f.code = 'refund'
    GROUP BY f.order_id, o.status, o.price
    HAVING o.status IS NULL OR o.status <> 'refunded' OR SUM(f.amount) > o.price
    ORDER BY f.order_id
"""

# A purchase hold that no order points at can never be resolved through its order.
_ORPHAN_HOLDS = """
    SELECT p.id FROM transfers p
    WHERE p.kind = {hold} AND p.code = 'purchase'
      AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.hold_transfer_id = p.id)
    ORDER BY p.id
""".format(**_KINDS)


def _order_findings(row: Any) -> list[Violation]:
    oid, status, price, hid, hkind, hamount, hdebit, wallet, rkind, has_refund = row
    if hid is None or hkind != TransferKind.HOLD:
        return [Violation(5, "order_hold_missing", f"order {oid}: hold {hid} is not a pending transfer", oid)]
    out = []
    if hamount != price or hdebit != wallet:
        out.append(
            Violation(
                5,
                "order_hold_mismatch",
                f"order {oid}: hold {hid} of {hamount} on account {hdebit} does not match"
                f" price {price} on the user's wallet {wallet}",
                oid,
            )
        )
    state = {TransferKind.CAPTURE: "captured", TransferKind.VOID: "voided"}.get(rkind, "pending")
    if status not in ORDER_STATUSES:
        out.append(Violation(5, "order_unknown_status", f"order {oid} has unknown status {status!r}", oid))
    elif status in OPEN_STATUSES and rkind is not None:
        out.append(
            Violation(5, "order_open_hold_resolved", f"order {oid} is {status} but its hold is {state}", oid)
        )
    elif status in VOIDED_STATUSES and rkind != TransferKind.VOID:
        out.append(
            Violation(
                5, "order_closed_hold_not_voided", f"order {oid} is {status} but its hold is {state}", oid
            )
        )
    elif status in POSTED_STATUSES and rkind != TransferKind.CAPTURE:
        out.append(
            Violation(
                5, "order_completed_hold_not_posted", f"order {oid} is {status} but its hold is {state}", oid
            )
        )
    if status == "refunded" and not has_refund:
        out.append(
            Violation(
                5,
                "order_refunded_without_refund",
                f"order {oid} is refunded but no refund transfer exists",
                oid,
            )
        )
    return out


async def _orders(conn: AsyncConnection, cutoff: datetime) -> list[Violation]:
    out = [v for row in (await conn.execute(text(_ORDERS_SQL))).all() for v in _order_findings(row)]
    for oid, status, price, refunded in (await conn.execute(text(_REFUNDS))).all():
        if status is None:
            out.append(
                Violation(
                    5,
                    "refund_without_order",
                    f"refund of {int(refunded)} names no existing order ({oid})",
                    oid,
                )
            )
        elif status != "refunded":
            out.append(
                Violation(
                    5, "refund_order_not_refunded", f"order {oid} has a refund transfer but is {status}", oid
                )
            )
        else:
            out.append(
                Violation(
                    5,
                    "refund_exceeds_price",
                    f"order {oid}: refunds {int(refunded)} exceed its price {price}",
                    oid,
                )
            )
    for (pid,) in (await conn.execute(text(_ORPHAN_HOLDS))).all():
        out.append(Violation(5, "hold_without_order", f"purchase hold {pid} belongs to no order", pid))
    return out


# 6. Crypto Pay top-ups: the ``cryptopay`` account paid out exactly the paid invoices, each
# through its own transfer of the invoiced amount (one credit per invoice, none without one).
_CRYPTO_SOURCE = """
    SELECT COALESCE(SUM(a.debits_posted - a.credits_posted), 0) FROM accounts a WHERE a.code = 'cryptopay'
"""
_CRYPTO_PAID = "SELECT COALESCE(SUM(amount), 0), COUNT(*) FROM crypto_invoices WHERE status = 'paid'"
_CRYPTO_UNBACKED = """
    SELECT ci.id, ci.invoice_id, ci.amount, t.amount FROM crypto_invoices ci
    LEFT JOIN transfers t ON t.id = ci.transfer_id
    WHERE ci.status = 'paid' AND (t.id IS NULL OR t.amount <> ci.amount)
    ORDER BY ci.created_at LIMIT 50
"""


async def _crypto_topups(conn: AsyncConnection, cutoff: datetime) -> list[Violation]:
    out = []
    paid_out = int(await conn.scalar(text(_CRYPTO_SOURCE)) or 0)
    paid_sum, _count = (await conn.execute(text(_CRYPTO_PAID))).one()
    if paid_out != int(paid_sum):
        out.append(
            Violation(
                6,
                "crypto_topups_mismatch",
                f"the cryptopay account paid out {paid_out} but paid crypto invoices total {int(paid_sum)}",
                "cryptopay",
            )
        )
    for row in (await conn.execute(text(_CRYPTO_UNBACKED))).all():
        out.append(
            Violation(
                6,
                "crypto_invoice_not_credited",
                f"paid crypto invoice {row[1]} ({row[2]}) has "
                + ("no transfer" if row[3] is None else f"a transfer of {row[3]}"),
                str(row[0]),
            )
        )
    return out


# 7. The marketing programmes and Stars refunds agree with the ledger: each promo code's
# uses and spend are its redemptions, each redemption and referral reward is exactly its
# transfer, a reward's reversal is its transfer plus what was written off, marketing moves
# only for these, and a Stars refund's hold is in the state its row says.
_PROMO_CODES = """
    SELECT c.code, c.used, c.spent, COUNT(r.user_id), COALESCE(SUM(r.amount), 0)
    FROM promo_codes c LEFT JOIN promo_redemptions r ON r.code = c.code
    GROUP BY c.code, c.used, c.spent
    HAVING c.used <> COUNT(r.user_id) OR c.spent <> COALESCE(SUM(r.amount), 0)
    ORDER BY c.code
"""
_PROGRAMME_TRANSFERS = """
    SELECT 'promo', r.code || ':' || CAST(r.user_id AS VARCHAR(16)), r.amount, t.amount, t.code
    FROM promo_redemptions r LEFT JOIN transfers t ON t.id = r.transfer_id
    WHERE t.id IS NULL OR t.amount <> r.amount OR t.code <> 'promo'
    UNION ALL
    SELECT 'referral', w.order_id, w.amount, t.amount, t.code
    FROM referral_rewards w LEFT JOIN transfers t ON t.id = w.transfer_id
    WHERE t.id IS NULL OR t.amount <> w.amount OR t.code <> 'referral'
    UNION ALL
    SELECT 'referral_back', w.order_id, w.reversed, COALESCE(SUM(t.amount), 0), NULL
    FROM referral_rewards w
    LEFT JOIN transfers t ON t.order_id = w.order_id AND t.code = 'referral_back'
    GROUP BY w.order_id, w.amount, w.reversed, w.written_off, w.reversed_at
    HAVING w.reversed <> COALESCE(SUM(t.amount), 0)
        OR (w.reversed_at IS NULL AND w.reversed + w.written_off <> 0)
        OR (w.reversed_at IS NOT NULL AND w.reversed + w.written_off <> w.amount)
    ORDER BY 1, 2
"""
_MARKETING_STRAYS = """
    SELECT t.id, t.code FROM transfers t
    JOIN accounts a ON a.id IN (t.debit_account_id, t.credit_account_id)
    WHERE a.code = 'marketing' AND t.code NOT IN ('promo', 'referral', 'referral_back')
    ORDER BY t.id
"""
_STAR_REFUNDS = """
    SELECT s.charge_id, s.status, h.kind, r.kind
    FROM star_refunds s
    LEFT JOIN transfers h ON h.id = s.hold_transfer_id
    LEFT JOIN transfers r ON r.pending_id = s.hold_transfer_id
    WHERE h.id IS NULL OR h.kind <> {hold} OR h.amount <> s.amount
       OR (s.status = 'held' AND r.id IS NOT NULL)
       OR (s.status = 'refunded' AND (r.kind IS NULL OR r.kind <> {capture}))
       OR (s.status = 'failed' AND (r.kind IS NULL OR r.kind <> {void}))
       OR s.status NOT IN ('held', 'refunded', 'failed')
    ORDER BY s.charge_id
""".format(**_KINDS)


async def _programmes(conn: AsyncConnection, cutoff: datetime) -> list[Violation]:
    out = []
    for code, used, spent, n, total in (await conn.execute(text(_PROMO_CODES))).all():
        out.append(
            Violation(
                7,
                "promo_code_mismatch",
                f"promo code {code}: used {used}, spent {int(spent)}, but {n} redemptions of {int(total)}",
                code,
            )
        )
    for kind, ref, booked, moved, tcode in (await conn.execute(text(_PROGRAMME_TRANSFERS))).all():
        out.append(
            Violation(
                7,
                f"{kind}_transfer_mismatch",
                f"{kind} {ref}: {int(booked or 0)} recorded, transfer {moved} ({tcode})",
                ref,
            )
        )
    for tid, tcode in (await conn.execute(text(_MARKETING_STRAYS))).all():
        out.append(
            Violation(7, "marketing_stray_transfer", f"transfer {tid} ({tcode}) moves marketing money", tid)
        )
    for charge, status, hkind, rkind in (await conn.execute(text(_STAR_REFUNDS))).all():
        out.append(
            Violation(
                7,
                "star_refund_mismatch",
                f"Stars refund {charge} is {status} but its hold is {hkind}/{rkind or 'unresolved'}",
                charge,
            )
        )
    return out
