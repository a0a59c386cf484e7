"""Every sentence the bot says to a user, in one place.

Texts are HTML (the bot's default parse mode), so anything that did not come from this
module — SMS text from a provider, a user's search words — goes through ``escape`` first: a
``<`` in an SMS must never turn into a Telegram "can't parse entities" error or markup.
Amounts pass through ``bot.formats.format_amount`` (``core.money``'s minor units, shown the
way the reader's locale writes money).

Translation: every sentence is wrapped in ``_`` (functions) or ``N_`` (module-level constants
and tables, translated when read). A constant written ``NAME = N_("...")`` is looked up
through the module's ``__getattr__`` at the end of this file, so ``texts.NAME`` is always in
the language of the update being handled; refer to such constants as ``texts.NAME`` (never
``from bot.texts import NAME``, nor by bare name inside this module, which would bypass it).
"""

from __future__ import annotations

import math
from datetime import datetime
from html import escape

import phonenumbers

from bot.formats import country_name as _cldr_country_name
from bot.formats import format_amount, format_number, local_service_name
from bot.i18n import _, ngettext
from bot.i18n import gettext as translate
from core.catalogue_data import COUNTRIES_BY_CODE, SERVICES_BY_CODE


class _Deferred(str):
    """A module-level text, translated each time it is read (see ``__getattr__``)."""

    __slots__ = ()


def N_(message: str) -> str:
    """Mark a text for extraction; it is translated when read, not at import."""
    return _Deferred(message)


# --- buttons ----------------------------------------------------------------------------

BTN_BUY = N_("🛒 Buy number")
BTN_BALANCE = N_("💰 Balance & top up")
BTN_ORDERS = N_("📋 My orders")
BTN_HELP = N_("❓ Help")
BTN_MENU = N_("« Menu")
BTN_BACK = N_("« Back")
BTN_PREV = N_("‹ Prev")
BTN_NEXT = N_("Next ›")
BTN_CANCEL = N_("❌ Cancel & refund")
BTN_CHECK = N_("🔄 Check now")
BTN_TOP_UP = N_("⭐ Top up")
BTN_CUSTOM_AMOUNT = N_("✏️ Other amount")
BTN_ORDERS_BACK = N_("« My orders")


# Buttons shared by several screens; functions so each call is translated for its reader.


def btn_done() -> str:
    return _("✅ Done")


def btn_another_code() -> str:
    return _("📨 Another code")


def btn_another_number() -> str:
    return _("🔁 Another number")


def btn_buy_again() -> str:
    return _("🔁 Buy again")


def btn_other_country() -> str:
    return _("🌍 Other country")


def btn_code_didnt_work() -> str:
    return _("⚠️ Code didn't work")


def btn_favourite(saved: bool) -> str:
    return _("⭐ Saved") if saved else _("☆ Save")


def btn_buy(price: int, currency: str) -> str:
    return _("✅ Buy for {price}").format(price=format_amount(price, currency))


def btn_package(stars: int, amount: int, currency: str) -> str:
    return f"⭐ {format_number(stars)} → {format_amount(amount, currency)}"


def btn_page(page: int, pages: int) -> str:
    return f"{page}/{pages}"


# --- names ------------------------------------------------------------------------------


def service_name(code: str) -> str:
    data = SERVICES_BY_CODE.get(code)
    if data is None:
        return code
    return local_service_name(code) or data.name


def country_name(code: str) -> str:
    return _cldr_country_name(code)


def flag(country: str) -> str:
    """Regional-indicator flag emoji for an ISO 3166-1 alpha-2 code."""
    if len(country) != 2 or not country.isascii() or not country.isalpha():
        return "🏳"
    return "".join(chr(0x1F1E6 + ord(c) - ord("A")) for c in country.upper())


def country_label(code: str) -> str:
    return f"{flag(code)} {country_name(code)}"


# --- menu -------------------------------------------------------------------------------


def greeting(first_name: str | None, available: int, currency: str) -> str:
    amount = format_amount(available, currency)
    if first_name:
        hello = _("👋 Hi, {name}!").format(name=escape(first_name))
    else:
        hello = _("👋 Hi!")
    return (
        hello
        + " "
        + _(
            "Here you can buy a phone number to receive one SMS verification code.\n\n"
            "Available balance: <b>{amount}</b>\n\n"
            "If no code arrives, or you cancel, your money comes back at once."
        ).format(amount=amount)
    )


def menu(available: int, currency: str) -> str:
    return _("Menu · available balance <b>{amount}</b>").format(amount=format_amount(available, currency))


HELP = N_(
    "<b>How it works</b>\n"
    "1. Top up your balance with Telegram Stars.\n"
    "2. Pick a service and a country, check the price and tap Buy.\n"
    "3. You get a phone number. Use it on the site; the code appears here.\n\n"
    "<b>Refund rules</b>\n"
    "• The price is only <i>held</i> while you wait. You pay only when a code arrives.\n"
    "• Cancel before a code arrives: the full price goes back to your balance at once.\n"
    "• No code before the time runs out: the full price comes back automatically.\n"
    "• If we can't get you a number, you are not charged at all.\n"
    "• Once a code has arrived the number is used and the price is kept. If something went "
    "wrong, write to support with the order id.\n"
    "• Money topped up stays on your balance; it is not paid out in Stars.\n\n"
    "Commands: /start menu · /buy &lt;service&gt; [&lt;country&gt;] · /balance · /orders · /help"
    " · /support · /paysupport · /terms · /language"
)


# --- support and terms (the operator's words come from settings: plain text, escaped) ----


def support(contact: str) -> str:
    return _(
        "<b>Support</b>\n"
        "{contact}\n\n"
        "Please include the order id (tap the order in /orders) and what went wrong. "
        "An order without a code never costs you anything: its price comes back by itself."
    ).format(contact=escape(contact))


def pay_support(contact: str) -> str:
    return _(
        "<b>Payment support</b>\n"
        "Stars top-ups are added to your balance as soon as Telegram confirms the payment. "
        "Balance is spent on numbers only; it is not paid out in Stars.\n\n"
        "If you paid but your balance did not change, write to support with the date and the "
        "number of Stars:\n"
        "{contact}"
    ).format(contact=escape(contact))


def terms(text: str) -> str:
    return _("<b>Terms</b>\n{text}").format(text=escape(text))


# --- buy --------------------------------------------------------------------------------


def no_countries(service: str) -> str:
    return _(
        "No numbers for <b>{service}</b> right now. Please try again later or pick another service."
    ).format(service=escape(service_name(service)))


def unknown_country(service: str, text: str) -> str:
    return _("No numbers for {service} in “{text}” right now. Pick a country from the list.").format(
        service=escape(service_name(service)), text=escape(text)
    )


def not_charged(reason: str) -> str:
    if reason == "out_of_stock":
        return _("😕 The numbers for this country just ran out. You were not charged.")
    if reason == "price":
        return _("😕 The provider raised its price, so we stopped. You were not charged.")
    return _("😕 The provider is unavailable right now. You were not charged — please try again soon.")


# --- orders -----------------------------------------------------------------------------

_STATUS = {
    "reserving": N_("⏳ Getting your number…"),
    "waiting": N_("⏳ Waiting for the code"),
    "completed": N_("✅ Completed"),
    "cancelled": N_("❌ Cancelled"),
    "expired": N_("⌛ Expired"),
    "failed": N_("⚠️ Not available"),
    "refunded": N_("↩️ Refunded"),
}
_STATUS_SHORT = {
    "reserving": "⏳",
    "waiting": "⏳",
    "completed": "✅",
    "cancelled": "❌",
    "expired": "⌛",
    "failed": "⚠️",
    "refunded": "↩️",
}


def time_left(expires_at: datetime | None, now: datetime) -> str:
    """Minutes left rounded up, with the deadline as a UTC clock time: the number shown
    changes exactly when the timer redraws the message (core.orders.timer)."""
    if expires_at is None:
        return ""
    seconds = (expires_at - now).total_seconds()
    if seconds <= 0:
        return _("time is up")
    return ngettext("{minutes} min left", "{minutes} min left", math.ceil(seconds / 60)).format(
        minutes=math.ceil(seconds / 60)
    ) + _(" (until {clock} UTC)").format(clock=clock_time(expires_at))


def order(
    *,
    status: str,
    service: str,
    country: str,
    price: int,
    currency: str,
    phone: str | None,
    code: str | None,
    expires_at: datetime | None,
    now: datetime,
    order_id: str,
    open_number: bool = False,
) -> str:
    lines = [f"<b>{escape(service_name(service))}</b> · {country_label(country)}"]
    if phone:
        lines.append(_("Number: <code>{phone}</code>").format(phone=escape(phone)))
    lines.append(_("Price: {price}").format(price=format_amount(price, currency)))
    state = translate(_STATUS.get(status, status))
    if status == "waiting":
        left = time_left(expires_at, now)
        state += f" · {left}" if left else ""
    lines.append(_("Status: {state}").format(state=state))
    if code:
        lines.append(_("Code: <code>{code}</code>").format(code=escape(code)))
    if open_number and expires_at is not None:
        lines.append("\n" + number_open_note(expires_at))
    if status == "waiting":
        lines.append(
            "\n"
            + _(
                "Use the number now; the code will appear in this chat. "
                "Cancel any time before it arrives for a full refund."
            )
        )
    elif status in ("cancelled", "expired", "failed"):
        lines.append(
            "\n" + _("💸 {amount} is back on your balance.").format(amount=format_amount(price, currency))
            if status != "failed"
            else "\n" + _("You were not charged.")
        )
    elif status == "refunded":
        lines.append(
            "\n"
            + _("💸 {amount} was refunded to your balance.").format(amount=format_amount(price, currency))
        )
    elif status == "reserving":
        lines.append("\n" + checking_rent())
    lines.append("\n<i>" + _("Order {id}").format(id=escape(order_id[:8])) + "</i>")
    return "\n".join(lines)


def cancelled(refunded: int, balance: int, currency: str, *, html: bool = True) -> str:
    """The cancel confirmation; ``html=False`` for a callback toast, which Telegram shows as
    plain text (tags would appear literally)."""
    amount = format_amount(balance, currency)
    return _("❌ Order cancelled. {refunded} refunded — your available balance is now {balance}.").format(
        refunded=format_amount(refunded, currency), balance=f"<b>{amount}</b>" if html else amount
    )


CANCEL_ALREADY = N_("This order was already cancelled; the money is back on your balance.")
CANCEL_COMPLETED_INSTEAD = N_("A code arrived just before you cancelled, so the order is complete.")
CANCEL_TOO_EARLY = N_("Your number is still being set up. Try again in a few seconds.")
CHECKED_NOTHING = N_("No code yet. We keep checking and will post it here.")
CHECKED_CODE = N_("The code has arrived!")


def order_closed(status: str) -> str:
    state = translate(_STATUS.get(status, status)).split(" ", 1)[-1].lower()
    return _("This order is {state}; nothing to do.").format(state=state)


def code_message(code: str | None, text: str | None, phone: str | None, service: str) -> str:
    head = _("📩 Code for {service}").format(service=escape(service_name(service)))
    if phone:
        head += f" ({escape(phone)})"
    body = [head + ":", f"<code>{escape(code or '—')}</code>"]
    if text:
        body.append("")
        body.append(escape(text))
    return "\n".join(body)


def money_back(kind: str, price: int, currency: str, service: str, balance: int | None) -> str:
    what = escape(service_name(service))
    amount = format_amount(price, currency)
    if kind == "expired":
        first = _("⌛ No code arrived for your {service} number in time. {amount} is back on your balance.")
    elif kind == "failed":
        first = _("⚠️ We couldn't get a {service} number for you. You were not charged ({amount} released).")
    elif kind == "cancelled":
        first = _("❌ Your {service} order was cancelled. {amount} is back on your balance.")
    else:  # refunded by staff after completion
        first = _("↩️ Your {service} order was refunded. {amount} is back on your balance.")
    first = first.format(service=what, amount=amount)
    if balance is not None:
        first += "\n" + _("Available balance: <b>{amount}</b>.").format(
            amount=format_amount(balance, currency)
        )
    return first


def wallet_adjusted(direction: str, amount: int, currency: str, balance: int | None) -> str:
    if direction == "credit":
        text = _("💳 Support credited {amount} to your wallet.")
    else:
        text = _("💳 Support debited {amount} from your wallet.")
    text = text.format(amount=format_amount(amount, currency))
    if balance is not None:
        text += " " + _("Balance: <b>{amount}</b>.").format(amount=format_amount(balance, currency))
    return text


def number_ready(phone: str | None, service: str) -> str:
    return _("📱 Your {service} number is ready: <code>{phone}</code>").format(
        service=escape(service_name(service)), phone=escape(phone or "")
    )


def staff_alert(text: str) -> str:
    return f"🚨 {escape(text)}"


# --- balance and top-ups ---------------------------------------------------------------


def balance(balance_: int, held: int, available: int, currency: str, *, crypto: bool = False) -> str:
    text = _(
        "<b>Your balance</b>\n"
        "Balance: {balance}\n"
        "Held for open orders: {held}\n"
        "Available: <b>{available}</b>\n\n"
        "Top up with Telegram Stars: pick a package or another amount."
    ).format(
        balance=format_amount(balance_, currency),
        held=format_amount(held, currency),
        available=format_amount(available, currency),
    )
    if crypto:
        text += "\n" + _("Or pay in crypto through @CryptoBot: tap 💎 below.")
    return text


def ask_amount(currency: str, low: int, high: int) -> str:
    return _(
        "Type the amount to add in {currency}, for example <code>7.50</code> "
        "(from {low} to {high}). Send /start to go back."
    ).format(currency=currency, low=format_amount(low, currency), high=format_amount(high, currency))


def bad_amount(currency: str, low: int, high: int) -> str:
    return _(
        "That is not an amount I can use. Write it like <code>7.50</code>, from {low} to {high}."
    ).format(low=format_amount(low, currency), high=format_amount(high, currency))


def invoice_title(amount: int, currency: str) -> str:
    return _("Top up {amount}").format(amount=format_amount(amount, currency))


def invoice_description(stars: int, amount: int, currency: str) -> str:
    return _("{stars} Stars add {amount} to your numbershop balance.").format(
        stars=format_number(stars), amount=format_amount(amount, currency)
    )


def invoice_label(amount: int, currency: str) -> str:
    return _("Balance {amount}").format(amount=format_amount(amount, currency))


def topped_up(amount: int, available: int, currency: str) -> str:
    return _("✅ Payment received: {amount} added.\nAvailable balance: <b>{available}</b>.").format(
        amount=format_amount(amount, currency), available=format_amount(available, currency)
    )


TOPUP_ALREADY = N_("This payment was already added to your balance.")
INVOICE_INVALID = N_("This invoice is no longer valid. Open Balance & top up for a new one.")
PAYMENT_UNMATCHED = N_(
    "We received a payment we could not match to an invoice. Your Stars are safe: please "
    "write to support with this id: {charge_id}"
)

# --- errors -----------------------------------------------------------------------------

WORKING = N_("⏳ Working on it…")
STALE_BUTTON = N_("That button no longer works. Send /start to open the menu.")
RATE_LIMITED = N_("You're going a bit fast — please wait a second and try again.")
BLOCKED = N_("Your account is blocked. Please contact support.")
INTERNAL = N_("Something went wrong on our side. Your money is safe — please try again.")
QUOTE_EXPIRED = N_("This price has expired. Please choose the number again to see a fresh price.")
OUT_OF_STOCK = N_("No numbers in stock for that right now. Please try another country or later.")
PROVIDER_DOWN = N_("The provider isn't answering right now. Your money is safe — try again soon.")
NO_MORE_CODES = N_("This number can't receive more codes.")
CONFLICT = N_("That button was already used for something else. Send /start to begin again.")
BAD_INPUT = N_("That didn't look right. Send /start to open the menu.")
NOT_UNDERSTOOD = N_("I understand text and buttons. Type a service name to search, or send /start.")


def insufficient(missing: int, currency: str) -> str:
    return _(
        "Not enough money: you need {missing} more. Open Balance & top up to add funds. You were not charged."
    ).format(missing=format_amount(missing, currency))


# --- Crypto Pay top-ups (bot/handlers/crypto.py) ---------------------------------------


def btn_pay_crypto() -> str:
    return _("💎 Pay with crypto")


def btn_crypto_amount(amount: int, currency: str) -> str:
    return _("💎 {amount}").format(amount=format_amount(amount, currency))


def btn_crypto_other() -> str:
    return _("✏️ Other amount")


def btn_crypto_pay(amount: int, currency: str) -> str:
    return _("Pay {amount} in @CryptoBot").format(amount=format_amount(amount, currency))


def crypto_choose(currency: str, assets: tuple[str, ...]) -> str:
    return _(
        "<b>Pay with crypto</b>\n"
        "Choose how much to add to your balance. You pay the same value in {assets} "
        "through @CryptoBot."
    ).format(assets=escape(", ".join(assets)))


def crypto_ask_amount(currency: str, low: int, high: int) -> str:
    return _(
        "Type the amount to add in {currency}, for example <code>7.50</code> "
        "(from {low} to {high}). You will pay it in crypto. Send /start to go back."
    ).format(currency=currency, low=format_amount(low, currency), high=format_amount(high, currency))


def crypto_invoice(amount: int, currency: str, minutes: int) -> str:
    return _(
        "Your invoice for <b>{amount}</b> is ready. Pay it in @CryptoBot within {minutes} "
        "minutes; your balance goes up as soon as the payment is confirmed."
    ).format(amount=format_amount(amount, currency), minutes=minutes)


def crypto_unavailable() -> str:
    return _(
        "Crypto payments are not answering right now. Nothing was charged — please try again in a minute."
    )


def crypto_off() -> str:
    return _("Crypto payments are not available right now. Open Balance & top up to pay with Stars.")


def crypto_topped_up(amount: int, available: int | None, currency: str) -> str:
    text = _("✅ Crypto payment received: {amount} added.").format(amount=format_amount(amount, currency))
    if available is not None:
        text += "\n" + _("Available balance: <b>{balance}</b>.").format(
            balance=format_amount(available, currency)
        )
    return text


# --- next steps, history and tickets ------------------------------------------------------


def btn_buy_a_number() -> str:
    return _("🛒 Buy a number")


def btn_continue(service: str, country: str, price: int, currency: str) -> str:
    return _("Continue: {service} {flag} {price}").format(
        service=service_name(service), flag=flag(country), price=format_amount(price, currency)
    )


def btn_top_up_shortfall(amount: int, stars: int, currency: str) -> str:
    return _("⭐ Top up {amount} ({stars} Stars)").format(amount=format_amount(amount, currency), stars=stars)


def btn_other_amounts() -> str:
    return _("💰 Other amounts")


def btn_try_again() -> str:
    return _("🔁 Try again")


def btn_my_orders() -> str:
    return _("📋 My orders")


def btn_again_short() -> str:
    return _("🔁 Again")


def btn_older() -> str:
    return _("Older ›")


def btn_newest() -> str:
    return _("« Newest")


def btn_history_filter(name: str, current: bool) -> str:
    label = {
        "all": _("All"),
        "active": _("Active"),
        "completed": _("Completed"),
        "refunded": _("Refunded"),
    }.get(name, name)
    return f"• {label} •" if current else label


def confirm_screen(
    service: str,
    country: str,
    price: int,
    available: int,
    currency: str,
    *,
    price_holds_min: int,
    number_waits_min: int,
    note: str | None = None,
) -> str:
    """The confirm screen: what is bought, for how much, and the two clocks apart — how long
    this price is kept, and how long the number will wait for a code once bought."""
    lines = []
    if note:
        lines += [note, ""]
    lines += [
        _("<b>Confirm your order</b>"),
        _("Service: {service}").format(service=escape(service_name(service))),
        _("Country: {country}").format(country=country_label(country)),
        _("Price: <b>{price}</b>").format(price=format_amount(price, currency)),
        _("Available balance: {amount}").format(amount=format_amount(available, currency)),
        "",
        _("⏱ This price is kept for {minutes} min.").format(minutes=price_holds_min),
        _("📱 After you buy, the number waits up to {minutes} min for a code.").format(
            minutes=number_waits_min
        ),
        "",
    ]
    missing = price - available
    if missing > 0:
        lines.append(
            _(
                "⚠️ Not enough money: you need <b>{missing}</b> more. "
                "The top-up below covers it; after paying you come straight back here."
            ).format(missing=format_amount(missing, currency))
        )
    else:
        lines.append(_("The price is held from your balance and charged only when the code arrives."))
    return "\n".join(lines)


def price_updated(old: int, new: int, currency: str) -> str:
    if old == new:
        return _("⌛ That price had expired. It is still {price}: here it is again.").format(
            price=format_amount(new, currency)
        )
    return _("⌛ That price had expired. The new price is {price} (was {old}).").format(
        price=format_amount(new, currency), old=format_amount(old, currency)
    )


def price_expired_toast() -> str:
    return _("That price had expired, so nothing was bought. Here is the fresh price.")


def not_enough_toast() -> str:
    return _("Not enough money for this number; nothing was bought. You can top up the difference.")


def continue_used() -> str:
    return _("You already bought a number at this price. Open My orders to see it.")


def order_not_yours() -> str:
    return _("That order isn't in your history, so nothing was changed.")


def again_unavailable(service: str, country: str) -> str:
    return _("😕 No {service} numbers for {country} right now. Pick another country.").format(
        service=escape(service_name(service)), country=country_label(country)
    )


def topped_up_next(amount: int, available: int, currency: str, *, has_pending: bool) -> str:
    text = topped_up(amount, available, currency)
    if has_pending:
        return text + "\n\n" + _("Tap Continue to go back to the number you were buying.")
    return text + "\n\n" + _("What next? Buy a number whenever you're ready.")


_DAY = "%d %b, %H:%M"


def history_title(status_filter: str, count: int, first_page: bool) -> str:
    if count == 0:
        if status_filter == "all":
            return _("You have no orders yet. Tap Buy a number to get one.")
        if not first_page:
            return _("No older orders.")
        return _("No orders here. Try another filter, or buy a number.")
    head = (
        _("<b>My orders</b>, newest first (times in UTC).") if first_page else _("<b>My orders</b>, older:")
    )
    return head + "\n" + _("Tap an order to open it, or 🔁 to buy the same again.")


def history_line(
    n: int,
    *,
    status: str,
    service: str,
    country: str,
    price: int,
    currency: str,
    phone: str | None,
    created_at: datetime,
) -> str:
    last4 = f" · …{escape(phone[-4:])}" if phone and len(phone) >= 4 else ""
    return _("{n}. {icon} <b>{service}</b> {flag}{last4}\n    {when} · {status} · {price}").format(
        n=n,
        icon=_STATUS_SHORT.get(status, "•"),
        service=escape(service_name(service)),
        flag=flag(country),
        last4=last4,
        price=format_amount(price, currency),
        when=created_at.strftime(_DAY),
        status=translate(_STATUS.get(status, status)).split(" ", 1)[-1],
    )


def history_button(n: int, status: str, phone: str | None) -> str:
    """Half a row wide on a phone: the number in the list, the status and the last digits."""
    last4 = f" · …{phone[-4:]}" if phone and len(phone) >= 4 else ""
    return _("{icon} {n}{last4}").format(icon=_STATUS_SHORT.get(status, "•"), n=n, last4=last4)


def ticket_opened(ticket_id: int, order_id: str) -> str:
    return _(
        "📨 Thanks — we opened ticket #{ticket} for order {order}.\n\n"
        "Support will check what the provider delivered. If the code didn't work, the price "
        "comes back to your balance. Either way you will get a message here with the answer; "
        "there is nothing more you need to do."
    ).format(ticket=ticket_id, order=escape(order_id[:8]))


def ticket_refused(why: str, window_min: int = 30) -> str:
    if why == "exists":
        return _("You already reported this order. Support will answer here; nothing was changed.")
    if why == "too_late":
        return _(
            "A report is possible only within {minutes} minutes of the code. Please write to /support."
        ).format(minutes=window_min)
    return _("Only an order that received its code can be reported; nothing was changed.")


def ticket_outcome(state: str, service: str, price: int, currency: str, note: str | None) -> str:
    if state == "resolved":
        text = _(
            "✅ Support checked your report on the {service} order: {price} is back on your balance."
        ).format(service=escape(service_name(service)), price=format_amount(price, currency))
    else:
        text = _("ℹ️ Support checked your report on the {service} order and could not refund it.").format(
            service=escape(service_name(service))
        )
    if note:
        text += "\n" + _("Message from support: {note}").format(note=escape(note))
    return text


# --- order codes: open number, Done, Another code, live timer, copy buttons --------------


def clock_time(at: datetime) -> str:
    """A deadline as the buyer reads it on the screen: hours and minutes, UTC."""
    return at.strftime("%H:%M")


def number_open_note(expires_at: datetime) -> str:
    return _(
        "📨 The number stays open for more codes until {clock} UTC, at no extra cost. "
        "Tap ✅ Done when you have what you need."
    ).format(clock=clock_time(expires_at))


def done_ok() -> str:
    return _("✅ Done. The number is closed; thank you!")


def done_already() -> str:
    return _("This number is already closed.")


def done_not_open(status: str) -> str:
    if status in ("waiting", "reserving"):
        return _("No code has arrived yet, so there is nothing to finish. Cancel gets your money back.")
    return _("This order is closed; there is nothing to finish.")


def another_requested() -> str:
    return _("📨 Asked for another code. It will appear in this chat as its own message, free of charge.")


def another_already() -> str:
    return _("Already asked. The next code will appear in this chat.")


def another_closed() -> str:
    return _("This number is closed and can't receive more codes.")


def reminder(service: str, phone: str | None, minutes: int, expires_at: datetime) -> str:
    """The one "5 min left" notice of a waiting order."""
    return _(
        "⏰ {minutes} min left for your {service} number {phone}. The code will appear here; "
        "if none arrives by {clock} UTC, your money comes back by itself."
    ).format(
        minutes=minutes,
        service=escape(service_name(service)),
        phone=f"<code>{escape(phone or '')}</code>",
        clock=clock_time(expires_at),
    )


def btn_copy_number() -> str:
    return _("📋 Copy number")


def btn_copy_national(calling_code: str) -> str:
    return _("📋 Without +{code}").format(code=calling_code)


def btn_copy_code() -> str:
    return _("📋 Copy code")


def split_phone(phone: str, country: str) -> tuple[str, str, str]:
    """(the number with ``+`` and its country code, the calling code, the number without it),
    for the copy buttons. The country code comes from the number itself where it parses, and
    from the order's country otherwise; an empty calling code means it could not be split."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if not digits:
        return phone, "", phone
    try:
        parsed = phonenumbers.parse("+" + digits)
        calling = str(parsed.country_code)
    except phonenumbers.NumberParseException:
        data = COUNTRIES_BY_CODE.get(country)
        calling = (data.dial_code if data else "").lstrip("+")
        if not calling or not digits.startswith(calling):
            return "+" + digits, "", digits
    return "+" + digits, calling, digits[len(calling) :]


# --- languages --------------------------------------------------------------------------


def language_prompt() -> str:
    return _("Choose the language I speak to you in:")


def language_set() -> str:
    return _("Done: I'll speak English from now on.")


def cmd_descriptions() -> dict[str, str]:
    """The command list Telegram shows next to the text box (setMyCommands), per language."""
    return {
        "start": _("Menu and balance"),
        "buy": _("Buy a number: /buy whatsapp GB"),
        "balance": _("Balance and top up with Stars"),
        "orders": _("My recent orders"),
        "help": _("How it works and refunds"),
        "support": _("Contact support"),
        "paysupport": _("Help with a Stars payment"),
        "terms": _("Terms of the shop"),
        "promo": _("Redeem a promo code"),
        "referral": _("Invite friends and earn"),
        "language": _("Change the language"),
    }


# --- search, favourites and the service and country lists ---------------------------------


def services_intro(page: int, pages: int, shortlist: bool) -> str:
    more = _(" · page {page}/{pages}").format(page=page, pages=pages) if pages > 1 else ""
    head = _("Choose a service{more}. Most popular first.").format(more=more)
    if shortlist:
        head += "\n" + _("⭐ Your favourites and 🕘 recent buys are at the top, at today's price.")
    return head + "\n" + _("Or type a name to search, for example <i>wa</i> or <i>telegram</i>.")


def shortlist_button(saved: bool, service: str, country_flag: str, price: int | None, currency: str) -> str:
    mark = "⭐" if saved else "🕘"
    if price is None:
        return _("{mark} {service} {flag} · sold out").format(mark=mark, service=service, flag=country_flag)
    return _("{mark} {service} {flag} · {price}").format(
        mark=mark, service=service, flag=country_flag, price=format_amount(price, currency)
    )


def service_choice(name: str, min_price: int | None, currency: str, *, short: bool = False) -> str:
    """A service button; ``short`` drops "from" so two fit a row more often."""
    if min_price is None:
        return _("{name} · sold out").format(name=name)
    if short:
        return _("{name} · {price}").format(price=format_amount(min_price, currency), name=name)
    return _("{name} · from {price}").format(name=name, price=format_amount(min_price, currency))


def country_choice(
    flag_: str, name: str, price: int, stock: int, currency: str, *, popular: bool
) -> list[str]:
    """Labels for a country button, longest first: the keyboard takes the first that fits."""
    mark = "🔥 " if popular else ""
    amount = format_amount(price, currency)
    return [
        _("{mark}{flag} {name} · {price} · {stock} left").format(
            mark=mark, flag=flag_, name=name, price=amount, stock=f"{stock:,}"
        ),
        _("{mark}{price} · {flag} {name} · {stock}").format(
            mark=mark, flag=flag_, name=name, price=amount, stock=f"{stock:,}"
        ),
        _("{mark}{price} · {flag} {name}").format(mark=mark, flag=flag_, name=name, price=amount),
    ]


def countries_intro(service: str, page: int, pages: int, *, popular: bool, by_stock: bool) -> str:
    more = _(" · page {page}/{pages}").format(page=page, pages=pages) if pages > 1 else ""
    lines = [
        _("<b>{service}</b>: choose a country{more}.").format(service=escape(service), more=more),
    ]
    if popular:
        lines.append(_("🔥 Most bought this week first, then the rest."))
    lines.append(_("Sorted by stock, most first.") if by_stock else _("Sorted by price, cheapest first."))
    lines.append(_("Type a country, its code or a dialling code like <i>+49</i> to find it."))
    return "\n".join(lines)


def btn_sort(by_stock: bool) -> str:
    """The toggle names the order it switches to."""
    return _("💲 Cheapest first") if by_stock else _("📦 Most in stock first")


def btn_all_services() -> str:
    return _("🛒 All services")


def btn_all_countries() -> str:
    return _("🌍 All countries")


def service_results(term: str, total: int) -> str:
    return _("Services matching “{term}” ({total}). Tap one:").format(term=escape(term), total=total)


def service_results_more(shown: int, total: int) -> str:
    return _("Showing {shown} of {total}. Type more letters to narrow it down.").format(
        shown=shown, total=total
    )


def service_no_match(term: str, suggested: bool) -> str:
    text = _("No service matches “{term}”.").format(term=escape(term))
    if suggested:
        return text + " " + _("Did you mean one of these? Or open the full list.")
    return text + " " + _("Check the spelling, or open the full list of services.")


def country_results(service: str, term: str) -> str:
    return _("<b>{service}</b>: countries matching “{term}”. Tap one:").format(
        service=escape(service), term=escape(term)
    )


def country_no_match(service: str, term: str, suggested: bool) -> str:
    text = _("No country for <b>{service}</b> matches “{term}”.").format(
        service=escape(service), term=escape(term)
    )
    if suggested:
        return text + " " + _("Did you mean one of these? Or open all countries.")
    return text + " " + _("Try its name, its code (DE) or its dialling code (+49), or open all countries.")


def favourite_toast(saved: bool) -> str:
    if saved:
        return _("⭐ Saved. It is at the top of the service list now.")
    return _("Removed from your favourites.")


def favourites_full(limit: int) -> str:
    return _("You can keep up to {limit} favourites. Remove one first.").format(limit=limit)


# --- routing: a rent whose answer was lost ----------------------------------------------


def checking_rent() -> str:
    """Under "Getting your number…" while core asks the provider whether the rent went
    through (a few seconds; the number or the refund then replaces this message)."""
    return _(
        "The provider did not answer clearly, so we are checking whether your number was "
        "rented. Your money is only held, not charged. The number or a full refund will "
        "show here in a few seconds."
    )


# Module-level texts marked N_() are translated when read: take them out of the module's
# namespace so every ``texts.NAME`` goes through ``__getattr__`` in the reader's language.
_DEFERRED: dict[str, str] = {k: v for k, v in globals().items() if type(v) is _Deferred}
for _name in _DEFERRED:
    del globals()[_name]


def __getattr__(name: str) -> str:
    try:
        return translate(_DEFERRED[name])
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
