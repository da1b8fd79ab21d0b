"""The sink's and the queue's settings (SPEC 8): the Kafka settings every
command reads, plus the database and the metrics port."""

from __future__ import annotations

from pydantic import Field

from stream_app.stream.settings import KafkaSettings


class SinkSettings(KafkaSettings):
    """`STREAM_APP_DATABASE_URL` (libpq URI or key=value string) and
    `STREAM_APP_SINK_PORT` (/metrics), beside Kafka's."""

    database_url: str | None = Field(None, repr=False)
    sink_port: int = Field(6067, ge=0, le=65535)
    sink_bind: str = "0.0.0.0"
    # Most messages applied in one transaction.
    sink_batch_max: int = Field(5000, ge=1, le=100_000)
    # How often the open-rows gauges and the lag are refreshed.
    sink_refresh_seconds: float = Field(5.0, gt=0, le=300)
