"""`driftsnap report` on a real PostgreSQL: the close's figures, charts, escaping, errors."""

from __future__ import annotations

import csv
import html
import json
import logging
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import pytest
from PIL import Image

from driftsnap import calendar, cli, config
from driftsnap.flows import close as close_flow
from driftsnap.scoring import fill, methods, payouts, scorer, settlement
from driftsnap.store import closes, makers, queries, snapshots
from driftsnap.store import fills as store_fills
from driftsnap.store.seeds import Seeds
from driftsnap.weekreport import charts
from tests import books, pg
from tests.test_cli_store import run
from tests.test_close import PROGRAM, TICKS, Built, build_week

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import sqlalchemy as sa

# Long past on any clock the tests run under: the CLI and a dry run take the wall clock's time.
PAST = calendar.Week(2025, 10)
AFTER = PAST.end + timedelta(minutes=30)
LATER = calendar.Week(2099, 1)
HOSTILE_NAME = '<script>alert("name")</script> & Co'
HOSTILE_AUTHORITY = "<img src=x onerror=alert(1)>'\"&"


def _hostile(engine: sa.Engine, built: Built, week: calendar.Week) -> str:
    """A registered name and a maker wallet that are HTML; returns the top book maker."""
    maker = sorted({o.authority for o in built.books[0][0].orders})[0]
    at = int((week.start + timedelta(hours=30)).timestamp())
    fills = [
        fill.Fill(
            market_type="spot", market_index=7, fill_record_id=1 + i,
            signature=books.key(f"hostile-sig-{i}"), event_index=0, slot=5_000 + i,
            block_time=at + i, maker=books.key("hostile/0"), maker_authority=HOSTILE_AUTHORITY,
            taker=books.key(f"hostile-taker-{i}"),
            taker_authority=HOSTILE_AUTHORITY if i == 1 else books.key("someone"),
            base_filled=10**9, quote_filled=7_000_000_000, maker_fee=None,
            action_explanation="none", commitment="finalized",
        )
        for i in range(2)
    ]  # fmt: skip
    with engine.begin() as conn:
        # Under participants = "all" a registration only records the name: the close is the same.
        makers.add_participant(conn, maker, name=HOSTILE_NAME, from_week=None)
        store_fills.write(conn, fills, watermark=None)
    return maker


def _close(engine: sa.Engine, built: Built, week: calendar.Week) -> close_flow.Outcome:
    return close_flow.close_week(
        engine, PROGRAM, now=week.end + timedelta(minutes=30), seeds=Seeds(built.seeds_dir),
        week=week,
    )  # fmt: skip


@pytest.fixture
def cli_env(pg_url: sa.URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The in-process CLI on the test database; the root logger is given back afterwards."""
    monkeypatch.setenv("DRIFTSNAP_DATABASE_URL", pg_url.render_as_string(hide_password=False))
    monkeypatch.setenv("DRIFTSNAP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DRIFTSNAP_LOG_LEVEL", "warning")
    monkeypatch.setenv("DRIFTSNAP_PROGRAM_FILE", str(pg.EVERYONE_FILE))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _env(url: sa.URL, data_dir: Path) -> dict[str, str]:
    return {
        "DRIFTSNAP_DATABASE_URL": url.render_as_string(hide_password=False),
        "DRIFTSNAP_DATA_DIR": str(data_dir),
        "DRIFTSNAP_PROGRAM_FILE": str(pg.EVERYONE_FILE),
    }


def _check_pngs(out: Path, doc: dict[str, Any]) -> None:
    assert doc["charts"]
    for chart in doc["charts"]:
        path = out / chart["file"]
        assert path.stat().st_size > 0, chart["file"]
        with Image.open(path) as img:
            assert img.format == "PNG"
            assert (
                img.size
                == (charts.WIDTH_PX, charts.HEIGHT_PX)
                == (
                    chart["width"],
                    chart["height"],
                )
            )
            colors = img.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colors is None or len(colors) > 10, f"{chart['file']} is (nearly) one flat colour"


def _stored_shares(rows: list[closes.PayoutRow], pool: str) -> dict[str, float]:
    mine = [r for r in rows if r.pool == pool and r.participant and r.weight > 0]
    total = sum((Fraction(r.weight) for r in mine), Fraction(0))
    return {r.maker: float(Fraction(r.weight) / total) for r in mine}


# ---------------------------------------------------------------- the figures are the close's


def test_report_shows_the_stored_close_exactly(
    pg_engine: sa.Engine, tmp_path: Path, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """report.json's payouts, weights, shares and volumes are the stored close's, to the unit."""
    built = build_week(pg_engine, tmp_path, week=PAST)
    _hostile(pg_engine, built, PAST)
    outcome = _close(pg_engine, built, PAST)
    out = tmp_path / "report"
    assert cli.main(["report", "--week", str(PAST), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert f"week {PAST}: closed, digest {outcome.close.digest}" in printed.out
    doc = json.loads((out / "report.json").read_text())
    with pg_engine.connect() as conn:
        rows = closes.payout_rows(conn, PAST)
        coverage = queries.week_coverage(conn, PAST)
    assert doc["provisional"] is False
    assert doc["week"] == str(PAST)

    # Payouts: the close's table, every micro-USDC.
    _, table = close_flow.payout_table(outcome.result)
    assert {p["authority"]: p["total_micro_usdc"] for p in doc["payouts"]} == (
        outcome.result["payouts"]
    )
    assert [
        {"authority": p["authority"], **p["score_micro_usdc"], "volume": p["volume_micro_usdc"],
         "total": p["total_micro_usdc"]}
        for p in doc["payouts"]
    ] == table  # fmt: skip
    assert sum(p["total_micro_usdc"] for p in doc["payouts"]) == 3 * 500_000_000 + 1_500_000_000
    assert HOSTILE_AUTHORITY in outcome.result["payouts"]  # the hostile wallet is really paid

    # Every maker of every pool: the stored payout rows, and shares of their exact weights.
    listed = [(p["pool"], m) for p in doc["pools"] for m in p["makers"]]
    listed += [("*volume", {**m, "maker": m["authority"], "weight": m["volume_micro_usdc"]})
               for m in doc["volume"]["makers"]]  # fmt: skip
    by_key = {(r.pool, r.maker): r for r in rows}
    assert len(listed) == len(rows)
    for pool, m in listed:
        row = by_key[(pool, m["maker"])]
        assert m["reward_micro_usdc"] == row.reward_micro_usdc
        assert Decimal(m["weight"]) == row.weight
        assert m["participant"] == row.participant
        assert m["share"] == _stored_shares(rows, pool).get(m["maker"], 0.0)
    volume = {m["authority"]: m["volume_micro_usdc"] for m in doc["volume"]["makers"]}
    assert volume[HOSTILE_AUTHORITY] == 7_000_000_000  # the self-matched fill is left out
    for p in doc["pools"]:
        result_pool = next(x for x in outcome.result["pools"] if x["market"] == p["pool"])
        assert (p["pool_micro_usdc"], p["paid_micro_usdc"], p["snapshots"]) == (
            result_pool["pool"], result_pool["paid"], result_pool["snapshots"]
        )  # fmt: skip

    # The charts' cumulative shares end on the close's shares (floats summed in SQL).
    for series in doc["share_series"]["markets"]:
        shares = _stored_shares(rows, series["market"])
        for line in series["series"]:
            if line["authority"] is not None:
                assert line["share"][-1] == pytest.approx(shares[line["authority"]], rel=1e-9)
        assert sum(line["share"][-1] for line in series["series"]) == pytest.approx(1.0)
        assert len(series["hours"]) == TICKS

    # Digests, coverage and self-matches as stored.
    c = outcome.close
    assert doc["close"]["digest"] == c.digest
    assert doc["close"]["result_sha256"] == c.result_sha256
    assert doc["close"]["books_root"] == c.books_root
    assert doc["close"]["fills_digest"] == c.fills_digest
    assert doc["close"]["seed"] == c.seed is not None
    assert doc["params_hash"] == c.params_hash
    assert [(x["market"], x["ok"], x["missed"], x["rejected"]) for x in doc["coverage"]] == [
        (x.market, x.ok, x.missed, x.rejected) for x in coverage
    ]
    assert [m["signature"] for m in doc["self_matches"]] == sorted(
        [built.fills[5].signature, books.key("hostile-sig-1")],
        key=[built.fills[5].signature, books.key("hostile-sig-1")].index,
    )
    _check_pngs(out, doc)


def test_self_matches_are_summarised_per_wallet_with_every_fill_in_a_csv(
    pg_engine: sa.Engine, tmp_path: Path, cli_env: None
) -> None:
    """Hundreds of self-matched fills make one line per wallet on the page, not one per fill;
    self_matches.csv next to it lists every one of them, as report.json has them."""
    built = build_week(pg_engine, tmp_path, week=PAST)
    at = int((PAST.start + timedelta(hours=40)).timestamp())
    wallets = [books.key(f"washer-{w}") for w in range(3)]
    fills = [
        fill.Fill(
            market_type="spot", market_index=3, fill_record_id=1 + i,
            signature=books.key(f"wash-sig-{i}"), event_index=0, slot=9_000 + i,
            block_time=at + i, maker=books.key(f"wash-maker-{i % 3}"),
            maker_authority=wallets[i % 3], taker=books.key(f"wash-taker-{i % 3}"),
            taker_authority=wallets[i % 3], base_filled=10**9, quote_filled=1_000_000 + i,
            maker_fee=None, action_explanation="none", commitment="finalized",
        )
        for i in range(300)
    ]  # fmt: skip
    with pg_engine.begin() as conn:
        store_fills.write(conn, fills, watermark=None)
    _close(pg_engine, built, PAST)
    out = tmp_path / "report"
    assert cli.main(["report", "--week", str(PAST), "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    doc = json.loads((out / "report.json").read_text())
    listed_in_doc = [m["signature"] for m in doc["self_matches"]]
    assert {f.signature for f in fills} <= set(listed_in_doc)  # the week had one already
    assert not any(s in page for s in listed_in_doc)  # no per-fill rows on the page
    assert f"{len(listed_in_doc)} fill(s)" in page
    assert 'href="self_matches.csv"' in page
    for w in range(3):
        wallet = wallets[w]
        quote = sum(f.quote_filled for f in fills if f.maker_authority == wallet)
        row = f'<td><span class="key">{wallet}</span></td><td class="n">100</td>'
        assert row in page
        assert f'<td class="n">{payouts.usdc(quote)}</td>' in page
    with (out / "self_matches.csv").open(newline="") as f:
        listed = list(csv.DictReader(f))
    assert [r["signature"] for r in listed] == listed_in_doc
    assert sum(int(r["quote_micro_usdc"]) for r in listed) == sum(
        m["quote_micro_usdc"] for m in doc["self_matches"]
    )


def test_uptime_counts_snapshots_quoted_on_both_sides(
    pg_engine: sa.Engine, tmp_path: Path, cli_env: None
) -> None:
    """Two-sided uptime is what the books give: both sides within the brackets, per snapshot."""
    built = build_week(pg_engine, tmp_path, week=PAST, missed=frozenset({3}))
    close_flow.close_week(
        pg_engine, PROGRAM, now=AFTER, seeds=Seeds(built.seeds_dir), week=PAST, min_coverage=0.9
    )
    out = tmp_path / "report"
    assert cli.main(["report", "--week", str(PAST), "--out", str(out)]) == 0
    doc = json.loads((out / "report.json").read_text())
    method = methods.DRIFT_2023_08
    expected: dict[str, dict[str, int]] = {}
    for tick in built.books:
        for book in tick:
            s = scorer.score(book, method)
            bids = {m for b in s.brackets for m, v in b.maker_bid.items() if v}
            asks = {m for b in s.brackets for m, v in b.maker_ask.items() if v}
            for who in bids & asks:
                market = expected.setdefault(book.market, {})
                market[who] = market.get(who, 0) + 1
    uptime = doc["uptime"]
    assert uptime["method"] == method.name
    assert {m: {a: v["two_sided"] for a, v in x["makers"].items()}
            for m, x in uptime["markets"].items()} == expected  # fmt: skip
    for x in uptime["markets"].values():
        assert x["snapshots"] == TICKS - 1
        for v in x["makers"].values():
            assert v["uptime"] == v["two_sided"] / (TICKS - 1)
    assert any(v["uptime"] < 1 for x in uptime["markets"].values() for v in x["makers"].values())
    missed = next(x for x in doc["coverage"] if x["market"] == "SOL-PERP")
    assert (missed["ok"], missed["missed"]) == (TICKS - 1, 1)


def test_html_escapes_names_and_holds_the_digests(
    pg_engine: sa.Engine, tmp_path: Path, cli_env: None
) -> None:
    """The page escapes a hostile name and wallet everywhere and prints every digest in full."""
    built = build_week(pg_engine, tmp_path, week=PAST)
    maker = _hostile(pg_engine, built, PAST)
    outcome = _close(pg_engine, built, PAST)
    out = tmp_path / "report"
    assert cli.main(["report", "--week", str(PAST), "--out", str(out), "--maker", maker]) == 0
    page = (out / "index.html").read_text()
    doc = json.loads((out / "report.json").read_text())
    c = outcome.close
    for value in (c.digest, c.result_sha256, c.params_hash, c.seed, c.books_root, c.fills_digest):
        assert value is not None
        assert value in page
    for hostile in (HOSTILE_NAME, HOSTILE_AUTHORITY):
        assert html.escape(hostile, quote=True) in page
        assert hostile not in page
    assert "<script" not in page
    assert "<img src=x" not in page
    assert doc["maker"]["name"] == HOSTILE_NAME
    for chart in doc["charts"]:
        assert f'src="{chart["file"]}"' in page
    assert "PROVISIONAL" not in page
    _check_pngs(out, doc)


# ---------------------------------------------------------------- the maker page


def test_maker_breakdown_adds_up_to_the_stored_scores(
    pg_url: sa.URL, pg_engine: sa.Engine, tmp_path: Path
) -> None:
    """Through the console script: per snapshot, the bracket sides add up to the stored score."""
    built = build_week(pg_engine, tmp_path, week=PAST)
    outcome = _close(pg_engine, built, PAST)
    top = max(outcome.result["payouts"], key=outcome.result["payouts"].__getitem__)
    out = tmp_path / "maker"
    shown = run("report", "--week", str(PAST), "--maker", top, "--out", str(out),
                env=_env(pg_url, tmp_path))  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert f"wrote {out / 'index.html'}" in shown.stdout
    doc = json.loads((out / "report.json").read_text())
    maker = doc["maker"]
    assert maker["authority"] == top
    assert maker["total_micro_usdc"] == outcome.result["payouts"][top]
    quoted = {
        p["market"]
        for p in outcome.result["pools"]
        if p["market"] != settlement.VOLUME and any(m["authority"] == top for m in p["makers"])
    }
    assert len(quoted) >= 2
    assert {x["market"] for x in maker["markets"]} == quoted
    method = methods.get(outcome.close.method)
    checked = 0
    with pg_engine.connect() as conn:
        for market in maker["markets"]:
            pool = next(p for p in outcome.result["pools"] if p["market"] == market["market"])
            weight = next(m["weight"] for m in pool["makers"] if m["authority"] == top)
            assert market["weight"] == weight
            assert market["score_total"] == pytest.approx(weight, rel=1e-12)
            parts = sum(v for b in market["brackets_total"].values() for v in b.values())
            assert parts == pytest.approx(weight, rel=1e-12)
            assert market["snapshots"] == TICKS
            for point in market["series"]:
                assert point["snapshots"] == 1  # a 12 h cadence: one snapshot per bucket
                stored = snapshots.read_scores(
                    conn, _at(point["first_tick"]), market["market"], method.params_hash
                ).scores.get(top, 0.0)
                assert point["score"] == pytest.approx(stored, rel=1e-12, abs=1e-12)
                total = sum(cell["score"] for cell in point["brackets"])
                assert total == pytest.approx(stored, rel=1e-12, abs=1e-12)
                checked += stored > 0
    assert checked >= TICKS
    assert [c["kind"] for c in doc["charts"]].count("maker") == len(quoted)
    _check_pngs(out, doc)
    # Each breakdown draws its stack: the first bracket's ask layer (the lighter first colour)
    # covers pixels of the plot, not only its legend patch (a sparse week once drew none).
    ask_a = tuple(int(charts.lighter(charts.palette(1)[0])[i : i + 2], 16) for i in (1, 3, 5))
    for chart in doc["charts"]:
        if chart["kind"] == "maker":
            with Image.open(out / chart["file"]) as img:
                plot = img.convert("RGB").crop((0, 0, int(img.width * 0.7), img.height))
                drawn = {c: n for n, c in plot.getcolors(maxcolors=1 << 16) or []}
            assert drawn.get(ask_a, 0) > 100, chart["file"]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_sub_accounts_add_up_under_a_method_keyed_by_user(
    pg_engine: sa.Engine, tmp_path: Path, cli_env: None
) -> None:
    """Closed under drift-mm-scoring (makers are User accounts), a wallet's page sums them."""
    built = build_week(pg_engine, tmp_path, week=PAST)
    outcome = close_flow.close_week(
        pg_engine, PROGRAM, now=AFTER, seeds=Seeds(built.seeds_dir), week=PAST,
        method=methods.DRIFT_MM_SCORING.name,
    )  # fmt: skip
    users: dict[str, set[str]] = {}
    for p in outcome.result["pools"]:
        for m in p["makers"]:
            if p["market"] != settlement.VOLUME:
                users.setdefault(m["authority"], set()).add(m["maker"])
    wallet = max(users, key=lambda a: (len(users[a]), a))
    assert len(users[wallet]) > 1  # the simulator's makers quote from several sub-accounts
    out = tmp_path / "report"
    argv = ["report", "--week", str(PAST), "--out", str(out), "--maker", wallet, "--top", "2"]
    assert cli.main(argv) == 0
    doc = json.loads((out / "report.json").read_text())
    assert doc["method"] == methods.DRIFT_MM_SCORING.name
    with pg_engine.connect() as conn:
        rows = closes.payout_rows(conn, PAST)
        for market in doc["maker"]["markets"]:
            mine = [r for r in rows if r.pool == market["market"] and r.authority == wallet]
            assert set(market["makers"]) == {r.maker for r in mine}
            assert market["reward_micro_usdc"] == sum(r.reward_micro_usdc for r in mine)
            shares = _stored_shares(rows, market["market"])
            assert market["share"] == pytest.approx(sum(shares.get(r.maker, 0) for r in mine))
            assert market["score_total"] == pytest.approx(float(sum(r.weight for r in mine)))
            for point in market["series"]:
                stored = snapshots.read_scores(
                    conn, _at(point["first_tick"]), market["market"], outcome.close.params_hash
                )
                expected = sum(v for u, v in stored.scores.items() if u in users[wallet])
                assert point["score"] == pytest.approx(expected, rel=1e-12, abs=1e-12)
                parts = sum(cell["score"] for cell in point["brackets"])
                assert parts == pytest.approx(expected, rel=1e-9, abs=1e-9)
    # --top 2: two makers by name and the others, adding up to the whole pool.
    for series in doc["share_series"]["markets"]:
        assert series["participants"] > 3
        assert [x["authority"] is None for x in series["series"]] == [False, False, True]
        assert sum(x["share"][-1] for x in series["series"]) == pytest.approx(1.0)
    _check_pngs(out, doc)


def test_a_paused_week_reports_nothing_paid(
    pg_engine: sa.Engine, tmp_path: Path, cli_env: None
) -> None:
    """A paused week without snapshots still gets its page, charts and digests, paying 0."""
    program = PROGRAM.model_copy(
        update={"paused": (config.Pause(week=PAST, reason="holiday pause"),)}
    )
    outcome = close_flow.close_week(pg_engine, program, now=AFTER, seeds=Seeds(tmp_path), week=PAST)
    out = tmp_path / "report"
    assert cli.main(["report", "--week", str(PAST), "--out", str(out)]) == 0
    doc = json.loads((out / "report.json").read_text())
    assert (doc["paused"], doc["pause_reason"]) == (True, "holiday pause")
    assert doc["payouts"] == []
    assert doc["close"]["digest"] == outcome.close.digest
    assert "holiday pause" in (out / "index.html").read_text()
    _check_pngs(out, doc)


# ---------------------------------------------------------------- weeks not closed


def test_a_week_not_closed_is_refused_unless_provisional(
    pg_engine: sa.Engine, tmp_path: Path, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """No final numbers without a close: exit 2 naming --dry-run; --provisional is marked so."""
    build_week(pg_engine, tmp_path, week=PAST)
    out = tmp_path / "report"
    assert cli.main(["report", "--week", str(PAST), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"week {PAST} is not closed" in err
    assert f"driftsnap close-week --week {PAST} --dry-run" in err
    assert not out.exists()  # a refused report creates nothing

    assert cli.main(["report", "--week", str(PAST), "--out", str(out), "--provisional"]) == 0
    assert "PROVISIONAL" in capsys.readouterr().out
    doc = json.loads((out / "report.json").read_text())
    dry = close_flow.close_week(
        pg_engine, PROGRAM, now=AFTER, seeds=Seeds(tmp_path / "seeds"), week=PAST, dry_run=True
    )
    assert doc["provisional"] is True
    assert doc["close"]["digest"] == dry.close.digest
    assert {p["authority"]: p["total_micro_usdc"] for p in doc["payouts"]} == dry.result["payouts"]
    assert "PROVISIONAL" in (out / "index.html").read_text()
    with pg_engine.connect() as conn:
        assert closes.stored(conn, PAST) is None  # a provisional report stores nothing
    _check_pngs(out, doc)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--week", "2025-10"], "week must look like 2026-W47"),
        (["--week", "2020-W01"], "week 2020-W01 has no stored data"),
        (["--week", str(PAST), "--maker", "not-a-key"], "not a base58 public key: 'not-a-key'"),
        (["--week", str(PAST), "--maker", books.key("nobody")], "has no orders and no maker"),
        (["--week", str(PAST), "--out", "{file}/sub"], "cannot write the report there"),
        (["--week", str(PAST), "--top", "0"], "must be a positive integer"),
        (["--week", str(LATER), "--provisional"], f"week {LATER} has not ended"),
        # Not "see close-week --dry-run": that is refused too before the week has ended.
        (["--week", str(LATER)], "its report comes once it has ended and is closed"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    pg_engine: sa.Engine,
    tmp_path: Path,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
    *,
    args: list[str],
    message: str,
) -> None:
    """Bad week, unknown week, bad or absent maker, unwritable --out: one line, exit 2."""
    built = build_week(pg_engine, tmp_path, week=PAST)
    _close(pg_engine, built, PAST)
    with pg_engine.begin() as conn:  # one tick of a week that has not ended on any test clock
        at = LATER.start + timedelta(hours=1)
        snapshots.write_tick(conn, pg.ok_tick(at), pg.scored(built.books[0]), methods=pg.METHODS)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    argv = ["report", *[a.format(file=blocker) for a in args]]
    if "--out" not in args:
        argv += ["--out", str(tmp_path / "report")]
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert err.startswith("driftsnap: error:") or err.startswith("usage:")
    if err.startswith("driftsnap: error:"):
        assert err.count("\n") == 1, err


def test_report_documents_itself() -> None:
    """`report --help` says which numbers it shows and how a week not closed is handled."""
    shown = run("report", "--help", env={})
    assert shown.returncode == 0
    assert "examples:" in shown.stdout
    assert "--provisional" in shown.stdout
    assert "close-week --dry-run" in shown.stdout
