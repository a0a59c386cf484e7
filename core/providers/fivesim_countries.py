"""5sim's country and product slugs, mapped to the shop's vocabulary.

Pure data (no I/O). 5sim names countries and products by lowercase slugs (``england``,
``usa``, ``telegram``), not ids (``shared/reference/5sim-api-v1.md``). Its
``/guest/countries`` list is the source of truth for a country's ISO code (each entry's
``iso`` key); ``COUNTRY_SLUGS`` is the fallback and the tie-breaker when the live list is
unavailable or names two slugs for one ISO code (e.g. ``england`` and a legacy ``uk``).

Canonical service codes are those of ``core/catalog_data.py``. A 5sim product missing from
``PRODUCTS`` is not offered through this adapter (the catalogue counts and logs it); it is
never guessed from a similar name.
"""

from __future__ import annotations

# canonical service code → 5sim product slug
PRODUCTS: dict[str, str] = {
    "whatsapp": "whatsapp",
    "telegram": "telegram",
    "google": "google",
    "facebook": "facebook",
    "instagram": "instagram",
    "tiktok": "tiktok",
    "openai": "openai",
    "twitter": "twitter",
    "discord": "discord",
    "microsoft": "microsoft",
    "apple": "apple",
    "amazon": "amazon",
    "uber": "uber",
    "tinder": "tinder",
    "snapchat": "snapchat",
    "viber": "viber",
    "wechat": "wechat",
    "signal": "signal",
    "paypal": "paypal",
    "linkedin": "linkedin",
    "netflix": "netflix",
    "airbnb": "airbnb",
    "yahoo": "yahoo",
    "line": "line",
    "steam": "steam",
    "shopee": "shopee",
    "grab": "grabtaxi",
    "bumble": "bumble",
    "coinbase": "coinbase",
    "binance": "binance",
    "ebay": "ebay",
    "alibaba": "alibaba",
    "kakaotalk": "kakaotalk",
    "naver": "naver",
    "other": "other",
}

# ISO 3166-1 alpha-2 → 5sim country slug
COUNTRY_SLUGS: dict[str, str] = {
    "AF": "afghanistan", "AL": "albania", "DZ": "algeria", "AO": "angola",
    "AG": "antiguaandbarbuda", "AR": "argentina", "AM": "armenia", "AW": "aruba",
    "AU": "australia", "AT": "austria", "AZ": "azerbaijan", "BS": "bahamas", "BH": "bahrain",
    "BD": "bangladesh", "BB": "barbados", "BY": "belarus", "BE": "belgium", "BZ": "belize",
    "BJ": "benin", "BT": "bhutane", "BA": "bih", "BO": "bolivia", "BW": "botswana",
    "BR": "brazil", "BG": "bulgaria", "BF": "burkinafaso", "BI": "burundi", "KH": "cambodia",
    "CM": "cameroon", "CA": "canada", "CV": "capeverde", "TD": "chad", "CL": "chile",
    "CO": "colombia", "KM": "comoros", "CG": "congo", "CR": "costarica", "HR": "croatia",
    "CY": "cyprus", "CZ": "czech", "DK": "denmark", "DJ": "djibouti", "DO": "dominicana",
    "TL": "easttimor", "EC": "ecuador", "EG": "egypt", "GB": "england",
    "GQ": "equatorialguinea", "EE": "estonia", "ET": "ethiopia", "FI": "finland",
    "FR": "france", "GF": "frenchguiana", "GA": "gabon", "GM": "gambia", "GE": "georgia",
    "DE": "germany", "GH": "ghana", "GR": "greece", "GP": "guadeloupe", "GT": "guatemala",
    "GN": "guinea", "GW": "guineabissau", "GY": "guyana", "HT": "haiti", "HN": "honduras",
    "HK": "hongkong", "HU": "hungary", "IS": "iceland", "IN": "india", "ID": "indonesia",
    "IE": "ireland", "IL": "israel", "IT": "italy", "CI": "ivorycoast", "JM": "jamaica",
    "JP": "japan", "JO": "jordan", "KZ": "kazakhstan", "KE": "kenya", "KW": "kuwait",
    "KG": "kyrgyzstan", "LA": "laos", "LV": "latvia", "LS": "lesotho", "LR": "liberia",
    "LT": "lithuania", "LU": "luxembourg", "MO": "macau", "MG": "madagascar", "MW": "malawi",
    "MY": "malaysia", "MV": "maldives", "MR": "mauritania", "MU": "mauritius", "MX": "mexico",
    "MD": "moldova", "MN": "mongolia", "ME": "montenegro", "MA": "morocco",
    "MZ": "mozambique", "NA": "namibia", "NP": "nepal", "NL": "netherlands",
    "NC": "newcaledonia", "NZ": "newzealand", "NI": "nicaragua", "NE": "niger",
    "NG": "nigeria", "MK": "northmacedonia", "NO": "norway", "OM": "oman", "PK": "pakistan",
    "PA": "panama", "PG": "papuanewguinea", "PY": "paraguay", "PE": "peru",
    "PH": "philippines", "PL": "poland", "PT": "portugal", "PR": "puertorico", "RE": "reunion",
    "RO": "romania", "RU": "russia", "RW": "rwanda", "KN": "saintkittsandnevis",
    "LC": "saintlucia", "VC": "saintvincentandgrenadines", "SV": "salvador",
    "SA": "saudiarabia", "SN": "senegal", "RS": "serbia", "SC": "seychelles",
    "SL": "sierraleone", "SG": "singapore", "SK": "slovakia", "SI": "slovenia",
    "ZA": "southafrica", "ES": "spain", "LK": "srilanka", "SR": "suriname", "SZ": "swaziland",
    "SE": "sweden", "CH": "switzerland", "TW": "taiwan", "TJ": "tajikistan", "TZ": "tanzania",
    "TH": "thailand", "TT": "tit", "TG": "togo", "TN": "tunisia", "TR": "turkey",
    "TM": "turkmenistan", "UG": "uganda", "UA": "ukraine", "AE": "uae", "UY": "uruguay",
    "US": "usa", "UZ": "uzbekistan", "VE": "venezuela", "VN": "vietnam", "ZM": "zambia",
    "ZW": "zimbabwe",
}

PRODUCT_TO_SERVICE: dict[str, str] = {slug: canonical for canonical, slug in PRODUCTS.items()}
SLUG_TO_ISO: dict[str, str] = {slug: iso for iso, slug in COUNTRY_SLUGS.items()}

assert len(PRODUCT_TO_SERVICE) == len(PRODUCTS), "two canonical services share a product"
assert len(SLUG_TO_ISO) == len(COUNTRY_SLUGS), "two ISO codes share a slug"


def product(canonical: str) -> str | None:
    return PRODUCTS.get(canonical)


def canonical_service(slug: object) -> str | None:
    return PRODUCT_TO_SERVICE.get(str(slug).strip().lower()) if isinstance(slug, str) else None


def country_slug(iso: str) -> str | None:
    return COUNTRY_SLUGS.get(iso.upper())


def country_iso(slug: object) -> str | None:
    return SLUG_TO_ISO.get(slug.strip().lower()) if isinstance(slug, str) else None
