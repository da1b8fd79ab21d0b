#!/usr/bin/env bash
# The main job on one machine: a local Kafka broker, a stream-app worker and
# the sample stream (claim lines, then the claims of two 837 files); alerts
# are printed as they arrive. A local PostgreSQL and `stream-app sink
# postgres` keep the denial queue, printed at the end (`stream-app queue
# list`, docs/denial-queue.md). Ctrl-C stops it all.
# Non-interactive runs (no terminal) stop after DEMO_IDLE seconds without alerts.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
BIN="${VENV:-.venv}/bin"
export KAFKA_PORT="${KAFKA_PORT:-9092}" KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
export KAFKA_STATE_DIR="${KAFKA_STATE_DIR:-$ROOT/.cache/demo-kafka}"
export KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$KAFKA_PORT"
export STREAM_APP_DATA_DIR="${STREAM_APP_DATA_DIR:-$ROOT/.cache/demo-data}"
export STREAM_APP_WEB_PORT="${STREAM_APP_WEB_PORT:-6066}"
SAMPLE="${1:-examples/sample-claims.jsonl}"
WORKER_LOG="$ROOT/.cache/demo-worker.log"
worker_pid=""
# The denial queue: a throwaway PostgreSQL cluster (deploy/local/postgres.sh) and the sink.
export POSTGRES_STATE_DIR="${POSTGRES_STATE_DIR:-$ROOT/.cache/demo-postgres}"
export POSTGRES_PORT="${POSTGRES_PORT:-0}"   # 0: a free port
export STREAM_APP_SINK_PORT="${STREAM_APP_SINK_PORT:-6067}"
export STREAM_APP_SINK_REFRESH_SECONDS="${STREAM_APP_SINK_REFRESH_SECONDS:-1}"
SINK_LOG="$ROOT/.cache/demo-sink.log"
sink_pid=""
watcher_pid=""
STOPPING="$ROOT/.cache/demo-stopping"   # the demo stops the worker: no report
rm -f "$STOPPING"

# When the worker exits by itself (a bad setting, its port taken, Kafka gone),
# say so with the last lines of its log, whatever the demo is doing.
worker_gone() {
  echo "demo: ${1:-the worker exited}; the last lines of $WORKER_LOG:" >&2
  tail -20 "$WORKER_LOG" | sed 's/^/  /' >&2
}
watch_worker() {
  while kill -0 "$worker_pid" 2>/dev/null; do sleep 1; done
  [[ -e "$STOPPING" ]] || worker_gone
}

cleanup() {
  trap - INT TERM EXIT
  echo "demo: stopping" >&2
  mkdir -p "$ROOT/.cache" && touch "$STOPPING"
  [[ -n "$watcher_pid" ]] && kill "$watcher_pid" 2>/dev/null || true
  if [[ -n "$worker_pid" ]] && kill -0 "$worker_pid" 2>/dev/null; then
    kill -TERM "$worker_pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$worker_pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$worker_pid" 2>/dev/null || true
  fi
  if [[ -n "$sink_pid" ]] && kill -0 "$sink_pid" 2>/dev/null; then
    kill -TERM "$sink_pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$sink_pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$sink_pid" 2>/dev/null || true
  fi
  bash deploy/local/postgres.sh stop --wipe >/dev/null 2>&1 || true
  bash deploy/local/kafka.sh stop --wipe >/dev/null 2>&1 || true
  rm -f "$STOPPING"
}
trap cleanup INT TERM EXIT

# The sink's lag, summed over partitions, from its /metrics (empty if it does not answer).
sink_lag() {
  "$BIN/python" - "$STREAM_APP_SINK_PORT" <<'PY' 2>/dev/null || true
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=3).read().decode()
lags = [float(l.split()[-1]) for l in text.splitlines() if l.startswith("stream_app_sink_lag_messages{")]
print(int(sum(lags)) if lags else "")
PY
}

# A fresh broker and worker state each run, so only this run's alerts show.
bash deploy/local/kafka.sh stop --wipe >/dev/null 2>&1 || true
bash deploy/local/postgres.sh stop --wipe >/dev/null 2>&1 || true
rm -rf "$STREAM_APP_DATA_DIR"
mkdir -p "$ROOT/.cache"
bash deploy/local/kafka.sh start
STREAM_APP_DATABASE_URL="$(bash deploy/local/postgres.sh start)"
export STREAM_APP_DATABASE_URL

echo "demo: starting worker (log: $WORKER_LOG, metrics: http://127.0.0.1:$STREAM_APP_WEB_PORT/metrics)" >&2
# As Kubernetes would, supervise.sh starts the worker again if it exits with
# code 4 (a stall it could not heal by itself; README, Operations).
bash deploy/local/supervise.sh "$BIN/stream-app" worker >"$WORKER_LOG" 2>&1 &
worker_pid=$!
ready=""
for _ in $(seq 1 120); do
  grep -q "Worker ready" "$WORKER_LOG" 2>/dev/null && { ready=1; break; }
  kill -0 "$worker_pid" 2>/dev/null || { worker_gone; exit 1; }
  sleep 0.5
done
[[ -n "$ready" ]] || { worker_gone "the worker was not ready within 60 s"; exit 1; }
watch_worker &
watcher_pid=$!

echo "demo: starting the denial-queue sink (log: $SINK_LOG, metrics: http://127.0.0.1:$STREAM_APP_SINK_PORT/metrics)" >&2
"$BIN/stream-app" sink postgres >"$SINK_LOG" 2>&1 &
sink_pid=$!

"$BIN/stream-app" publish "$SAMPLE"
# Claims as payers receive them: two 837 files through intake, one claim
# message per CLM loop, keyed by patient (README, "From 837 files").
if [[ -z "${1:-}" ]]; then
  "$BIN/stream-app" intake x12 --publish examples/x12/radonc-837p.txt examples/x12/radonc-837i.txt
fi
if [[ -t 1 ]]; then
  echo "demo: alerts as they arrive (Ctrl-C to stop)" >&2
  trap 'true' INT   # Ctrl-C ends the alerts, then the queue is printed
  "$BIN/stream-app" alerts || true
  trap cleanup INT TERM EXIT
else
  "$BIN/stream-app" alerts --idle "${DEMO_IDLE:-15}"
fi

# The denial queue the sink kept from the same alerts.
for _ in $(seq 1 60); do
  kill -0 "$sink_pid" 2>/dev/null || { echo "demo: sink exited; see $SINK_LOG" >&2; tail -20 "$SINK_LOG" >&2; exit 1; }
  [[ "$(sink_lag)" == 0 ]] && break
  sleep 0.5
done
echo "demo: the denial queue in PostgreSQL (stream-app queue list):" >&2
"$BIN/stream-app" queue list
