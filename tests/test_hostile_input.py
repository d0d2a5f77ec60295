"""Hostile files and text at the command line: one error line and exit 2, never a traceback.

A book for ``score-book``, a ``--program`` file, a maker's name or a reason are written by whoever
hands them over. Each case here runs the installed ``driftsnap`` in a subprocess: what is refused
is refused with one ``driftsnap: error:`` line and exit 2, and text that reaches a terminal
carries no control character (ESC, BEL, CR, a bidi override) that could rewrite the screen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from driftsnap import config
from driftsnap.cli import output
from driftsnap.store import schema
from tests.books import key

SCRIPT = Path(sys.executable).parent / "driftsnap"
MAKER = key("maker")
# What a terminal would obey: colour/erase (ESC), bell, carriage return, a right-to-left override.
CONTROLS = ("\x1b", "\x07", "\r", "\u202e", "\x9b")
# The documented limits (README, bookfile and config docstrings), spelled out.
MAX_BOOK_BYTES = 64 << 20


def run(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(  # noqa: S603 (our own console script, fixed arguments)
        [str(SCRIPT), *args],
        input=stdin,
        capture_output=True,
        env={
            "PATH": os.environ.get("PATH", ""),
            "DRIFTSNAP_LOG_LEVEL": "warning",
            "DRIFTSNAP_ALLOW_ROOT": "true",
            **(env or {}),
        },
        timeout=120,
        check=False,
    )
    return subprocess.CompletedProcess(
        out.args, out.returncode, out.stdout.decode(), out.stderr.decode()
    )


def refused(out: subprocess.CompletedProcess[str], needle: str) -> None:
    """Exit 2 with exactly one stderr line naming the problem, and no traceback."""
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("driftsnap: error: "), out.stderr[-2000:]
    assert out.stderr.endswith("\n")
    assert len(out.stderr.splitlines()) == 1, out.stderr[-2000:]
    assert needle in out.stderr, out.stderr


def _book(**extra: Any) -> dict[str, Any]:
    return {
        "market": "SOL-PERP",
        "market_index": 0,
        "slot": 123,
        "ts": 1_700_000_000,
        "oracle_price": 100_000_000,
        "orders": [
            {
                "user": MAKER,
                "authority": MAKER,
                "side": "bid",
                "price": 99_990_000,
                "size": 5_000_000_000,
                "order_id": 7,
            }
        ],
        **extra,
    }


def _write(tmp_path: Path, name: str, text: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------------------- score-book


def test_a_valid_book_still_scores(tmp_path: Path) -> None:
    """The bounds refuse nothing real: the plain book scores, exit 0."""
    out = run("score-book", _write(tmp_path, "b.json", json.dumps(_book())), "--format", "json")
    assert out.returncode == 0, out.stderr
    assert list(json.loads(out.stdout)["scores"]) == [MAKER]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        # Python refuses to convert 4,301 digits and more: a ValueError inside json.loads.
        (json.dumps(_book()).replace('"slot": 123', '"slot": ' + "9" * 5000), "5000 digits"),
        (json.dumps(_book(note=int("7" * 4000))), "4000 digits"),
        # The C scanner recurses once per level: RecursionError.
        ("[" * 100_000 + "]" * 100_000, "nested more than"),
        (json.dumps(_book())[:-1] + ', "n": ' + '{"a": ' * 50_000 + "1" + "}" * 50_001, "nested"),
        (json.dumps(_book())[:-1] + ', "x": ' + "[" * 50_000 + "]" * 50_000 + "}", "nested"),
        # Within the interpreter's limit, but no book nests 500 deep: refused before validation.
        (json.dumps(_book())[:-1] + ', "x": ' + "[" * 500 + "]" * 500 + "}", "nested more than"),
        # Not JSON numbers, and never finite.
        (json.dumps(_book())[:-1] + ', "x": NaN}', "NaN is not a JSON number"),
        (json.dumps(_book())[:-1] + ', "x": -Infinity}', "-Infinity is not a JSON number"),
    ],
    ids=["slot-5000-digits", "extra-4000-digits", "array-100k", "object-50k", "extra-50k",
         "extra-500", "nan", "infinity"],
)  # fmt: skip
def test_score_book_refuses_numbers_and_nesting_no_book_has(
    tmp_path: Path, text: str, needle: str
) -> None:
    """A 5,000-digit integer or JSON nested thousands deep is one error line, not a traceback."""
    refused(run("score-book", _write(tmp_path, "b.json", text)), needle)


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        (_book(market_index=2**16), "market_index: input should be less than or equal to 65535"),
        (
            _book(orders=[{**_book()["orders"][0], "order_id": 2**32}]),
            "orders[0].order_id: input should be less than or equal to 4294967295",
        ),
    ],
    ids=["market-index-u16", "order-id-u32"],
)
def test_score_book_holds_numbers_to_the_chains_types(
    tmp_path: Path, doc: dict[str, Any], needle: str
) -> None:
    """A market index beyond u16 or an order id beyond u32 cannot come from the chain."""
    refused(run("score-book", _write(tmp_path, "b.json", json.dumps(doc))), needle)


def test_score_book_refuses_a_book_larger_than_the_cap_from_a_file_and_stdin(
    tmp_path: Path,
) -> None:
    """A valid book padded past 64 MiB is refused unread, from a file and from stdin."""
    text = json.dumps(_book()).encode() + b" " * MAX_BOOK_BYTES
    refused(run("score-book", _write(tmp_path, "big.json", text)), "larger than 64 MiB")
    refused(run("score-book", "-", stdin=text), "larger than 64 MiB")
    # The cap itself is not refused.
    at_cap = text[:MAX_BOOK_BYTES]
    assert run("score-book", "-", stdin=at_cap).returncode == 0


@pytest.mark.parametrize(
    ("market", "shown"),
    [
        ("[/x]", "[/x]"),
        ("[bold]SOL", "[bold]SOL"),
        ("\x1b[2J\x1b[31mSOL\x07\r\u202eLOS", "\\x1b[2J\\x1b[31mSOL\\x07\\r\\u202eLOS"),
    ],
)
def test_score_book_shows_a_hostile_market_name_literally(
    tmp_path: Path, market: str, shown: str
) -> None:
    """A market name with rich markup or terminal controls is printed inert, never obeyed."""
    out = run("score-book", _write(tmp_path, "b.json", json.dumps(_book(market=market))))
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    for c in CONTROLS:
        assert c not in out.stdout
    assert shown in out.stdout


# ---------------------------------------------------------------------------- --program FILE


POOL = "[[volume_pool]]\nusdc = {}\neffective_from = 2023-08-14\n"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (b"\xff\xfe\x00\x01binary\x80\x81", "not UTF-8 text"),
        ("a = " + "[" * 100_000 + "]" * 100_000 + "\n", "nested too deep"),
        ("a = " + "{b = " * 5_000 + "1" + "}" * 5_000 + "\n", "nested too deep"),
        (POOL.format("9" * 5000), "not valid TOML"),
        (POOL.format('"1e400"'), "volume_pool[0].usdc: must be a finite amount"),
        (POOL.format('"Infinity"'), "volume_pool[0].usdc: must be a finite amount"),
        (POOL.format('"sNaN"'), "volume_pool[0].usdc: must be a finite amount"),
        (POOL.format(10**13), "at most 1_000_000_000_000 USDC"),
        (POOL.format('"1000000000000.000001"'), "at most 1_000_000_000_000 USDC"),
        ('[[paused]]\nweek = "2023-W40"\nreason = "\\u001b[2J gone"\n', "control characters"),
        ('[[paused]]\nweek = "2023-W40"\nreason = "' + "x" * 501 + '"\n', "at most 500"),
        ('name = "drift\\u202eevil"\n', "name: must not contain control characters"),
        ("# padding\n" * 120_000, "larger than 1 MiB"),
    ],
    ids=["binary", "array-100k", "inline-table-5k", "int-5000-digits", "1e400", "infinity",
         "snan", "1e13", "over-cap", "reason-esc", "reason-long", "name-bidi", "2-mib"],
)  # fmt: skip
def test_program_file_refuses_hostile_files(tmp_path: Path, text: str | bytes, needle: str) -> None:
    """Binary, nested, oversized, infinite or control-laden program files: one line, exit 2."""
    refused(run("--program", _write(tmp_path, "p.toml", text), "program"), needle)


def test_program_file_takes_the_largest_pool(tmp_path: Path) -> None:
    """The cap itself is a valid pool, and the shipped program still loads."""
    assert run("program").returncode == 0
    path = _write(tmp_path, "p.toml", POOL.format('"1000000000000.000000"'))
    out = run("--program", path, "program", "--week", "2023-W40", "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["volume_pool_usdc"] == "1000000000000.000000"


# ---------------------------------------------------------------------------- names, reasons


def _db(url: sa.URL) -> dict[str, str]:
    return {"DRIFTSNAP_DATABASE_URL": url.render_as_string(hide_password=False)}


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--name", "\x1b[31mAcme\x1b[0m", "--name: must not contain control characters"),
        ("--name", "Acme\rEvil", "--name: must not contain control characters"),
        ("--name", "Acme\u202eMM", "--name: must not contain control characters"),
        ("--name", "A" * 65, "--name: at most 64 characters (got 65)"),
        ("--reason", "wash\x07trading", "--reason: must not contain control characters"),
        ("--reason", "line one\nline two", "--reason: must not contain control characters"),
        ("--reason", "x" * 501, "--reason: at most 500 characters (got 501)"),
    ],
)
def test_names_and_reasons_with_controls_or_too_long_are_refused_and_not_stored(
    pg_url: sa.URL, pg_engine: sa.Engine, flag: str, value: str, needle: str
) -> None:
    """`makers add --name`, `forfeit --reason`, `close-week --reason`: refused, nothing stored."""
    env = _db(pg_url)
    if flag == "--name":
        refused(run("makers", "add", MAKER, "--name", value, env=env), needle)
    else:
        refused(run("forfeit", MAKER, "--week", "2025-W10", "--reason", value, env=env), needle)
        close = ("close-week", "--week", "2025-W10", "--force", "--reason", value)
        refused(run(*close, env=env), needle)
    for table in (schema.participants, schema.forfeits, schema.week_closes):
        assert _count(pg_engine, table) == 0, table.name


def test_a_plain_name_and_reason_at_the_limits_are_stored(pg_url: sa.URL) -> None:
    """64 characters of a name (any script) and 500 of a reason are fine."""
    env = _db(pg_url)
    name = "Acme 做市 ✓ " + "n" * 54
    assert len(name) == 64
    assert run("makers", "add", MAKER, "--name", name, env=env).returncode == 0
    reason = "r" * 500
    assert run("forfeit", MAKER, "--week", "2025-W10", "--reason", reason, env=env).returncode == 0
    listed = json.loads(run("makers", "list", "--format", "json", env=env).stdout)
    assert listed["registered"][0]["name"] == name
    assert listed["forfeits"][0]["reason"] == reason


def test_makers_list_never_sends_stored_control_characters_to_the_terminal(
    pg_url: sa.URL, pg_engine: sa.Engine
) -> None:
    """A name or reason stored before the check (or by hand) is shown escaped, JSON stays exact."""
    name = "\x1b]0;pwned\x07\x1b[2J\x1b[31mAcme\r\u202eMM\x9b"
    reason = "wash\x1b[8m hidden\x1b[0m trading"
    with pg_engine.begin() as conn:
        conn.execute(sa.insert(schema.participants).values(authority=MAKER, name=name))
        conn.execute(
            sa.insert(schema.forfeits).values(
                authority=MAKER, week_start=date(2025, 3, 3), reason=reason
            )
        )
    out = run("makers", "list", env=_db(pg_url))
    assert out.returncode == 0, out.stderr
    for c in CONTROLS:
        assert c not in out.stdout, repr(c)
    assert "\\x1b[31mAcme\\r\\u202eMM\\x9b" in out.stdout
    assert "wash\\x1b[8m hidden\\x1b[0m trading" in out.stdout
    doc = json.loads(run("makers", "list", "--format", "json", env=_db(pg_url)).stdout)
    assert doc["registered"][0]["name"] == name
    assert doc["forfeits"][0]["reason"] == reason


# ---------------------------------------------------------------------------- the escaping itself


@given(st.text())
def test_safe_text_has_no_control_character_and_keeps_plain_text(text: str) -> None:
    """:func:`output.safe` leaves no control character, and plain text unchanged."""
    shown = output.safe(text)
    assert config.control_char(shown) is None
    assert len(shown.splitlines()) <= 1
    if config.control_char(text) is None:
        assert shown == text
    else:
        assert all(unicodedata.category(c) not in config.CONTROL_CATEGORIES for c in shown)
