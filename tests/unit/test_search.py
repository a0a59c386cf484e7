"""What a buyer types and what they get: aliases, typos, other scripts, countries, dialling
codes. ``opens`` is what may open without a tap (only an unambiguous exact match); ``first``
is the top of the list shown otherwise."""

from __future__ import annotations

import pytest

from core.catalogue_data import SERVICE_CODES
from core.search import Tier, normalize, search_countries, search_services, supported
from core.search_data import ALIASES, LANGUAGES

# (typed, language, opens, first hit or None for no hit)
SERVICES_TABLE = [
    ("wa", "en", "whatsapp", "whatsapp"),
    ("WA", "en", "whatsapp", "whatsapp"),
    ("tg", "en", "telegram", "telegram"),  # once opened ChatGPT
    ("fb", "en", "facebook", "facebook"),
    ("ig", "en", "instagram", "instagram"),
    ("gpt", "en", "openai", "openai"),
    ("chatgpt", "en", "openai", "openai"),
    ("yt", "en", "google", "google"),
    ("youtube", "en", "google", "google"),
    ("gmail", "en", "google", "google"),
    ("x", "en", "twitter", "twitter"),
    ("telegram", "en", "telegram", "telegram"),
    ("Telegram ", "en", "telegram", "telegram"),
    ("телеграм", "ru", "telegram", "telegram"),
    ("телеграм", "en", "telegram", "telegram"),  # aliases work whatever the language
    ("вотсап", "ru", "whatsapp", "whatsapp"),
    ("ватсап", "es", "whatsapp", "whatsapp"),
    ("Вотсап", "ru", "whatsapp", "whatsapp"),
    ("ютуб", "ru", "google", "google"),
    ("инста", "ru", "instagram", "instagram"),
    ("zap", "pt_BR", "whatsapp", "whatsapp"),
    ("微信", "en", "wechat", "wechat"),
    ("whats", "en", None, "whatsapp"),  # a word start is a guess: listed, not opened
    ("tele", "en", None, "telegram"),
    ("insta", "en", "instagram", "instagram"),
    ("chat", "en", None, "openai"),
    ("li", "en", None, "linkedin"),  # an alias, but LINE starts with it too: ask
    ("telegarm", "en", None, "telegram"),  # typos: listed, never opened
    ("whatsap", "en", None, "whatsapp"),
    ("watsap", "en", None, "whatsapp"),
    ("gogle", "en", None, "google"),
    ("instgram", "en", None, "instagram"),
    ("faceboook", "en", None, "facebook"),
    ("телеграмм", "ru", "telegram", "telegram"),
    ("телеграмп", "ru", None, "telegram"),
    ("steem", "en", None, "steam"),
    ("Любой другой сервис", "ru", "other", "other"),
    ("другой", "ru", None, "other"),
    ("Outro serviço", "pt_BR", "other", "other"),
    ("zzzz", "en", None, None),
    ("", "en", None, None),
]

# (typed, language, opens, first hit or None)
COUNTRIES_TABLE = [
    ("+49", "en", "DE", "DE"),
    ("49", "en", "DE", "DE"),
    ("+ 49", "en", "DE", "DE"),
    ("+44", "ru", "GB", "GB"),
    ("+7", "ru", "KZ", "KZ"),  # Russia is not in the catalogue; Kazakhstan shares +7
    ("+1", "en", None, "US"),  # United States and Canada share it: choose
    ("+999", "en", None, None),
    ("germany", "en", "DE", "DE"),
    ("Germany", "ru", "DE", "DE"),  # English works in every language
    ("германия", "ru", "DE", "DE"),
    ("Alemania", "es", "DE", "DE"),
    ("alemanha", "pt_BR", "DE", "DE"),
    ("Jerman", "id", "DE", "DE"),
    ("DE", "en", "DE", "DE"),
    ("in", "en", None, "IN"),  # ISO code, but India and Indonesia start with it
    ("indo", "en", None, "ID"),
    ("brasil", "pt_BR", "BR", "BR"),
    ("turkiye", "en", "TR", "TR"),
    ("türkiye", "en", "TR", "TR"),
    ("germny", "en", None, "DE"),
    ("united", "en", None, "US"),
    ("сша", "ru", "US", "US"),
    ("Estados Unidos", "es", "US", "US"),
    ("atlantis", "en", None, None),
]


@pytest.mark.parametrize(("typed", "lang", "opens", "first"), SERVICES_TABLE)
def test_service_search(typed: str, lang: str, opens: str | None, first: str | None) -> None:
    result = search_services(typed, lang)
    assert result.opens == opens
    assert (result.keys[0] if result.hits else None) == first


@pytest.mark.parametrize(("typed", "lang", "opens", "first"), COUNTRIES_TABLE)
def test_country_search(typed: str, lang: str, opens: str | None, first: str | None) -> None:
    result = search_countries(typed, lang)
    assert result.opens == opens
    assert (result.keys[0] if result.hits else None) == first


def test_tables_are_large_enough() -> None:
    assert len(SERVICES_TABLE) + len(COUNTRIES_TABLE) >= 40


def test_ranking_puts_exact_before_word_start_before_substring_before_typos() -> None:
    tiers = [h.tier for h in search_services("tg", "en").hits]
    assert tiers == sorted(tiers) and tiers[0] is Tier.EXACT
    chat = search_services("chat", "en").hits  # OpenAI by word start; Snapchat, WeChat inside
    assert [h.key for h in chat] == ["openai", "snapchat", "wechat"]
    assert [h.tier for h in chat] == [Tier.WORD_START, Tier.SUBSTRING, Tier.SUBSTRING]
    assert search_services("telegarm", "en").hits[0].tier is Tier.FUZZY


def test_a_substring_or_typo_never_opens_a_service() -> None:
    for typed in ("elegram", "hatsap", "telegarm", "gpt4", "t"):
        assert search_services(typed, "en").opens is None, typed


def test_no_match_suggests_the_closest_names() -> None:
    result = search_services("fcbk", "en")
    assert result.hits == () and result.suggestions[0] == "facebook"
    assert search_countries("grmny", "en").suggestions[:1] in (("DE",), ())


def test_country_search_keeps_to_the_countries_offered() -> None:
    result = search_countries("+1", "en", among={"CA"})
    assert result.opens == "CA" and result.keys == ["CA"]
    assert search_countries("germany", "en", among={"FR"}).hits == ()


def test_aliases_name_catalogue_services_and_mean_one_service_each() -> None:
    seen: dict[str, str] = {}
    for code, aliases in ALIASES.items():
        assert code in SERVICE_CODES
        for alias in aliases:
            key = normalize(alias)
            assert seen.setdefault(key, code) == code, alias


def test_languages_and_normalising() -> None:
    assert [supported(x) for x in ("ru-RU", "pt", "pt-br", "id", "de", None)] == [
        "ru",
        "pt_BR",
        "pt_BR",
        "id",
        "en",
        "en",
    ]
    assert set(LANGUAGES) == {"en", "ru", "es", "pt_BR", "id"}
    assert normalize("  Ёлка São-Paulo! ") == "елка sao paulo"
    assert normalize("+49 ") == "+49"
