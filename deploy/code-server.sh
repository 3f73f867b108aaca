#!/bin/sh
# The image's code server: `dagster code-server start "$@"`, stopped promptly. Dagster's code
# server keeps running for ~60 s after SIGTERM or SIGINT (its gRPC shutdown grace and cleanup
# threads), so a container stop (compose, ECS and Kubernetes give 10-30 s) always ended in a
# SIGKILL. Here SIGTERM/SIGINT go to the server's whole process group, which is SIGKILLed
# MEDIA_ASSETS_STOP_GRACE_S (3) seconds later if it is still there. Runs in flight lose their
# worker either way; run_worker_watchdog fails them once a code server is back, and Dagster's
# run retries re-execute them.
#
# usage: deploy/code-server.sh -h 0.0.0.0 -p 4000 -m media_assets.definitions --location-name media_assets
setsid dagster code-server start "$@" &
server=$!
stop() {
  kill -TERM "-$server" 2>/dev/null
  waited=0
  while kill -0 "$server" 2>/dev/null && [ "$waited" -lt "${MEDIA_ASSETS_STOP_GRACE_S:-3}" ]; do
    sleep 1
    waited=$((waited + 1))
  done
  kill -KILL "-$server" 2>/dev/null
  wait "$server" 2>/dev/null
  exit 143
}
trap stop TERM INT
wait "$server"
status=$?
# `wait` returns early when a trapped signal arrives; the trap exits. Otherwise the server ended.
exit "$status"
