"""Postgres: tables mirroring ``migrations/``, queries, COPY writers, week close SQL.

Rules of this room (enforced by import-linter in pyproject.toml): it never imports
``driftsnap.chain``, the daemon or the CLI; query functions take a connection and return frozen
dataclasses.

Modules:

``database``    URLs (password always masked), engines, the embedded PostgreSQL server, ``open``
``migrations``  numbered SQL files in ``migrations/``, the ledger, ``apply``, ``status``, ``check``
``schema``      SQLAlchemy Core tables and views mirroring the migrations (a test compares them)
``snapshots``   ``write_tick``: one tick, one transaction, COPY; ``read_book``, ``read_scores``
``books``       the compressed binary form of an order-level book
``weeks``       weekly partitions, the sampling seed's commitment and reveal, program pools
``queries``     ``week_scores``, ``live_scores``, ``week_coverage``, ``live_coverage``
``fills``       maker fills and their watermark in one transaction; gaps, self-matches, volume
``close``       the week close's rows (immutable once written), participants, forfeits, inputs
``report``      the week report's reads: per-bucket shares, bracket breakdowns, uptime, volume
``locks``       advisory locks: one writing daemon per database, one migrator at a time
``errors``      ``StoreError`` and its subclasses

Typical use::

    db = database.open(settings.database_url)          # None: the embedded server
    with db.engine.begin() as conn:
        migrations.check(conn)                          # `driftsnap run` refuses a stale schema
    with locks.writer_lock(db.engine):
        with db.engine.begin() as conn:                 # one tick, all or nothing
            snapshots.write_tick(conn, tick, markets, methods=methods)
"""
