"""Parameter types shared by the page handlers (explicit markers, bounded lengths)."""

from __future__ import annotations

from typing import Annotated

from litestar.params import QueryParameter

OptQ = Annotated[str | None, QueryParameter(max_length=200)]
