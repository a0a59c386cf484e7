"""The schema: one SQLAlchemy Core table per concept.

Core tables (not ORM classes) because every write that matters is an explicit guarded UPDATE
or compare-and-set, and the ledger's hot path is a handful of statements we want to see.
Alembic migrations under ``core/db/migrations`` must match this metadata (a test checks it).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, hands back aware UTC, on every backend.

    SQLite has no time zones; storing naive UTC everywhere keeps comparisons in SQL
    (``expires_at <= :now``) correct on both databases.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use an aware UTC time")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


Money = BigInteger  # minor units of the shop currency


users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("telegram_id", BigInteger, nullable=False, unique=True),
    Column("username", String(64)),
    Column("first_name", String(128)),
    Column("language", String(8)),
    # True once the user picked the language with /language; until then the bot follows the
    # language of the user's Telegram client.
    Column("language_chosen", Boolean, nullable=False, default=False, server_default=false()),
    Column("wallet_account_id", Integer, ForeignKey("accounts.id"), nullable=False, unique=True),
    Column("blocked", Boolean, nullable=False, default=False),
    Column("unreachable", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
)
Index("ix_users_username", users.c.username)

# Ledger (TigerBeetle's model): cached sums on accounts, immutable transfers.
accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # 'wallet' for users; 'revenue', 'topups', 'adjustments' for the shop's system accounts.
    Column("kind", String(16), nullable=False),
    # Unique name for system accounts ('revenue'); NULL for wallets.
    Column("code", String(32), unique=True),
    Column("debits_must_not_exceed_credits", Boolean, nullable=False, default=False),
    Column("debits_posted", Money, nullable=False, default=0),
    Column("credits_posted", Money, nullable=False, default=0),
    Column("debits_pending", Money, nullable=False, default=0),
    Column("credits_pending", Money, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint(
        "debits_posted >= 0 AND credits_posted >= 0 AND debits_pending >= 0 AND credits_pending >= 0",
        name="non_negative",
    ),
)

transfers = Table(
    "transfers",
    metadata,
    # Client-generated UUID (hex): retrying the same id with the same content is a no-op.
    Column("id", String(36), primary_key=True),
    # core.ledger.TransferKind: 'posted' (single phase), 'pending' (a hold), 'post_pending' /
    # 'void_pending' (its capture / void). Stored words predate hold/capture/void and stay.
    Column("kind", String(16), nullable=False),
    Column("debit_account_id", Integer, ForeignKey("accounts.id"), nullable=False),
    Column("credit_account_id", Integer, ForeignKey("accounts.id"), nullable=False),
    Column("amount", Money, nullable=False),
    # For resolutions: the pending transfer resolved. Unique: a hold is resolved at most once.
    Column("pending_id", String(36), ForeignKey("transfers.id"), unique=True),
    # For pending transfers: when the safety net must resolve it through its order.
    Column("timeout_at", UTCDateTime),
    # What it is for: 'purchase', 'capture', 'release', 'topup', 'adjustment', 'refund'.
    Column("code", String(16), nullable=False),
    Column("order_id", String(36), index=True),
    Column("reference", String(128)),  # e.g. telegram_payment_charge_id, staff action id
    Column("memo", Text),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("amount > 0", name="positive_amount"),
    CheckConstraint("debit_account_id <> credit_account_id", name="distinct_accounts"),
)
Index("ix_transfers_debit_account_id", transfers.c.debit_account_id, transfers.c.created_at)
Index("ix_transfers_credit_account_id", transfers.c.credit_account_id, transfers.c.created_at)
Index("ix_transfers_created_at", transfers.c.created_at)

services = Table(
    "services",
    metadata,
    Column("code", String(32), primary_key=True),  # canonical: 'whatsapp', 'google', …
    Column("name", String(64), nullable=False),
    Column("popularity", Integer, nullable=False, default=0),  # higher shows first
)

countries = Table(
    "countries",
    metadata,
    Column("code", String(2), primary_key=True),  # ISO 3166-1 alpha-2
    Column("name", String(64), nullable=False),
)

offers = Table(
    "offers",
    metadata,
    Column("provider", String(32), primary_key=True),
    Column("service", String(32), ForeignKey("services.code"), primary_key=True),
    Column("country", String(2), ForeignKey("countries.code"), primary_key=True),
    Column("cost", Money, nullable=False),  # provider cost converted to shop minor units
    Column("stock", Integer, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)
Index("ix_offers_service_country", offers.c.service, offers.c.country)

price_overrides = Table(
    "price_overrides",
    metadata,
    Column("service", String(32), ForeignKey("services.code"), primary_key=True),
    Column("markup_percent", Integer),  # replaces MARKUP_PERCENT for this service
    Column("fixed_price", Money),  # or a fixed user price, whatever the cost
    Column("updated_at", UTCDateTime, nullable=False),
)

quotes = Table(
    "quotes",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("service", String(32), nullable=False),
    Column("country", String(2), nullable=False),
    Column("price", Money, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # Routing: the provider the purchase should try last (the one whose number just expired
    # without a code), fixed with the quote so the buy step needs no hint from the client.
    Column("avoid_provider", String(32)),
)

orders = Table(
    "orders",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("quote_id", String(36)),
    Column("service", String(32), nullable=False),
    Column("country", String(2), nullable=False),
    Column("price", Money, nullable=False),  # what the user pays
    Column("cost", Money),  # what the provider charges, in shop minor units
    Column("status", String(16), nullable=False),
    Column("version", Integer, nullable=False, default=1),
    Column("hold_transfer_id", String(36), ForeignKey("transfers.id"), nullable=False),
    Column("provider", String(32)),
    Column("activation_id", String(64)),
    Column("phone", String(32)),
    Column("can_request_another", Boolean, nullable=False, default=False),
    Column("expires_at", UTCDateTime),
    Column("code", String(32)),  # the first code, the one the user paid for
    Column("failure_reason", String(255)),
    # Upstream bookkeeping, apart from what the user sees (core.order_states.UpstreamState):
    # 'none', 'active', 'cancel_pending', 'cancelled', 'finish_pending', 'finished'.
    Column("upstream_state", String(16), nullable=False, default="none"),
    Column("upstream_retry_at", UTCDateTime),
    Column("upstream_attempts", Integer, nullable=False, default=0),
    # Work scheduling for the poller and the other tickers.
    Column("next_poll_at", UTCDateTime),
    Column("lease_owner", String(64)),
    Column("lease_until", UTCDateTime),
    Column("chat_id", BigInteger),  # where the order message lives, for notifications
    Column("message_id", BigInteger),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("closed_at", UTCDateTime),
    # When the waiting order's message is next redrawn with the time left (core.orders.timer).
    Column("redraw_at", UTCDateTime),
    UniqueConstraint("provider", "activation_id", name="uq_orders_provider_activation"),
)
Index("ix_orders_status_next_poll_at", orders.c.status, orders.c.next_poll_at)
Index("ix_orders_status_expires_at", orders.c.status, orders.c.expires_at)
Index("ix_orders_user_id_created_at", orders.c.user_id, orders.c.created_at)
Index("ix_orders_created_at", orders.c.created_at)
# Dashboard filters page through one status or service newest first.
Index("ix_orders_status_created_at", orders.c.status, orders.c.created_at)
Index("ix_orders_service_created_at", orders.c.service, orders.c.created_at)
Index("ix_orders_upstream_state", orders.c.upstream_state, orders.c.upstream_retry_at)
# Delivery statistics fold closed orders in (closed_at, id) order from a watermark.
Index("ix_orders_closed_at_id", orders.c.closed_at, orders.c.id)

order_messages = Table(
    "order_messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", String(36), ForeignKey("orders.id"), nullable=False),
    # The provider's id for the message, or a digest of its text when it has none.
    Column("provider_message_id", String(128), nullable=False),
    Column("code", String(32)),
    Column("text", Text),
    Column("charged", Boolean, nullable=False),  # True only for the code that captured
    Column("received_at", UTCDateTime, nullable=False),
    UniqueConstraint("order_id", "provider_message_id", name="uq_order_messages_dedupe"),
)

order_events = Table(
    "order_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", String(36), ForeignKey("orders.id"), nullable=False, index=True),
    Column("event", String(32), nullable=False),
    Column("from_status", String(16)),
    Column("to_status", String(16)),
    Column("actor", String(64), nullable=False),  # 'user', 'scheduler', 'staff:alice', …
    Column("detail", JSON),
    Column("created_at", UTCDateTime, nullable=False),
)

# Notifications to users and staff, written in the same transaction as the state change.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dedupe_key", String(128), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),  # 'code', 'expired', 'cancelled', 'staff_alert'…
    Column("chat_id", BigInteger, nullable=False),
    Column("order_id", String(36)),
    Column("payload", JSON, nullable=False),
    # 'pending', 'sent', 'failed', 'unreachable'
    Column("status", String(16), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until", UTCDateTime),
    Column("last_error", String(255)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
)
Index("ix_outbox_status_next_attempt_at", outbox.c.status, outbox.c.next_attempt_at)
# An order's pending redraw is found and replaced, not queued again (core.outbox.enqueue_redraw).
Index("ix_outbox_order_id_kind_status", outbox.c.order_id, outbox.c.kind, outbox.c.status)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("scope", String(32), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # 'in_progress' | 'done'
    Column("result", JSON),
    Column("locked_until", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)
Index("ix_idempotency_keys_created_at", idempotency_keys.c.created_at)

# Every staff or system action that changes money or orders, with who, why and when.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("actor", String(64), nullable=False),  # 'staff:alice', 'cli', 'system'
    Column("action", String(48), nullable=False),  # 'wallet.credit', 'order.refund', …
    Column("target_type", String(32)),
    Column("target_id", String(64)),
    Column("reason", Text),
    Column("detail", JSON),
    Column("created_at", UTCDateTime, nullable=False),
)
Index("ix_audit_log_created_at", audit_log.c.created_at)

staff = Table(
    "staff",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),  # 'viewer' | 'support' | 'admin'
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("staff_id", Integer, ForeignKey("staff.id"), nullable=False),
    Column("token_hash", String(128), nullable=False, unique=True),
    Column("name", String(64)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime),
)

# Telegram update ids already handled (written after handling): a redelivery is dropped.
processed_updates = Table(
    "processed_updates",
    metadata,
    Column("update_id", BigInteger, primary_key=True),
    Column("received_at", UTCDateTime, nullable=False),
)

# Provider webhook deliveries already recorded (idempotent by the provider's event id).
webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("provider", String(32), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
)

reconciliation_runs = Table(
    "reconciliation_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("mode", String(16), nullable=False),  # 'dry_run' | 'execute' | 'scheduled'
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("checked", JSON),  # what was looked at, with counts
    Column("findings", JSON),  # list of {code, message, ref}
    Column("fixes", JSON),  # list of {code, message, ref}
    Column("status", String(16), nullable=False),  # 'running' | 'clean' | 'fixed' | 'findings' | 'error'
)
Index("ix_reconciliation_runs_started_at", reconciliation_runs.c.started_at)

provider_balances = Table(
    "provider_balances",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("provider", String(32), nullable=False),
    Column("amount", BigInteger, nullable=False),  # provider's own minor units
    Column("currency", String(8), nullable=False),
    Column("taken_at", UTCDateTime, nullable=False),
)
Index("ix_provider_balances_provider_taken_at", provider_balances.c.provider, provider_balances.c.taken_at)

# Scheduler heartbeats: when each job last ran, for job lag on the dashboard and /metrics.
job_runs = Table(
    "job_runs",
    metadata,
    Column("job", String(48), primary_key=True),
    Column("last_started_at", UTCDateTime),
    Column("last_finished_at", UTCDateTime),
    Column("last_error", Text),
    Column("owner", String(64)),
)

# Crypto Pay (@CryptoBot) top-up invoices. The row is written ('creating', keyed by our own
# id, which the signed payload carries) before the provider is asked, so a reply lost in
# transit still leaves a row a later payment can be matched to. ``invoice_id`` is the
# provider's id once known; one invoice credits one wallet once (the transfer id is derived
# from it, and the row moves to 'paid' only from an unpaid status, in the same transaction).
crypto_invoices = Table(
    "crypto_invoices",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("telegram_id", BigInteger, nullable=False),
    Column("amount", Money, nullable=False),  # minor units of the shop currency credited
    Column("currency", String(8), nullable=False),
    Column("status", String(16), nullable=False),  # creating, active, paid, expired, failed
    Column("invoice_id", BigInteger, unique=True),
    Column("payload", String(256), nullable=False),
    Column("pay_url", String(512)),
    Column("paid_asset", String(16)),
    Column("paid_amount", String(40)),
    Column("transfer_id", String(36)),
    Column("paid_via", String(16)),  # 'webhook' or 'poll': which path credited it
    Column("error", String(255)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime),
    Column("paid_at", UTCDateTime),
    CheckConstraint("amount > 0", name="positive_amount"),
    CheckConstraint("status IN ('creating', 'active', 'paid', 'expired', 'failed')", name="known_status"),
)
Index("ix_crypto_invoices_status_created_at", crypto_invoices.c.status, crypto_invoices.c.created_at)
Index("ix_crypto_invoices_user_id", crypto_invoices.c.user_id)
# "Code didn't work" reports: at most one per order (the unique order_id is the guard two
# concurrent taps meet), worked by staff to 'resolved' (with a refund) or 'rejected'.
# 'resolving' marks a resolve whose refund is under way, so a reject cannot slip in between.
tickets = Table(
    "tickets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", String(36), ForeignKey("orders.id"), nullable=False, unique=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("reason", String(64), nullable=False),  # 'code_didnt_work'
    Column("state", String(16), nullable=False),  # 'open' | 'resolving' | 'resolved' | 'rejected'
    Column("staff_note", Text),
    Column("closed_by", String(64)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("closed_at", UTCDateTime),
)
Index("ix_tickets_state_created_at", tickets.c.state, tickets.c.created_at)
# The newest confirm screen of a user (core.pending_confirm) after a top-up.
Index("ix_quotes_user_id_created_at", quotes.c.user_id, quotes.c.created_at)
# --- promo codes, referrals, Stars refunds (all paid from the `marketing` system account,
# except a Stars refund, which takes back a top-up) ----------------------------------------

promo_codes = Table(
    "promo_codes",
    metadata,
    Column("code", String(32), primary_key=True),  # upper case, [A-Z0-9_-]
    Column("amount", Money, nullable=False),  # credited per redemption
    Column("max_uses", Integer, nullable=False),
    Column("used", Integer, nullable=False, default=0),
    Column("budget", Money, nullable=False),  # most the code may ever pay out in total
    Column("spent", Money, nullable=False, default=0),
    Column("expires_at", UTCDateTime),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_by", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("amount > 0 AND max_uses > 0 AND budget > 0", name="positive"),
    # The guarded UPDATE keeps these; the constraint is the last line if a bug does not.
    CheckConstraint("used >= 0 AND used <= max_uses AND spent >= 0 AND spent <= budget", name="within"),
)

# One row per (code, user): the primary key is what makes "once per user" exact.
promo_redemptions = Table(
    "promo_redemptions",
    metadata,
    Column("code", String(32), ForeignKey("promo_codes.code"), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), primary_key=True),
    Column("amount", Money, nullable=False),
    Column("transfer_id", String(36), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
Index("ix_promo_redemptions_created_at", promo_redemptions.c.created_at)

# A user's personal referral code, made the first time they open /referral.
referral_codes = Table(
    "referral_codes",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id"), primary_key=True),
    Column("code", String(16), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
)

# Who brought whom. The referee is the primary key: attributed once, never changed.
referrals = Table(
    "referrals",
    metadata,
    Column("referee_user_id", Integer, ForeignKey("users.id"), primary_key=True),
    Column("referrer_user_id", Integer, ForeignKey("users.id"), nullable=False, index=True),
    Column("joined_at", UTCDateTime, nullable=False),
    CheckConstraint("referee_user_id <> referrer_user_id", name="not_self"),
)

# One reward per captured order (the primary key), and what a later refund took back.
referral_rewards = Table(
    "referral_rewards",
    metadata,
    Column("order_id", String(36), ForeignKey("orders.id"), primary_key=True),
    Column("referrer_user_id", Integer, ForeignKey("users.id"), nullable=False, index=True),
    Column("referee_user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("amount", Money, nullable=False),
    Column("transfer_id", String(36), nullable=False),
    Column("reversed", Money, nullable=False, default=0),  # taken back from the referrer
    Column("written_off", Money, nullable=False, default=0),  # could not be taken back
    Column("reversed_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
)
Index("ix_referral_rewards_created_at", referral_rewards.c.created_at)

# Stars refunds, one per Telegram charge: 'held' (money held, Bot API call not settled),
# 'refunded' (captured), 'failed' (Telegram refused; the hold was voided).
star_refunds = Table(
    "star_refunds",
    metadata,
    Column("charge_id", String(128), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("amount", Money, nullable=False),
    Column("hold_transfer_id", String(36), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("error", String(255)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)
Index("ix_star_refunds_created_at", star_refunds.c.created_at)
# A buyer's saved service+country pairs (⭐ on the confirm screen), shown atop the service list.
favourites = Table(
    "favourites",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id"), primary_key=True),
    Column("service", String(32), primary_key=True),
    Column("country", String(2), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
)

# Routing by delivered codes (core.delivery_stats): per provider × service × country, the
# rentals and the codes delivered before the deadline, each weighted by 2^(-age/half-life) as
# of ``decayed_at``; sums of seconds to the first code for the delivered ones. Folded in from
# closed orders by one folder at a time (the watermark row's compare-and-set).
delivery_stats = Table(
    "delivery_stats",
    metadata,
    Column("provider", String(32), primary_key=True),
    Column("service", String(32), primary_key=True),
    Column("country", String(2), primary_key=True),
    Column("rented", Float, nullable=False, default=0.0),
    Column("delivered", Float, nullable=False, default=0.0),
    Column("first_code_seconds", Float, nullable=False, default=0.0),  # weighted sum, delivered only
    Column("rented_total", Integer, nullable=False, default=0),  # undecayed counts, for people
    Column("delivered_total", Integer, nullable=False, default=0),
    Column("decayed_at", UTCDateTime, nullable=False),
    Column("last_closed_at", UTCDateTime),
)

# How far the fold has read the closed orders: (closed_at, id) of the last one folded.
delivery_watermark = Table(
    "delivery_watermark",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("closed_at", UTCDateTime),
    Column("order_id", String(36)),
    Column("folded", Integer, nullable=False, default=0),
    Column("updated_at", UTCDateTime, nullable=False),
)
# --- dashboard: daily rollups, broadcasts, per-country prices (migration 0009) ---

# Pre-aggregated figures per UTC day for the overview's charts (core.rollups): one row per
# (day, metric, key) with a count and an amount, so thirty days read a few hundred rows.
daily_rollups = Table(
    "daily_rollups",
    metadata,
    Column("day", String(10), primary_key=True),  # 'YYYY-MM-DD' (UTC)
    Column("metric", String(24), primary_key=True),
    Column("key", String(64), primary_key=True),  # '' when the metric has no breakdown
    Column("n", BigInteger, nullable=False),
    Column("total", BigInteger, nullable=False),
)

# When each day's rollup was last computed: a day computed after it settled is final.
rollup_days = Table(
    "rollup_days",
    metadata,
    Column("day", String(10), primary_key=True),
    Column("computed_at", UTCDateTime, nullable=False),
)

broadcasts = Table(
    "broadcasts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("nonce", String(128), nullable=False, unique=True),  # the form's: a resubmit sends once
    Column("text", Text, nullable=False),  # Telegram HTML
    Column("audience", String(16), nullable=False),  # 'everyone' | 'active' | 'service' | 'language'
    Column("audience_value", String(32)),
    # 'sending' | 'paused' | 'cancelled' | 'done'
    Column("status", String(16), nullable=False),
    Column("cursor_user_id", Integer, nullable=False, default=0),  # enqueued up to this users.id
    Column("total", Integer, nullable=False),  # audience size when created
    Column("enqueued", Integer, nullable=False, default=0),
    Column("created_by", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
)
Index("ix_broadcasts_status", broadcasts.c.status)

# A country's own markup, replacing the default markup there (a service's override still wins).
country_price_overrides = Table(
    "country_price_overrides",
    metadata,
    Column("country", String(2), ForeignKey("countries.code"), primary_key=True),
    Column("markup_percent", Integer, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# The audit page's filter selects list the actions and actors the log has.
Index("ix_audit_log_action", audit_log.c.action)
Index("ix_audit_log_actor", audit_log.c.actor)
