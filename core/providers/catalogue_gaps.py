"""What a provider's catalogue listed that the shop could not map to its own vocabulary.

Adapters map each provider's service codes and country ids onto canonical services
(``core/catalogue_data.py``) and ISO 3166 countries; anything else is silently not sold. That
silence hides real gaps (a new service, a renumbered country), so an adapter that can tell
reports them here, and ``numbershop providers status`` shows them to staff.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class CatalogueGaps:
    services: tuple[str, ...] = ()  # the provider's own service codes / names
    countries: tuple[str, ...] = ()  # the provider's own country ids / slugs

    @classmethod
    def of(cls, services: Iterable[object], countries: Iterable[object]) -> CatalogueGaps:
        return cls(
            tuple(sorted({str(s) for s in services})),
            tuple(sorted({str(c) for c in countries}, key=_natural)),
        )


def _natural(text: str) -> tuple[int, int | str]:
    return (0, int(text)) if text.isdigit() else (1, text)


@runtime_checkable
class ReportsCatalogueGaps(Protocol):
    async def catalogue_gaps(self) -> CatalogueGaps:
        """Ask the provider's catalogue calls afresh and return what could not be mapped."""
        ...
