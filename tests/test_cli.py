"""The driftsnap command as a user runs it: the installed console script, in a subprocess."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.books import key

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).parent / "driftsnap"
WORKED = ROOT / "examples" / "sol-perp-worked-example.json"
COMMANDS = [
    "score-book",
    "methods",
    "program",
    "simnet",
    "db",
    "migrate",
    "scores",
    "books",
    "run",
    "demo",
    "healthcheck",
    "fills",
    "export-week",
    "prune",
]


def run(*args: str, stdin: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (our own console script, fixed arguments)
        [str(SCRIPT), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_help_lists_every_command_and_module_entry_point_matches() -> None:
    """`driftsnap --help` and `python -m driftsnap --help` both list the subcommands."""
    out = run("--help")
    module = subprocess.run(
        [sys.executable, "-m", "driftsnap", "--help"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0
    assert module.returncode == 0
    for command in COMMANDS:
        assert command in out.stdout
    assert module.stdout.replace("__main__.py", "driftsnap") == out.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command: str) -> None:
    """Each subcommand answers --help with its usage and exits 0."""
    out = run(command, "--help")
    assert out.returncode == 0
    assert out.stdout.startswith(f"usage: driftsnap {command}")


def _all_help() -> dict[str, str]:
    """Every subcommand's --help text (and nested ones, e.g. `db url`), as argparse prints it."""
    from driftsnap import cli  # noqa: PLC0415 -- the parser is built in-process, no subprocess

    texts: dict[str, str] = {}
    stack = [("driftsnap", cli.build_parser())]
    while stack:
        name, parser = stack.pop()
        texts[name] = parser.format_help()
        for action in parser._actions:  # argparse keeps its subparsers only here
            if isinstance(action, argparse._SubParsersAction):
                stack += [(f"{name} {n}", p) for n, p in action.choices.items()]
    return texts


def test_every_file_a_help_text_names_exists() -> None:
    """An example a --help names is in the repository: a newcomer copies it first."""
    texts = _all_help()
    assert len(texts) > 20
    named = {
        (name, m.group(0))
        for name, text in texts.items()
        for m in re.finditer(r"examples/[\w.-]+\.json", text)
    }
    assert named  # score-book's epilog names the worked example
    assert [(n, path) for n, path in sorted(named) if not (ROOT / path).is_file()] == []


def test_no_help_text_says_once_is_now() -> None:
    """`run --once` takes the next committed sample instant, never an off-schedule tick now."""
    text = _all_help()["driftsnap run"]
    assert "--once" in text
    assert "tick now" not in text


def test_score_book_json_reproduces_the_programs_worked_example() -> None:
    """score-book --format json on the bundled worked example prints 150 / 365 / 50 and the hash."""
    out = run("score-book", str(WORKED), "--format", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert sorted(doc["scores"].values()) == [50.0, 150.0, 365.0]
    methods = json.loads(run("methods", "--format", "json").stdout)
    expected_hash = next(m["params_hash"] for m in methods if m["name"] == "drift-2023-08")
    assert doc["method"] == "drift-2023-08"
    assert doc["params_hash"] == expected_hash
    a = doc["brackets"][0]
    assert (a["bracket"], a["L"], a["Q"], a["V"]) == (
        "A",
        {"bid": 100_000_000_000, "ask": 50_000_000_000},
        100.0,
        200.0,
    )


def test_score_book_table_shows_makers_scores_and_the_params_hash() -> None:
    """The table form names every maker in full, its score and the params_hash."""
    out = run("score-book", str(WORKED))
    assert out.returncode == 0, out.stderr
    doc = json.loads(run("score-book", str(WORKED), "--format", "json").stdout)
    assert doc["params_hash"] in out.stdout
    for maker in doc["scores"]:
        assert maker in out.stdout
    assert "365.000000" in out.stdout


def test_score_book_reads_stdin_and_honours_the_method_flag() -> None:
    """`-` reads the book from stdin; --method drift-mm-scoring keys makers by user account."""
    out = run(
        "score-book",
        "-",
        "--method",
        "drift-mm-scoring",
        "--format",
        "json",
        stdin=WORKED.read_text(),
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    book = json.loads(WORKED.read_text())
    assert doc["method"] == "drift-mm-scoring"
    assert set(doc["scores"]) == {o["user"] for o in book["orders"]}
    assert set(doc["authorities"].values()) == {o["authority"] for o in book["orders"]}


def test_program_file_method_is_the_default_for_score_book(tmp_path: Path) -> None:
    """A --program file that selects drift-points-2024-01 changes score-book's default method."""
    program = tmp_path / "p.toml"
    program.write_text('method = "drift-points-2024-01"\n')
    out = run("--program", str(program), "score-book", str(WORKED), "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["method"] == "drift-points-2024-01"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "file is empty"),
        ("{", "not valid JSON"),
        ('{"market": "SOL-PERP"}', "market_index: missing required field"),
        (None, "cannot read"),
    ],
)
def test_bad_book_is_one_error_line_and_exit_code_2(
    tmp_path: Path, content: str | None, message: str
) -> None:
    """Empty, non-JSON, incomplete or missing files: one line on stderr, exit 2, no traceback."""
    path = tmp_path / "book.json"
    if content is not None:
        path.write_text(content)
    out = run("score-book", str(path))
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("driftsnap: error: ")
    assert message in lines[0]
    assert "Traceback" not in out.stderr


def test_bad_order_field_names_the_order_and_field(tmp_path: Path) -> None:
    """A negative size in the third order is reported as orders[2].size."""
    doc = json.loads(WORKED.read_text())
    doc["orders"][2]["size"] = -1
    path = tmp_path / "book.json"
    path.write_text(json.dumps(doc))
    out = run("score-book", str(path))
    assert out.returncode == 2
    assert "orders[2].size: input should be greater than 0 (got -1)" in out.stderr


def test_unknown_method_and_bad_environment_are_usage_errors() -> None:
    """An unknown --method is refused by the parser (exit 2); so is a bad DRIFTSNAP_ value."""
    out = run("score-book", str(WORKED), "--method", "nope")
    assert out.returncode == 2
    assert "invalid choice: 'nope'" in out.stderr
    env = subprocess.run(  # noqa: S603
        [str(SCRIPT), "methods"],
        capture_output=True,
        text=True,
        env={"DRIFTSNAP_LOG_FORMAT": "xml", "PATH": ""},
        check=False,
    )
    assert env.returncode == 2
    assert env.stderr.strip() == (
        "driftsnap: error: config error: DRIFTSNAP_LOG_FORMAT: "
        "input should be 'auto', 'json' or 'console' (got 'xml')"
    )


def test_methods_prints_canonical_json_whose_sha256_is_the_hash() -> None:
    """`methods NAME` prints the canonical JSON; its sha256 is the listed params_hash."""
    listed = json.loads(run("methods", "--format", "json").stdout)
    assert {m["name"] for m in listed} == {
        "drift-2023-08",
        "drift-mm-scoring",
        "drift-points-2024-01",
    }
    for m in listed:
        canonical = run("methods", m["name"]).stdout.strip()
        assert hashlib.sha256(canonical.encode()).hexdigest() == m["params_hash"]


def test_program_shows_the_pools_in_force_for_a_week(tmp_path: Path) -> None:
    """`program --week` prints the week's pools and participants; a bad file is one line, exit 2."""
    out = run("program", "--week", "2026-W47", "--format", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["score_pools_usdc"]["SOL-PERP"] == "500.000000"
    assert doc["volume_pool_usdc"] == "1500.000000"
    assert doc["week_start"] == "2026-11-16T00:00:00+00:00"
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[[participant]]\nauthority = "{key("x")}"\nfrom_week = "2026-W99"\n')
    out = run("--program", str(bad), "program")
    assert out.returncode == 2
    assert out.stderr.strip().endswith("participant[0].from_week: no such ISO week: 2026-W99")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (("books", "--rpc-url", "notaurl"), "RPC URL must look like https://host"),
        (("books", "--rpc-url", "ftp://node.example/x"), "RPC URL must look like https://host"),
        (("books", "--rpc-url", "https://node.example:key-SECRET/"), "its port is not a number"),
        (("run", "--once", "--rpc-url", "notaurl"), "RPC URL must look like https://host"),
        (("fills", "check", "--rpc-url", "notaurl"), "RPC URL must look like https://host"),
        (("fills", "check", "--verify-rpc-url", "x"), "RPC URL must look like https://host"),
    ],
)
def test_a_bad_rpc_url_is_refused_at_once_with_exit_2(
    argv: tuple[str, ...], needle: str, tmp_path: Path
) -> None:
    """A URL that is not http(s) with a host is bad configuration: exit 2, one line, no retry
    and no connection; the line never quotes the URL (it may hold an API key)."""
    out = subprocess.run(  # noqa: S603 (our own console script, fixed arguments)
        [str(SCRIPT), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={
            **os.environ,
            "DRIFTSNAP_DATA_DIR": str(tmp_path),
            "DRIFTSNAP_DATABASE_URL": "postgresql://u:p@127.0.0.1:1/none",
        },
    )
    assert out.returncode == 2, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert needle in line
    assert "SECRET" not in line
    assert "rpc_retry" not in out.stderr


def test_a_malformed_database_url_is_exit_2() -> None:
    """The README promises exit 2 for bad configuration: a database URL that does not parse."""
    out = subprocess.run(  # noqa: S603 (our own console script, fixed arguments)
        [str(SCRIPT), "scores"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "DRIFTSNAP_DATABASE_URL": "postgresql://u:SECRET@host:notaport/db"},
    )
    assert out.returncode == 2, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert "database URL is malformed" in line
    assert "SECRET" not in line


def test_one_shot_commands_print_no_info_lines_unless_asked(tmp_path: Path) -> None:
    """`db url` prints the URL and nothing on stderr at info (the embedded server's start is
    logged only with --log-level info); the daemon-like commands keep info by default."""
    env = {"PATH": os.environ.get("PATH", ""), "DRIFTSNAP_DATA_DIR": str(tmp_path)}
    try:
        quiet = subprocess.run(  # noqa: S603 (our own console script, fixed arguments)
            [str(SCRIPT), "db", "url"], capture_output=True, text=True, env=env, timeout=120,
            check=False,
        )  # fmt: skip
        assert quiet.returncode == 0, quiet.stderr
        assert quiet.stdout.startswith("postgresql://")
        assert '"level": "info"' not in quiet.stderr
        asked = subprocess.run(  # noqa: S603
            [str(SCRIPT), "--log-level", "info", "--log-format", "json", "db", "url"],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip
        assert '"event": "embedded_postgres_ready"' in asked.stderr
    finally:
        subprocess.run(  # noqa: S603
            [str(SCRIPT), "db", "stop"], capture_output=True, env=env, timeout=60, check=False
        )
    from driftsnap import cli  # noqa: PLC0415

    assert {"run", "demo", "simnet"} == cli.LONG_RUNNING
