"""The makers the program pays and those it does not: registrations and forfeits.

An operator records them between releases (``driftsnap makers``, ``driftsnap forfeit``); the week
close adds them to the program file's ``[[participant]]`` and ``[[forfeit]]`` entries. A closed
week never changes: its close stored the terms it was computed with.

Names and reasons are printed back to people, so what is stored is bounded and plain: a name at
most :data:`config.MAX_NAME_CHARS` characters, a reason :data:`config.MAX_REASON_CHARS`, neither
with a control character (:func:`check_text`: refused rather than stored and cleaned later).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from driftsnap import calendar, config
from driftsnap.errors import InputError
from driftsnap.store import schema

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import date


@dataclass(frozen=True, slots=True)
class Participant:
    """A registered maker: its authority, a name, and the weeks it is registered for."""

    authority: str
    name: str
    from_week: calendar.Week | None
    until_week: calendar.Week | None

    def active(self, week: calendar.Week) -> bool:
        """Whether ``week`` falls in the registration (both ends inclusive, ``None`` unbounded)."""
        return (self.from_week is None or self.from_week <= week) and (
            self.until_week is None or week <= self.until_week
        )


def check_text(text: str, *, what: str, limit: int) -> str:
    """``text``, if it may be stored as operator text; one :class:`InputError` line if not."""
    if (problem := config.text_problem(text, limit=limit)) is not None:
        raise InputError(f"{what}: {problem}")
    return text


def check_name(name: str) -> str:
    """A maker's name (``--name``), checked by :func:`check_text`."""
    return check_text(name, what="--name", limit=config.MAX_NAME_CHARS)


def check_reason(reason: str) -> str:
    """A forfeit's or a forced close's reason (``--reason``), checked by :func:`check_text`."""
    return check_text(reason, what="--reason", limit=config.MAX_REASON_CHARS)


def _week(day: date | None) -> calendar.Week | None:
    return None if day is None else calendar.Week.containing(day)


def participants(conn: sa.Connection) -> list[Participant]:
    """Every registered maker, by authority."""
    t = schema.participants
    rows = conn.execute(
        sa.select(t.c.authority, t.c.name, t.c.from_week, t.c.until_week).order_by(t.c.authority)
    )
    return [Participant(a, n, _week(f), _week(u)) for a, n, f, u in rows]


def add_participant(
    conn: sa.Connection, authority: str, *, name: str, from_week: calendar.Week | None
) -> None:
    """Register ``authority`` from ``from_week`` on (again, if it was removed)."""
    t = schema.participants
    values: dict[str, Any] = {
        "name": check_name(name),
        "from_week": None if from_week is None else from_week.monday,
        "until_week": None,
    }
    conn.execute(
        pg.insert(t)
        .values(authority=authority, **values)
        .on_conflict_do_update(index_elements=[t.c.authority], set_=values)
    )


def remove_participant(conn: sa.Connection, authority: str, *, from_week: calendar.Week) -> bool:
    """End ``authority``'s registration before ``from_week``; False if it was not registered.

    A registration that would then cover no week at all is deleted.
    """
    t = schema.participants
    row = conn.execute(sa.select(t.c.from_week).where(t.c.authority == authority)).first()
    if row is None:
        return False
    if row.from_week is not None and row.from_week >= from_week.monday:
        conn.execute(sa.delete(t).where(t.c.authority == authority))
    else:
        conn.execute(
            sa.update(t)
            .where(t.c.authority == authority)
            .values(until_week=from_week.previous().monday)
        )
    return True


@dataclass(frozen=True, slots=True)
class Forfeit:
    """One forfeited week of an authority's rewards, and why."""

    authority: str
    week: calendar.Week
    reason: str


def add_forfeits(
    conn: sa.Connection, authority: str, weeks: Sequence[calendar.Week], *, reason: str
) -> None:
    """Forfeit ``authority``'s rewards of ``weeks`` (a week already forfeited keeps its reason)."""
    t = schema.forfeits
    check_reason(reason)
    conn.execute(
        pg.insert(t).on_conflict_do_nothing(index_elements=[t.c.authority, t.c.week_start]),
        [{"authority": authority, "week_start": w.monday, "reason": reason} for w in weeks],
    )


def forfeits(conn: sa.Connection, week: calendar.Week | None = None) -> list[Forfeit]:
    """The recorded forfeits (of one week, or all), by week then authority."""
    t = schema.forfeits
    query = sa.select(t.c.authority, t.c.week_start, t.c.reason)
    if week is not None:
        query = query.where(t.c.week_start == week.monday)
    rows = conn.execute(query.order_by(t.c.week_start, t.c.authority))
    return [Forfeit(a, calendar.Week.containing(d), r) for a, d, r in rows]
