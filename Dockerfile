# syntax=docker/dockerfile:1
#
# One image for every process of the suite: `ecourt serve|relay|consume|migrate SERVICE`.
# Build:  docker build -t ecourt:local .
# Run:    docker compose up -d        (see deploy/README.md)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
# Stage 1: build a wheel of the suite and of every dependency, pinned by constraints.txt.
# Every dependency ships manylinux wheels for CPython 3.11, so no compiler is installed here.
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml constraints.txt ./
COPY servicekit ./servicekit
COPY services ./services
COPY gateway ./gateway
COPY ecourt ./ecourt

RUN pip wheel --wheel-dir /wheels -c constraints.txt .

# ---------------------------------------------------------------------------------------------
# Stage 2: the runtime. No compiler, no source tree, no pip cache, not root.
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="ecourt" \
      org.opencontainers.image.description="eCourt services: APIs, outbox relays, event consumers, gateway"

# fonts-wqy-microhei: a CJK font for the PDFs documents renders (names, addresses, court text).
# Its Debian version has not changed since 2014; pinned so a rebuild renders the same glyphs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends fonts-wqy-microhei=0.2.0-beta-3.1 \
 && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid/gid so Kubernetes can verify runAsNonRoot and volumes can be chowned.
RUN groupadd --system --gid 10001 ecourt \
 && useradd --system --uid 10001 --gid ecourt --home-dir /var/lib/ecourt --no-create-home \
            --shell /usr/sbin/nologin ecourt \
 && mkdir -p /var/lib/ecourt /tmp/prometheus \
 && chown ecourt:ecourt /var/lib/ecourt /tmp/prometheus

# Install from the wheels of stage 1 only (--no-index: nothing unpinned can sneak in); the
# wheels are bind-mounted, so they leave no layer behind. (Pinned by constraints.txt in stage 1.)
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels ecourt \
 && ecourt --help > /dev/null

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus \
    ECOURT_DATA_DIR=/var/lib/ecourt \
    ECOURT_HEALTHCHECK_URL=http://127.0.0.1:8000/healthz

WORKDIR /var/lib/ecourt
USER 10001:10001

# 8000: a service API; 8080: the gateway; 9100: metrics of a relay or a consumer.
EXPOSE 8000 8080 9100

# Liveness of an API without curl. Relays, consumers and the gateway point
# ECOURT_HEALTHCHECK_URL elsewhere (docker-compose.yml does).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('ECOURT_HEALTHCHECK_URL', 'http://127.0.0.1:8000/healthz'), timeout=4)"]

ENTRYPOINT ["ecourt"]
CMD ["--help"]
