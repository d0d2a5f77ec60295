"""Every error driftsnap raises on purpose, in one hierarchy.

    DriftsnapError                 root: the CLI turns any of these into one line and an exit code
    ├── ConfigError                bad settings or program file; names the offending key
    ├── InputError                 a book or other user-supplied file that cannot be used
    ├── ScoringError               inputs that are well-formed but cannot be scored together
    │                              (a book of another market, an unknown method, ...)
    ├── SamplingError              (sampling) a seed or cadence the schedule cannot use
    ├── ChainError                 (chain.errors) reading the chain: RPC, accounts, markets
    ├── StoreError                 (store.errors) Postgres: connection, schema, locks
    └── CloseError                 (closing) a week that cannot be closed or verified as asked

Each layer defines its own subclasses in its own package, so a caller can catch
``DriftsnapError`` and know that anything else is a bug.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pydantic import ValidationError


class DriftsnapError(Exception):
    """Root of every error driftsnap raises deliberately."""

    exit_code: int = 1


class ConfigError(DriftsnapError):
    """Settings or program parameters that are missing, malformed or inconsistent."""

    exit_code = 2


class InputError(DriftsnapError):
    """A user-supplied input file (e.g. a book) that cannot be read or validated."""

    exit_code = 2


class ScoringError(DriftsnapError):
    """Well-formed inputs that the scoring rules cannot combine."""

    exit_code = 2


def describe(exc: ValidationError, *, names: Mapping[str, str] | None = None) -> str:
    """One line for pydantic's first error: ``orders[3].size: must be greater than 0 (got -5)``.

    ``names`` renames the first path element (e.g. a settings field to its environment variable).
    """
    err = exc.errors(include_url=False)[0]
    path = ""
    for i, part in enumerate(err["loc"]):
        name = names[str(part)] if i == 0 and names and str(part) in names else part
        path += f"[{name}]" if isinstance(name, int) else (f".{name}" if path else str(name))
    kind, message = err["type"], err["msg"]
    got = repr(err.get("input"))
    got = got if len(got) <= 60 else got[:57] + "..."
    if kind == "missing":
        message = "missing required field"
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    else:
        message = f"{message[0].lower()}{message[1:]} (got {got})"
    return f"{path}: {message}" if path else message
