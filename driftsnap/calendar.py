"""The program calendar: a :class:`Week` runs Monday 00:00:00 UTC to the next Monday (exclusive).

A week is named by its ISO week, ``2026-W47``. Every room uses it: the scoring rules settle a
week, the store partitions by week, the daemon samples a week, the close closes one. A month, for
a forfeit, is the program weeks whose Monday falls in it (:func:`month_weeks`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from driftsnap.errors import InputError

_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True, slots=True, order=True)
class Week:
    """An ISO week, Monday 00:00 UTC to the next Monday 00:00 UTC."""

    year: int
    number: int

    def __post_init__(self) -> None:
        try:
            date.fromisocalendar(self.year, self.number, 1)
        except ValueError:
            raise InputError(f"no such ISO week: {self.year}-W{self.number:02d}") from None

    @classmethod
    def parse(cls, text: str) -> Week:
        """``"2026-W47"`` → the week; :class:`InputError` for anything else."""
        match = _WEEK.match(text.strip())
        if not match:
            raise InputError(f"week must look like 2026-W47, got {text!r}")
        return cls(int(match[1]), int(match[2]))

    @classmethod
    def containing(cls, moment: datetime | date) -> Week:
        """The week a moment (read in UTC) or a day falls in."""
        day = moment.astimezone(UTC).date() if isinstance(moment, datetime) else moment
        iso = day.isocalendar()
        return cls(iso.year, iso.week)

    @classmethod
    def last_completed(cls, now: datetime) -> Week:
        """The week before the one ``now`` falls in."""
        return cls.containing(now).previous()

    @property
    def monday(self) -> date:
        """The week's first day."""
        return date.fromisocalendar(self.year, self.number, 1)

    @property
    def start(self) -> datetime:
        """Monday 00:00 UTC."""
        return datetime.combine(self.monday, datetime.min.time(), tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The next Monday 00:00 UTC (exclusive)."""
        return self.start + timedelta(days=7)

    def previous(self) -> Week:
        """The week before."""
        return Week.containing(self.monday - timedelta(days=7))

    def next(self) -> Week:
        """The week after."""
        return Week.containing(self.monday + timedelta(days=7))

    def __str__(self) -> str:
        return f"{self.year}-W{self.number:02d}"


def month_weeks(text: str) -> list[Week]:
    """The program weeks of a month ``YYYY-MM``: those whose Monday falls in it."""
    match = _MONTH.match(text.strip())
    if not match or not 1 <= int(match[2]) <= 12:
        raise InputError(f"month must look like 2026-11, got {text!r}")
    first = date(int(match[1]), int(match[2]), 1)
    monday = first + timedelta(days=(7 - first.weekday()) % 7)
    out = []
    while monday.month == first.month:
        out.append(Week.containing(monday))
        monday += timedelta(days=7)
    return out
