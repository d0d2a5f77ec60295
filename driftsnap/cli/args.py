"""What several commands parse alike: value types, shared flags, an authority, a week, and the
help formatter that ends every option's help with its default."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from driftsnap import calendar, config, protocol
from driftsnap.chain import rpc
from driftsnap.errors import ConfigError, InputError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

WEEK = "YYYY-Www"


@dataclass(frozen=True, slots=True)
class Setting:
    """Where a flag's value comes from when it is not given: fields of :class:`config.Settings`
    (``DRIFTSNAP_<FIELD>`` in the environment, which main() reads once the flags are parsed)."""

    fields: tuple[str, ...]
    unset: str | None = None  # the default while no variable is set, if not the field's own
    show: Callable[[config.Settings], str] | None = None  # the value as --help prints it

    @property
    def variables(self) -> str:
        """The environment variables, as the help names them."""
        return " and ".join(f"DRIFTSNAP_{f.upper()}" for f in self.fields)

    def describe(self, settings: config.Settings | None) -> str:
        """The effective default under ``settings`` (``None``: the environment does not
        validate; main() says why when the command runs) and the variables that set it."""
        given = settings is not None and any(f in settings.model_fields_set for f in self.fields)
        if not given and self.unset is not None:
            return f"{self.unset}; env {self.variables}"
        current = settings if given and settings is not None else config.Settings.model_construct()
        value = self.show(current) if self.show else show(getattr(current, self.fields[0]))
        return f"{value}, from {self.variables}" if given else f"{value}; env {self.variables}"


def from_setting(
    action: argparse.Action,
    *fields: str,
    unset: str | None = None,
    show: Callable[[config.Settings], str] | None = None,
) -> argparse.Action:
    """Mark ``action`` (a flag whose argparse default is ``None``, so that the environment
    applies) as falling back to the settings ``fields``: its help shows their effective value."""
    action.setting = Setting(fields, unset, show)  # type: ignore[attr-defined]  # read below
    return action


def show(value: object) -> str:
    """A setting's value as --help prints it: durations in s (or ms), URLs without secrets."""
    if isinstance(value, SecretStr):
        # An RPC URL may carry an API key (in its path, query or user info): host and port only.
        return rpc.redact(value.get_secret_value())
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        return f"{seconds:g}s" if seconds == int(seconds) else f"{seconds * 1000:g}ms"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple | list):
        return ",".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs laid out as written; every option that has a default ends its
    help with it: argparse's (``(default: 8899)``) or, for a flag backed by a setting, the
    effective value and the variable (``(default: 60s; env DRIFTSNAP_CADENCE)``). Flags
    without a value (``--once``) and empty defaults say nothing."""

    _settings: config.Settings | None
    _loaded = False

    def _environment(self) -> config.Settings | None:
        if not self._loaded:  # once per help text, and only for one that is printed
            try:
                self._settings = config.load_settings()
            except ConfigError:
                self._settings = None
            self._loaded = True
        return self._settings

    # The hook argparse.ArgumentDefaultsHelpFormatter overrides too; the text it returns is
    # %-expanded with the action's attributes, hence %% for a literal percent sign.
    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        if not text or text == argparse.SUPPRESS or not action.option_strings:
            return text
        setting: Setting | None = getattr(action, "setting", None)
        if setting is not None:
            described = setting.describe(self._environment()).replace("%", "%%")
            return f"{text} (default: {described})"
        if "%(default)" in text or action.nargs == 0:
            return text
        if action.default is None or action.default in (argparse.SUPPRESS, []):
            return text
        return f"{text} (default: %(default)s)"


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
        formatter_class=HelpFormatter,
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
    p.add_argument("--format", choices=list(choices), default=choices[0], help="output format")


def add_reader(p: argparse.ArgumentParser) -> None:
    """The flags of every command that reads the chain (mapped onto Settings in main())."""
    from_setting(
        p.add_argument("--rpc-url", metavar="URL", help="Solana JSON-RPC endpoint"), "rpc_url"
    )
    from_setting(
        p.add_argument(
            "--market",
            dest="markets",
            action="append",
            metavar="NAME|INDEX",
            help="a perp market, repeatable",
        ),
        "markets",
        unset="those with a pool in the program",
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
