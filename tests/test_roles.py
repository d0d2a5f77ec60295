"""Least privilege on a real PostgreSQL: the writer, closer and reader roles, the TRUNCATE
triggers, and the commands connecting as the narrowest role (issue 15, item 11)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.pool import NullPool

from driftsnap import config, parts
from driftsnap.errors import ConfigError
from driftsnap.flows import close as close_flow
from driftsnap.simnet import server
from driftsnap.store import database, makers, roles, schema, snapshots, weeks
from driftsnap.store import fills as store_fills
from driftsnap.store.errors import StoreError
from driftsnap.store.seeds import Seeds
from tests import pg
from tests.test_close import AFTER, PROGRAM, WEEK, _fills, build_week

if TYPE_CHECKING:
    from collections.abc import Iterator

SCRIPT = Path(sys.executable).parent / "driftsnap"
NAMES = roles.Names()
# The tables whose rows are a closed week's record (0003): TRUNCATE emptied them before 0006.
PROTECTED = ("fills", "ticks", "snapshots", "weeks", "week_closes", "week_close_payouts")


def _engine(url: sa.URL) -> sa.Engine:
    return sa.create_engine(url, poolclass=NullPool)


@pytest.fixture
def as_role(pg_cluster: pg.Cluster, pg_url: sa.URL) -> Iterator[dict[str, sa.Engine]]:
    """Engines on a fresh migrated database as the owner (the test cluster's superuser, who ran
    the migrations) and as each login role, granted as `driftsnap migrate` grants them."""
    passwords: dict[roles.LoginRole, str | None] = {
        r: f"{r}-pw-{os.getpid()}" for r in roles.LOGIN_ROLES
    }
    owner = _engine(pg_url)
    with owner.begin() as conn:
        roles.create(conn, NAMES, passwords)
        roles.grant(conn, NAMES)
    engines = {"owner": owner} | {
        role: _engine(pg_url.set(username=name, password=passwords[role]))
        for role, name in NAMES.items()
    }
    yield engines
    for engine in engines.values():
        engine.dispose()


def _refused(engine: sa.Engine, statement: str, match: str) -> None:
    with pytest.raises(sa.exc.DBAPIError, match=match), engine.begin() as conn:
        conn.execute(sa.text(statement))


# ---------------------------------------------------------------- the writer


def test_the_writer_writes_ticks_and_fills_but_cannot_truncate_delete_or_disable_triggers(
    as_role: dict[str, sa.Engine], tmp_path: Path
) -> None:
    """The daemon's role writes a whole week (ticks, books, scores, fills, finality, partitions
    of a new week), and cannot empty, delete or unprotect the closed week."""
    writer, owner = as_role["writer"], as_role["owner"]
    built = build_week(writer, tmp_path)  # commit_seed, write_tick x 14, fills, finality
    close_flow.close_week(
        as_role["closer"], PROGRAM, now=AFTER, seeds=Seeds(built.seeds_dir), week=WEEK
    )
    with owner.connect() as conn:
        closed_fills = conn.execute(sa.text("SELECT count(*) FROM fills")).scalar_one()
    assert closed_fills == len(built.fills)

    # The daemon's own writes keep working: a new week (its partitions made by the owner's
    # function), its fills, a finality update.
    nxt = WEEK.next()
    with writer.begin() as conn:
        assert snapshots.write_tick(
            conn, pg.ok_tick(nxt.start + timedelta(hours=1)), pg.scored(built.books[0]),
            methods=pg.METHODS,
        )  # fmt: skip
        later = [
            dataclasses.replace(
                f, fill_record_id=f.fill_record_id + 100, commitment="confirmed",
                signature=f"{f.signature[:-4]}late", block_time=f.block_time + 7 * 86_400,
            )
            for f in built.fills[:3]
        ]  # fmt: skip
        assert store_fills.write(conn, later, watermark=None) == 3
        assert store_fills.mark_finalized(conn, [later[0].signature]) == 1
    with writer.connect() as conn:
        assert conn.execute(sa.text("SELECT current_user")).scalar_one() == NAMES.writer
        assert weeks.partitions(conn, "snapshots")[-1] == weeks.partition_name("snapshots", nxt)

    for table in PROTECTED:
        _refused(writer, f"TRUNCATE {table}", "permission denied")
    _refused(writer, "TRUNCATE driftsnap_partitions.snapshots_2026w47", "permission denied")
    _refused(writer, "DELETE FROM fills", "permission denied")
    _refused(writer, "DELETE FROM ticks", "permission denied")
    _refused(writer, "ALTER TABLE fills DISABLE TRIGGER ALL", "must be owner")
    _refused(writer, "ALTER TABLE fills DISABLE TRIGGER fills_closed_week", "must be owner")
    _refused(writer, "DROP TRIGGER fills_closed_week ON fills", "must be owner")
    _refused(writer, "UPDATE fills SET quote_filled = quote_filled * 2", "permission denied")
    _refused(writer, "UPDATE week_closes SET digest = 'x'", "permission denied")
    _refused(writer, "DELETE FROM week_close_payouts", "permission denied")
    _refused(writer, "INSERT INTO forfeits VALUES ('x', '2026-11-23', 'r')", "permission denied")
    _refused(writer, "SET session_replication_role = replica", "permission denied")
    _refused(writer, "CREATE TABLE driftsnap_partitions.x (a int)", "permission denied")
    with owner.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM fills")).scalar_one() == closed_fills + 3


def test_new_partitions_get_their_parents_grants_and_the_truncate_trigger(
    as_role: dict[str, sa.Engine],
) -> None:
    """A week's partitions, created for the writer, are the ones the Python names, readable by
    the reader, writable by the writer only, fillfactor 50 for accumulators, never truncated."""
    week = WEEK.next().next()
    with as_role["writer"].begin() as conn:
        weeks.ensure_partitions(conn, week)
    with as_role["owner"].connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT c.relname, pg_get_userbyid(c.relowner), c.reloptions,"
                " has_table_privilege(:w, c.oid, 'INSERT'), has_table_privilege(:r, c.oid,"
                " 'SELECT'), has_table_privilege(:r, c.oid, 'INSERT'),"
                " EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid"
                "  AND t.tgname = 'driftsnap_no_truncate')"
                " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'driftsnap_partitions' AND c.relname LIKE :like"
            ),
            {"w": NAMES.writer, "r": NAMES.reader, "like": f"%_{week.year}w{week.number:02d}"},
        ).all()
        owner = conn.execute(sa.text("SELECT current_user")).scalar_one()
    by_name = {r[0]: r[1:] for r in rows}
    expected = {weeks.partition_name(t, week) for t in schema.PARTITIONED}
    assert set(by_name) == expected
    for name, (made_by, options, w_insert, r_select, r_insert, trigger) in by_name.items():
        assert made_by == owner
        assert (w_insert, r_select, r_insert, trigger) == (True, True, False, True), name
        assert (options == ["fillfactor=50"]) == name.startswith("week_makers"), name


# ---------------------------------------------------------------- the closer and the reader


def test_the_closer_closes_forfeits_and_registers_but_writes_no_tick(
    as_role: dict[str, sa.Engine], tmp_path: Path
) -> None:
    """close-week, forfeit, makers add/remove work as the closer; a tick or a fill does not."""
    closer = as_role["closer"]
    built = build_week(as_role["writer"], tmp_path)
    outcome = close_flow.close_week(
        closer, PROGRAM, now=AFTER, seeds=Seeds(built.seeds_dir), week=WEEK
    )
    assert outcome.stored
    who = built.fills[0].maker_authority
    assert who is not None
    close_flow.forfeit(closer, who, [WEEK.next()], reason="left the program")
    with closer.begin() as conn:
        makers.add_participant(conn, who, name="mm", from_week=WEEK.next())
        assert makers.remove_participant(conn, who, from_week=WEEK.next())
    at = WEEK.next().start + timedelta(hours=1)
    with pytest.raises(StoreError, match="permission denied"), closer.begin() as conn:
        snapshots.write_tick(conn, pg.ok_tick(at), pg.scored(built.books[0]), methods=pg.METHODS)
    _refused(closer, "DELETE FROM fills", "permission denied")
    _refused(closer, "TRUNCATE forfeits", "permission denied")
    _refused(closer, "UPDATE weeks SET cadence = '1 hour'", "permission denied")


def test_the_reader_reads_everything_and_writes_nothing(
    as_role: dict[str, sa.Engine], tmp_path: Path
) -> None:
    """SELECT on every table and view; every write refused."""
    reader = as_role["reader"]
    build_week(as_role["writer"], tmp_path)
    with reader.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM weekly_scores")).scalar_one() > 0
        assert conn.execute(sa.text("SELECT count(*) FROM fills")).scalar_one() > 0
        for rel in roles.relations(conn):
            conn.execute(sa.text(f'SELECT 1 FROM "{rel.schema}"."{rel.name}" LIMIT 1'))  # noqa: S608
    for statement in (
        "INSERT INTO markets VALUES (99, 'X-PERP')",
        "UPDATE ticks SET reason = 'x'",
        "DELETE FROM program_pools",
        "TRUNCATE fills",
        "INSERT INTO forfeits VALUES ('x', '2026-11-23', 'r')",
    ):
        _refused(reader, statement, "permission denied")
    with (
        pytest.raises(sa.exc.DBAPIError, match="permission denied for function"),
        reader.begin() as conn,
    ):
        weeks.ensure_partitions(conn, WEEK.next().next())


# ---------------------------------------------------------------- the owner


def test_truncate_is_refused_even_to_the_owner(as_role: dict[str, sa.Engine]) -> None:
    """BEFORE TRUNCATE triggers on every table and partition: TRUNCATE fails as the owner (row
    triggers do not fire on TRUNCATE, which emptied a closed week in one statement)."""
    owner = as_role["owner"]
    with owner.begin() as conn:
        snapshots.write_tick(conn, pg.ok_tick(pg.MONDAY), pg.scored(pg.simulated_books(1)[0]),
                             methods=pg.METHODS)  # fmt: skip
        store_fills.write(conn, _fills(["a", "b", "c"], WEEK), watermark=None)
    for table in (*PROTECTED, "accounts CASCADE", "driftsnap_partitions.snapshots_2026w47"):
        _refused(owner, f"TRUNCATE {table}", "TRUNCATE of .* refused")
    with owner.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM fills")).scalar_one() == 12
        unprotected = conn.execute(
            sa.text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('public', 'driftsnap_partitions')"
                " AND c.relname <> 'schema_migrations' AND NOT EXISTS (SELECT 1 FROM pg_trigger t"
                "  WHERE t.tgrelid = c.oid AND t.tgname = 'driftsnap_no_truncate')"
            )
        ).all()
    assert unprotected == []  # 0005's tables included


def test_a_superuser_or_the_owner_is_refused_as_a_least_privilege_role(
    as_role: dict[str, sa.Engine],
) -> None:
    """db roles will not grant to (or set the password of) the owner or a superuser."""
    with as_role["owner"].connect() as conn:
        me = roles.session(conn)
        assert me.owns
        bad = roles.Names(writer=me.user)
        with pytest.raises(ConfigError, match=r"writer role .* is the schema owner"):
            roles.grant(conn, bad)
        with pytest.raises(ConfigError, match="both role"):
            roles.grant(conn, roles.Names(closer=NAMES.writer))
    with as_role["writer"].connect() as conn:
        assert not roles.session(conn).owns


def test_the_scram_verifier_matches_rfc_7677() -> None:
    """The verifier set as a role's password proves the RFC 7677 exchange for 'pencil'."""
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    verifier = roles.scram_verifier("pencil", salt=salt)
    head, keys = verifier.rsplit("$", 1)
    assert head == "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=="
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth = (
        f"n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
        f"c=biws,r={nonce}"
    )
    server_signature = hmac.digest(server_key, auth.encode(), "sha256")
    assert base64.b64encode(server_signature).decode() == (
        "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    )
    proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client_signature = hmac.digest(stored_key, auth.encode(), "sha256")
    client_key = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
    assert hashlib.sha256(client_key).digest() == stored_key


# ---------------------------------------------------------------- the commands


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (our own console script, fixed arguments)
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", ""), "DRIFTSNAP_LOG_LEVEL": "warning", **env},
        timeout=180,
        check=False,
    )


def _plain(url: sa.URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def test_db_roles_creates_roles_from_the_urls_and_each_command_uses_its_own(
    pg_cluster: pg.Cluster, pg_url: sa.URL
) -> None:
    """`db roles` creates the roles the per-role URLs name, with their passwords (never
    printed); then each command connects with its role's URL: with the owner's URL broken,
    scores (reader) and makers add / forfeit (closer) still work, and a closer URL that names
    the reader is refused the write."""
    tag = os.getpid()
    names = roles.Names(f"w_{tag}", f"c_{tag}", f"r_{tag}")
    secrets = {r: f"Sentinel-{r}-{tag}-pw" for r in roles.LOGIN_ROLES}
    urls = {r: _plain(pg_url.set(username=n, password=secrets[r])) for r, n in names.items()}
    env = {
        "DRIFTSNAP_DATABASE_URL": _plain(pg_url),
        **{f"DRIFTSNAP_{r.upper()}_DATABASE_URL": u for r, u in urls.items()},
    }
    try:
        made = _run("db", "roles", env=env)
        assert made.returncode == 0, made.stderr
        for name in (names.writer, names.closer, names.reader):
            assert f"created role {name}" in made.stdout
        assert "granted" in made.stdout
        assert not any(s in made.stdout + made.stderr for s in secrets.values())
        with _engine(pg_url).connect() as conn:
            stored = conn.execute(
                sa.text("SELECT rolpassword FROM pg_authid WHERE rolname = :n"),
                {"n": names.writer},
            ).scalar_one()
        assert stored.startswith("SCRAM-SHA-256$4096:")

        broken = {**env, "DRIFTSNAP_DATABASE_URL": _plain(pg_url.set(database="no_such_db"))}
        scores = _run("scores", "--format", "json", env=broken)
        assert scores.returncode == 0, scores.stderr
        who = "8" * 44
        added = _run("makers", "add", who, "--name", "mm", env=broken)
        assert added.returncode == 0, added.stderr
        forfeited = _run("forfeit", who, "--week", "2026-W48", "--reason", "r", env=broken)
        assert forfeited.returncode == 0, forfeited.stderr
        as_reader = {**broken, "DRIFTSNAP_CLOSER_DATABASE_URL": urls["reader"]}
        refused = _run("makers", "add", who, "--name", "x", env=as_reader)
        assert refused.returncode == 1
        assert "permission denied for table participants" in refused.stderr
        assert secrets["reader"] not in refused.stderr
        migrate = _run("migrate", env=broken)  # the owner's command: the owner's URL only
        assert migrate.returncode == 1
        assert "no_such_db" in migrate.stderr
        no_owner = {k: v for k, v in env.items() if k != "DRIFTSNAP_DATABASE_URL"}
        missing = _run("migrate", env=no_owner)
        assert missing.returncode == 2
        assert "set DRIFTSNAP_DATABASE_URL" in missing.stderr
    finally:
        # Roles are the server's: drop what they hold in this database, then the roles.
        with _engine(pg_url).begin() as conn:
            for _, name in names.items():
                if conn.execute(
                    sa.text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}
                ).first():
                    conn.exec_driver_sql(f'DROP OWNED BY "{name}"')
        with pg_cluster.admin() as admin:
            for _, name in names.items():
                admin.exec_driver_sql(f'DROP ROLE IF EXISTS "{name}"')


def test_the_embedded_default_connects_each_command_as_its_role(tmp_path: Path) -> None:
    """With no URL at all: migrate (the embedded superuser) grants the roles it created; each
    command's session is its role's."""
    env = {"DRIFTSNAP_DATA_DIR": str(tmp_path)}
    migrated = _run("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert f"granted {NAMES.writer}, {NAMES.closer}, {NAMES.reader}" in migrated.stderr
    settings = config.Settings(data_dir=tmp_path)
    seen = {}
    every: tuple[roles.Role, ...] = ("owner", *roles.LOGIN_ROLES)
    for role in every:
        db = parts.open_database(settings, role=role)
        try:
            with db.engine.connect() as conn:
                seen[role] = conn.execute(sa.text("SELECT current_user")).scalar_one()
        finally:
            db.close()
    assert seen == {"owner": "postgres"} | {r: NAMES.of(r) for r in roles.LOGIN_ROLES}
    db = parts.open_database(settings, daemon=True)  # what `run` opens
    try:
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_user")).scalar_one() == NAMES.writer
    finally:
        db.close()
    url = _run("db", "url", "--role", "reader", env=env)
    assert url.stdout.startswith(f"postgresql://{NAMES.reader}@")
    _run("db", "stop", env=env)


@pytest.mark.asyncio
async def test_the_embedded_daemon_writes_as_the_writer(tmp_path: Path) -> None:
    """`driftsnap run` with the embedded default: its sessions in pg_stat_activity are the
    writer's, and it writes ticks and fills as that role."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DRIFTSNAP_DATA_DIR": str(tmp_path),
        "DRIFTSNAP_METRICS_PORT": "0",
        "DRIFTSNAP_LOG_FORMAT": "json",
        "DRIFTSNAP_ALLOW_ROOT": "true",
    }
    assert _run("migrate", env=env).returncode == 0
    async with server.serve("default", seed=23, tick_s=0.05) as sim:
        proc = await asyncio.create_subprocess_exec(
            str(SCRIPT), "run", "--cadence", "1s",
            env={**env, "DRIFTSNAP_RPC_URL": sim.url},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stderr is not None
        lines: list[str] = []
        started = written = None
        async with asyncio.timeout(90):
            while written is None:
                raw = await proc.stderr.readline()
                assert raw, "".join(lines)[-3000:]
                lines.append(raw.decode())
                doc = json.loads(raw) if raw.startswith(b"{") else {}
                started = doc if doc.get("event") == "daemon_started" else started
                written = doc if doc.get("event") == "tick_written" else None
        server_ = await asyncio.to_thread(database.start_embedded, tmp_path)
        try:
            admin = _engine(server_.url)
            with admin.connect() as conn:
                users = set(
                    conn.execute(
                        sa.text("SELECT usename FROM pg_stat_activity WHERE application_name = :a"),
                        {"a": parts.APPLICATION_NAME},
                    ).scalars()
                )
                ticks = conn.execute(sa.text("SELECT count(*) FROM ticks")).scalar_one()
            admin.dispose()
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.communicate(), 20)
            await asyncio.to_thread(server_.stop)
    assert proc.returncode == 0, "".join(lines)[-3000:]
    assert written["status"] == "ok"
    assert started is not None
    assert started["database"].startswith(f"postgresql://{NAMES.writer}@")
    assert users == {NAMES.writer}
    assert ticks >= 1


def test_a_role_granted_nothing_yet_is_told_to_run_migrate(
    pg_cluster: pg.Cluster, pg_url: sa.URL
) -> None:
    """A role of a database that `migrate` has not granted yet (one older than 0006, or roles
    created after the last migrate) gets the fix in one line, not a permission error."""
    with _engine(pg_url).begin() as conn:
        roles.ensure(conn, NAMES)
    settings = config.Settings(
        reader_database_url=SecretStr(_plain(pg_url.set(username=NAMES.reader)))
    )
    with (
        pytest.raises(StoreError, match=r"no privileges .* run driftsnap migrate"),
        parts.open_store(settings),
    ):
        pass
