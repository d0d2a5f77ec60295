"""``fills check`` and ``fills self-matches``: what is stored of the maker fills.

``fills check`` exits 1 for every way the stored fills may not be the chain's: a fill record id
missing (between stored ones, at the newest end against the market's counter, or in a week with
no fill stored while the market's counter moved), an id with two different records, a
transaction not read (an error for it, or logs cut without a marker) and a transaction whose
fills were rejected (logs that contradict its message). Each is named on stderr.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from driftsnap import calendar, parts, protocol
from driftsnap.cli import args, output
from driftsnap.flows import fills
from driftsnap.scoring import payouts
from driftsnap.store import database
from driftsnap.store import fills as stored

if TYPE_CHECKING:
    import argparse

    import sqlalchemy as sa

    from driftsnap import config

SELF_MATCH_COLUMNS = (
    "signature",
    "market",
    "fill_record_id",
    "slot",
    "block_time",
    "authority",
    "maker",
    "taker",
    "quote_usdc",
)


def add(sub: Any) -> None:
    """Declare ``fills`` (``check``, ``self-matches``)."""
    p = args.command(
        sub,
        "fills",
        summary="maker fills: gaps in fill record ids, the finalized pass, self-matches",
        description=(
            "The Volume Reward is split by maker volume from the chain's fill records, which the\n"
            "daemon ingests exactly once. These commands check what is stored."
        ),
    )
    actions = p.add_subparsers(dest="fills_command", metavar="ACTION", required=True)
    q = args.command(
        actions,
        "check",
        summary="report gaps in each market's fill record ids per week (exit 1 if any)",
        description=(
            "fill_record_id is contiguous per market: a missing id is a fill not ingested.\n"
            "With an RPC URL the markets' next_fill_record_id is read from the chain too, so\n"
            "fills missing at the newest end are found. A week with gaps cannot be closed\n"
            "without --force and a reason."
        ),
        epilog=(
            "examples:\n  driftsnap fills check --week 2026-W47\n"
            "  driftsnap fills check --rpc-url $RPC"
        ),
    )
    q.add_argument("--week", metavar=args.WEEK, help="one ISO week (default: every week stored)")
    args.from_setting(
        q.add_argument("--rpc-url", metavar="URL", help="also compare with the chain's counters"),
        "rpc_url",
        unset="none, no comparison",
    )
    q.add_argument(
        "--verify-rpc-url",
        metavar="URL2",
        help="a second provider: read the stored transactions of the week(s) again from it and "
        "report every fill it serves otherwise, and every stored id beyond its counters",
    )
    q.add_argument(
        "--sample",
        type=args.positive,
        metavar="N",
        help="with --verify-rpc-url: at most N transactions a week, drawn from the week's name "
        "(default: every one)",
    )
    args.add_format(q)
    q.set_defaults(handler=check)
    q = args.command(
        actions,
        "finalize",
        summary="run the finalized pass of one week now (the daemon does it on its own)",
        description=(
            "List the Drift program's signatures at `finalized` and mark the week's fills seen\n"
            "there as final; the week is final once the pass has reached past its end and no\n"
            "fill of it is left unconfirmed. close-week refuses a week that is not. The running\n"
            "daemon does this by itself after a week ends; this runs it now, as the writer.\n"
            "Exit 0 when the week is final, 1 when not yet."
        ),
        epilog="examples:\n  driftsnap fills finalize --week 2026-W47 --rpc-url $RPC",
    )
    q.add_argument("--week", metavar=args.WEEK, required=True, help="ISO week, e.g. 2026-W47")
    args.from_setting(q.add_argument("--rpc-url", metavar="URL", help="the node"), "rpc_url")
    q.set_defaults(handler=finalize)
    q = args.command(
        actions,
        "self-matches",
        summary=(
            "list a week's self-matched fills (maker and taker share a wallet), with signatures"
        ),
        description="Fills whose maker and taker have one authority: excluded from volume.",
        epilog="examples:\n  driftsnap fills self-matches --week 2026-W47 --format csv",
    )
    q.add_argument("--week", metavar=args.WEEK, required=True, help="ISO week, e.g. 2026-W47")
    args.add_format(q, ("table", "json", "csv"))
    q.set_defaults(handler=self_matches)


def check(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap fills check``: exit 1 when a fill record is missing, has two records, or a
    transaction was not read or was rejected."""
    w = args.week(ns.week)
    # Bad URLs are bad configuration: refused (exit 2) before the database is opened.
    if settings.rpc_url is not None:
        parts.rpc_settings(settings)
    if ns.verify_rpc_url is not None:
        parts.rpc_settings(_second(settings, ns))
    with parts.open_store(settings) as db:
        if settings.rpc_url is not None:  # the chain's counters also find fills missing at the end
            checks = asyncio.run(_check_with_chain(settings, db.engine, w))
        else:
            with database.connect(db.engine) as conn:
                weeks = [w] if w is not None else stored.weeks_to_check(conn)
                checks = [
                    c
                    for x in weeks
                    for c in stored.check(conn, x, program=protocol.DRIFT_PROGRAM_ID)
                ]
        with database.connect(db.engine) as conn:
            weeks = [w] if w is not None else stored.weeks_to_check(conn)
            found = _anomalies(conn, weeks)
    conflicting = [
        sorted(
            {
                x.fill_record_id
                for x in found.conflicts
                if (x.market_type, x.market_index) == (c.market_type, c.market_index)
                and c.first_id <= x.fill_record_id <= c.last_id
            }
        )
        for c in checks
    ]
    rows = [
        {
            "week": c.week,
            "market": c.market or f"{c.market_type}-{c.market_index}",
            "fills": c.fills,
            "first_id": c.first_id,
            "last_id": c.last_id,
            "missing": c.missing,
            "gaps": [[g.first, g.last] for g in c.gaps],
            "tail_checked": c.tail_checked,
            "conflicts": ids,
        }
        for c, ids in zip(checks, conflicting, strict=True)
    ]
    if ns.format == "json":
        output.print_json(rows)
    elif rows:
        gaps = [", ".join(f"{g.first}..{g.last}" for g in c.gaps) or "-" for c in checks]
        output.print_rows(
            "Fill record ids per market and week",
            [
                {**r, "gaps": text, "conflicts": ", ".join(map(str, ids)) or "-"}
                for r, text, ids in zip(rows, gaps, conflicting, strict=True)
            ],
        )
    elif not found.any:
        print("no fills stored" + (f" for week {w}" if w else ""))
    missing = sum(c.missing for c in checks)
    if missing:
        output.line(
            f"{missing} fill record(s) missing: that week cannot close without --force", err=True
        )
    for line in found.lines():
        output.line(line, err=True)
    disagree = 0
    if ns.verify_rpc_url is not None:
        for cross in asyncio.run(_cross_check(settings, ns, weeks)):
            disagree += len(cross.disagreements)
            for d in cross.disagreements:
                output.line(d.line(), err=True)
            output.line(
                f"week {cross.week}: {cross.transactions} of {cross.of_transactions} "
                f"transaction(s) ({cross.fills} fills) read again from the second provider, "
                f"{len(cross.disagreements)} disagreement(s)",
                err=True,
            )
    return 1 if missing or found.any or disagree else 0


def finalize(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap fills finalize --week W``: 0 when the week's fills are final, else 1."""
    w = calendar.Week.parse(ns.week)
    parts.rpc_settings(settings)  # no URL, or a bad one: exit 2 before the database opens
    with parts.open_store(settings, role="writer") as db:
        report = asyncio.run(_finalize(settings, db, w))
    f = report.finality
    output.line(
        f"week {w}: {report.signatures} signature(s) listed at finalized in {report.pages} "
        f"page(s), {report.marked} fill(s) newly final; {f.fills} fill(s) in the week, "
        f"{f.unconfirmed} unconfirmed; " + ("final" if f.finalized else "not final yet")
    )
    if not f.finalized:
        why = (
            "the finalized chain has not reached past the week's end yet"
            if not f.covered
            else f"{f.unconfirmed} fill(s) never seen at finalized (a dropped fork?): "
            + ", ".join(f.unconfirmed_signatures[:5])
        )
        output.line(f"not final: {why}", err=True)
    return 0 if f.finalized else 1


async def _finalize(
    settings: config.Settings, db: database.Database, w: calendar.Week
) -> fills.FinalizeReport:
    async with parts.rpc_client(settings) as client:
        return await fills.finalize(client, db.engine, w)


def _second(settings: config.Settings, ns: argparse.Namespace) -> config.Settings:
    """The settings of the second provider (``--verify-rpc-url``): the same but for the URL."""
    return settings.model_copy(update={"rpc_url": SecretStr(ns.verify_rpc_url)})


async def _cross_check(
    settings: config.Settings, ns: argparse.Namespace, weeks: list[calendar.Week]
) -> list[fills.CrossCheck]:
    with parts.open_store(settings) as db:
        async with parts.rpc_client(_second(settings, ns)) as client:
            return [
                await fills.cross_check_week(client, db.engine, w, sample=ns.sample) for w in weeks
            ]


@dataclasses.dataclass(frozen=True, slots=True)
class _Anomalies:
    """What the ingest stored beside the fills of some weeks: each one makes the check fail."""

    conflicts: list[stored.Conflict]
    unread: list[stored.Unread]
    rejected: list[stored.Rejected]

    @property
    def any(self) -> bool:
        return bool(self.conflicts or self.unread or self.rejected)

    def lines(self) -> list[str]:
        """One line each, naming the fill id or the transaction."""
        out = [
            f"fill {c.market_type}-{c.market_index} #{c.fill_record_id} has two records: "
            f"{c.stored_signature}#{c.stored_event_index} (stored) and "
            f"{c.other.signature}#{c.other.event_index}; its week cannot close without "
            "--force --reason"
            for c in self.conflicts
        ]
        out += [
            f"transaction {u.signature} (slot {u.slot}) was not read ({u.kind}: {u.reason}; "
            + (
                f"unreadable after {u.attempts} attempts)"
                if u.unreadable
                else f"attempt {u.attempts}, retrying)"
            )
            for u in self.unread
        ]
        out += [
            f"transaction {r.signature} (slot {r.slot}) rejected: {r.reason} "
            f"({r.fills_claimed} fill(s) claimed, none stored)"
            for r in self.rejected
        ]
        return out


def _anomalies(conn: sa.Connection, weeks: list[calendar.Week]) -> _Anomalies:
    conflicts: dict[tuple[str, int, int, str, int], stored.Conflict] = {}
    unread: dict[str, stored.Unread] = {}
    rejected: dict[str, stored.Rejected] = {}
    for x in weeks:
        for c in stored.conflicts(conn, x):
            key = (c.market_type, c.market_index, c.fill_record_id)
            conflicts[(*key, c.other.signature, c.other.event_index)] = c
        unread.update((u.signature, u) for u in stored.unread_of_week(conn, x))
        rejected.update((r.signature, r) for r in stored.rejected(conn, x))
    return _Anomalies(list(conflicts.values()), list(unread.values()), list(rejected.values()))


async def _check_with_chain(
    settings: config.Settings, engine: sa.Engine, w: calendar.Week | None
) -> list[stored.MarketCheck]:
    async with parts.rpc_client(settings) as client:
        return await fills.check(client, engine, w)


def self_matches(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap fills self-matches --week W``."""
    w = calendar.Week.parse(ns.week)
    with parts.open_store(settings) as db, database.connect(db.engine) as conn:
        matches = stored.self_matches(conn, w)
    rows = [
        {
            "signature": m.signature,
            "market": f"{m.market_type}-{m.market_index}",
            "fill_record_id": m.fill_record_id,
            "slot": m.slot,
            "block_time": m.block_time.isoformat(),
            "authority": m.authority,
            "maker": m.maker,
            "taker": m.taker,
            "quote_usdc": payouts.usdc(m.quote_filled),
        }
        for m in matches
    ]
    if ns.format == "json":
        output.print_json({"week": str(w), "self_matches": rows})
    elif ns.format == "csv":
        output.print_csv(rows, SELF_MATCH_COLUMNS)
    elif rows:
        output.print_rows(f"Self-matches, week {w} (excluded from volume)", rows)
    else:
        print(f"no self-matches in week {w}")
    return 0
