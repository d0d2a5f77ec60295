"""``makers add|remove|list`` and ``forfeit``: who the program pays, and who forfeits."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from driftsnap import calendar, config, parts
from driftsnap.cli import args, output
from driftsnap.errors import InputError
from driftsnap.flows import close
from driftsnap.store import database, makers

if TYPE_CHECKING:
    import argparse


def add(sub: Any) -> None:
    """Declare ``makers`` (``add``, ``remove``, ``list``) and ``forfeit``."""
    p = args.command(
        sub,
        "makers",
        summary="register makers (participants) in the database, remove or list them",
        description=(
            "Makers registered here join the program file's [[participant]] entries when the\n"
            'program says participants = "registered"; under participants = "all" every\n'
            "maker is paid and registrations are only recorded. A removal takes effect from a\n"
            "week on (default the current one); closed weeks never change."
        ),
        epilog=(
            "examples:\n"
            "  driftsnap makers add 7xKX...AsU --name 'Acme MM' --from-week 2026-W48\n"
            "  driftsnap makers remove 7xKX...AsU --from-week 2026-W50\n"
            "  driftsnap makers list --format json"
        ),
    )
    actions = p.add_subparsers(dest="makers_command", metavar="ACTION", required=True)
    q = args.command(
        actions, "add", summary="register an authority", description="Register a maker."
    )
    q.add_argument("authority", metavar="AUTHORITY", help="the maker's wallet (base58)")
    q.add_argument("--name", metavar="TEXT", help="a label for people")
    q.add_argument("--from-week", metavar=args.WEEK, help="first week (default: the current)")
    q.set_defaults(handler=register)
    q = args.command(
        actions, "remove", summary="end a registration", description="End a maker's registration."
    )
    q.add_argument("authority", metavar="AUTHORITY", help="the maker's wallet (base58)")
    q.add_argument(
        "--from-week", metavar=args.WEEK, help="first week without it (default: the current)"
    )
    q.set_defaults(handler=unregister)
    q = args.command(
        actions,
        "list",
        summary="registered makers and forfeits",
        description="List makers and forfeits.",
    )
    args.add_format(q)
    q.set_defaults(handler=list_makers)

    p = args.command(
        sub,
        "forfeit",
        summary="forfeit a maker's rewards for a week or a month (wash trading, self-matching)",
        description=(
            "Record that AUTHORITY forfeits its rewards for a week, or for every week whose\n"
            "Monday falls in a month (the program forfeits a month's incentives for wash\n"
            "trading). The week close gives its share to the other participants. Weeks already\n"
            "closed cannot change: the command refuses them."
        ),
        epilog=(
            "examples:\n"
            "  driftsnap forfeit 7xKX...AsU --week 2026-W47 --reason 'self-matching'\n"
            "  driftsnap forfeit 7xKX...AsU --month 2026-11 --reason 'wash trading'"
        ),
    )
    p.add_argument("authority", metavar="AUTHORITY", help="the maker's wallet (base58)")
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--week", metavar=args.WEEK, help="one ISO week")
    when.add_argument("--month", metavar="YYYY-MM", help="every week whose Monday is in it")
    p.add_argument("--reason", metavar="TEXT", required=True, help="why (stored)")
    p.set_defaults(handler=forfeit)


def _from_week(ns: argparse.Namespace) -> calendar.Week:
    current = calendar.Week.containing(args.utcnow())
    return args.week(ns.from_week) or current


def _note_all(settings: config.Settings) -> None:
    if config.load_program(settings.program_file).participants == "all":
        print(
            'note: the program pays every maker (participants = "all"); registrations '
            'restrict the participants only under participants = "registered"',
            file=sys.stderr,
        )


def register(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap makers add AUTHORITY``."""
    config.load_program(settings.program_file)  # a bad program file: refused before any write
    who = args.authority(ns.authority)
    name = makers.check_name(ns.name or "")
    start = _from_week(ns)
    with parts.open_store(settings, role="closer") as db, database.begin(db.engine) as conn:
        makers.add_participant(conn, who, name=name, from_week=start)
    print(f"registered {who} from {start}")
    _note_all(settings)
    return 0


def unregister(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap makers remove AUTHORITY``."""
    config.load_program(settings.program_file)
    who = args.authority(ns.authority)
    start = _from_week(ns)
    with parts.open_store(settings, role="closer") as db, database.begin(db.engine) as conn:
        if not makers.remove_participant(conn, who, from_week=start):
            raise InputError(f"{who} is not registered (see `driftsnap makers list`)")
    print(f"{who} is no participant from {start} on")
    _note_all(settings)
    return 0


def list_makers(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap makers list``."""
    program = config.load_program(settings.program_file)
    with parts.open_store(settings) as db, database.connect(db.engine) as conn:
        listed = makers.participants(conn)
        forfeits = makers.forfeits(conn)
    registered: list[dict[str, Any]] = [
        {
            "authority": p.authority,
            "name": p.name,
            "from_week": None if p.from_week is None else str(p.from_week),
            "until_week": None if p.until_week is None else str(p.until_week),
        }
        for p in listed
    ]
    forfeited: list[dict[str, Any]] = [
        {"authority": f.authority, "week": str(f.week), "reason": f.reason} for f in forfeits
    ]
    if ns.format == "json":
        doc = {
            "participants": program.participants,
            "registered": registered,
            "forfeits": forfeited,
        }
        output.print_json(doc)
        return 0
    output.line(f"program participants: {program.participants}")
    if registered:
        output.print_rows("Registered makers", registered)
    else:
        print("no makers registered in the database")
    if forfeited:
        output.print_rows("Forfeits", forfeited)
    return 0


def forfeit(ns: argparse.Namespace, settings: config.Settings) -> int:
    """``driftsnap forfeit AUTHORITY --week W | --month M --reason TEXT``."""
    who = args.authority(ns.authority)
    weeks = [calendar.Week.parse(ns.week)] if ns.week else calendar.month_weeks(ns.month)
    reason = makers.check_reason(ns.reason.strip())
    with parts.open_store(settings, role="closer") as db:
        close.forfeit(db.engine, who, weeks, reason=reason)
    output.line(f"forfeited {who}: {', '.join(map(str, weeks))} ({reason})")
    return 0
