# wanbot in a container. CI does not build this image (no Docker engine runs there):
# tests/test_deploy.py only checks that it installs the package the way the Makefile
# does and that compose.yaml passes only settings .env.example documents.
#
#   docker build -t wanbot .
#   docker run --env-file .env -v wanbot-data:/data wanbot
#
# See docs/deploy.md.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: install wanbot and its dependencies into a virtualenv -----------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/wanbot
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
COPY storage ./storage
# The Makefile's `make run` installs `pip install -e .` (no extras, no dev tools); the
# image installs the same target without -e, so it carries the package, not a checkout.
RUN /opt/wanbot/bin/python -m pip install --quiet .

# --- runtime: the virtualenv only, run by an unprivileged user --------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 wanbot \
    && useradd --system --uid 10001 --gid wanbot --home-dir /data --shell /usr/sbin/nologin wanbot \
    && mkdir -p /data \
    && chown wanbot:wanbot /data
COPY --from=build /opt/wanbot /opt/wanbot
# MPLCONFIGDIR: matplotlib (the spend chart) needs a writable folder for its caches.
ENV PATH=/opt/wanbot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DATABASE_PATH=/data/wanbot.sqlite3 \
    OUTPUT_DIR=/data/output \
    LOG_FORMAT=json \
    METRICS_PORT=9090 \
    METRICS_HOST=0.0.0.0 \
    MPLCONFIGDIR=/data/.matplotlib
# The SQLite database (when DATABASE_URL is not set) and saved images live here.
VOLUME ["/data"]
WORKDIR /data
USER wanbot
# 9090: /healthz and /metrics. 8080: provider callbacks (CALLBACK_ENABLED=true).
EXPOSE 9090 8080
# 503 (database, Discord or provider failing) or no answer: unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('METRICS_PORT') or sys.exit(0); urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
# SIGTERM (docker stop) ends the bot cleanly: jobs stay stored and resume on start.
STOPSIGNAL SIGTERM
ENTRYPOINT ["wanbot"]
CMD ["run"]
