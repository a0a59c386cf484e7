"""Canonical services and countries: the shop's own vocabulary.

Every provider adapter maps its ids onto these codes, so an offer from any upstream for
``('whatsapp', 'GB')`` means the same thing. Service codes are lowercase ASCII; country codes
are ISO 3166-1 alpha-2. ``popularity`` is a rank where higher shows first in the bot.
``dial_code`` is the international calling code (used by the simulator to make plausible
numbers, and handy for display). Pure data: no I/O, no imports from the rest of the shop.
"""

from __future__ import annotations

from typing import NamedTuple


class ServiceData(NamedTuple):
    code: str
    name: str
    popularity: int


class CountryData(NamedTuple):
    code: str
    name: str
    dial_code: str


SERVICES: tuple[ServiceData, ...] = (
    ServiceData("whatsapp", "WhatsApp", 1000),
    ServiceData("telegram", "Telegram", 990),
    ServiceData("google", "Google / Gmail / YouTube", 980),
    ServiceData("facebook", "Facebook", 970),
    ServiceData("instagram", "Instagram", 960),
    ServiceData("tiktok", "TikTok", 950),
    ServiceData("openai", "OpenAI / ChatGPT", 940),
    ServiceData("twitter", "X (Twitter)", 930),
    ServiceData("discord", "Discord", 920),
    ServiceData("microsoft", "Microsoft / Outlook", 910),
    ServiceData("apple", "Apple", 900),
    ServiceData("amazon", "Amazon", 890),
    ServiceData("uber", "Uber", 880),
    ServiceData("tinder", "Tinder", 870),
    ServiceData("snapchat", "Snapchat", 860),
    ServiceData("viber", "Viber", 850),
    ServiceData("wechat", "WeChat", 840),
    ServiceData("signal", "Signal", 830),
    ServiceData("paypal", "PayPal", 820),
    ServiceData("linkedin", "LinkedIn", 810),
    ServiceData("netflix", "Netflix", 800),
    ServiceData("airbnb", "Airbnb", 790),
    ServiceData("yahoo", "Yahoo", 780),
    ServiceData("line", "LINE", 770),
    ServiceData("steam", "Steam", 760),
    ServiceData("shopee", "Shopee", 750),
    ServiceData("grab", "Grab", 740),
    ServiceData("bumble", "Bumble", 730),
    ServiceData("coinbase", "Coinbase", 720),
    ServiceData("binance", "Binance", 710),
    ServiceData("ebay", "eBay", 700),
    ServiceData("alibaba", "Alibaba / AliExpress", 690),
    ServiceData("kakaotalk", "KakaoTalk", 680),
    ServiceData("naver", "Naver", 670),
    ServiceData("other", "Any other service", 0),
)

COUNTRIES: tuple[CountryData, ...] = (
    CountryData("US", "United States", "1"),
    CountryData("GB", "United Kingdom", "44"),
    CountryData("CA", "Canada", "1"),
    CountryData("DE", "Germany", "49"),
    CountryData("FR", "France", "33"),
    CountryData("NL", "Netherlands", "31"),
    CountryData("ES", "Spain", "34"),
    CountryData("IT", "Italy", "39"),
    CountryData("PL", "Poland", "48"),
    CountryData("SE", "Sweden", "46"),
    CountryData("PT", "Portugal", "351"),
    CountryData("UA", "Ukraine", "380"),
    CountryData("KZ", "Kazakhstan", "7"),
    CountryData("GE", "Georgia", "995"),
    CountryData("TR", "Türkiye", "90"),
    CountryData("IL", "Israel", "972"),
    CountryData("IN", "India", "91"),
    CountryData("ID", "Indonesia", "62"),
    CountryData("PH", "Philippines", "63"),
    CountryData("VN", "Vietnam", "84"),
    CountryData("TH", "Thailand", "66"),
    CountryData("MY", "Malaysia", "60"),
    CountryData("BR", "Brazil", "55"),
    CountryData("MX", "Mexico", "52"),
    CountryData("CO", "Colombia", "57"),
    CountryData("AR", "Argentina", "54"),
    CountryData("NG", "Nigeria", "234"),
    CountryData("KE", "Kenya", "254"),
    CountryData("ZA", "South Africa", "27"),
    CountryData("EG", "Egypt", "20"),
)

SERVICE_CODES: frozenset[str] = frozenset(s.code for s in SERVICES)
COUNTRY_CODES: frozenset[str] = frozenset(c.code for c in COUNTRIES)
SERVICES_BY_CODE: dict[str, ServiceData] = {s.code: s for s in SERVICES}
COUNTRIES_BY_CODE: dict[str, CountryData] = {c.code: c for c in COUNTRIES}
