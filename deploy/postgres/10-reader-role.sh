#!/bin/sh
# A read-only role for people and dashboards that query scores (psql, Grafana). Runs once, from
# the postgres image's /docker-entrypoint-initdb.d, before driftsnap has created any table: the
# default privileges below make every table, view and partition schema that the driftsnap role
# creates later readable by driftsnap_reader, and nothing writable. `driftsnap migrate --roles`
# (the compose migrate service) creates the writer and closer roles, and this one if it is
# missing (a volume initialised before this script existed); `migrate` grants all three their
# privileges table by table. Idempotent: a role that exists already keeps it, with this password.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v reader_password="$DRIFTSNAP_READER_PASSWORD" <<'SQL'
SELECT 'CREATE ROLE driftsnap_reader LOGIN'
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'driftsnap_reader') \gexec
ALTER ROLE driftsnap_reader PASSWORD :'reader_password';
GRANT CONNECT ON DATABASE :"DBNAME" TO driftsnap_reader;
GRANT USAGE ON SCHEMA public TO driftsnap_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE driftsnap GRANT SELECT ON TABLES TO driftsnap_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE driftsnap GRANT USAGE ON SCHEMAS TO driftsnap_reader;
SQL
