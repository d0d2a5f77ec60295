# driftsnap: the snapshot daemon as a container, next to a Solana RPC node.
#
#   docker build -t driftsnap .
#   docker run --rm -e DRIFTSNAP_RPC_URL=... -e DRIFTSNAP_DATABASE_URL=... driftsnap        # run
#   docker run --rm -e DRIFTSNAP_DATABASE_URL=... driftsnap migrate
#
# No secret is baked in: the RPC and database URLs come from the environment at run time.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---------------------------------------------------------------- build: the venv, from the lock
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The venv lives at the path it will have in the runtime image: venvs are not relocatable.
RUN python -m venv /opt/driftsnap
COPY pyproject.toml requirements.lock README.md ./
COPY driftsnap ./driftsnap
COPY migrations ./migrations
# requirements.lock is a constraints file: only the runtime dependencies are installed, each at
# the exact version CI tested. A non-editable install, so migrations go to share/driftsnap.
RUN /opt/driftsnap/bin/pip install -c requirements.lock . \
 && /opt/driftsnap/bin/pip check \
 && /opt/driftsnap/bin/driftsnap --version

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE}
# tini as PID 1 forwards SIGTERM to Python and reaps children, so the daemon's graceful stop runs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini=0.19.* \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 driftsnap \
 && useradd --system --uid 10001 --gid driftsnap --home-dir /var/lib/driftsnap --create-home \
      --shell /usr/sbin/nologin driftsnap
COPY --from=build /opt/driftsnap /opt/driftsnap
ENV PATH=/opt/driftsnap/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DRIFTSNAP_LOG_FORMAT=json \
    DRIFTSNAP_METRICS_HOST=0.0.0.0 \
    DRIFTSNAP_METRICS_PORT=9108 \
    DRIFTSNAP_DATA_DIR=/var/lib/driftsnap \
    MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
WORKDIR /var/lib/driftsnap
EXPOSE 9108
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
  CMD ["driftsnap", "healthcheck"]
ENTRYPOINT ["tini", "--", "driftsnap"]
CMD ["run"]
