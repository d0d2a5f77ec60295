"""What several commands parse alike: value types, shared flags, an authority, a week."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from driftsnap import calendar, protocol
from driftsnap.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Sequence

WEEK = "YYYY-Www"


def command(
    sub: Any, name: str, *, summary: str, description: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    """A subcommand of ``sub`` (argparse's subparsers action): ``summary`` is its line in the
    parent's ``--help``, ``description`` and ``epilog`` its own help, laid out as written."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def share(text: str) -> float:
    """An argparse type: a share from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a share from 0 to 1, e.g. 0.95 (got {text!r})")
    return value


def positive(text: str) -> int:
    """An argparse type: a positive integer."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {text!r})")
    return value


def add_format(p: argparse.ArgumentParser, choices: Sequence[str] = ("table", "json")) -> None:
    """``--format``: how results are printed (the first choice is the default)."""
    p.add_argument("--format", choices=list(choices), default=choices[0])


def add_reader(p: argparse.ArgumentParser) -> None:
    """The flags of every command that reads the chain (mapped onto Settings in main())."""
    p.add_argument("--rpc-url", metavar="URL", help="Solana JSON-RPC endpoint (DRIFTSNAP_RPC_URL)")
    p.add_argument(
        "--market",
        dest="markets",
        action="append",
        metavar="NAME|INDEX",
        help="a perp market (repeatable; default: those with a pool in the program)",
    )


def authority(text: str) -> str:
    """``text`` stripped, if it is a base58 public key (a wallet); :class:`InputError` if not."""
    try:
        return protocol.pubkey(text.strip())
    except ValueError:
        raise InputError(
            f"not a base58 public key: {text!r} (an authority is the wallet address that owns "
            "the Drift User accounts, 32-44 base58 characters)"
        ) from None


def week(text: str | None, *, default: calendar.Week | None = None) -> calendar.Week | None:
    """The ``--week`` given, or ``default``."""
    return calendar.Week.parse(text) if text else default


def utcnow() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)
