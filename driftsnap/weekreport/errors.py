"""What can stop a week report, under :class:`driftsnap.errors.InputError` (exit 2)::

    DriftsnapError
    └── InputError
        └── ReportError            the report cannot be made as asked: a week with no data, a week
            │                      not closed (without --provisional), an unwritable --out
            └── MakerNotFoundError the --maker authority has no orders and no volume that week

The CLI prints the message as one line and exits 2.
"""

from __future__ import annotations

from driftsnap.errors import InputError


class ReportError(InputError):
    """The report cannot be made as asked; the message says what to do instead."""


class MakerNotFoundError(ReportError):
    """The --maker authority has no orders and no maker volume in the week."""
