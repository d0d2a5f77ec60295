"""Configuration: one frozen :class:`Settings` and the program parameters.

``Settings`` is read once, in the CLI, from ``DRIFTSNAP_*`` environment variables and command-line
flags, and passed down; nothing else reads ``os.environ``.

The **program** (pools, method, pauses, participants, forfeits) lives in a versioned TOML file
shipped with the package (``driftsnap/programs/drift-maker-incentive.toml``). A user file given
with ``--program FILE`` overrides it key by key: every top-level key the user file sets replaces
the shipped key (arrays of tables whole). Any mistake gives one :class:`ConfigError` line naming
the file and the key, e.g. ``program.toml: score_pool[2].usdc: must be >= 0 (got '-5')``.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
import unicodedata
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from driftsnap import calendar, errors, protocol
from driftsnap.errors import ConfigError, InputError
from driftsnap.scoring import methods as methods_mod
from driftsnap.scoring import payouts, settlement

PROGRAM_FORMAT = 1
SHIPPED_PROGRAM = "drift-maker-incentive.toml"

LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def _duration(value: Any) -> Any:
    """``60``, ``"60s"``, ``"5m"``, ``"1h"``, ``"250ms"`` (or a timedelta) → timedelta."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    return value  # let pydantic say what is wrong (it also reads ISO 8601 'PT1M')


def _names(value: Any) -> Any:
    """``"SOL-PERP,BTC-PERP"`` from the environment, or a list from flags → a tuple."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
Names = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_names)]


# The share of a paid market's scheduled ticks that must be ok for a week to close unforced.
DEFAULT_CLOSE_MIN_COVERAGE = 0.95
NO_DETAIL = "none"  # DRIFTSNAP_DETAIL_METHODS=none: no method's per-maker detail is stored


class Settings(BaseSettings):
    """Process settings. Environment: ``DRIFTSNAP_<FIELD>``; CLI flags win over the environment.

    Units are in the names or the types. Secrets are ``SecretStr``: they print as ``**********``
    and only the code that connects reads them.
    """

    model_config = SettingsConfigDict(env_prefix="DRIFTSNAP_", frozen=True, extra="forbid")

    program_file: Path | None = None
    method: str | None = None
    # None: an embedded PostgreSQL with its data in the user data directory.
    database_url: SecretStr | None = None
    # The least-privilege roles' own URLs (driftsnap.store.roles): `run` connects as the writer,
    # close-week, forfeit and makers add|remove as the closer, read-only commands as the reader;
    # each falls back to database_url (the owner, which runs migrate). All None: the embedded
    # server, whose commands connect as these roles by default names.
    writer_database_url: SecretStr | None = None
    closer_database_url: SecretStr | None = None
    reader_database_url: SecretStr | None = None
    # None: the user data directory (embedded server only).
    data_dir: Path | None = None
    log_level: LogLevel = "info"
    log_format: LogFormat = "auto"

    # The chain. The URL may carry an API key: it is a secret.
    rpc_url: SecretStr | None = None
    rpc_timeout_s: float = Field(default=30.0, gt=0)
    rpc_max_retries: int = Field(default=4, ge=0)
    # Requests per second: everything but getProgramAccounts, and getProgramAccounts.
    rpc_rps: int = Field(default=10, ge=1)
    rpc_gpa_rps: int = Field(default=2, ge=1)
    # The largest RPC reply read, in MB (2**20 bytes): a longer one is refused unread past it.
    # 256: four times a mainnet-sized getProgramAccounts of every User with an open order.
    rpc_max_body_mb: int = Field(default=256, ge=1, le=1 << 20)
    # Markets by name or index; empty: every market with a score pool in the program.
    markets: Names = ()
    max_slot_gap: int = Field(default=25, ge=0)
    max_skipped_share: float = Field(default=0.01, ge=0, le=1)
    # A book that cannot be right is a rejected tick: a market with at least
    # book_drop_min_orders orders at the last snapshot that lost more than this share of them
    # at once (a node that dropped accounts; 1: never). A market that really emptied costs one
    # tick: the next is judged against it.
    max_book_drop: float = Field(default=0.9, ge=0, le=1)
    book_drop_min_orders: int = Field(default=50, ge=1)

    # The daemon.
    cadence: Duration = timedelta(seconds=60)
    # Scoring methods computed and stored each tick; empty: every preset.
    methods: Names = ()
    # Methods whose per-maker detail (every maker's score and the sides it quoted) each tick
    # stores, for the report and psql (tick_scores, tick_maker_sides); empty: the program's method
    # and the report's uptime method (drift-2023-08); "none": no method's (a 1 s cadence at
    # mainnet scale: the report then has no per-maker series). The others store their totals and
    # week accumulators; their per-maker detail is recomputed from the stored book when asked for.
    detail_methods: Names = ()
    max_consecutive_failures: int = Field(default=10, ge=1)
    # Maker fills (the Volume Reward): polled from the chain by the writer daemon.
    fills: bool = True
    fills_poll: Duration = timedelta(seconds=15)
    # How far back the very first poll of a database looks: a little over a week of slots
    # (~0.4 s each), so the current week's volume is complete without walking all history.
    fills_backfill_slots: int = Field(default=1_600_000, ge=1)
    # The week close: the share of a paid market's scheduled ticks that must be ok (0..1);
    # `close-week --min-coverage` overrides it for one run.
    close_min_coverage: float = Field(default=DEFAULT_CLOSE_MIN_COVERAGE, ge=0, le=1)
    # The daemon refuses to run as root (uid 0) unless this says the operator means it.
    allow_root: bool = False
    metrics_host: str = "127.0.0.1"
    # 0 turns the metrics and health endpoint off.
    metrics_port: int = Field(default=9108, ge=0, le=65535)
    # Where the daemon's time comes from: the wall clock, or the chain's block time (getSlot and
    # getBlockTime), so a simulated chain running fast (driftsnap simnet --fast) runs a program
    # week in minutes.
    clock: Literal["wall", "chain"] = "wall"

    @field_validator("methods", "detail_methods")
    @classmethod
    def _known_methods(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if info.field_name == "detail_methods" and value == (NO_DETAIL,):
            return value
        unknown = [m for m in value if m not in methods_mod.PRESETS]
        if unknown:
            known = ", ".join(sorted(methods_mod.PRESETS))
            raise ValueError(f"unknown scoring method {unknown[0]!r} (known: {known})")
        return value

    @field_validator("cadence")
    @classmethod
    def _cadence_divides_the_week(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1) or timedelta(days=7) % value:
            raise ValueError(
                f"cadence must be at least 1 s and divide the week evenly (got {value})"
            )
        return value

    def method_presets(self) -> tuple[methods_mod.Method, ...]:
        """The methods each tick computes: the configured ones, else every preset."""
        names = self.methods or tuple(methods_mod.PRESETS)
        return tuple(methods_mod.PRESETS[n] for n in names)

    def detail_presets(self, program_method: str) -> tuple[methods_mod.Method, ...]:
        """The computed methods whose per-maker detail each tick stores (see detail_methods)."""
        if self.detail_methods == (NO_DETAIL,):
            return ()
        names = self.detail_methods or (program_method, methods_mod.UPTIME_METHOD.name)
        return tuple(m for m in self.method_presets() if m.name in names)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment with non-``None`` CLI ``overrides`` applied on top."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        names = {
            f: (f"--{f.replace('_', '-')}" if f in given else f"DRIFTSNAP_{f.upper()}")
            for f in Settings.model_fields
        }
        raise ConfigError(f"config error: {errors.describe(exc, names=names)}") from None


# ---------------------------------------------------------------------------- program file

# A program file is a page of TOML (the shipped one is 3 KB): a megabyte is far beyond any real
# one, and refusing more keeps a mistaken `--program /dev/zero` or a huge file from eating memory.
MAX_PROGRAM_BYTES = 1 << 20
# A pool beyond a trillion USDC is a typo (or `1e400`), not a program; the bound also keeps every
# micro-USDC amount exact in Decimal's 28 digits and far inside Postgres's bigint.
MAX_POOL_USDC = 10**12
# Operator text that is stored and printed back (maker names, reasons): bounded, and no
# character that steers a terminal. Unicode categories Cc (C0/C1 controls: ESC, BEL, CR, ...),
# Cf (format: bidi overrides U+202E, zero-width characters), Cs (lone surrogates from undecodable
# arguments), Zl/Zp (line and paragraph separators).
MAX_NAME_CHARS = 64
MAX_REASON_CHARS = 500
CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def control_char(text: str) -> str | None:
    """The first character of ``text`` that is a control character (see above), or None."""
    return next((c for c in text if unicodedata.category(c) in CONTROL_CATEGORIES), None)


def text_problem(text: str, *, limit: int) -> str | None:
    """Why ``text`` cannot be kept as operator text (too long, a control character), or None."""
    if len(text) > limit:
        return f"at most {limit} characters (got {len(text)})"
    if (bad := control_char(text)) is not None:
        return f"must not contain control characters (got {bad!r} in {text[:40]!r})"
    return None


def _plain(limit: int) -> Any:
    def check(value: str) -> str:
        if (problem := text_problem(value, limit=limit)) is not None:
            raise ValueError(problem)
        return value

    return AfterValidator(check)


# Program strings: one line each, names short, reasons a paragraph at most.
Label = Annotated[str, Field(min_length=1), _plain(MAX_NAME_CHARS)]
Reason = Annotated[str, Field(min_length=1), _plain(MAX_REASON_CHARS)]
Line = Annotated[str, _plain(MAX_REASON_CHARS)]


def _usdc(value: Any) -> int:
    """Micro-USDC from a TOML integer or a decimal string with at most 6 decimals."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"must be an integer or a decimal string of USDC (got {value!r})")
    got = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not a USDC amount: {got}") from None
    if not amount.is_finite() or amount > MAX_POOL_USDC:
        raise ValueError(f"must be a finite amount of at most {MAX_POOL_USDC:_} USDC (got {got})")
    micro = amount * payouts.MICRO_USDC
    if micro != micro.to_integral_value() or amount < 0:
        raise ValueError(f"must be >= 0 with at most 6 decimals (got {got})")
    return int(micro)


MicroUsdc = Annotated[int, BeforeValidator(_usdc)]


def _week(value: Any) -> calendar.Week:
    if isinstance(value, calendar.Week):
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be a week like '2026-W47' (got {value!r})")
    try:
        return calendar.Week.parse(value)
    except InputError as exc:
        raise ValueError(str(exc)) from None


WeekField = Annotated[calendar.Week, BeforeValidator(_week)]


def _monday(value: date) -> date:
    if value.weekday() != 0:
        raise ValueError(f"{value} is not a Monday (program weeks start Monday 00:00 UTC)")
    return value


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class ScorePool(_Entry):
    """A ``[[score_pool]]`` entry: a market's weekly pool (micro-USDC) from ``effective_from``."""

    market: Label
    usdc: MicroUsdc
    effective_from: date

    _monday = field_validator("effective_from")(_monday)


class VolumePool(_Entry):
    """A ``[[volume_pool]]`` entry: the weekly volume pool (micro-USDC) from ``effective_from``."""

    usdc: MicroUsdc
    effective_from: date

    _monday = field_validator("effective_from")(_monday)


class Pause(_Entry):
    """A ``[[paused]]`` entry: a week that pays nothing, and why."""

    week: WeekField
    reason: Reason


class Participant(_Entry):
    """A ``[[participant]]`` entry: an authority registered from ``from_week`` to ``until_week``."""

    authority: str
    from_week: WeekField | None = None
    until_week: WeekField | None = None

    _authority = field_validator("authority")(protocol.pubkey)

    def active(self, w: calendar.Week) -> bool:
        """Whether ``w`` falls in the registration (both ends inclusive, ``None`` unbounded)."""
        return (self.from_week is None or self.from_week <= w) and (
            self.until_week is None or w <= self.until_week
        )


class Forfeit(_Entry):
    """A ``[[forfeit]]`` entry: an authority whose rewards of ``weeks`` are forfeited, and why."""

    authority: str
    weeks: tuple[WeekField, ...] = Field(min_length=1)
    reason: Reason

    _authority = field_validator("authority")(protocol.pubkey)


class Program(_Entry):
    """The incentive program's parameters, validated."""

    format: Literal[1]
    name: Label
    revision: Label
    source: Line = ""
    method: str
    starts: date
    participants: Literal["all", "registered"]
    score_pool: tuple[ScorePool, ...] = ()
    volume_pool: tuple[VolumePool, ...] = ()
    paused: tuple[Pause, ...] = ()
    participant: tuple[Participant, ...] = ()
    forfeit: tuple[Forfeit, ...] = ()

    _starts = field_validator("starts")(_monday)

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in methods_mod.PRESETS:
            known = ", ".join(sorted(methods_mod.PRESETS))
            raise ValueError(f"unknown scoring method {value!r} (known: {known})")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Program:
        seen: set[tuple[str, date]] = set()
        for i, pool in enumerate(self.score_pool):
            if (pool.market, pool.effective_from) in seen:
                raise ValueError(
                    f"score_pool[{i}]: a second {pool.market} pool from {pool.effective_from}"
                )
            seen.add((pool.market, pool.effective_from))
        dates = [p.effective_from for p in self.volume_pool]
        if len(dates) != len(set(dates)):
            raise ValueError("volume_pool: two entries with the same effective_from")
        return self

    @property
    def digest(self) -> str:
        """sha256 of the program's canonical JSON: which program produced a result."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def markets(self) -> list[str]:
        """Markets the program has ever named, in file order."""
        return list(dict.fromkeys(p.market for p in self.score_pool))

    def score_pools(self, w: calendar.Week) -> dict[str, int]:
        """Score pool (micro-USDC) of each market in force for week ``w``."""
        pools: dict[str, int] = {}
        for market in self.markets():
            entries = [
                p for p in self.score_pool if p.market == market and p.effective_from <= w.monday
            ]
            if entries:
                pools[market] = max(entries, key=lambda p: p.effective_from).usdc
        return pools

    def paid_markets(self, w: calendar.Week) -> list[str | int]:
        """The markets paying a score pool in week ``w``: the ones sampled by default."""
        return [market for market, pool in self.score_pools(w).items() if pool > 0]

    def volume_pool_for(self, w: calendar.Week) -> int:
        """The volume pool (micro-USDC) in force for week ``w``; 0 before the first entry."""
        entries = [p for p in self.volume_pool if p.effective_from <= w.monday]
        return max(entries, key=lambda p: p.effective_from).usdc if entries else 0

    def terms(self, w: calendar.Week) -> settlement.WeekTerms:
        """Everything the program says about week ``w``."""
        if w.monday < self.starts:
            return settlement.WeekTerms(
                week=w,
                score_pools={},
                volume_pool=0,
                participants=settlement.Participants(registered=frozenset()),
                paused=True,
                pause_reason=f"before the program started ({self.starts})",
            )
        pause = next((p for p in self.paused if p.week == w), None)
        registered = (
            frozenset(p.authority for p in self.participant if p.active(w))
            if self.participants == "registered"
            else None
        )
        forfeited = frozenset(f.authority for f in self.forfeit if w in f.weeks)
        return settlement.WeekTerms(
            week=w,
            score_pools=self.score_pools(w),
            volume_pool=self.volume_pool_for(w),
            participants=settlement.Participants(registered=registered, forfeited=forfeited),
            paused=pause is not None,
            pause_reason=pause.reason if pause else "",
        )


def _read_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except RecursionError:
        # tomllib recurses once per nested array or inline table; a program nests four deep.
        raise ConfigError(f"{source}: not valid TOML (arrays or tables nested too deep)") from None
    except ValueError as exc:
        # TOMLDecodeError, and int()'s refusal of an integer of thousands of digits.
        raise ConfigError(f"{source}: not valid TOML ({str(exc)[:200]})") from None


def _read_program_file(path: Path) -> str:
    """The text of a user program file, at most :data:`MAX_PROGRAM_BYTES` of UTF-8."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_PROGRAM_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"program file {path}: {exc.strerror}") from None
    if len(raw) > MAX_PROGRAM_BYTES:
        raise ConfigError(
            f"program file {path}: larger than {MAX_PROGRAM_BYTES >> 20} MiB; not a program file"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"program file {path}: not UTF-8 text (byte {exc.start}); expected TOML"
        ) from None


def load_program(user_file: Path | None = None) -> Program:
    """The shipped program, overridden key by key by ``user_file`` when given."""
    shipped = resources.files("driftsnap.programs").joinpath(SHIPPED_PROGRAM).read_text()
    data = _read_toml(shipped, SHIPPED_PROGRAM)
    source = SHIPPED_PROGRAM
    if user_file is not None:
        override = _read_toml(_read_program_file(user_file), str(user_file))
        if "format" in override and override["format"] != PROGRAM_FORMAT:
            raise ConfigError(
                f"{user_file}: format: this driftsnap reads program format {PROGRAM_FORMAT}, "
                f"got {override['format']!r}"
            )
        data.update(override)
        source = str(user_file)
    try:
        return Program.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {errors.describe(exc)}") from None
