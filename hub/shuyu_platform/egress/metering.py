"""The output meter: bytes each user's servers send to the browser, per UTC day (R15).

The egress gateway (:mod:`shuyu_platform.isolation.gateway`) calls
:meth:`Meter.allow` before it forwards a response body or a websocket frame and
:meth:`Meter.add` once it has. Counts live in
memory and reach the ``output_volumes`` table every :attr:`Meter.flush_interval`
seconds and when a server stops; a user's count for today is read back from the table
the first time the meter sees that user, so a hub restart does not reset a day.

The daily cap (``c.Shuyu.egress_daily_cap``) holds for the sum over a user's servers
and kinds. Reaching it is recorded once per user and day (``egress.cap_reached``);
the day's volume by kind is recorded when a server stops and when a day ends while
the user is active (``egress.volume``). One meter serves every gateway of the hub.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar

from sqlalchemy import func, select

from .. import messages
from ..core import audit
from ..core.db import session_scope
from ..core.models import OutputVolume

log = logging.getLogger("shuyu.metering")

#: Kernel message types counted under their own name; any other is ``ws:other`` (the
#: type is chosen by the kernel, so it must not grow the table without bound).
WS_KINDS = frozenset(
    {
        "stream",
        "display_data",
        "update_display_data",
        "execute_result",
        "execute_reply",
        "execute_input",
        "error",
        "status",
        "comm_msg",
        "comm_open",
        "comm_close",
        "complete_reply",
        "inspect_reply",
        "kernel_info_reply",
        "history_reply",
        "input_request",
        "clear_output",
        "shutdown_reply",
        "debug_reply",
        "debug_event",
        "is_complete_reply",
        "comm_info_reply",
    }
)


#: Today's UTC day and the epoch second it ends: the meter asks for the day twice per
#: websocket frame, and formatting a date each time was a measurable part of a frame.
_today: tuple[str, float] = ("", 0.0)


def today() -> str:
    """The current UTC day, ``YYYY-MM-DD`` (the meter's unit of time)."""
    global _today
    now = time.time()
    if now >= _today[1]:
        day = datetime.fromtimestamp(now, UTC)
        _today = (day.strftime("%Y-%m-%d"), (now // 86400 + 1) * 86400)
    return _today[0]


def ws_kind(msg_type: str | None) -> str:
    """The meter's kind for a websocket frame of kernel message type ``msg_type``."""
    return f"ws:{msg_type}" if msg_type in WS_KINDS else "ws:other"


#: What a person reads when the cap stops output (a catalogue id; ``limit`` in MiB).
CAP_REACHED = (
    "Today's output from your server to the browser has reached the daily limit of "
    "{limit} MiB, so the platform stops further output until tomorrow (UTC). This was "
    "recorded. Results leave the sandbox through an export request."
)


class CapReached(Exception):
    """Today's output of a user reached the daily cap; the message says so to the user."""


@dataclass
class _Day:
    """One user's counts for one day: what the table had, and what is not yet flushed."""

    tenant: str
    stored: int = 0
    pending: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    cap_recorded: bool = False

    @property
    def total(self) -> int:
        return self.stored + sum(self.sent.values())


class Meter:
    """Counts output per (user, day, kind), enforces the daily cap, flushes to the table."""

    _instances: ClassVar[dict[str, Meter]] = {}

    def __init__(self, db_url: str, cap: int, flush_interval: float = 2.0) -> None:
        self.db_url = db_url
        self.cap = cap
        self.flush_interval = flush_interval
        self.days: dict[tuple[str, str], _Day] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def shared(cls, db_url: str, cap: int) -> Meter:
        """The hub's one meter for ``db_url`` (created on first use; cap kept current)."""
        meter = cls._instances.get(db_url)
        if meter is None:
            meter = cls._instances[db_url] = cls(db_url, cap)
        meter.cap = cap
        return meter

    # ------------------------------------------------------------ counting
    def _load(self, username: str, tenant: str, day: str) -> _Day:
        return _Day(tenant=tenant, stored=day_total(self.db_url, username, day))

    def _day(self, username: str, tenant: str) -> _Day:
        day = today()
        entry = self.days.get((username, day))
        if entry is None:
            for (user, old_day), old in list(self.days.items()):
                if user == username and old_day != day:
                    self._close_day(user, old_day, old)
            entry = self.days[(username, day)] = self._load(username, tenant, day)
        return entry

    def used(self, username: str, tenant: str) -> int:
        """Bytes ``username``'s servers have sent to the browser today."""
        return self._day(username, tenant).total

    def allow(self, username: str, tenant: str, size: int) -> None:
        """Raise :class:`CapReached` if sending ``size`` more bytes would pass the cap.

        Once refused, a user's output stays stopped for the rest of the day (smaller
        messages after a refused large one would otherwise fill the cap to the byte)."""
        if self.cap <= 0:
            return
        entry = self._day(username, tenant)
        if not entry.cap_recorded and entry.total + size <= self.cap:
            return
        if not entry.cap_recorded:
            entry.cap_recorded = True
            audit.append(
                self.db_url,
                actor=username,
                action="egress.cap_reached",
                target=today(),
                tenant=tenant,
                outcome="denied",
                detail={
                    "cap_bytes": self.cap,
                    "used_bytes": entry.total,
                    "refused_bytes": size,
                    "by_kind": dict(entry.sent),
                },
            )
            log.warning("%s reached the daily output cap (%d bytes)", username, self.cap)
        raise CapReached(messages.text(CAP_REACHED, limit=f"{self.cap / 2**20:.0f}"))

    def add(self, username: str, tenant: str, kind: str, size: int) -> None:
        """Count ``size`` bytes of ``kind`` sent to ``username``'s browser."""
        if size <= 0:
            return
        entry = self._day(username, tenant)
        entry.sent[kind] += size
        entry.pending[kind] += size
        self._ensure_flusher()

    # ------------------------------------------------------------- storing
    def _ensure_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            try:
                self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())
            except RuntimeError:  # no loop (a synchronous caller): flush now
                self.flush_now()

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.flush_interval)
        await self.flush()

    async def flush(self) -> None:
        """Write pending counts to the table (in a thread: the hub's loop never waits)."""
        async with self._lock:
            await asyncio.to_thread(self.flush_now)

    def flush_now(self) -> None:
        """Write pending counts to the table, in the calling thread."""
        batch = []
        for (username, day), entry in list(self.days.items()):
            if entry.pending:
                batch.append((username, day, entry.tenant, dict(entry.pending)))
                entry.pending.clear()
        if not batch:
            return
        with session_scope(self.db_url) as session:
            for username, day, tenant, kinds in batch:
                for kind, size in kinds.items():
                    row = session.get(OutputVolume, (username, day, kind))
                    if row is None:
                        session.add(
                            OutputVolume(
                                username=username, day=day, kind=kind, tenant=tenant, bytes=size
                            )
                        )
                    else:
                        row.bytes += size

    def _close_day(self, username: str, day: str, entry: _Day) -> None:
        """Record a finished day's volume and forget it (its pending counts flushed)."""
        self.flush_now()
        self.record_volume(username, day, entry, reason="day ended")
        self.days.pop((username, day), None)

    def record_volume(self, username: str, day: str, entry: _Day, *, reason: str) -> None:
        """Append an ``egress.volume`` record: the day's bytes by kind so far."""
        audit.append(
            self.db_url,
            actor=username,
            actor_kind="system",
            action="egress.volume",
            target=day,
            tenant=entry.tenant,
            detail={
                "reason": reason,
                "total_bytes": entry.total,
                "by_kind": dict(sorted(entry.sent.items())),
                "cap_bytes": self.cap,
            },
        )

    async def server_stopped(self, username: str) -> None:
        """Flush, and record the user's volume of today as of this stop."""
        await self.flush()
        entry = self.days.get((username, today()))
        if entry is not None and entry.sent:
            await asyncio.to_thread(self.record_volume, username, today(), entry, reason="stop")


@dataclass(frozen=True)
class VolumeRow:
    """One user's output on one day, for the reviewers' page."""

    username: str
    tenant: str
    day: str
    total: int
    by_kind: dict[str, int]


def largest(db_url: str, *, days: int = 7, limit: int = 50) -> list[VolumeRow]:
    """The largest daily volumes of the last ``days`` days, largest first."""
    since = datetime.now(UTC).date().toordinal() - days + 1
    first = datetime.fromordinal(since).strftime("%Y-%m-%d")
    with session_scope(db_url) as session:
        rows = session.execute(select(OutputVolume).where(OutputVolume.day >= first)).scalars()
        grouped: dict[tuple[str, str], VolumeRow] = {}
        for row in rows:
            key = (row.username, row.day)
            if key not in grouped:
                grouped[key] = VolumeRow(row.username, row.tenant, row.day, 0, {})
            grouped[key].by_kind[row.kind] = row.bytes
    result = [
        VolumeRow(r.username, r.tenant, r.day, sum(r.by_kind.values()), r.by_kind)
        for r in grouped.values()
    ]
    result.sort(key=lambda r: r.total, reverse=True)
    return result[:limit]


def day_total(db_url: str, username: str, day: str | None = None) -> int:
    """Bytes ``username``'s servers sent to the browser on ``day`` (today), as flushed."""
    with session_scope(db_url) as session:
        stored = session.scalar(
            select(func.coalesce(func.sum(OutputVolume.bytes), 0)).where(
                OutputVolume.username == username, OutputVolume.day == (day or today())
            )
        )
    return int(stored or 0)
