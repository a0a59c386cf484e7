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
SUGGEST_CUTOFF = 60.0  # close enough to offer as "did you mean" when nothing matched
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
    total: int = 0  # all hits, of which ``hits`` holds the best
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
    """A language's names prepared for cheap queries (build once, query often).

    Per query the work is bounded by the catalogue's size in C loops (one ``in`` test per
    entry, one rapidfuzz pass over a length slice) and by the number of hits in Python.
    """

    entries: list[Entry]
    _exact: dict[str, list[int]] = field(default_factory=dict)
    _starts: list[str] = field(default_factory=list)  # name starts, sorted for bisection
    _start_owner: list[int] = field(default_factory=list)
    _later: list[str] = field(default_factory=list)  # starts of later words, sorted
    _later_owner: list[int] = field(default_factory=list)
    _hays: list[str] = field(default_factory=list)  # per entry: its names joined
    _pos: list[int] = field(default_factory=list)  # per entry: place by popularity
    _choices: list[str] = field(default_factory=list)  # distinct strings, sorted by length
    _choice_lens: list[int] = field(default_factory=list)
    _choice_owners: list[tuple[int, ...]] = field(default_factory=list)

    @classmethod
    def build(cls, entries: Iterable[Entry]) -> SearchIndex:
        index = cls(entries=list(entries))
        starts: list[tuple[str, int]] = []
        later: list[tuple[str, int]] = []
        fuzzy: dict[str, set[int]] = {}
        for i, entry in enumerate(index.entries):
            names = sorted({normalize(n) for n in entry.names} - {""})
            aliases = sorted({normalize(a) for a in entry.aliases} - {""})
            for term in (*names, *aliases):
                owners = index._exact.setdefault(term, [])
                if i not in owners:
                    owners.append(i)
            searchable = [*names, *(a for a in aliases if len(a) >= 3)]
            for name in searchable:
                starts.append((name, i))
                later.extend((w, i) for w in name.split()[1:])
                for choice in {name, *name.split()}:
                    if len(choice) >= FUZZY_MIN_LEN - 1:
                        fuzzy.setdefault(choice, set()).add(i)
            index._hays.append(_SEP.join(searchable))
        starts.sort()
        later.sort()
        index._starts, index._start_owner = [w for w, _ in starts], [i for _, i in starts]
        index._later, index._later_owner = [w for w, _ in later], [i for _, i in later]
        by_popularity = sorted(
            range(len(index.entries)), key=lambda i: (-index.entries[i].weight, index.entries[i].key)
        )
        index._pos = [0] * len(index.entries)
        for place, i in enumerate(by_popularity):
            index._pos[i] = place
        ordered = sorted(fuzzy.items(), key=lambda kv: (len(kv[0]), kv[0]))
        index._choices = [c for c, _ in ordered]
        index._choice_lens = [len(c) for c in index._choices]
        index._choice_owners = [tuple(sorted(v)) for _, v in ordered]
        return index

    @staticmethod
    def _prefixed(words: list[str], owners: list[int], term: str) -> list[int]:
        lo = bisect.bisect_left(words, term)
        hi = bisect.bisect_left(words, term + "\U0010ffff", lo)
        return owners[lo:hi]

    def search(self, text: str, *, among: Collection[str] | None = None, limit: int = 20) -> Result:
        """Ranked hits for ``text`` (the best ``limit``; ``total`` counts them all);
        ``among`` keeps only those keys (the countries a service is sold in)."""
        term = normalize(text)
        if not term:
            return Result(hits=())
        dialling = term.startswith("+")
        rank: dict[int, float] = {}
        if not dialling:
            rank = dict.fromkeys(
                (i for i, hay in enumerate(self._hays) if term in hay), float(Tier.SUBSTRING)
            )
        word_starts = self._prefixed(self._later, self._later_owner, term)
        rank.update(dict.fromkeys(word_starts, Tier.WORD_START + 0.5))
        name_starts = self._prefixed(self._starts, self._start_owner, term)
        rank.update(dict.fromkeys(name_starts, float(Tier.WORD_START)))
        exact = self._exact.get(term, [])
        rank.update(dict.fromkeys(exact, float(Tier.EXACT)))
        entries = self.entries
        if among is not None:
            rank = {i: r for i, r in rank.items() if entries[i].key in among}
        suggestions: list[int] = []
        if len(rank) < 8 and len(term) >= FUZZY_MIN_LEN and not dialling:
            cutoff = FUZZY_CUTOFF if rank else SUGGEST_CUTOFF
            # Indel similarity can only reach the cutoff when the lengths are close enough,
            # so only that slice of the (length-sorted) choices is compared at all.
            n = len(term)
            lo = bisect.bisect_left(self._choice_lens, n * cutoff / (200 - cutoff))
            hi = bisect.bisect_right(self._choice_lens, n * (200 - cutoff) / cutoff)
            for _choice, score, j in process.extract(
                term, self._choices[lo:hi], scorer=fuzz.ratio, score_cutoff=cutoff, limit=None
            ):
                for i in self._choice_owners[lo + j]:
                    if among is not None and entries[i].key not in among:
                        continue
                    if score >= FUZZY_CUTOFF:
                        rank.setdefault(i, Tier.FUZZY + (100 - score) / 1000)
                    elif i not in suggestions:
                        suggestions.append(i)
        pos = self._pos
        order = sorted(rank, key=lambda i: (rank[i], pos[i]))
        hits = tuple(Hit(entries[i].key, Tier(int(rank[i])), _score(rank[i])) for i in order[:limit])
        opens = None
        mine = [i for i in exact if i in rank]
        if len(mine) == 1 and all(i == mine[0] for i in (*name_starts, *word_starts) if i in rank):
            opens = entries[mine[0]].key
        suggested = () if hits else tuple(entries[i].key for i in suggestions[:3])
        return Result(hits=hits, total=len(rank), suggestions=suggested, opens=opens)


def _score(rank: float) -> float:
    return 100 - (rank - Tier.FUZZY) * 1000 if rank >= Tier.FUZZY else 100.0


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
