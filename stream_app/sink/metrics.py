"""Prometheus metrics of `stream-app sink postgres`, served on
STREAM_APP_SINK_PORT at /metrics. Labels come from small fixed sets
(outcomes, severities, partition numbers): never a patient, claim or alert."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

OUTCOMES = ("applied", "stale", "invalid")

MESSAGES = Counter(
    "stream_app_sink_messages_total",
    "Alert messages read by the sink: applied (changed a row), stale (an older or "
    "equal sequence, changed nothing), invalid (not an alert, skipped)",
    ["outcome"],
)
LAG = Gauge(
    "stream_app_sink_lag_messages",
    "Alert messages on the topic not yet in the database (end offset minus next offset)",
    ["partition"],
)
OPEN_ROWS = Gauge(
    "stream_app_sink_open_alerts",
    "Open rows of denial_queue by severity; taken: a reviewer has them",
    ["severity", "taken"],
)
BATCH_SECONDS = Histogram(
    "stream_app_sink_batch_seconds",
    "Time to write one batch (rows and offsets, one transaction)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
DATABASE_UP = Gauge(
    "stream_app_sink_database_up",
    "1 while the sink has a working database connection, 0 while it waits for one",
)
RECONNECTS = Counter(
    "stream_app_sink_reconnects_total",
    "Times the sink lost the database and connected again",
)

for _outcome in OUTCOMES:
    MESSAGES.labels(_outcome)
for _severity in ("deny", "review"):
    for _taken in ("false", "true"):
        OPEN_ROWS.labels(_severity, _taken)
