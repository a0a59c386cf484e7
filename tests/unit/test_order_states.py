import itertools

import pytest

from core.order_states import (
    HOLD_STATE,
    IllegalTransition,
    LedgerEffect,
    OrderEvent,
    OrderStatus,
    can,
    transition,
)

S, E = OrderStatus, OrderEvent


@pytest.mark.parametrize(
    ("source", "event", "target", "effect"),
    [
        (S.RESERVING, E.RENTED, S.WAITING, LedgerEffect.NONE),
        (S.RESERVING, E.FAIL, S.FAILED, LedgerEffect.VOID),
        (S.RESERVING, E.CANCEL, S.CANCELLED, LedgerEffect.VOID),
        (S.WAITING, E.CODE, S.COMPLETED, LedgerEffect.CAPTURE),
        (S.WAITING, E.CANCEL, S.CANCELLED, LedgerEffect.VOID),
        (S.WAITING, E.EXPIRE, S.EXPIRED, LedgerEffect.VOID),
        (S.WAITING, E.FAIL, S.FAILED, LedgerEffect.VOID),
        (S.COMPLETED, E.REFUND, S.REFUNDED, LedgerEffect.REFUND),
    ],
)
def test_legal_transitions(source, event, target, effect):
    t = transition(source, event)
    assert (t.target, t.effect) == (target, effect)


def test_everything_else_is_illegal():
    legal = {
        (S.RESERVING, E.RENTED),
        (S.RESERVING, E.FAIL),
        (S.RESERVING, E.CANCEL),
        (S.WAITING, E.CODE),
        (S.WAITING, E.CANCEL),
        (S.WAITING, E.EXPIRE),
        (S.WAITING, E.FAIL),
        (S.COMPLETED, E.REFUND),
    }
    for status, event in itertools.product(OrderStatus, OrderEvent):
        assert can(status, event) == ((status, event) in legal)
        if (status, event) not in legal:
            with pytest.raises(IllegalTransition):
                transition(status, event)


def test_terminal_states_never_move_money_again():
    for status in (S.CANCELLED, S.EXPIRED, S.FAILED, S.REFUNDED):
        assert not any(can(status, e) for e in OrderEvent)


def test_code_never_follows_a_release():
    # A refund (release) must never be followed by a capture of the same hold.
    for status, hold in HOLD_STATE.items():
        if hold == "void_pending":
            assert not can(status, E.CODE)


def test_unknown_names_are_illegal_not_crashes():
    with pytest.raises(IllegalTransition):
        transition("bogus", "code")
    with pytest.raises(IllegalTransition):
        transition("waiting", "explode")


def test_amounts_accept_only_ascii_digits():
    from core.money import MoneyError, parse_amount

    assert parse_amount("5.00") == 500
    for text in ("٥", "５.00", "5.٠٠"):
        with pytest.raises(MoneyError):
            parse_amount(text)
