"""What buyers type for a service: short names, common spellings, names per language.

Pure data beside ``core.catalogue_data`` (which holds the codes and English display names).
Buyers type what they say, not what the brand prints: "wa", "tg", "gpt", "вотсап",
"телеграм", "zap". Everything here is searchable; only ``SERVICE_NAMES`` is also shown.

* ``ALIASES``: language-neutral short names and spellings; an exact alias opens the service
  directly, so an alias must mean one service only (a test checks they are unique).
* ``SERVICE_NAMES``: the display name in a language where it differs from the English one
  (brands stay as written; only descriptive names like "Any other service" are translated).
* ``LOCAL_NAMES``: further names a speaker of that language types (transliterations,
  nicknames). They are searched in that language's index only.

Country names are not here: they come from CLDR through Babel (``core.search``).
"""

from __future__ import annotations

LANGUAGES: tuple[str, ...] = ("en", "ru", "es", "pt_BR", "id")

ALIASES: dict[str, tuple[str, ...]] = {
    "whatsapp": ("wa", "wapp", "whats app", "zap", "zapzap", "wasap", "вотсап", "ватсап", "вацап"),
    "telegram": ("tg", "tgram", "телега", "телеграм", "телеграмм"),
    "google": ("gmail", "youtube", "yt", "gm", "goog", "гугл", "ютуб", "джимейл"),
    "facebook": ("fb", "face", "фейсбук", "фб"),
    "instagram": ("ig", "insta", "инста", "инстаграм", "инстаграмм"),
    "tiktok": ("tt", "tik tok", "тикток", "тик ток"),
    "openai": ("gpt", "chatgpt", "chat gpt", "чатгпт", "чат гпт"),
    "twitter": ("x", "tw", "твиттер", "твитер"),
    "discord": ("ds", "dc", "дискорд"),
    "microsoft": ("ms", "outlook", "hotmail", "msn", "майкрософт", "аутлук"),
    "apple": ("icloud", "apple id", "эпл", "эппл"),
    "amazon": ("amz", "амазон"),
    "uber": ("убер",),
    "tinder": ("тиндер",),
    "snapchat": ("snap", "sc", "снэпчат", "снапчат"),
    "viber": ("vb", "вайбер", "вибер"),
    "wechat": ("wx", "weixin", "вичат", "微信"),
    "signal": ("сигнал",),
    "paypal": ("pp", "пейпал", "пэйпал"),
    "linkedin": ("li", "линкедин"),
    "netflix": ("nf", "нетфликс"),
    "airbnb": ("эйрбнб",),
    "yahoo": ("яху",),
    "line": ("лайн",),
    "steam": ("стим",),
    "shopee": ("шопи",),
    "grab": ("грэб", "граб"),
    "bumble": ("бамбл",),
    "coinbase": ("коинбейс",),
    "binance": ("bnb", "бинанс"),
    "ebay": ("ибей", "ибэй"),
    "alibaba": ("aliexpress", "ali", "алиэкспресс", "али", "алибаба"),
    "kakaotalk": ("kakao", "kt", "какао"),
    "naver": ("навер",),
}

SERVICE_NAMES: dict[str, dict[str, str]] = {
    "ru": {"other": "Другой сервис"},
    "es": {"other": "Otro servicio"},
    "pt_BR": {"other": "Outro serviço"},
    "id": {"other": "Layanan lain"},
}

LOCAL_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "ru": {
        "whatsapp": ("Вотсап", "Ватсап"),
        "telegram": ("Телеграм",),
        "google": ("Гугл", "Ютуб"),
        "facebook": ("Фейсбук",),
        "instagram": ("Инстаграм",),
        "tiktok": ("ТикТок",),
        "openai": ("ЧатГПТ",),
        "twitter": ("Твиттер",),
        "microsoft": ("Майкрософт",),
        "other": ("Любой другой сервис", "прочее"),
    },
    "es": {"whatsapp": ("guasap",), "other": ("Cualquier otro servicio", "otros")},
    "pt_BR": {"whatsapp": ("zap", "zapzap"), "other": ("Qualquer outro serviço", "outros")},
    "id": {"whatsapp": ("wa", "wasap"), "other": ("Layanan lainnya",)},
}

# Shorter everyday names for countries whose CLDR name does not fit a phone-wide button.
SHORT_COUNTRY_NAMES: dict[str, dict[str, str]] = {
    "ru": {"ZA": "ЮАР", "US": "США", "GB": "Британия"},
}


def service_name(code: str, english: str, lang: str) -> str:
    """The name shown for a service in ``lang``: the English name unless it differs there."""
    return SERVICE_NAMES.get(lang, {}).get(code, english)
