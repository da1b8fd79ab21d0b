"""The denial queue in PostgreSQL (SPEC 11): `stream-app sink postgres` and
`stream-app queue`.

The sink reads the alerts topic (every partition, manual assignment,
read_committed) and keeps one row per `alert_id` in the table `denial_queue`,
the message with the highest `sequence` (SPEC 2's fold), writing the offsets
it has read (`sink_offsets`) in the same transaction as the rows: exactly once
into the table. `queue` lets reviewers and claim systems work the rows.

Modules: `settings` (environment), `schema` (versioned migrations), `apply`
(parsing and the batch SQL), `consumer` (the Kafka loop), `queue` (commands),
`database` (connecting, errors without passwords), `metrics`.

It may import `stream_app.core` and `stream_app.stream.settings` /
`stream_app.stream.kafkaio` (Kafka client helpers), never
`stream_app.stream.worker` nor Faust: the sink runs without the worker.
"""
