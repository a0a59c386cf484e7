"""Fault injection: make the next matching Bot API calls fail as Telegram would."""

from __future__ import annotations

from numbershop.emulator import errors as E
from numbershop.emulator.errors import BotApiError, EmulatorError
from numbershop.emulator.records import _Fault
from numbershop.emulator.world import BotWorld


class FaultInjection(BotWorld):
    """Armed faults are consumed by ``take_fault``, which the server asks before each call."""

    def take_fault(self, method: str, chat_id: int | None) -> BotApiError | None:
        """The injected error for this call, if one is armed for it (consumes one use)."""
        for fault in self._faults:
            if fault.matches(method, chat_id):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return BotApiError(fault.error_code, fault.description, retry_after=fault.retry_after)
        return None

    def fail_next(
        self,
        method: str | None = None,
        *,
        chat_id: int | None = None,
        count: int = 1,
        error_code: int = 429,
        retry_after: int | None = None,
        description: str | None = None,
    ) -> None:
        """Answer the next ``count`` matching calls with an error instead of running them.

        ``method=None`` matches every method except getUpdates; ``chat_id=None`` every chat.
        A 429 gets ``parameters.retry_after`` (default 1 s) and Telegram's description.
        """
        if count < 1:
            raise EmulatorError("count must be at least 1")
        if error_code == 429:
            retry_after = 1 if retry_after is None else retry_after
            description = description or f"Too Many Requests: retry after {retry_after}"
        elif description is None:
            description = {
                400: "Bad Request: injected fault",
                403: E.BOT_BLOCKED,
                500: "Internal Server Error",
            }.get(error_code, "Injected fault")
        self._faults.append(
            _Fault(method.lower() if method else None, chat_id, count, error_code, description, retry_after)
        )

    def clear_faults(self) -> None:
        self._faults.clear()
