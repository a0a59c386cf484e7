"""The one door to translated text.

Every sentence a buyer reads is written in English in ``bot.texts`` (or beside the handler
that sends it) and wrapped in ``_`` / ``ngettext`` so Babel can extract it. The language is
the one aiogram's i18n context carries for the current update (or the one a sender sets
for the recipient); outside any context the English text is returned unchanged, so core
tests and tools that render texts need no setup.

Write ``_("Your balance is {amount}.").format(amount=...)``: placeholders are named, and
formatting happens after translation so a translator can move them.

The catalogues are ``bot/locales/<lang>/LC_MESSAGES/messages.po`` (package data, so a
non-editable install carries them); English is the source
language (the msgids), so it has none. They are compiled in memory when this module is
first imported (Babel's ``read_po`` + ``write_mo``, a few milliseconds): no binary ``.mo``
file is committed or has to be built by an install step, so a plain ``pip install`` and a
checkout always run the texts that are in the ``.po`` files. ``make i18n`` re-extracts the
messages and updates every catalogue.
"""

from __future__ import annotations

import gettext as _gettext
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiogram.utils.i18n import I18n
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from core.users import LANGUAGES

LOCALES_DIR = Path(__file__).resolve().parent / "locales"
DOMAIN = "messages"
DEFAULT_LOCALE = "en"

# Each language in its own words, as the /language picker shows it.
LANGUAGE_NAMES = {
    "en": "🇬🇧 English",
    "ru": "🇷🇺 Русский",
    "es": "🇪🇸 Español",
    "pt_BR": "🇧🇷 Português (Brasil)",
    "id": "🇮🇩 Bahasa Indonesia",
}


class CatalogI18n(I18n):
    """aiogram's ``I18n`` reading ``.po`` catalogues directly (compiled in memory).

    Fuzzy entries are left out, exactly as ``pybabel compile`` would: a guessed translation
    is never shown to a buyer; the English text is.
    """

    def find_locales(self) -> dict[str, _gettext.GNUTranslations]:
        translations: dict[str, _gettext.GNUTranslations] = {}
        if not self.path.is_dir():
            return translations
        for po_path in sorted(self.path.glob(f"*/LC_MESSAGES/{self.domain}.po")):
            locale = po_path.parent.parent.name
            with po_path.open("rb") as fp:
                catalog = read_po(fp, locale=locale, domain=self.domain)
            buffer = io.BytesIO()
            write_mo(buffer, catalog, use_fuzzy=False)
            buffer.seek(0)
            translations[locale] = _gettext.GNUTranslations(buffer)
        return translations


I18N = CatalogI18n(path=LOCALES_DIR, default_locale=DEFAULT_LOCALE, domain=DOMAIN)


def language_for(language_code: str | None) -> str:
    """Telegram's ``language_code`` (an IETF tag such as ``pt-br``, ``ru``, ``es-419``) to one
    of the shop's languages; English for everything else."""
    if not language_code:
        return DEFAULT_LOCALE
    tag = language_code.replace("_", "-").lower()
    if tag == "pt" or tag.startswith("pt-"):
        return "pt_BR"
    base = tag.split("-", 1)[0]
    if base == "in":  # the old ISO 639 code some clients still send for Indonesian
        base = "id"
    return base if base in LANGUAGES else DEFAULT_LOCALE


def current_locale() -> str:
    """The language of the text being rendered now (English outside any context)."""
    i18n = CatalogI18n.get_current(no_error=True)
    return i18n.current_locale if i18n is not None else DEFAULT_LOCALE


@contextmanager
def use_locale(locale: str | None) -> Iterator[None]:
    """Render in ``locale`` (the sender uses it for a recipient who is not the updater)."""
    with I18N.context(), I18N.use_locale(locale if locale in LANGUAGES else DEFAULT_LOCALE):
        yield


def gettext(message: str, /) -> str:
    i18n = CatalogI18n.get_current(no_error=True)
    if i18n is None:
        return message
    return i18n.gettext(message)


def ngettext(singular: str, plural: str, n: int, /) -> str:
    i18n = CatalogI18n.get_current(no_error=True)
    if i18n is None:
        return singular if n == 1 else plural
    return i18n.gettext(singular, plural, n)


_ = gettext
