"""Working days for review deadlines (R18, R20): weekends, holidays and make-up days.

Deadlines in the seed documents count working days (工作日) in China's time zone. A
working day is Monday to Friday, except the configured public holidays, plus the
configured make-up working days (调休: a Saturday or Sunday worked in exchange for a
holiday bridge). The State Council publishes both every year; the operator sets them
with ``c.Shuyu.holidays`` and ``c.Shuyu.extra_workdays`` (nothing is built in, so a
stale calendar cannot hide in the code).

A period of ``n`` working days starting at a moment ends at the close (24:00 China
time) of the ``n``-th working day after that moment's date: an application filed on a
Friday afternoon with 5 days is due at the end of the next Friday.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Final

#: China Standard Time (no daylight saving), in which working days are counted.
CHINA: Final = timezone(timedelta(hours=8), "CST")


def parse_dates(values: Iterable[str], what: str) -> frozenset[date]:
    """ISO dates (``2026-10-01``) from configuration; a ValueError names a bad one."""
    parsed = set()
    for value in values:
        try:
            parsed.add(date.fromisoformat(str(value).strip()))
        except ValueError:
            raise ValueError(f"{what}: {value!r} is not a date like 2026-10-01") from None
    return frozenset(parsed)


@dataclass(frozen=True)
class Calendar:
    """Which days count as working days."""

    holidays: frozenset[date] = frozenset()
    extra_workdays: frozenset[date] = frozenset()

    def is_workday(self, day: date) -> bool:
        """Monday to Friday and not a holiday, or a make-up working day."""
        if day in self.extra_workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays

    def deadline(self, start: datetime, days: int) -> datetime:
        """The end (UTC) of the ``days``-th working day after ``start``'s date in China."""
        if days < 1:
            raise ValueError("a deadline needs at least one working day")
        day = start.astimezone(CHINA).date()
        counted = 0
        while counted < days:
            day += timedelta(days=1)
            if self.is_workday(day):
                counted += 1
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=CHINA)
        return end.astimezone(UTC) - timedelta(microseconds=1)

    def workdays_between(self, start: datetime, end: datetime) -> int:
        """Working days after ``start``'s date up to and including ``end``'s date."""
        day, last = start.astimezone(CHINA).date(), end.astimezone(CHINA).date()
        count = 0
        while day < last:
            day += timedelta(days=1)
            count += self.is_workday(day)
        return count
