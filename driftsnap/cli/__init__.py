"""The ``driftsnap`` command: thin subcommands; errors become one message and an exit code.

Exit codes: 0 success, 1 a run-time failure, 2 bad input or configuration (a usage error, a
book that does not validate, a bad program file), 130 interrupted.

One module per group of commands, each with an ``add(sub)`` that declares its parsers and points
them at its handlers (``handler(args, settings) -> exit code``); :func:`build_parser` calls them
in the order ``--help`` lists the commands. A new command is a new module here and one line in
:data:`COMMANDS`. Handlers open the database with :func:`driftsnap.parts.open_store` and print
through :mod:`driftsnap.cli.output`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from driftsnap import __version__, config, logs
from driftsnap.cli import (
    args,
    books,
    close,
    completion,
    db,
    export,
    fills,
    makers,
    report,
    run,
    score,
    scores,
    simnet,
)
from driftsnap.cli.output import line
from driftsnap.errors import DriftsnapError

if TYPE_CHECKING:
    from collections.abc import Sequence

Handler = Callable[[argparse.Namespace, config.Settings], int]

# In the order of `driftsnap --help`.
COMMANDS = (score, books, db, scores, fills, simnet, run, close, export, makers, report, completion)

EPILOG = """\
Environment: every global flag can also be set as DRIFTSNAP_<FLAG> (e.g. DRIFTSNAP_PROGRAM_FILE,
DRIFTSNAP_LOG_LEVEL). Run `driftsnap COMMAND --help` for a command's own flags and examples.
"""


# Commands whose log is their output: they run until stopped and say what they do at info.
LONG_RUNNING = frozenset({"run", "demo", "simnet"})


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: the global flags, then every command's own."""
    parser = argparse.ArgumentParser(
        prog="driftsnap",
        description="Drift v2 market-maker incentive scoring, computed from the chain itself.",
        epilog=EPILOG,
        formatter_class=args.HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"driftsnap {__version__}")
    args.from_setting(
        parser.add_argument(
            "--program",
            dest="program_file",
            type=Path,
            metavar="FILE",
            help="program TOML overriding the shipped one key by key (pools, method, participants)",
        ),
        "program_file",
        unset=f"none, the shipped {config.SHIPPED_PROGRAM} alone",
    )
    args.from_setting(
        parser.add_argument("--log-level", choices=sorted(logs.LEVELS), help="log level"),
        "log_level",
        unset="info for run, demo and simnet, warning for the others",
    )
    args.from_setting(
        parser.add_argument(
            "--log-format", choices=["auto", "json", "console"], help="log line format"
        ),
        "log_format",
        unset="auto: console on a TTY, JSON otherwise",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, build the settings once, run the command; its exit code."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        settings = config.load_settings(
            program_file=ns.program_file,
            log_level=ns.log_level,
            log_format=ns.log_format,
            rpc_url=getattr(ns, "rpc_url", None),
            markets=getattr(ns, "markets", None),
            cadence=getattr(ns, "cadence", None),
            metrics_port=getattr(ns, "metrics_port", None),
            clock=getattr(ns, "clock", None),
        )
        level = settings.log_level
        if ns.log_level is None and "DRIFTSNAP_LOG_LEVEL" not in os.environ:
            # A one-shot command prints its result; its progress lines are noise unless asked
            # for. The long-running ones (daemon, demo, simulator) log at info by default.
            level = level if ns.command in LONG_RUNNING else "warning"
        logs.configure(level, settings.log_format)
        handler: Handler = ns.handler
        return handler(ns, settings)
    except DriftsnapError as exc:
        line(f"driftsnap: error: {exc}", err=True)  # one line, control characters shown
        return exc.exit_code
    except KeyboardInterrupt:
        print("driftsnap: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `driftsnap score-book book.json | head`: the reader left; not an error of ours.
        sys.stderr.close()
        return 0
