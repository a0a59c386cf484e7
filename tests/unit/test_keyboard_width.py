"""No button label is cut off on a 390 px wide phone.

Renders every keyboard the bot sends — the menus, every page of the service list (with a
shortlist of favourites for every service), every service's country list in both orders
with popular countries, search results, "no match", confirm, the order screens, My orders
and the top-up packages — in every supported language (English labels, each language's
service names from ``core.search_data`` and country names from CLDR through Babel), with
long prices and stock, and checks each label against ``bot.layout.BUDGET`` for the number of
buttons in its row. Widths come from the characters (``bot.layout.label_width``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest
from aiogram.types import InlineKeyboardMarkup

from bot import keyboards, layout
from bot.invoices import PACKAGES, credit_for_stars
from core.catalogue import CountryOffer, ServiceView
from core.catalogue_data import COUNTRIES, SERVICES
from core.orders import OrderView
from core.search_data import LANGUAGES

PRICE = 9_999  # $99.99: wider than any real price
STOCK = 99_999
CURRENCY = "USD"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
QUOTE = "00000000-0000-4000-8000-000000000001"


def _too_wide(markup: InlineKeyboardMarkup) -> list[str]:
    bad = []
    for row in markup.inline_keyboard:
        per_row = min(len(row), 3)
        for button in row:
            width = layout.label_width(button.text)
            if len(row) > 3 or width > layout.BUDGET[per_row]:
                bad.append(f"{button.text!r}: {width:.1f} > {layout.BUDGET[per_row]} ({len(row)} a row)")
    return bad


def _views(available: bool = True) -> list[ServiceView]:
    return [ServiceView(s.code, s.name, available, PRICE if available else None) for s in SERVICES]


def _offers() -> list[CountryOffer]:
    return [CountryOffer(c.code, c.name, PRICE, STOCK) for c in COUNTRIES]


def _order(status: str, service: str = "google", country: str = "ZA") -> OrderView:
    return OrderView(
        id=str(UUID(QUOTE)),
        user_id=1,
        telegram_id=1,
        service=service,
        country=country,
        price=PRICE,
        cost=PRICE,
        status=status,  # type: ignore[arg-type]
        provider="simulator",
        activation_id="1",
        phone="+27000000000",
        code=None,
        can_request_another=True,
        expires_at=NOW,
        created_at=NOW,
        updated_at=NOW,
        closed_at=None,
        failure_reason=None,
        upstream_state="active",  # type: ignore[arg-type]
        hold_transfer_id=QUOTE,
        version=1,
    )


def keyboards_in(lang: str) -> dict[str, InlineKeyboardMarkup]:
    found: dict[str, InlineKeyboardMarkup] = {
        "main menu": keyboards.main_menu(),
        "back to menu": keyboards.back_to_menu(),
        "buy or menu": keyboards.buy_or_menu(),
        "top up or menu": keyboards.top_up_or_menu(),
        "back to services": keyboards.back_to_services(),
        "balance": keyboards.balance(
            tuple((s, credit_for_stars(s, 50, CURRENCY)) for s in PACKAGES), CURRENCY
        ),
    }
    per = keyboards.SERVICES_PER_PAGE
    for available in (True, False):
        views = _views(available)
        for offset in range(0, len(views), per):
            shortlist = [
                keyboards.ShortItem(s.code, c.code, saved, PRICE if available else None)
                for s in SERVICES[offset : offset + per]
                for c in COUNTRIES[:2]
                for saved in (True, False)
            ]
            found[f"services {offset} {available}"] = keyboards.services(
                views[offset : offset + per],
                offset=offset,
                total=len(views),
                currency=CURRENCY,
                lang=lang,
                shortlist=shortlist,
            )
        found[f"search results {available}"] = keyboards.services(
            views[:8], offset=0, total=len(views), currency=CURRENCY, paged=False, lang=lang
        )
    offers = _offers()
    popular = frozenset(c.code for c in COUNTRIES)  # every country marked, the widest case
    for s in SERVICES:
        for offset in range(0, len(offers), keyboards.COUNTRIES_PER_PAGE):
            for by_stock in (False, True):
                found[f"countries {s.code} {offset} {by_stock}"] = keyboards.countries(
                    s.code,
                    offers,
                    offset=offset,
                    currency=CURRENCY,
                    lang=lang,
                    popular=popular,
                    by_stock=by_stock,
                )
        found[f"country results {s.code}"] = keyboards.countries(
            s.code, offers, offset=0, currency=CURRENCY, lang=lang, paged=False, sortable=False
        )
        for c in COUNTRIES[:1]:  # the confirm buttons do not name the country
            for enough in (True, False):
                for saved in (True, False):
                    found[f"confirm {s.code} {c.code} {enough} {saved}"] = keyboards.confirm(
                        s.code, QUOTE, PRICE, CURRENCY, enough=enough, country=c.code, saved=saved
                    )
        found[f"not charged {s.code}"] = keyboards.not_charged(s.code)
    found["no match"] = keyboards.no_match(
        [
            (keyboards.country_label(o, lang, CURRENCY, popular=False), keyboards.ServicesCb(offset=0))
            for o in offers
        ],
        keyboards.all_services_button(),
    )
    found["no country match"] = keyboards.no_match([], keyboards.all_countries_button("whatsapp"))
    return found


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_list_label_fits_a_phone(lang: str) -> None:
    bad = {name: b for name, markup in keyboards_in(lang).items() if (b := _too_wide(markup))}
    assert bad == {}


def test_order_screens_fit_a_phone() -> None:
    statuses = ("reserving", "waiting", "completed", "cancelled", "expired", "failed", "refunded")
    bad = {}
    for status in statuses:
        for from_list in (False, True):
            if b := _too_wide(keyboards.order(_order(status), from_list=from_list)):
                bad[f"order {status}"] = b
    assert bad == {}


def test_the_width_counts_wide_characters_wide() -> None:
    assert layout.label_width("abc") == 3
    assert layout.label_width("微信") == 2 * layout.EMOJI  # CJK: wide
    assert layout.label_width("🇩🇪") == layout.EMOJI  # a flag is two regional indicators, one glyph
    assert layout.label_width("⭐") == layout.EMOJI == layout.label_width("✉️")  # VS16 adds nothing
    assert layout.label_width("Жук") > layout.label_width("Bug")
    assert layout.fits("TikTok · $0.09", 2) and not layout.fits("Google / Gmail / YouTube · from $0.20", 2)
