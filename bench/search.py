"""Search cost as the catalogue grows: ranked, typo-tolerant search against a plain scan.

Search runs on the bot's event loop for every typed message, so its cost per query is what
matters. A synthetic catalogue of 300 services and 150 countries in 5 languages (names
generated deterministically from a seed: Latin brands, Cyrillic local names, aliases, ISO-like
codes, dialling codes) is indexed with ``core.search.SearchIndex``; a fixed mix of typed
queries (aliases, word starts, substrings, typos, other scripts, dialling codes, nothing) is
run through the index and, as the baseline, through a plain case-insensitive substring scan
over the same names, in the same process, alternating query by query.

Each query's CPU time is taken with ``time.thread_time_ns`` (this thread's CPU only) and the
p99 of each is compared. One JSON object on the last line::

    python -m bench.search [--seed 1] [--rounds 20]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time

from bench._support import percentile
from core.search import Entry, SearchIndex

LANGS = ("en", "ru", "es", "pt_BR", "id")
N_SERVICES = 300
N_COUNTRIES = 150
_LATIN = ["ka", "to", "ri", "ne", "so", "la", "mi", "po", "ve", "du", "ga", "shi", "zu", "tre", "bo", "an"]
_CYR = ["ка", "то", "ри", "не", "со", "ла", "ми", "по", "ве", "ду", "га", "ши", "зу", "тре", "бо", "ан"]
_SUFFIX = {"en": "", "ru": "ия", "es": "ia", "pt_BR": "ia", "id": "a"}


def _word(rng: random.Random, parts: int) -> list[int]:
    return [rng.randrange(len(_LATIN)) for _ in range(parts)]


def _latin(idx: list[int]) -> str:
    return "".join(_LATIN[i] for i in idx)


def _cyr(idx: list[int]) -> str:
    return "".join(_CYR[i] for i in idx)


def catalogue(seed: int) -> dict[str, tuple[list[Entry], list[Entry]]]:
    """Per language: (service entries, country entries), the same for the same seed."""
    rng = random.Random(seed)
    services = []
    for n in range(N_SERVICES):
        brand = _word(rng, rng.randint(2, 4))
        second = _word(rng, 2) if rng.random() < 0.3 else None
        name = _latin(brand).title() + (f" / {_latin(second).title()}" if second else "")
        aliases = (f"s{n}", _latin(brand)[:2] + str(n % 10), _cyr(brand))
        services.append((f"svc{n}", name, aliases, brand, N_SERVICES - n))
    countries = []
    for n in range(N_COUNTRIES):
        root = _word(rng, rng.randint(2, 3))
        countries.append((f"C{n:03d}", root, f"+{rng.randint(1, 999)}", N_COUNTRIES - n))
    out: dict[str, tuple[list[Entry], list[Entry]]] = {}
    for lang in LANGS:
        svc = [
            Entry(code, (name, *((_cyr(brand).title(),) if lang == "ru" else ())), aliases, weight)
            for code, name, aliases, brand, weight in services
        ]
        cty = []
        for code, root, dial, weight in countries:
            english = _latin(root).title() + "land"
            mine = (_cyr(root) if lang == "ru" else _latin(root)).title() + _SUFFIX[lang]
            cty.append(Entry(code, (mine, english), (code, dial), weight))
        out[lang] = (svc, cty)
    return out


def _typo(rng: random.Random, word: str) -> str:
    if len(word) < 5:
        return word + "x"
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:  # swap two letters
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:  # drop one
        return word[:i] + word[i + 1 :]
    return word[:i] + "e" + word[i:]  # add one


def queries(entries: list[Entry], rng: random.Random, count: int) -> list[str]:
    """A mix of what buyers type: aliases, starts, middles, typos, nothing, dialling codes."""
    typed = []
    for _ in range(count):
        e = rng.choice(entries)
        name = rng.choice(e.names)
        kind = rng.randrange(7)
        if kind == 0:
            typed.append(rng.choice(e.aliases))
        elif kind == 1:
            typed.append(name[: rng.randint(2, 5)])
        elif kind == 2:
            start = rng.randrange(max(1, len(name) - 4))
            typed.append(name[start : start + 4])
        elif kind in (3, 4):
            typed.append(_typo(rng, name.split(" / ")[0].lower()))
        elif kind == 5:
            typed.append(name.lower())
        else:
            typed.append("".join(rng.choice("qxzjvw") for _ in range(rng.randint(4, 8))))
    return typed


def plain_scan(pairs: list[tuple[str, str]], text: str) -> list[str]:
    """The baseline: a case-insensitive substring test over every name, nothing ranked."""
    term = text.strip().casefold()
    return [key for name, key in pairs if term in name]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.search")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--queries", type=int, default=200, help="per language and list")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    built = time.process_time()
    cases: list[tuple[str, SearchIndex, list[tuple[str, str]], str]] = []
    names = 0
    for lang, (svc, cty) in catalogue(args.seed).items():
        for entries in (svc, cty):
            index = SearchIndex.build(entries)
            pairs = [(n.casefold(), e.key) for e in entries for n in (*e.names, *e.aliases)]
            names += len(pairs)
            cases.extend((lang, index, pairs, q) for q in queries(entries, rng, args.queries))
    build_s = time.process_time() - built
    ranked_ns: list[float] = []
    plain_ns: list[float] = []
    found = fuzzy_only = 0
    clock = time.thread_time_ns
    gc.collect()
    gc.disable()
    try:
        for _ in range(args.rounds):
            for _lang, index, pairs, q in cases:
                t0 = clock()
                result = index.search(q)
                t1 = clock()
                plain_scan(pairs, q)
                t2 = clock()
                ranked_ns.append(t1 - t0)
                plain_ns.append(t2 - t1)
                found += bool(result.hits)
                fuzzy_only += bool(result.hits) and result.hits[0].tier == 3
    finally:
        gc.enable()
    ranked_p99 = percentile(ranked_ns, 0.99) / 1000
    plain_p99 = percentile(plain_ns, 0.99) / 1000
    print(
        f"{len(cases)} queries × {args.rounds} rounds over {names} names "
        f"({N_SERVICES} services × {N_COUNTRIES} countries × {len(LANGS)} languages); "
        f"index build {build_s * 1000:.0f} ms CPU"
    )
    print(
        f"ranked p50 {percentile(ranked_ns, 0.5) / 1000:.1f} us, p99 {ranked_p99:.1f} us; "
        f"plain scan p50 {percentile(plain_ns, 0.5) / 1000:.1f} us, p99 {plain_p99:.1f} us"
    )
    print(
        json.dumps(
            {
                "bench": "search",
                "queries": len(cases) * args.rounds,
                "names": names,
                "ranked_p99_us": round(ranked_p99, 1),
                "plain_p99_us": round(plain_p99, 1),
                "ratio": round(ranked_p99 / plain_p99, 2) if plain_p99 else None,
                "hit_rate": round(found / (len(cases) * args.rounds), 3),
                "typo_only_rate": round(fuzzy_only / (len(cases) * args.rounds), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
