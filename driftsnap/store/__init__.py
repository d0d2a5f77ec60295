"""Postgres: tables mirroring ``migrations/``, queries, COPY writers, locks; and the seed files.

Rules of this room (enforced by import-linter in pyproject.toml): it never imports
``driftsnap.chain``, the flows, the daemon or the CLI; query functions take a connection and
return frozen dataclasses; no driver exception leaves it (connections and transactions come from
:func:`database.connect` and :func:`database.begin`, which turn them into :class:`StoreError`).

Modules:

``database``    URLs (password always masked), engines, the embedded PostgreSQL server, ``open``,
                ``connect``/``begin`` with the driver's errors wrapped
``migrations``  numbered SQL files in ``migrations/``, the ledger, ``apply``, ``status``, ``check``
``schema``      SQLAlchemy Core tables and views mirroring the migrations (a test compares them)
``snapshots``   ``write_tick``: one tick, one transaction, COPY; ``read_book``, ``read_scores``;
                the tick headers the daemon asks about (intervals taken, the last ok tick)
``books``       the compressed binary form of an order-level book, whole or a delta on another
``bookchain``   which stored book a new one is a delta on; reading deltas back (in order, or one)
``weeks``       weekly partitions, the sampling seed's commitment and reveal, program pools
``seeds``       the weeks' secret sampling seeds, in 0600 files beside the database
``queries``     ``week_scores``, ``live_scores``, ``week_coverage``, ``live_coverage``
``fills``       maker fills and their watermark in one transaction; gaps, self-matches, volume
``closes``      the week close's rows (immutable once written) and the inputs it reads
``makers``      registered makers (participants) and forfeits
``series``      the week report's reads: per-bucket shares, bracket breakdowns (recomputed from
                the books since 0008), uptime
``locks``       advisory locks: one writing daemon (``Writer``), one migrator, one close at a time
``errors``      ``StoreError`` and its subclasses

Typical use::

    db = database.open(settings.database_url)          # None: the embedded server
    with database.connect(db.engine) as conn:
        migrations.check(conn)                          # `driftsnap run` refuses a stale schema
    writer = locks.Writer(db.engine)
    if writer.try_take():
        with database.begin(db.engine) as conn:         # one tick, all or nothing
            snapshots.write_tick(conn, tick, markets, methods=methods, detail=hashes)
"""
