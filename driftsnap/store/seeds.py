"""The weeks' secret sampling seeds: 0600 files beside the database, never in it.

A week's seed stays secret until its close (then :func:`driftsnap.store.weeks.reveal_seed`
stores it): it must not be in the database, whose views and tables makers may read, yet it must
survive restarts. So it is a file under ``<data dir>/seeds``, named by the week and its
commitment, written and fsynced before the commitment is stored, so that a committed seed always
has its file. A standby on another host needs a copy of the directory to take over mid-week.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from driftsnap import sampling
from driftsnap.store.errors import IntegrityError

if TYPE_CHECKING:
    from pathlib import Path

    from driftsnap.calendar import Week


@dataclass(frozen=True, slots=True)
class Seeds:
    """The seed files of one data directory."""

    directory: Path

    def path(self, week: Week, commitment: str) -> Path:
        """Where the seed of ``week`` committed as ``commitment`` is kept."""
        return self.directory / f"{week}-{commitment[:16]}.seed"

    def read(self, week: Week, commitment: str) -> bytes | None:
        """The secret seed of ``week`` committed as ``commitment``, if this machine holds it."""
        path = self.path(week, commitment)
        try:
            seed = bytes.fromhex(path.read_text().strip())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise IntegrityError(f"{path}: unreadable sampling seed ({exc})") from None
        if sampling.commitment(seed) != commitment:
            raise IntegrityError(f"{path}: the seed does not match the week's commitment")
        return seed

    def save(self, week: Week, seed: bytes) -> None:
        """Keep ``seed`` for ``week`` (0600, fsynced, replaced atomically)."""
        path = self.path(week, sampling.commitment(seed))
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, seed.hex().encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
