"""What every dashboard handler needs, built once per app and kept in ``app.state.admin``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from litestar.stores.base import Store

from admin.throttle import LoginThrottle
from core.clock import Clock
from core.db.engine import Database
from core.staff import StaffAccounts

if TYPE_CHECKING:
    from core.app import Core


@dataclass
class AdminContext:
    core: Core
    staff: StaffAccounts
    throttle: LoginThrottle
    currency: str
    nonces: Store  # used form nonces (the session store: Redis when scaled out)
    reconcile: Any | None = None  # core.reconcile.run_reconciliation, when core has it
    session_max_age: int = 7 * 24 * 3600  # seconds from login until a session ends, however active

    @property
    def db(self) -> Database:
        return self.core.db

    @property
    def clock(self) -> Clock:
        return self.core.clock

    @property
    def board(self) -> Any:
        return getattr(self.core, "board", None)

    @property
    def providers(self) -> dict[str, Any]:
        return dict(getattr(self.core, "providers", {}) or {})


async def breaker_states(board: Any) -> dict[str, dict[str, Any]]:
    """The breaker board's view, normalised to ``{provider: {state, failures, …}}``.

    ``astates()`` re-reads the shared store, so a replica shows what the bot's and the
    scheduler's processes saw. Read defensively: the dashboard must render even while a
    breaker is in an unexpected shape, so anything unreadable shows as 'unknown', never a 500.
    """
    if board is None or not hasattr(board, "states"):
        return {}
    try:
        raw = await board.astates() if hasattr(board, "astates") else board.states()
    except Exception:
        return {}
    out: dict[str, dict[str, Any]] = {}
    items = raw.items() if isinstance(raw, dict) else ((getattr(s, "name", "?"), s) for s in raw)
    for name, value in items:
        if isinstance(value, str):
            out[str(name)] = {"state": value, "failures": None}
        elif isinstance(value, dict):
            out[str(name)] = {
                "state": str(value.get("state", "unknown")),
                "failures": value.get("failures", value.get("failure_count")),
                **{k: v for k, v in value.items() if k not in ("state",)},
            }
        else:
            state = getattr(value, "state", "unknown")
            failures = getattr(value, "failures", getattr(value, "failure_count", None))
            out[str(name)] = {"state": str(getattr(state, "value", state)), "failures": failures}
    return out
