"""What a reconciliation run found and did: the findings, the run's report, and the staff alert
and stored JSON made from them. Kept apart from the checks so readers of a report (the CLI, the
scheduler, the dashboard) need not know how it was produced."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

ALERT_MAX_LINES = 20

Fix = Callable[[], Awaitable[bool]]


@dataclass
class Finding:
    code: str
    message: str
    ref: str | None = None
    fix: str | None = None  # what an executing run does about it; None: staff must act
    fixed: bool = False
    error: str | None = None  # why the fix did not work this time
    invariant: int | None = None
    repair: Fix | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "ref": self.ref,
            "fix": self.fix,
            "fixed": self.fixed,
        }
        if self.invariant is not None:
            out["invariant"] = self.invariant
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class ReconcileReport:
    run_id: int | None
    mode: str
    started_at: datetime
    finished_at: datetime | None
    checked: dict[str, Any]
    findings: list[Finding]
    status: str  # 'clean' | 'fixed' | 'findings' | 'error'

    @property
    def remaining(self) -> list[Finding]:
        return [f for f in self.findings if not f.fixed]

    @property
    def fixes(self) -> list[Finding]:
        return [f for f in self.findings if f.fixed]

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "mode": self.mode,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "checked": self.checked,
            "findings": [f.as_dict() for f in self.findings],
            "fixed": len(self.fixes),
            "remaining": len(self.remaining),
        }


def alert_text(report: ReconcileReport) -> str:
    head = (
        f"Reconciliation run #{report.run_id} ({report.mode}): {len(report.findings)} "
        f"finding(s), {len(report.fixes)} fixed, {len(report.remaining)} remaining"
    )
    lines = [head]
    for f in report.findings[:ALERT_MAX_LINES]:
        if f.fixed:
            state = "fixed"
        elif f.error:
            state = f"fix failed: {f.error}"
        else:
            state = "needs staff" if f.fix is None else "not fixed"
        lines.append(f"- {f.code}: {f.message} [{state}]")
    if len(report.findings) > ALERT_MAX_LINES:
        lines.append(f"… and {len(report.findings) - ALERT_MAX_LINES} more on the dashboard")
    return "\n".join(lines)[:3500]


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
