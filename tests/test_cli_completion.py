"""`driftsnap completion` (shell scripts from the real parser) and `verify-week --format json`,
as a user runs them: the installed console script, in a subprocess."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import zipfile
from typing import TYPE_CHECKING

import pyarrow.parquet as pq
import sqlalchemy as sa

from tests import test_cli, test_cli_store
from tests.test_close import build_week
from tests.test_close_cli import PAST, _env
from tests.test_export import _rewrite

if TYPE_CHECKING:
    from pathlib import Path

INSTALL = "driftsnap completion bash > ~/.local/share/bash-completion/completions/driftsnap"


def _subcommands() -> list[str]:
    """The names of the top-level commands, from the parser itself."""
    from driftsnap import cli  # noqa: PLC0415 -- the parser is built in-process, no subprocess

    (sub,) = (a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def _complete(script: str, *words: str) -> list[str]:
    """What bash offers for the command line ``words`` (the last one being completed), with
    ``script`` sourced: the completion function registered for driftsnap, called as bash would."""
    probe = (
        "source /dev/stdin\n"
        'fn=$(complete -p driftsnap | sed -n "s/.* -F \\([^ ]*\\) .*/\\1/p")\n'
        'COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 ))\n'
        'COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=()\n'
        '"$fn" driftsnap "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    out = subprocess.run(  # noqa: S603 (bash from PATH, fixed script)
        ["bash", "-c", probe, "bash", "driftsnap", *words],  # noqa: S607
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return sorted(w for w in out.stdout.splitlines() if w)


def test_bash_completion_registers_for_driftsnap_and_completes_commands_flags_and_choices() -> None:
    """The bash script, sourced, registers a completion for driftsnap that offers the real
    subcommands, a command's flags, a flag's choices and the shells of `completion` itself."""
    out = test_cli.run("completion", "bash")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert out.stdout.endswith("\n")
    registered = subprocess.run(
        ["bash", "-c", "source /dev/stdin; complete -p driftsnap"],  # noqa: S607
        input=out.stdout,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout.strip().endswith(" driftsnap")
    assert " -F " in registered.stdout
    names = _subcommands()
    assert {"close-week", "verify-week", "completion"} <= set(names)
    assert _complete(out.stdout, "") == sorted(names)
    assert _complete(out.stdout, "verify-w") == ["verify-week"]
    assert "--format" in _complete(out.stdout, "verify-week", "--")
    assert _complete(out.stdout, "verify-week", "--format", "") == ["json", "table"]
    assert _complete(out.stdout, "close-week", "--method", "drift-m") == ["drift-mm-scoring"]
    assert _complete(out.stdout, "completion", "") == ["bash", "zsh"]


def test_bash_completion_offers_file_names_for_path_arguments(tmp_path: Path) -> None:
    """`verify-week --from` completes file names (an archive), `report --out` directories."""
    (tmp_path / "week.zip").write_text("")
    (tmp_path / "reports").mkdir()
    script = test_cli.run("completion", "bash").stdout
    assert _complete(script, "verify-week", "--from", str(tmp_path / "we")) == [
        str(tmp_path / "week.zip")
    ]
    (tmp_path / "report.txt").write_text("")  # a file: not offered for a directory
    assert _complete(script, "report", "--out", f"{tmp_path}/rep") == [str(tmp_path / "reports")]


def test_zsh_completion_is_a_compdef_naming_every_command() -> None:
    """The zsh script starts with `#compdef driftsnap` and names every subcommand."""
    out = test_cli.run("completion", "zsh")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "#compdef driftsnap"
    for name in _subcommands():
        assert name in out.stdout, name


def test_an_unknown_shell_is_one_line_and_exit_2_and_help_says_how_to_install() -> None:
    """`completion fish` prints nothing on stdout and one error line; --help shows the install
    line for bash and the zsh one."""
    out = test_cli.run("completion", "fish")
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("driftsnap: error: unknown shell 'fish'")
    assert "bash and zsh" in lines[0]
    shown = test_cli.run("completion", "--help")
    assert shown.returncode == 0
    assert INSTALL in shown.stdout
    assert "driftsnap completion zsh > ~/.zfunc/_driftsnap" in shown.stdout


def test_verify_week_json_from_the_database(
    pg_url: sa.URL, pg_engine: sa.Engine, tmp_path: Path
) -> None:
    """verify-week --format json: one object, ok with the stored digest (exit 0); after
    tampering, ok false and the difference (exit 1); bad input stays one line, exit 2."""
    build_week(pg_engine, tmp_path, week=PAST)
    env = _env(pg_url, tmp_path)
    closed = test_cli_store.run("close-week", "--week", str(PAST), "--format", "json", env=env)
    assert closed.returncode == 0, closed.stderr
    done = json.loads(closed.stdout)
    verified = test_cli_store.run("verify-week", "--week", str(PAST), "--format", "json", env=env)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout) == {
        "week": str(PAST),
        "ok": True,
        "digest": done["digest"],
        "difference": None,
        "books": done["books"],
        "fills": done["fills"],
        "source": "database",
    }
    table = test_cli_store.run("verify-week", "--week", str(PAST), env=env)
    assert table.stdout == (
        f"week {PAST}: ok — {done['books']} books and {done['fills']} fills recomputed, "
        f"every digest matches ({done['digest']})\n"
    )
    with pg_engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        conn.execute(sa.text("UPDATE snapshots SET ts = ts + 1 WHERE market_index = 1"))
    tampered = test_cli_store.run("verify-week", "--week", str(PAST), "--format", "json", env=env)
    assert tampered.returncode == 1, tampered.stderr
    doc = json.loads(tampered.stdout)
    assert doc["ok"] is False
    assert doc["difference"].startswith("books_root: stored ")
    assert doc["digest"] == done["digest"]
    assert doc["source"] == "database"
    neither = test_cli_store.run("verify-week", "--format", "json", env=env)
    assert neither.returncode == 2
    assert neither.stdout == ""
    assert len(neither.stderr.strip().splitlines()) == 1


def test_verify_week_json_from_an_archive(
    pg_url: sa.URL, pg_engine: sa.Engine, tmp_path: Path
) -> None:
    """verify-week --from FILE --format json, no database: ok with the digest (exit 0); a
    tampered archive: ok false, the difference, no digest (exit 1)."""
    build_week(pg_engine, tmp_path, week=PAST)
    env = _env(pg_url, tmp_path)
    closed = test_cli_store.run("close-week", "--week", str(PAST), "--format", "json", env=env)
    assert closed.returncode == 0, closed.stderr
    done = json.loads(closed.stdout)
    archive = tmp_path / "past.zip"
    made = test_cli_store.run("export-week", "--week", str(PAST), "--out", str(archive), env=env)
    assert made.returncode == 0, made.stderr
    nowhere = {"DRIFTSNAP_DATABASE_URL": "postgresql://x@127.0.0.1:1/none"}
    verified = test_cli_store.run(
        "verify-week", "--from", str(archive), "--format", "json", env=nowhere
    )
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout) == {
        "week": str(PAST),
        "ok": True,
        "digest": done["digest"],
        "difference": None,
        "books": done["books"],
        "fills": done["fills"],
        "source": "archive",
    }
    with zipfile.ZipFile(archive) as z:
        fills = pq.read_table(io.BytesIO(z.read("fills.parquet")))
    bad = tmp_path / "bad.zip"
    _rewrite(archive, bad, "fills.parquet", fills.slice(1), manifest=False)
    tampered = test_cli_store.run(
        "verify-week", "--from", str(bad), "--format", "json", env=nowhere
    )
    assert tampered.returncode == 1, tampered.stderr
    doc = json.loads(tampered.stdout)
    assert doc["week"] == str(PAST)
    assert doc["ok"] is False
    assert doc["difference"].startswith("fills.parquet: sha256 ")
    assert doc["digest"] is None
    assert doc["source"] == "archive"
    _rewrite(archive, bad, "fills.parquet", fills.slice(1), manifest=True)
    deeper = test_cli_store.run("verify-week", "--from", str(bad), "--format", "json", env=nowhere)
    assert deeper.returncode == 1, deeper.stderr
    doc = json.loads(deeper.stdout)
    assert doc["difference"].startswith("fills: stored 12 != recomputed 11")
    assert doc["digest"] == done["digest"]
