"""Postgres: tables mirroring ``migrations/``, queries, COPY writers, week close SQL.

Rules of this room (enforced by import-linter in pyproject.toml): it never imports
``driftsnap.chain``, the daemon or the CLI; query functions take a connection and return frozen
dataclasses.
"""
