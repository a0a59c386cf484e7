"""The one door to translated text.

Every sentence a buyer reads is written in English in ``bot.texts`` (or beside the handler
that sends it) and wrapped in ``_`` / ``ngettext`` so Babel can extract it. The language is
the one aiogram's i18n context carries for the current update (or the one a sender sets
for the recipient); outside any context the English text is returned unchanged, so core
tests and tools that render texts need no setup.

Write ``_("Your balance is {amount}.").format(amount=...)``: placeholders are named, and
formatting happens after translation so a translator can move them.
"""

from __future__ import annotations

from aiogram.utils.i18n import I18n


def gettext(message: str, /) -> str:
    i18n = I18n.get_current(no_error=True)
    if i18n is None:
        return message
    return i18n.gettext(message)


def ngettext(singular: str, plural: str, n: int, /) -> str:
    i18n = I18n.get_current(no_error=True)
    if i18n is None:
        return singular if n == 1 else plural
    return i18n.gettext(singular, plural, n)


_ = gettext
