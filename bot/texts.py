"""Every sentence the bot says to a user, in one place.

Texts are HTML (the bot's default parse mode), so anything that did not come from this
module — SMS text from a provider, a user's search words — goes through ``escape`` first: a
``<`` in an SMS must never turn into a Telegram "can't parse entities" error or markup.
Amounts always pass through ``core.money.format_amount``.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from bot.i18n import _
from core.catalogue_data import COUNTRIES_BY_CODE, SERVICES_BY_CODE
from core.money import format_amount

# --- buttons ----------------------------------------------------------------------------

BTN_BUY = "🛒 Buy number"
BTN_BALANCE = "💰 Balance & top up"
BTN_ORDERS = "📋 My orders"
BTN_HELP = "❓ Help"
BTN_MENU = "« Menu"
BTN_BACK = "« Back"
BTN_PREV = "‹ Prev"
BTN_NEXT = "Next ›"
BTN_CANCEL = "❌ Cancel & refund"
BTN_CHECK = "🔄 Check now"
BTN_ANOTHER = "✉️ Another code"
BTN_TOP_UP = "⭐ Top up"
BTN_CUSTOM_AMOUNT = "✏️ Other amount"
BTN_OTHER_COUNTRY = "🌍 Choose another country"
BTN_ORDERS_BACK = "« My orders"


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
    return f"✅ Buy for {format_amount(price, currency)}"


def btn_package(stars: int, amount: int, currency: str) -> str:
    return f"⭐ {stars} → {format_amount(amount, currency)}"


def btn_page(page: int, pages: int) -> str:
    return f"{page}/{pages}"


# --- names ------------------------------------------------------------------------------


def service_name(code: str) -> str:
    data = SERVICES_BY_CODE.get(code)
    return data.name if data else code


def country_name(code: str) -> str:
    data = COUNTRIES_BY_CODE.get(code)
    return data.name if data else code


def flag(country: str) -> str:
    """Regional-indicator flag emoji for an ISO 3166-1 alpha-2 code."""
    if len(country) != 2 or not country.isascii() or not country.isalpha():
        return "🏳"
    return "".join(chr(0x1F1E6 + ord(c) - ord("A")) for c in country.upper())


def country_label(code: str) -> str:
    return f"{flag(code)} {country_name(code)}"


# --- menu -------------------------------------------------------------------------------


def greeting(first_name: str | None, available: int, currency: str) -> str:
    who = f", {escape(first_name)}" if first_name else ""
    return (
        f"👋 Hi{who}! Here you can buy a phone number to receive one SMS verification code.\n\n"
        f"Available balance: <b>{format_amount(available, currency)}</b>\n\n"
        "If no code arrives, or you cancel, your money comes back at once."
    )


def menu(available: int, currency: str) -> str:
    return f"Menu · available balance <b>{format_amount(available, currency)}</b>"


HELP = (
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
    " · /support · /paysupport · /terms"
)


# --- support and terms (the operator's words come from settings: plain text, escaped) ----


def support(contact: str) -> str:
    return (
        "<b>Support</b>\n"
        f"{escape(contact)}\n\n"
        "Please include the order id (tap the order in /orders) and what went wrong. "
        "An order without a code never costs you anything: its price comes back by itself."
    )


def pay_support(contact: str) -> str:
    return (
        "<b>Payment support</b>\n"
        "Stars top-ups are added to your balance as soon as Telegram confirms the payment. "
        "Balance is spent on numbers only; it is not paid out in Stars.\n\n"
        "If you paid but your balance did not change, write to support with the date and the "
        "number of Stars:\n"
        f"{escape(contact)}"
    )


def terms(text: str) -> str:
    return f"<b>Terms</b>\n{escape(text)}"


# --- buy --------------------------------------------------------------------------------


def services_page(page: int, pages: int, search: str | None = None, total: int = 0) -> str:
    if search:
        head = f"Services matching “{escape(search)}”"
        if total > 0:
            head += f" ({total})"
        return head + ":"
    more = f" · page {page}/{pages}" if pages > 1 else ""
    return (
        f"Choose a service{more}. Most popular first.\n"
        "Or type part of a name (for example <i>whats</i>) to search."
    )


def service_button(name: str, min_price: int | None, currency: str) -> str:
    if min_price is None:
        return f"{name} · sold out"
    return f"{name} · from {format_amount(min_price, currency)}"


def search_none(search: str) -> str:
    return f"No service matches “{escape(search)}”. Try another name, or tap Buy number to browse."


def search_more(shown: int, total: int) -> str:
    return f"Showing {shown} of {total}. Type more letters to narrow it down."


def countries_page(service: str, page: int, pages: int) -> str:
    more = f" · page {page}/{pages}" if pages > 1 else ""
    return (
        f"<b>{escape(service_name(service))}</b>: choose a country{more}.\n"
        "Price and numbers in stock are on each button."
    )


def country_button(country: str, price: int, stock: int, currency: str) -> str:
    return f"{country_label(country)} · {format_amount(price, currency)} · {stock:,} left"


def no_countries(service: str) -> str:
    return (
        f"No numbers for <b>{escape(service_name(service))}</b> right now. "
        "Please try again later or pick another service."
    )


def confirm(
    service: str, country: str, price: int, available: int, currency: str, expires_in_min: int
) -> str:
    text = (
        "<b>Confirm your order</b>\n"
        f"Service: {escape(service_name(service))}\n"
        f"Country: {country_label(country)}\n"
        f"Price: <b>{format_amount(price, currency)}</b>\n"
        f"Available balance: {format_amount(available, currency)}\n\n"
    )
    missing = price - available
    if missing > 0:
        return text + (
            f"⚠️ Not enough money: you need <b>{format_amount(missing, currency)}</b> more. "
            "Top up, then choose the number again."
        )
    return text + (
        "The price is held from your balance and charged only when the code arrives. "
        f"This price is kept for {expires_in_min} min."
    )


def unknown_country(service: str, text: str) -> str:
    return (
        f"No numbers for {escape(service_name(service))} in “{escape(text)}” right now. "
        "Pick a country from the list."
    )


def not_charged(reason: str) -> str:
    if reason == "out_of_stock":
        return "😕 The numbers for this country just ran out. You were not charged."
    if reason == "price":
        return "😕 The provider raised its price, so we stopped. You were not charged."
    return "😕 The provider is unavailable right now. You were not charged — please try again soon."


# --- orders -----------------------------------------------------------------------------

_STATUS = {
    "reserving": "⏳ Getting your number…",
    "waiting": "⏳ Waiting for the code",
    "completed": "✅ Completed",
    "cancelled": "❌ Cancelled",
    "expired": "⌛ Expired",
    "failed": "⚠️ Not available",
    "refunded": "↩️ Refunded",
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
    if expires_at is None:
        return ""
    seconds = int((expires_at - now).total_seconds())
    if seconds <= 0:
        return "time is up"
    minutes, secs = divmod(seconds, 60)
    if minutes >= 1:
        return f"{minutes} min left"
    return f"{secs} s left"


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
) -> str:
    lines = [f"<b>{escape(service_name(service))}</b> · {country_label(country)}"]
    if phone:
        lines.append(f"Number: <code>{escape(phone)}</code>")
    lines.append(f"Price: {format_amount(price, currency)}")
    state = _STATUS.get(status, status)
    if status == "waiting":
        left = time_left(expires_at, now)
        state += f" · {left}" if left else ""
    lines.append(f"Status: {state}")
    if code:
        lines.append(f"Code: <code>{escape(code)}</code>")
    if status == "waiting":
        lines.append(
            "\nUse the number now; the code will appear in this chat. "
            "Cancel any time before it arrives for a full refund."
        )
    elif status in ("cancelled", "expired", "failed"):
        lines.append(
            f"\n💸 {format_amount(price, currency)} is back on your balance."
            if status != "failed"
            else "\nYou were not charged."
        )
    elif status == "refunded":
        lines.append(f"\n💸 {format_amount(price, currency)} was refunded to your balance.")
    elif status == "reserving":
        lines.append("\n" + checking_rent())
    lines.append(f"\n<i>Order {escape(order_id[:8])}</i>")
    return "\n".join(lines)


def cancelled(refunded: int, balance: int, currency: str, *, html: bool = True) -> str:
    """The cancel confirmation; ``html=False`` for a callback toast, which Telegram shows as
    plain text (tags would appear literally)."""
    amount = format_amount(balance, currency)
    return (
        f"❌ Order cancelled. {format_amount(refunded, currency)} refunded — "
        f"your available balance is now {f'<b>{amount}</b>' if html else amount}."
    )


CANCEL_ALREADY = "This order was already cancelled; the money is back on your balance."
CANCEL_COMPLETED_INSTEAD = "A code arrived just before you cancelled, so the order is complete."
CANCEL_TOO_EARLY = "Your number is still being set up. Try again in a few seconds."
ANOTHER_REQUESTED = "Asked for another code. It will appear in this chat."
CHECKED_NOTHING = "No code yet. We keep checking and will post it here."
CHECKED_CODE = "The code has arrived!"


def order_closed(status: str) -> str:
    return f"This order is {_STATUS.get(status, status).split(' ', 1)[-1].lower()}; nothing to do."


def code_message(code: str | None, text: str | None, phone: str | None, service: str) -> str:
    head = f"📩 Code for {escape(service_name(service))}"
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
        first = f"⌛ No code arrived for your {what} number in time. {amount} is back on your balance."
    elif kind == "failed":
        first = f"⚠️ We couldn't get a {what} number for you. You were not charged ({amount} released)."
    elif kind == "cancelled":
        first = f"❌ Your {what} order was cancelled. {amount} is back on your balance."
    else:  # refunded by staff after completion
        first = f"↩️ Your {what} order was refunded. {amount} is back on your balance."
    if balance is not None:
        first += f"\nAvailable balance: <b>{format_amount(balance, currency)}</b>."
    return first


def wallet_adjusted(direction: str, amount: int, currency: str, balance: int | None) -> str:
    verb = "credited" if direction == "credit" else "debited"
    where = "to" if direction == "credit" else "from"
    text = f"💳 Support {verb} {format_amount(amount, currency)} {where} your wallet."
    if balance is not None:
        text += f" Balance: <b>{format_amount(balance, currency)}</b>."
    return text


def number_ready(phone: str | None, service: str) -> str:
    return f"📱 Your {escape(service_name(service))} number is ready: <code>{escape(phone or '')}</code>"


def staff_alert(text: str) -> str:
    return f"🚨 {escape(text)}"


def orders_list(count: int) -> str:
    if count == 0:
        return "You have no orders yet. Tap Buy number to get one."
    return "Your recent orders (newest first). Tap one to open it."


def order_button(status: str, service: str, country: str, price: int, currency: str) -> str:
    return (
        f"{_STATUS_SHORT.get(status, '•')} {service_name(service)} · {flag(country)} · "
        f"{format_amount(price, currency)} · {status}"
    )


# --- balance and top-ups ---------------------------------------------------------------


def balance(balance_: int, held: int, available: int, currency: str) -> str:
    return (
        "<b>Your balance</b>\n"
        f"Balance: {format_amount(balance_, currency)}\n"
        f"Held for open orders: {format_amount(held, currency)}\n"
        f"Available: <b>{format_amount(available, currency)}</b>\n\n"
        "Top up with Telegram Stars: pick a package or another amount."
    )


def ask_amount(currency: str, low: int, high: int) -> str:
    return (
        f"Type the amount to add in {currency}, for example <code>7.50</code> "
        f"(from {format_amount(low, currency)} to {format_amount(high, currency)}). "
        "Send /start to go back."
    )


def bad_amount(currency: str, low: int, high: int) -> str:
    return (
        f"That is not an amount I can use. Write it like <code>7.50</code>, "
        f"from {format_amount(low, currency)} to {format_amount(high, currency)}."
    )


def invoice_title(amount: int, currency: str) -> str:
    return f"Top up {format_amount(amount, currency)}"


def invoice_description(stars: int, amount: int, currency: str) -> str:
    return f"{stars} Stars add {format_amount(amount, currency)} to your numbershop balance."


def invoice_label(amount: int, currency: str) -> str:
    return f"Balance {format_amount(amount, currency)}"


def topped_up(amount: int, available: int, currency: str) -> str:
    return (
        f"✅ Payment received: {format_amount(amount, currency)} added.\n"
        f"Available balance: <b>{format_amount(available, currency)}</b>."
    )


TOPUP_ALREADY = "This payment was already added to your balance."
INVOICE_INVALID = "This invoice is no longer valid. Open Balance & top up for a new one."
PAYMENT_UNMATCHED = (
    "We received a payment we could not match to an invoice. Your Stars are safe: please "
    "write to support with this id: {charge_id}"
)

# --- errors -----------------------------------------------------------------------------

WORKING = "⏳ Working on it…"
STALE_BUTTON = "That button no longer works. Send /start to open the menu."
RATE_LIMITED = "You're going a bit fast — please wait a second and try again."
BLOCKED = "Your account is blocked. Please contact support."
INTERNAL = "Something went wrong on our side. Your money is safe — please try again."
QUOTE_EXPIRED = "This price has expired. Please choose the number again to see a fresh price."
OUT_OF_STOCK = "No numbers in stock for that right now. Please try another country or later."
PROVIDER_DOWN = "The provider isn't answering right now. Your money is safe — try again soon."
NO_MORE_CODES = "This number can't receive more codes."
CONFLICT = "That button was already used for something else. Send /start to begin again."
BAD_INPUT = "That didn't look right. Send /start to open the menu."
NOT_IN_PRIVATE = "Please talk to me in a private chat."
NOT_UNDERSTOOD = "I understand text and buttons. Type a service name to search, or send /start."


def insufficient(missing: int, currency: str) -> str:
    return (
        f"Not enough money: you need {format_amount(missing, currency)} more. "
        "Open Balance & top up to add funds. You were not charged."
    )


# --- routing: a rent whose answer was lost ----------------------------------------------


def checking_rent() -> str:
    """Under "Getting your number…" while core asks the provider whether the rent went
    through (a few seconds; the number or the refund then replaces this message)."""
    return _(
        "The provider did not answer clearly, so we are checking whether your number was "
        "rented. Your money is only held, not charged. The number or a full refund will "
        "show here in a few seconds."
    )
