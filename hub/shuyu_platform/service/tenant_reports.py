"""Events a sandbox reports about itself: marked as the tenant's word, and rate-limited.

The in-sandbox egress guard posts an ``egress.blocked`` record for each download it
refuses. It runs as the tenant's uid, with the server's token, which every kernel of
that server holds too: such a record says what a tenant's process claims, not what the
platform saw. So each one is recorded with ``detail.source = "tenant-reported"`` (the
platform's own records never carry it), and each user may report at most
``c.Shuyu.tenant_reports_per_minute`` events a minute. Past that the report is refused
with 429, and the first refusal of each minute is itself recorded
(``report.rate_limited``), so a flood shows in the audit chain as one line a minute
rather than as a million.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

#: ``detail.source`` of every record a sandbox reported.
SOURCE = "tenant-reported"
WINDOW_SECONDS = 60.0


@dataclass
class _Window:
    times: deque[float] = field(default_factory=deque)
    refused_since: float | None = None


class ReportLimiter:
    """A sliding one-minute window of reports per user, in the service's memory."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.windows: dict[str, _Window] = {}

    def admit(self, user: str, now: float | None = None) -> tuple[bool, bool]:
        """``(admitted, first_refusal)``: whether to record this report, and whether it
        is the first one refused in the current minute (to be recorded as such)."""
        now = time.monotonic() if now is None else now
        window = self.windows.setdefault(user, _Window())
        while window.times and window.times[0] <= now - WINDOW_SECONDS:
            window.times.popleft()
        if len(window.times) < self.per_minute:
            window.times.append(now)
            return True, False
        first = window.refused_since is None or window.refused_since <= now - WINDOW_SECONDS
        if first:
            window.refused_since = now
        return False, first
