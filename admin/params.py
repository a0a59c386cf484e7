"""Parameter types shared by the page handlers (explicit markers, bounded lengths)."""

from __future__ import annotations

from typing import Annotated

from litestar.params import PathParameter, QueryParameter

OptQ = Annotated[str | None, QueryParameter(max_length=200)]
TelegramIdPath = Annotated[int, PathParameter(ge=1, le=2**63 - 1)]
OrderIdPath = Annotated[str, PathParameter(min_length=1, max_length=64)]
IntIdPath = Annotated[int, PathParameter(ge=1, le=2**31 - 1)]  # INTEGER primary keys
NamePath = Annotated[str, PathParameter(min_length=1, max_length=64)]
