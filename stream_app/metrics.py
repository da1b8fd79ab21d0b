"""Prometheus metrics of the worker. Label values come only from small fixed
sets (outcomes, reason categories, rule ids): never a patient, claim or course."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

LINES = Counter(
    "stream_app_lines_total", "Input events by outcome", ["outcome"],
)
DEAD_LETTERS = Counter(
    "stream_app_dead_letters_total", "Events sent to the dead-letter topic by reason", ["reason"],
)
ALERT_TRANSITIONS = Counter(
    "stream_app_alert_transitions_total", "Alert messages emitted",
    ["rule_id", "status", "finality"],
)
PROCESSING_SECONDS = Histogram(
    "stream_app_event_processing_seconds", "Engine time per event",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
)
INTAKE_LAG_SECONDS = Histogram(
    "stream_app_intake_to_alert_seconds", "From received_at to alert emitted",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
