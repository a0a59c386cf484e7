"""What the bot says about promo codes and referrals (/promo, /referral, start links).

HTML like ``bot.texts``: a code the user typed is escaped before it is shown."""

from __future__ import annotations

from html import escape

from bot.i18n import _, ngettext
from core.money import format_amount
from core.promo import Outcome


def promo_usage() -> str:
    return _("Send your promo code like this: <code>/promo WELCOME5</code>")


def promo_result(outcome: Outcome, code: str, amount: int, available: int | None, currency: str) -> str:
    shown = escape(code)
    if outcome == Outcome.CREDITED:
        return _(
            "🎁 Promo code <b>{code}</b> added {amount} to your balance.\n"
            "Available balance: <b>{available}</b>"
        ).format(
            code=shown,
            amount=format_amount(amount, currency),
            available=format_amount(available or 0, currency),
        )
    texts = {
        Outcome.ALREADY: _(
            "You have already used the promo code <b>{code}</b>. Each code works once per person."
        ),
        Outcome.UNKNOWN: _("There is no promo code <b>{code}</b>. Check the spelling and try again."),
        Outcome.EXPIRED: _("The promo code <b>{code}</b> has expired."),
        Outcome.USED_UP: _("The promo code <b>{code}</b> has been fully used up."),
        Outcome.DISABLED: _("The promo code <b>{code}</b> is no longer valid."),
        Outcome.INVALID: _(
            "That doesn't look like a promo code. Codes are letters and digits, like WELCOME5."
        ),
    }
    return texts[outcome].format(code=shown)


def referral(
    link: str, joined: int, earned: int, taken_back: int, percent: float, days: int, currency: str
) -> str:
    people = ngettext("{n} person joined", "{n} people joined", joined).format(n=joined)
    text = _(
        "🤝 <b>Invite friends</b>\n\n"
        "Share your link. When someone new starts the bot with it, you get {percent}% of what they "
        "spend on numbers for their first {days} days.\n\n"
        "Your link:\n<code>{link}</code>\n\n"
        "{people} · earned <b>{earned}</b>"
    ).format(
        percent=f"{percent:g}",
        days=days,
        link=escape(link),
        people=people,
        earned=format_amount(earned - taken_back, currency),
    )
    if taken_back:
        text += "\n" + _("({amount} was taken back after refunds.)").format(
            amount=format_amount(taken_back, currency)
        )
    return text


def referral_off() -> str:
    return _("The referral programme is not running right now.")


def referral_joined() -> str:
    return _("👋 You joined through a friend's invitation. Welcome!")
