# syntax=docker/dockerfile:1
# certhub hub image. Build: docker build -t certhub . ; run and probe: docs/operations.md,
# "Deployment artefacts". tests/deploy/test_dockerfile.py checks this file, runs its
# HEALTHCHECK command against a real hub, and builds and runs the image where a Docker
# daemon is available.

# Both stages on the same base, so the virtual environment built in the first runs
# unchanged in the second (same interpreter path and ABI).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the wheel and its dependencies into /opt/certhub (pip, sources and caches stay here)
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY certhub certhub
COPY docs/registry.example.toml docs/registry.example.toml
RUN python -m venv /opt/certhub \
 && /opt/certhub/bin/pip install --upgrade pip \
 && /opt/certhub/bin/pip wheel --no-deps --wheel-dir /tmp/wheels . \
 && /opt/certhub/bin/pip install /tmp/wheels/certhub-*.whl \
 && /opt/certhub/bin/certhub --version

# --- runtime: the environment only, run as an unprivileged user
FROM ${PYTHON_IMAGE} AS runtime
# A fixed uid/gid, so a volume's owner is the same on every host and in every release.
ARG CERTHUB_UID=10001
RUN groupadd --system --gid "${CERTHUB_UID}" certhub \
 && useradd --system --uid "${CERTHUB_UID}" --gid certhub --home-dir /var/lib/certhub \
    --shell /usr/sbin/nologin certhub \
 && install -d -o certhub -g certhub -m 0700 /var/lib/certhub
COPY --from=build /opt/certhub /opt/certhub
ENV PATH=/opt/certhub/bin:$PATH \
    CERTHUB_DATA_DIR=/var/lib/certhub \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER certhub:certhub
WORKDIR /var/lib/certhub
# The data dir: SQLite (when no CERTHUB_DB), pki/ and keys/. Keep it on a volume.
VOLUME ["/var/lib/certhub"]
# gRPC (mTLS) and, when started with --metrics-port 9464 --metrics-host 0.0.0.0, metrics.
EXPOSE 50051 9464
# The hub's own health service over mTLS, with a client certificate of its CA from the data
# dir (any principal will do). 127.0.0.1 is always in the server certificate's names; the
# address is explicit so a CERTHUB_ADDRESS of 0.0.0.0:50051 set for serve does not leak in.
# Exit 0 SERVING, 1 NOT_SERVING (database down, schema behind, draining), 2 unreachable.
HEALTHCHECK --interval=15s --timeout=10s --start-period=60s --retries=3 \
  CMD ["certhub", "health", "--address", "127.0.0.1:50051"]
# SIGTERM (docker stop) drains for up to 20 s: run with --stop-timeout 30 or more.
STOPSIGNAL SIGTERM
ENTRYPOINT ["certhub"]
CMD ["serve", "--address", "0.0.0.0:50051"]
