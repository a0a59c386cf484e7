"""The dashboard's plain words: tables of stored values and what staff read instead."""

from __future__ import annotations

import pytest

from admin import words


@pytest.mark.parametrize(
    ("minor", "currency", "expected"),
    [
        (0, "USD", "$0.00"),
        (5, "USD", "$0.05"),
        (123456, "USD", "$1,234.56"),
        (-123456789, "USD", "-$1,234,567.89"),
        (1234567, "EUR", "€12,345.67"),
        (1500, "JPY", "1,500 JPY"),
        (1234567, "KWD", "1,234.567 KWD"),
        (None, "USD", "—"),
    ],
)
def test_money_in_the_shop_currency_with_separators(minor, currency, expected) -> None:
    assert words.money(minor, currency) == expected


@pytest.mark.parametrize(
    ("count", "singular", "plural", "expected"),
    [
        (0, "order", None, "0 orders"),
        (1, "order", None, "1 order"),
        (2, "order", None, "2 orders"),
        (1234, "order", None, "1,234 orders"),
        (1, "staff refund", None, "1 staff refund"),
        (3, "entry", "entries", "3 entries"),
        (None, "hold", None, "0 holds"),
    ],
)
def test_plurals(count, singular, plural, expected) -> None:
    assert words.plural(count, singular, plural) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0"),
        (999, "999"),
        (1000, "1,000"),
        (12345678, "12,345,678"),
        (None, "—"),
        (2.5, "2.5"),
        (3.0, "3"),
    ],
)
def test_numbers(value, expected) -> None:
    assert words.number(value) == expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("GB", "🇬🇧 United Kingdom"),
        ("gb", "🇬🇧 United Kingdom"),
        ("US", "🇺🇸 United States"),
        ("ZZ", "🇿🇿 ZZ"),  # not in the catalogue: the code with its (unassigned) indicator pair
        ("", "—"),
        (None, "—"),
        ("G1", "G1"),  # not a country code at all: no flag
    ],
)
def test_countries_with_flags(code, expected) -> None:
    assert words.country_name(code) == expected


def test_flag_is_two_regional_indicators() -> None:
    assert words.flag("DE") == "\U0001f1e9\U0001f1ea"
    assert words.flag("DEU") == "" and words.flag("") == "" and words.flag("1A") == ""


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("whatsapp", "WhatsApp"),
        ("openai", "OpenAI / ChatGPT"),
        ("twitter", "X (Twitter)"),
        ("WhatsApp", "WhatsApp"),
        ("nosuch", "nosuch"),
        (None, "—"),
    ],
)
def test_service_names(code, expected) -> None:
    assert words.service_name(code) == expected


@pytest.mark.parametrize(
    ("code", "word"),
    [
        ("purchase", "Hold"),
        ("hold", "Hold"),
        ("capture", "Capture"),
        ("release", "Void"),
        ("void", "Void"),
        ("refund", "Refund"),
        ("topup", "Top-up"),
        ("adjustment", "Staff adjustment"),
        ("mystery", "mystery"),
    ],
)
def test_transfer_kinds_in_words(code, word) -> None:
    assert words.transfer_kind(code) == word
    if code != "mystery":
        assert words.transfer_meaning(code)  # every known kind is explained


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("revenue", "Shop revenue"),
        ("revenue#15", "Shop revenue"),
        ("topups", "Top-ups received"),
        ("topups#3", "Top-ups received"),
        ("adjustments", "Staff adjustments"),
        ("wallet 4242 @ann", "wallet 4242 @ann"),
        (None, "—"),
    ],
)
def test_system_accounts_named_for_people(name, expected) -> None:
    assert words.account_name(name) == expected


@pytest.mark.parametrize(
    ("actor", "expected"),
    [
        ("staff:alice", "alice (staff)"),
        ("api:bot", "bot (api)"),
        ("user", "the user"),
        ("system", "the shop"),
        ("", "—"),
    ],
)
def test_actors(actor, expected) -> None:
    assert words.actor_name(actor) == expected


@pytest.mark.parametrize(
    ("event", "detail", "actor", "expected"),
    [
        (
            "created",
            {"price": 150, "quote_id": "q1"},
            "user",
            "Ordered for $1.50; the money is held until a code arrives.",
        ),
        ("rented", {"provider": "alpha", "activation_id": "a1"}, "system", "Number rented from alpha."),
        (
            "rent_unknown",
            {"provider": "alpha", "error": "timeout"},
            "system",
            "Renting from alpha gave no clear answer (timeout); the shop checks again before charging.",
        ),
        ("code", {"code": "123456"}, "system", "Code arrived; the held money was captured."),
        ("another_code", None, "user", "The user asked for another code."),
        ("cancel", None, "user", "Cancelled by the user; the held money went back to the wallet."),
        (
            "cancel",
            {"reason": "stuck"},
            "staff:alice",
            "Cancelled by alice (staff); the held money went back to the wallet: stuck",
        ),
        ("expire", None, "system", "Expired without a code; the held money went back to the wallet."),
        (
            "fail",
            {"reason": "no stock anywhere", "tried": ["alpha"]},
            "system",
            "Failed; the held money went back to the wallet: no stock anywhere",
        ),
        (
            "refund",
            {"amount": 123456, "reason": "code did not work"},
            "staff:bob",
            "Refunded $1,234.56 to the wallet by bob (staff): code did not work",
        ),
        (
            "hold_voided",
            {"reason": "reconciliation"},
            "system",
            "Reconciliation voided a hold left pending; the money went back to the wallet.",
        ),
        ("hold_posted", None, "system", "Reconciliation captured a hold left pending on a completed order."),
        ("something_new", {"amount": 250, "note": "x"}, "system", "Something new: amount $2.50 · note x."),
        ("something_new", None, "system", "Something new."),
    ],
)
def test_order_events_as_sentences(event, detail, actor, expected) -> None:
    assert words.order_event(event, detail, "USD", actor) == expected


@pytest.mark.parametrize(
    ("action", "detail", "sentence", "rest"),
    [
        (
            "wallet.credit",
            {"telegram_id": 4242, "amount": 500, "transfer_id": "t", "idempotency_key": "k"},
            "Credited $5.00 to the wallet",
            "",
        ),
        ("wallet.debit", {"telegram_id": 4242, "amount": 123456}, "Debited $1,234.56 from the wallet", ""),
        ("order.cancel", {"refunded": 300}, "Cancelled the order; $3.00 back to the wallet", ""),
        (
            "order.refund",
            {"amount": 300, "status": "completed"},
            "Refunded $3.00 to the wallet",
            "status completed",
        ),
        (
            "price.set",
            {"markup_percent": 25, "fixed_price": None},
            "Set a price override",
            "markup percent 25",
        ),
        (
            "price.set",
            {"markup_percent": None, "fixed_price": 199},
            "Set a price override",
            "fixed price $1.99",
        ),
        ("user.block", {"telegram_id": 4242}, "Blocked the user", ""),
        ("staff.role", {"role": "support"}, "Changed a staff role", "role support"),
        ("odd.thing_done", {"cost": 10}, "odd: thing done", "cost $0.10"),
        (
            "order.hold_voided",
            {"amount": 100, "status": "expired"},
            "Voided a hold of $1.00 left pending",
            "status expired",
        ),
        ("order.cancel", None, "Cancelled the order; money back to the wallet", ""),
    ],
)
def test_audit_rows_in_words(action, detail, sentence, rest) -> None:
    assert words.audit_action(action, detail, "USD") == sentence
    assert words.audit_detail(action, detail, "USD") == rest


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((4242, "ann", "Ann"), "4242 · @ann · Ann"),
        ((4242, None, None), "4242"),
        ((None,), "—"),
    ],
)
def test_user_label(args, expected) -> None:
    assert words.user_label(*args) == expected


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("posted", "posted"),
        ("pending", "hold placed"),
        ("post_pending", "hold captured"),
        ("void_pending", "hold voided"),
        ("other", "other"),
        (None, "—"),
    ],
)
def test_transfer_phases(kind, expected) -> None:
    assert words.transfer_state(kind) == expected
