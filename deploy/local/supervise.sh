#!/usr/bin/env bash
# supervise.sh COMMAND...: run COMMAND, and run it again when it exits with
# code 4, as Kubernetes or docker compose's `restart` would. `stream-app
# worker` exits with 4 when it found a stall that re-reading the partition did
# not heal (README, Operations); a restart reads every partition again from
# its committed offset. At most SUPERVISE_MAX_RESTARTS (5) restarts; any
# other exit code ends the loop with that code. SIGTERM and SIGINT go to the
# command, and no restart follows them.
set -uo pipefail
max="${SUPERVISE_MAX_RESTARTS:-5}"
child=""
stopping=0
forward() {
  stopping=1
  [[ -n "$child" ]] && kill -TERM "$child" 2>/dev/null
}
trap forward TERM INT
restarts=0
while :; do
  "$@" &
  child=$!
  wait "$child"
  rc=$?
  # A trapped signal ends `wait` early: wait for the command itself.
  while kill -0 "$child" 2>/dev/null; do
    wait "$child"
    rc=$?
  done
  if ((stopping)) || ((rc != 4)); then
    exit "$rc"
  fi
  if ((restarts >= max)); then
    echo "supervise: $1 exited with code 4 again after $restarts restarts; giving up" >&2
    exit "$rc"
  fi
  restarts=$((restarts + 1))
  echo "supervise: $1 exited with code 4 (a stall it could not heal); restart $restarts of $max" >&2
  sleep 1
done
