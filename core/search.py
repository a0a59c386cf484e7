"""Finding a service or a country from what a buyer types, in their language.

Search runs on the bot's event loop for every typed message, so each query must stay cheap
as the catalogue grows. Everything that can be done once is done once per language when the
index is built (normalising, splitting into words, sorting for prefix look-ups, joining the
names for one C-speed substring scan); a query then costs a dict look-up, two bisections, one
``str.find`` pass and, only when those found too little, one rapidfuzz pass in C.

Ranking, best first: an exact code, alias or name; a name or word that starts with the text;
a name containing it; a name within a few typos of it (rapidfuzz). Within a tier the more
popular entry comes first. Only an unambiguous exact match may open an entry by itself
(``Result.opens``): a substring or a typo match is a guess, and a guess must never spend a
buyer's tap on the wrong service ("tg" once opened ChatGPT because "chatgpt" contains it).
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from enum import IntEnum

import phonenumbers
from babel import Locale
from rapidfuzz import fuzz, process

from core.catalogue_data import COUNTRIES, SERVICES
from core.search_data import ALIASES, LANGUAGES, LOCAL_NAMES, SERVICE_NAMES, SHORT_COUNTRY_NAMES

MAX_TERM = 64
FUZZY_MIN_LEN = 4  # shorter texts match too much by accident
FUZZY_CUTOFF = 75.0  # rapidfuzz ratio (0-100) that counts as "the same name, mistyped"
SUGGEST_CUTOFF = 50.0  # close enough to offer as "did you mean"
_SEP = "\x00"
_DIAL = re.compile(r"^\+?\s*\d[\d\s-]{0,6}$")


class Tier(IntEnum):
    EXACT = 0
    WORD_START = 1
    SUBSTRING = 2
    FUZZY = 3


@dataclass(frozen=True, slots=True)
class Entry:
    """One searchable thing: its key, the names a buyer may type, and exact-only aliases."""

    key: str
    names: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    weight: int = 0  # higher ranks first within a tier (popularity)


@dataclass(frozen=True, slots=True)
class Hit:
    key: str
    tier: Tier
    score: float = 100.0


@dataclass(frozen=True, slots=True)
class Result:
    hits: tuple[Hit, ...]
    suggestions: tuple[str, ...] = ()  # keys close to the text, offered when nothing matched
    opens: str | None = None  # the key to open without asking, when the match is unambiguous

    @property
    def keys(self) -> list[str]:
        return [h.key for h in self.hits]


def normalize(text: str) -> str:
    """Case, accents and punctuation do not matter; ``ё`` is ``е``; ``+49`` stays ``+49``."""
    text = text.strip()[:MAX_TERM]
    if _DIAL.match(text):
        return "+" + re.sub(r"\D", "", text)
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    out = []
    for ch in decomposed:
        if unicodedata.combining(ch):
            continue
        out.append(ch if ch.isalnum() else " ")
    return " ".join("".join(out).split())


@dataclass
class SearchIndex:
    """A language's names prepared for cheap queries (build once, query often)."""

    entries: list[Entry]
    _exact: dict[str, list[int]] = field(default_factory=dict)
    _words: list[str] = field(default_factory=list)  # sorted, for prefix bisection
    _word_owner: list[tuple[int, int]] = field(default_factory=list)  # (entry, 0 = name start)
    _haystack: str = ""
    _starts: list[int] = field(default_factory=list)  # offset of each haystack piece
    _piece_owner: list[int] = field(default_factory=list)
    _choices: list[str] = field(default_factory=list)  # distinct strings for the fuzzy pass
    _choice_owners: list[tuple[int, ...]] = field(default_factory=list)

    @classmethod
    def build(cls, entries: Iterable[Entry]) -> SearchIndex:
        index = cls(entries=list(entries))
        words: list[tuple[str, int, int]] = []
        pieces: list[tuple[str, int]] = []
        fuzzy: dict[str, set[int]] = {}
        for i, entry in enumerate(index.entries):
            names = {normalize(n) for n in entry.names} - {""}
            aliases = {normalize(a) for a in entry.aliases} - {""}
            for term in names | aliases:
                owners = index._exact.setdefault(term, [])
                if i not in owners:
                    owners.append(i)
            for name in names | {a for a in aliases if len(a) >= 3}:
                words.append((name, i, 0))
                for w in name.split()[1:]:
                    words.append((w, i, 1))
                pieces.append((name, i))
                if len(name) >= FUZZY_MIN_LEN - 1:
                    fuzzy.setdefault(name, set()).add(i)
                for w in name.split():
                    if len(w) >= FUZZY_MIN_LEN - 1:
                        fuzzy.setdefault(w, set()).add(i)
        words.sort()
        index._words = [w for w, _, _ in words]
        index._word_owner = [(i, later) for _, i, later in words]
        offset = 0
        for text, i in pieces:
            index._starts.append(offset)
            index._piece_owner.append(i)
            offset += len(text) + 1
        index._haystack = _SEP.join(t for t, _ in pieces)
        index._choices = list(fuzzy)
        index._choice_owners = [tuple(sorted(v)) for v in fuzzy.values()]
        return index

    def search(self, text: str, *, among: Collection[str] | None = None) -> Result:
        """Ranked hits for ``text``; ``among`` keeps only those keys (a service's countries)."""
        term = normalize(text)
        if not term:
            return Result(hits=())
        best: dict[int, tuple[int, float, int]] = {}  # entry -> (tier, -score, sub-rank)

        def add(i: int, tier: Tier, score: float = 100.0, sub: int = 0) -> None:
            if among is not None and self.entries[i].key not in among:
                return
            rank = (int(tier), -score, sub)
            if i not in best or rank < best[i]:
                best[i] = rank

        exact = self._exact.get(term, ())
        for i in exact:
            add(i, Tier.EXACT)
        lo = bisect.bisect_left(self._words, term)
        hi = bisect.bisect_left(self._words, term + "\U0010ffff", lo)
        starters: set[int] = set()
        for j in range(lo, hi):
            i, later = self._word_owner[j]
            add(i, Tier.WORD_START, sub=later)
            starters.add(i)
        if not term.startswith("+"):
            pos = self._haystack.find(term)
            while pos >= 0:
                piece = bisect.bisect_right(self._starts, pos) - 1
                add(self._piece_owner[piece], Tier.SUBSTRING)
                pos = self._haystack.find(term, pos + 1)
        if len(best) < 8 and len(term) >= FUZZY_MIN_LEN and not term.startswith("+"):
            for _choice, score, j in process.extract(
                term, self._choices, scorer=fuzz.ratio, score_cutoff=FUZZY_CUTOFF, limit=None
            ):
                for i in self._choice_owners[j]:
                    add(i, Tier.FUZZY, score)
        order = sorted(best, key=lambda i: (best[i], -self.entries[i].weight, self.entries[i].key))
        hits = tuple(Hit(self.entries[i].key, Tier(best[i][0]), -best[i][1]) for i in order)
        opens = None
        mine = [i for i in exact if i in best]
        if len(mine) == 1 and not (starters - set(mine)):
            opens = self.entries[mine[0]].key
        suggested = () if hits or term.startswith("+") else self.suggest(term, among)
        return Result(hits=hits, suggestions=suggested, opens=opens)

    def suggest(self, term: str, among: Collection[str] | None = None, limit: int = 3) -> tuple[str, ...]:
        """The closest names for a text that matched nothing (a looser, rarer pass)."""
        keys: list[str] = []
        for _choice, _score, j in process.extract(
            term, self._choices, scorer=fuzz.WRatio, score_cutoff=SUGGEST_CUTOFF, limit=limit * 4
        ):
            for i in self._choice_owners[j]:
                key = self.entries[i].key
                if key not in keys and (among is None or key in among):
                    keys.append(key)
        return tuple(keys[:limit])


# --- the shop's catalogue, per language --------------------------------------------------


def supported(lang: str | None) -> str:
    """The supported language closest to a Telegram ``language_code`` or a locale name."""
    if not lang:
        return "en"
    low = lang.replace("-", "_").lower()
    for known in LANGUAGES:
        if low == known.lower():
            return known
    base = low.split("_")[0]
    if base == "pt":
        return "pt_BR"
    return base if base in LANGUAGES else "en"


def service_entries(lang: str) -> list[Entry]:
    local = LOCAL_NAMES.get(lang, {})
    entries = []
    for s in SERVICES:
        shown = SERVICE_NAMES.get(lang, {}).get(s.code, s.name)
        names = (shown, s.name, *s.name.split(" / "), *local.get(s.code, ()))
        entries.append(Entry(s.code, names, (s.code, *ALIASES.get(s.code, ())), s.popularity))
    return entries


@functools.cache
def _territories(lang: str) -> dict[str, str]:
    return dict(Locale.parse(lang).territories)


def country_name(code: str, lang: str) -> str:
    """The country's name in ``lang`` from CLDR (Babel); the catalogue's name otherwise."""
    name = _territories(supported(lang)).get(code)
    if name:
        return name
    for c in COUNTRIES:
        if c.code == code:
            return c.name
    return code


def short_country_name(code: str, lang: str) -> str:
    """An everyday short name where the CLDR one is too long for a button, else the CLDR one."""
    return SHORT_COUNTRY_NAMES.get(supported(lang), {}).get(code) or country_name(code, lang)


@functools.cache
def dialling_codes() -> dict[str, tuple[int, ...]]:
    """Region -> international calling codes, from the ``phonenumbers`` metadata."""
    found: dict[str, list[int]] = {}
    for calling, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items():
        for region in regions:
            found.setdefault(region, []).append(calling)
    return {r: tuple(v) for r, v in found.items()}


def country_entries(lang: str) -> list[Entry]:
    en = _territories("en")
    mine = _territories(lang)
    codes = dialling_codes()
    entries = []
    for rank, c in enumerate(COUNTRIES):
        short = SHORT_COUNTRY_NAMES.get(lang, {}).get(c.code)
        names = tuple(n for n in (mine.get(c.code), en.get(c.code), c.name, short) if n)
        dials = tuple(f"+{d}" for d in codes.get(c.code, ()))
        entries.append(Entry(c.code, names, (c.code, *dials), len(COUNTRIES) - rank))
    return entries


@functools.cache
def service_index(lang: str) -> SearchIndex:
    return SearchIndex.build(service_entries(supported(lang)))


@functools.cache
def country_index(lang: str) -> SearchIndex:
    return SearchIndex.build(country_entries(supported(lang)))


def search_services(text: str, lang: str) -> Result:
    return service_index(supported(lang)).search(text)


def search_countries(text: str, lang: str, among: Collection[str] | None = None) -> Result:
    return country_index(supported(lang)).search(text, among=among)


__all__ = [
    "LANGUAGES",
    "Entry",
    "Hit",
    "Result",
    "SearchIndex",
    "Tier",
    "country_name",
    "short_country_name",
    "normalize",
    "search_countries",
    "search_services",
    "supported",
]
