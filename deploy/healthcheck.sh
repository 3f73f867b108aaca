#!/bin/sh
# The image's HEALTHCHECK: checks whichever Dagster process this container runs (PID 1 is
# `tini -- <command>`): the code server answers its gRPC health check, the daemon has recent
# heartbeats in the instance, the webserver answers /server_info.
cmd=$(tr '\0' ' ' < /proc/1/cmdline)
case "$cmd" in
  *dagster-webserver*) exec python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${DAGSTER_WEBSERVER_PORT:-3000}/server_info', timeout=5)" ;;
  *dagster-daemon*) exec dagster-daemon liveness-check ;;
  *code-server*) exec dagster api grpc-health-check --port "${MEDIA_ASSETS_CODE_SERVER_PORT:-4000}" ;;
  *) exit 0 ;;  # a run container (ECS/Kubernetes launchers): its launcher health-checks it
esac
