"""SMS-Activate's numeric country ids and short service codes, mapped to the shop's vocabulary.

Pure data (no I/O): the ``handler_api.php`` protocol names countries by SMS-Activate's own ids
(``0`` Russia, ``16`` United Kingdom, ``187`` USA …) and services by two- or three-letter codes
(``wa`` WhatsApp, ``tg`` Telegram, ``go`` Google …). Compatible providers (Hero-SMS, SMSHub,
GrizzlySMS, SMSBower, DaisySMS) reuse the same ids for the countries they sell.

Canonical service codes are those of ``core/catalog_data.py``. Services and countries missing
here are simply not offered through this adapter. Id 12 is SMS-Activate's *virtual* US range;
only 187 (real US numbers) is sold as ``US``.
"""

from __future__ import annotations

# canonical service code → SMS-Activate service code
SERVICE_CODES: dict[str, str] = {
    "whatsapp": "wa",
    "telegram": "tg",
    "google": "go",
    "facebook": "fb",
    "instagram": "ig",
    "tiktok": "lf",
    "openai": "dr",
    "twitter": "tw",
    "discord": "ds",
    "microsoft": "mm",
    "apple": "wx",
    "amazon": "am",
    "uber": "ub",
    "tinder": "oi",
    "snapchat": "fu",
    "viber": "vi",
    "wechat": "wb",
    "signal": "bw",
    "paypal": "ts",
    "linkedin": "tn",
    "netflix": "nf",
    "airbnb": "uk",
    "yahoo": "mb",
    "line": "me",
    "steam": "mt",
    "shopee": "ka",
    "grab": "jg",
    "bumble": "mo",
    "coinbase": "re",
    "binance": "aon",
    "ebay": "dh",
    "alibaba": "hx",
    "kakaotalk": "kt",
    "naver": "nv",
    "other": "ot",
}

# SMS-Activate country id → ISO 3166-1 alpha-2
COUNTRY_IDS: dict[int, str] = {
    0: "RU", 1: "UA", 2: "KZ", 3: "CN", 4: "PH", 5: "MM", 6: "ID", 7: "MY", 8: "KE",
    9: "TZ", 10: "VN", 11: "KG", 13: "IL", 14: "HK", 15: "PL", 16: "GB", 17: "MG",
    18: "CD", 19: "NG", 20: "MO", 21: "EG", 22: "IN", 23: "IE", 24: "KH", 25: "LA",
    26: "HT", 27: "CI", 28: "GM", 29: "RS", 30: "YE", 31: "ZA", 32: "RO", 33: "CO",
    34: "EE", 35: "AZ", 36: "CA", 37: "MA", 38: "GH", 39: "AR", 40: "UZ", 41: "CM",
    42: "TD", 43: "DE", 44: "LT", 45: "HR", 46: "SE", 47: "IQ", 48: "NL", 49: "LV",
    50: "AT", 51: "BY", 52: "TH", 53: "SA", 54: "MX", 55: "TW", 56: "ES", 58: "DZ",
    59: "SI", 60: "BD", 61: "SN", 62: "TR", 63: "CZ", 64: "LK", 65: "PE", 66: "PK",
    67: "NZ", 68: "GN", 69: "ML", 70: "VE", 71: "ET", 72: "MN", 73: "BR", 74: "AF",
    75: "UG", 76: "AO", 77: "CY", 78: "FR", 79: "PG", 80: "MZ", 81: "NP", 82: "BE",
    83: "BG", 84: "HU", 85: "MD", 86: "IT", 87: "PY", 88: "HN", 89: "TN", 90: "NI",
    91: "TL", 92: "BO", 93: "CR", 94: "GT", 95: "AE", 96: "ZW", 97: "PR", 99: "TG",
    100: "KW", 101: "SV", 102: "LY", 103: "JM", 104: "TT", 105: "EC", 106: "SZ",
    107: "OM", 108: "BA", 109: "DO", 111: "QA", 112: "PA", 114: "MR", 115: "SL",
    116: "JO", 117: "PT", 118: "BB", 119: "BI", 120: "BJ", 121: "BN", 122: "BS",
    123: "BW", 124: "BZ", 125: "CF", 126: "DM", 127: "GD", 128: "GE", 129: "GR",
    130: "GW", 131: "GY", 132: "IS", 133: "KM", 134: "KN", 135: "LR", 136: "LS",
    137: "MW", 138: "NA", 139: "NE", 140: "RW", 141: "SK", 142: "SR", 143: "TJ",
    144: "MC", 145: "BH", 146: "RE", 147: "ZM", 148: "AM", 149: "SO", 150: "CG",
    151: "CL", 152: "BF", 153: "LB", 154: "GA", 155: "AL", 156: "UY", 157: "MU",
    158: "BT", 159: "MV", 160: "GP", 161: "TM", 162: "GF", 163: "FI", 164: "LC",
    165: "LU", 166: "VC", 167: "GQ", 168: "DJ", 169: "AG", 170: "KY", 171: "ME",
    172: "DK", 173: "CH", 174: "NO", 175: "AU", 176: "ER", 177: "SS", 178: "ST",
    179: "AW", 180: "MS", 181: "AI", 182: "JP", 183: "MK", 184: "SC", 185: "NC",
    186: "CV", 187: "US", 189: "FJ", 190: "KR", 195: "BM", 196: "SG",
}

SERVICE_BY_CODE: dict[str, str] = {code: canonical for canonical, code in SERVICE_CODES.items()}
COUNTRY_ID_BY_ISO: dict[str, int] = {iso: cid for cid, iso in COUNTRY_IDS.items()}

assert len(SERVICE_BY_CODE) == len(SERVICE_CODES), "two canonical services share a code"
assert len(COUNTRY_ID_BY_ISO) == len(COUNTRY_IDS), "two country ids share an ISO code"


def service_code(canonical: str) -> str | None:
    return SERVICE_CODES.get(canonical)


def canonical_service(code: object) -> str | None:
    return SERVICE_BY_CODE.get(str(code).strip()) if code is not None else None


def country_id(iso: str) -> int | None:
    return COUNTRY_ID_BY_ISO.get(iso.upper())


def country_iso(cid: object) -> str | None:
    try:
        return COUNTRY_IDS.get(int(str(cid).strip()))
    except (TypeError, ValueError):
        return None
