"""Every text the bot can say exists, complete, in every language's catalogue.

The msgids are extracted from the code the way ``make i18n`` does (Babel, ``babel.cfg``), so
a text added without running ``make i18n`` and translating it fails here, as does a
translation that drops or renames a placeholder, changes the markup, or would make Telegram
answer "can't parse entities" (checked by the emulator's own HTML parser).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

from bot.i18n import DOMAIN, LOCALES_DIR
from core.users import LANGUAGES
from numbershop.emulator.errors import BotApiError
from numbershop.emulator.formatting import parse_html

ROOT = Path(__file__).resolve().parents[2]
TRANSLATED = [lang for lang in LANGUAGES if lang != "en"]
TAG = re.compile(r"</?([a-z]+)[^>]*>")


def _code_msgids() -> set[str]:
    """What ``make i18n`` extracts (``babel.cfg`` over ``bot/``: its Python files)."""
    assert "[python: **.py]" in (ROOT / "babel.cfg").read_text()
    found = [
        m for path in sorted((ROOT / "bot").rglob("*.py")) for m in extract_from_file("python", str(path))
    ]
    return {msgid if isinstance(msgid, str) else msgid[0] for _, msgid, _, _ in found}


def _catalog(lang: str):  # type: ignore[no-untyped-def]
    with (LOCALES_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as fp:
        return read_po(fp, locale=lang)


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def _key(message) -> str:  # type: ignore[no-untyped-def]
    """A message's English text: the msgid, or the singular of a plural entry."""
    return message.id if isinstance(message.id, str) else message.id[0]


def _forms(message) -> list[str]:  # type: ignore[no-untyped-def]
    """Its translations: one, or one per plural form."""
    return [message.string] if isinstance(message.string, str) else list(message.string)


def _sample(text: str) -> str:
    """Placeholders filled with plain values, as the bot fills them (escaped text)."""
    return text.format(**dict.fromkeys(_fields(text), "1"))


CODE_MSGIDS = _code_msgids()


def test_the_code_has_texts_to_translate() -> None:
    assert len(CODE_MSGIDS) > 100
    assert "🛒 Buy number" in CODE_MSGIDS


@pytest.mark.parametrize("lang", TRANSLATED)
def test_every_text_is_translated(lang: str) -> None:
    catalog = _catalog(lang)
    messages = {_key(m): m for m in catalog if m.id}
    missing = sorted(CODE_MSGIDS - messages.keys())
    assert not missing, f"{lang}: run `make i18n` and translate: {missing}"
    empty = sorted(key for key, m in messages.items() if not all(_forms(m)))
    assert not empty, f"{lang}: untranslated {empty}"
    fuzzy = sorted(key for key, m in messages.items() if m.fuzzy)
    assert not fuzzy, f"{lang}: fuzzy (never shown) {fuzzy}"


@pytest.mark.parametrize("lang", TRANSLATED)
def test_placeholders_and_markup_match(lang: str) -> None:
    for message in _catalog(lang):
        if not message.id:
            continue
        if isinstance(message.id, str):
            assert _fields(message.string) == _fields(message.id), (lang, message.id, message.string)
        else:  # a plural: each form may drop the count, never add a placeholder; the last keeps all
            allowed = _fields(message.id[0]) | _fields(message.id[1])
            forms = _forms(message)
            assert all(_fields(form) <= allowed for form in forms), (lang, message.id, forms)
            assert _fields(forms[-1]) == _fields(message.id[1]), (lang, message.id, forms)
        for form in _forms(message):
            assert Counter(TAG.findall(form)) == Counter(TAG.findall(_key(message))), (lang, message.id)


@pytest.mark.parametrize("lang", TRANSLATED)
def test_translations_pass_telegram_html_parsing(lang: str) -> None:
    for message in _catalog(lang):
        if not message.id:
            continue
        for form in _forms(message):
            try:
                text, _ = parse_html(_sample(form))
            except BotApiError as exc:  # pragma: no cover - the failure message is the point
                pytest.fail(f"{lang}: {form!r}: {exc}")
            assert text.strip(), (lang, message.id)


def test_the_bot_loads_every_catalogue() -> None:
    from bot.i18n import I18N

    assert sorted(I18N.available_locales) == sorted(TRANSLATED)
    assert I18N.gettext("🛒 Buy number", locale="ru") == "🛒 Купить номер"
