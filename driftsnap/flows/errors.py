"""What the flows refuse, under :class:`driftsnap.errors.DriftsnapError` (exit 1)::

DriftsnapError
├── StoreError
│   └── IntegrityError
│       └── ScheduleError       (tick) a week this daemon cannot sample: its cadence is
│                               another, or its committed seed is not on this machine
└── CloseError                  (close) the week cannot be closed as asked; the message
    │                           says what to do
    ├── WeekNotEndedError       the week is still running: it cannot be forced
    ├── CloseRefusedError       preconditions not met; --force --reason TEXT overrides them
    └── NotClosedError          verify-week of a week that was never closed
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from driftsnap.errors import DriftsnapError
from driftsnap.store.errors import IntegrityError

if TYPE_CHECKING:
    from driftsnap.calendar import Week


class ScheduleError(IntegrityError):
    """A week the daemon cannot sample: retrying will not help, so the daemon stops."""


class CloseError(DriftsnapError):
    """The week cannot be closed as asked (exit 1); the message says what to do."""


class WeekNotEndedError(CloseError):
    """The week is still running (or in the future)."""


class CloseRefusedError(CloseError):
    """Preconditions are not met; ``--force --reason TEXT`` overrides them."""

    def __init__(self, week: Week, reasons: list[str]) -> None:
        """Refuse ``week`` for ``reasons``, each a line saying what to do."""
        self.reasons = reasons
        lines = "; ".join(reasons)
        super().__init__(
            f"week {week} cannot be closed: {lines} (fix these, or close anyway with "
            f"--force --reason TEXT, which is stored with the result)"
        )


class NotClosedError(CloseError):
    """verify-week of a week that has no stored close."""
