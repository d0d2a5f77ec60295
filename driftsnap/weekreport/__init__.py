"""``driftsnap report``: a week's close as an HTML page with PNG charts, and its JSON twin.

It writes into one directory::

    index.html     the page: self-contained (inline CSS, no script), charts by relative path
    report.json    every figure the page shows (:mod:`driftsnap.weekreport.document`)
    share-*.png    per market, the top makers' cumulative score share over the week
    uptime.png     two-sided uptime per maker and market
    coverage.png   ticks ok / rejected / missed per market
    self_matches.csv  every self-matched fill (the page summarises them per authority)
    maker-*.png    with a maker: its mean score per snapshot, stacked by bracket and side

Typical use (the CLI's)::

    out = weekreport.prepare(Path("report/"))            # fails fast if it cannot be written
    outcome = weekreport.outcome(engine, week, ...)     # the stored close (or a dry run)
    doc = weekreport.write(engine, outcome, out, maker=None)

**Which numbers.** A closed week's report reads the stored close (``week_closes``): payouts,
weights, shares and digests are the close's, never recomputed another way. A week that is not
closed is refused (its numbers are not final; ``close-week --dry-run`` shows what it would pay)
unless ``provisional``: then the figures are a dry run of the close, computed exactly as
``close-week --dry-run`` computes them, and the page and JSON say PROVISIONAL everywhere.

Errors are in :mod:`driftsnap.weekreport.errors` (all exit 2).
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import tempfile
import time
from typing import TYPE_CHECKING, Any, Final

from driftsnap import logs
from driftsnap.flows import close
from driftsnap.store import closes, database, series
from driftsnap.weekreport import document, page
from driftsnap.weekreport.errors import MakerNotFoundError, ReportError

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

    import sqlalchemy as sa

    from driftsnap import calendar, config
    from driftsnap.store.seeds import Seeds

__all__ = ["DEFAULT_TOP", "MakerNotFoundError", "ReportError", "outcome", "prepare", "write"]

log = logs.get(__name__)

DEFAULT_TOP = 8


def prepare(out: Path) -> Path:
    """Prove the report can be written at ``out``, before any work, creating nothing: a report
    that is then refused leaves no directory behind. :func:`write` creates it."""
    try:
        if out.exists():
            with tempfile.NamedTemporaryFile(dir=out, prefix=".driftsnap-report-"):
                pass
        else:
            base = next(p for p in out.parents if p.exists())  # the root always exists
            if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, "Permission denied")
    except OSError as exc:
        raise ReportError(
            f"{out}: cannot write the report there ({exc.strerror or exc}); choose another --out"
        ) from None
    return out


def outcome(
    engine: sa.Engine,
    week: calendar.Week,
    *,
    now: datetime,
    provisional: bool = False,
    program: config.Program | None = None,
    seeds: Seeds | None = None,
    default_method: str | None = None,
) -> close.Outcome:
    """The stored close of ``week``; or, if it is not closed and ``provisional``, a dry run."""
    with database.connect(engine) as conn:
        done = closes.stored(conn, week)
        known = series.weeks_with_data(conn)
    if done is not None:
        return close.stored_outcome(done)
    if week not in known:
        listed = ", ".join(map(str, known[-6:])) or "none"
        raise ReportError(
            f"week {week} has no stored data: no ticks and no close (weeks with data: {listed})"
        )
    if not provisional and week.end > now:
        raise ReportError(
            f"week {week} has not ended ({week.end.isoformat()}), so it has no final numbers: "
            f"`driftsnap scores --week {week}` shows it so far; its report comes once it has "
            "ended and is closed"
        )
    if not provisional:
        raise ReportError(
            f"week {week} is not closed, so it has no final numbers: see what it would pay with "
            f"`driftsnap close-week --week {week} --dry-run`, close it with `driftsnap close-week "
            f"--week {week}`, or add --provisional for a report marked provisional"
        )
    if week.end > now:
        raise ReportError(
            f"week {week} has not ended ({week.end.isoformat()}): even a provisional report "
            f"needs the whole week; `driftsnap scores --week {week}` shows it so far"
        )
    if program is None or seeds is None:
        raise ValueError("a provisional report needs the program and the seed files")
    return close.close_week(
        engine,
        program,
        now=now,
        seeds=seeds,
        week=week,
        default_method=default_method,
        dry_run=True,
    )


def write(
    engine: sa.Engine,
    result: close.Outcome,
    out: Path,
    *,
    maker: str | None = None,
    top: int = DEFAULT_TOP,
) -> dict[str, Any]:
    """Write the report of ``result`` into ``out`` (see the module docstring); its document."""
    started = time.perf_counter()
    with database.connect(engine) as conn:
        doc = document.build(conn, result, maker=maker, top=top)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"{out}: cannot create it ({exc.strerror or exc})") from None
    # matplotlib takes a second to import: only this command pays for it.
    from driftsnap.weekreport import charts  # noqa: PLC0415

    for chart in charts.plan(doc, top=top):
        t = time.perf_counter()
        try:
            chart.draw(out / chart.file)
        except OSError as exc:
            raise ReportError(f"{out / chart.file}: cannot write ({exc.strerror})") from None
        doc["charts"].append(chart.entry())
        log.info("report_chart", file=chart.file, title=chart.title, ms=_ms(t))
    _write_text(out / "report.json", json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    _write_text(out / page.SELF_MATCHES_CSV, _self_matches_csv(doc["self_matches"]))
    _write_text(out / "index.html", page.render(doc))
    log.info(
        "report_written",
        week=doc["week"],
        out=str(out),
        charts=len(doc["charts"]),
        provisional=doc["provisional"],
        ms=_ms(started),
    )
    return doc


SELF_MATCH_COLUMNS: Final = (
    "signature", "market", "market_type", "market_index", "fill_record_id", "slot", "block_time",
    "authority", "maker", "taker", "quote_micro_usdc",
)  # fmt: skip


def _self_matches_csv(rows: list[dict[str, Any]]) -> str:
    """Every self-matched fill as CSV, oldest first, quote in micro-USDC (exact integers)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, SELF_MATCH_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"{path}: cannot write ({exc.strerror})") from None


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
