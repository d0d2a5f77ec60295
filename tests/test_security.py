"""Security properties of the whole package: read-only, no string-built SQL, hostile inputs."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from driftsnap.chain import errors, rpc
from driftsnap.store import schema

PACKAGE = Path(__file__).resolve().parent.parent / "driftsnap"
SCRIPT = Path(sys.executable).parent / "driftsnap"
SOURCES = sorted(PACKAGE.rglob("*.py"))
# Names that would mean holding a key or writing to the chain.
FORBIDDEN_NAMES = {
    "Keypair",
    "keypair",
    "sign_message",
    "send_transaction",
    "send_raw_transaction",
    "sendTransaction",
    "requestAirdrop",
    "Wallet",
}
SQL_CALLS = {"execute", "exec_driver_sql", "text", "SQL"}
HOSTILE = ["x'; DROP TABLE ticks; --", 'SOL-PERP" OR 1=1 --', "$$; DELETE FROM weeks; $$"]


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_no_key_signing_or_sending_anywhere_in_the_package() -> None:
    """No module of driftsnap imports or names a keypair, a signer or a transaction sender."""
    assert len(SOURCES) > 40
    found = []
    for path in SOURCES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ImportFrom) and node.module and "keypair" in node.module:
                found.append(f"{path}: from {node.module} import")
            names = []
            if isinstance(node, ast.Name):
                names.append(node.id)
            elif isinstance(node, ast.Attribute):
                names.append(node.attr)
            elif isinstance(node, ast.alias):
                names.append(node.asname or node.name.rsplit(".", 1)[-1])
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.append(node.value)
            found += [
                f"{path}:{getattr(node, 'lineno', 0)}: {n}" for n in names if n in FORBIDDEN_NAMES
            ]
    assert found == []


def _string_built(node: ast.expr) -> bool:
    """An f-string, a concatenation or a %-format: SQL text assembled from values."""
    if isinstance(node, ast.JoinedStr):
        # Allowed: identifiers quoted by the dialect (CREATE DATABASE cannot take a parameter).
        return not all(
            isinstance(v, ast.Constant)
            or (
                isinstance(v, ast.FormattedValue)
                and isinstance(v.value, ast.Name)
                and v.value.id == "quoted"
            )
            for v in node.values
        )
    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod)


def test_every_sql_statement_is_parameterised() -> None:
    """No SQL text in the package is built from values: constants, bind parameters, Identifiers."""
    offenders = []
    calls = 0
    for path in SOURCES:
        for node in ast.walk(_tree(path)):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in SQL_CALLS:
                calls += 1
                if _string_built(node.args[0]):
                    offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert calls > 20
    assert offenders == []


def test_the_string_check_would_catch_an_interpolated_value() -> None:
    """The SQL check flags an f-string with a value and a concatenation, not a quoted identifier."""
    flagged = ast.parse("conn.execute(sa.text(f\"SELECT * FROM t WHERE m = '{market}'\"))")
    quoted = ast.parse('conn.exec_driver_sql(f"CREATE DATABASE {quoted}")')
    concatenated = ast.parse('conn.execute("SELECT " + column)')

    def first_arg(tree: ast.Module) -> ast.expr:
        call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and n.args)
        inner = call.args[0]
        return inner.args[0] if isinstance(inner, ast.Call) else inner

    assert _string_built(first_arg(flagged))
    assert not _string_built(first_arg(quoted))
    assert _string_built(first_arg(concatenated))


@pytest.mark.asyncio
@pytest.mark.parametrize("method", ["sendTransaction", "requestAirdrop", "simulateTransaction"])
async def test_the_rpc_client_refuses_anything_but_reads(method: str) -> None:
    """A write (or any method off the read allowlist) raises at once and is never sent."""
    sent: list[str] = []

    async def record(request: object) -> None:
        sent.append(str(request))

    async with rpc.Client(
        rpc.RpcSettings(url="http://127.0.0.1:1", max_retries=0),
        event_hooks={"request": [record]},
    ) as client:
        with pytest.raises(errors.ReadOnlyError, match=f"refusing to send '{method}'"):
            await client.call(method, [])
    assert sent == []
    assert "getProgramAccounts" in rpc.READ_METHODS


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (our own console script, fixed arguments)
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", ""), "DRIFTSNAP_LOG_LEVEL": "warning", **env},
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_names_through_the_cli_change_nothing(
    pg_url: sa.URL, pg_engine: sa.Engine, tmp_path: Path, hostile: str
) -> None:
    """Hostile market names, weeks and book fields are refused or matched literally, never run."""
    env = {"DRIFTSNAP_DATABASE_URL": pg_url.render_as_string(hide_password=False)}
    out = _run("scores", "--market", hostile, "--format", "json", env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["scores"] == []
    refused = _run("fills", "self-matches", "--week", hostile, env=env)
    assert refused.returncode == 2
    assert "week must look like 2026-W47" in refused.stderr
    book = {
        "market": hostile, "market_index": 0, "slot": 1, "ts": 1, "oracle_price": 100_000_000,
        "orders": [{"user": hostile, "authority": hostile, "side": "bid", "price": 1, "size": 1,
                    "order_id": 1}],
    }  # fmt: skip
    path = tmp_path / "book.json"
    path.write_text(json.dumps(book))
    bad_book = _run("score-book", str(path), env=env)
    assert bad_book.returncode == 2
    assert "not a base58 public key" in bad_book.stderr
    # The week close's and the report's inputs: weeks and wallets are parsed, never interpolated.
    out_dir = str(tmp_path / "report")
    for args in (
        ("close-week", "--week", hostile, "--dry-run"),
        ("verify-week", "--week", hostile),
        ("report", "--week", hostile, "--out", out_dir),
        ("report", "--week", "2025-W10", "--maker", hostile, "--out", out_dir),
        ("makers", "add", hostile),
        ("forfeit", hostile, "--week", "2025-W10", "--reason", hostile),
    ):
        refused = _run(*args, env=env)
        assert refused.returncode == 2, (args, refused.stderr)
        assert refused.stderr.count("\n") == 1, (args, refused.stderr)
    with pg_engine.connect() as conn:
        for table in (schema.ticks, schema.weeks, schema.participants, schema.forfeits):
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == 0
        assert conn.execute(sa.text("SELECT to_regclass('ticks') IS NOT NULL")).scalar_one()
