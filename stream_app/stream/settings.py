"""Settings read from the environment (SPEC 8).

`KafkaSettings` are the Kafka connection and topic names that every command
talking to Kafka reads (`worker`, `publish`, `alerts`, `intake x12 --publish`,
`sink`); `WorkerSettings` adds the worker's own. This module imports nothing
of the worker, so any command can read them without loading Faust.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_PORT = re.compile(r"[0-9]{1,5}")
# A Kafka topic name (and the worker's id, the prefix of its internal topics
# and its consumer group): what the broker would refuse only once the worker
# creates its topics. Room is left for the suffixes of internal topics.
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,200}")


class KafkaSettings(BaseSettings):
    """The Kafka connection and topic names (SPEC 8), shared by every command."""

    model_config = SettingsConfigDict(env_prefix="STREAM_APP_", extra="ignore")

    bootstrap_servers: str = Field(
        "localhost:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "STREAM_APP_BOOTSTRAP_SERVERS"),
    )
    input_topic: str = "claim-lines"
    alerts_topic: str = "igrt-alerts"
    dlq_topic: str = "claim-lines-dlq"
    partitions: int = Field(8, ge=1, le=1024)
    id: str = "stream-app"
    # Kafka security (SASL/TLS); plain text by default.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: Path | None = None

    @field_validator("input_topic", "alerts_topic", "dlq_topic", "id")
    @classmethod
    def _topic_name(cls, value: str) -> str:
        if not _TOPIC.fullmatch(value) or value in (".", ".."):
            raise ValueError(
                f"{value!r} is not a Kafka topic name: 1 to 200 of the characters "
                "A-Z a-z 0-9 . _ -"
            )
        return value

    @field_validator("ssl_cafile")
    @classmethod
    def _loadable_cafile(cls, value: Path | None) -> Path | None:
        """Loaded now, not first when a client connects (a traceback then)."""
        if value is not None:
            import ssl

            try:
                ssl.create_default_context(cafile=str(value))
            except (OSError, ssl.SSLError) as exc:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise ValueError(f"cannot load the CA file {str(value)!r}: {why}") from None
        return value

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_ports(cls, value: str) -> str:
        """host:port[,host:port...]: aiokafka and Faust would otherwise fail
        deep inside with a traceback (a port that is not a number or out of
        range) or look up an empty host name."""
        wanted = "expected host:port[,host:port...] with ports 1..65535, such as localhost:9092"
        if not value.strip():
            raise ValueError(f"empty; {wanted}")
        for entry in value.split(","):
            host, _, port = entry.strip().rpartition(":")
            if not host or not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
                raise ValueError(f"{entry.strip()!r} is not host:port; {wanted}")
        return value

    @property
    def broker_urls(self) -> list[str]:
        return [
            f"kafka://{host.strip()}" for host in self.bootstrap_servers.split(",") if host.strip()
        ]


class WorkerSettings(KafkaSettings):
    """The worker's settings: Kafka's and its own."""

    store: str = "rocksdb://"
    data_dir: Path = Path("./data")
    web_port: int = Field(6066, ge=1, le=65535)
    web_bind: str = "0.0.0.0"
    payer_profiles: Path | None = None
    course_idle_days: int = Field(45, ge=1)
    retain_days: int = Field(120, ge=1)
    # SPEC 4.1: overrides every payer profile's hold_days (default 61); 0: no holds.
    hold_days: int | None = Field(None, ge=0, le=3650)
    # Drop closed courses from the tables once no rule can need them (see
    # README, "Finality and event time"); off keeps every course ever seen.
    prune: bool = True
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # A crashed worker's partitions move to the others after this long.
    session_timeout_seconds: float = Field(10.0, gt=1)
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    # How long the producer waits to fill a batch; every input line becomes
    # several messages (re-key, changelogs, alerts), so batching matters.
    producer_linger_seconds: float = Field(0.005, ge=0, le=1)
    # Above 1, re-keyed events are evaluated in batches of up to batch_max,
    # waiting at most batch_seconds for one to fill, and table writes are
    # applied once per batch (a record several events change is written
    # once): about 1.7x the throughput in benchmarks/e2e.py. 1 evaluates
    # event by event.
    batch_max: int = Field(500, ge=1, le=100_000)
    batch_seconds: float = Field(0.05, gt=0, le=1)
    # A partition with events waiting behind a committed offset that has not
    # moved for this long, while the worker is ready, is stalled (SPEC 9).
    stall_seconds: float = Field(60.0, ge=1, le=3600)
    # Log each event's partition and offset on its way (README, Configuration).
    trace: bool = False
    # The event loop: asyncio's own ("aio"), or "uvloop" if installed; no
    # difference measured in benchmarks/e2e.py (benchmarks/README.md).
    loop: Literal["aio", "uvloop"] = "aio"
    # Faust opens one RocksDB per table and partition (1 x 8 here), each with
    # its own write buffers and block cache; its defaults (3 x 64 MiB buffers,
    # a 2 GiB cache) let RSS grow to gigabytes with the number of writes.
    rocksdb_write_buffer_bytes: int = Field(4 * 1024 * 1024, ge=64 * 1024)
    rocksdb_block_cache_bytes: int = Field(8 * 1024 * 1024, ge=0)

    @field_validator("store")
    @classmethod
    def _known_store(cls, value: str) -> str:
        if not value.startswith(("rocksdb://", "memory://")):
            raise ValueError(f"expected rocksdb:// or memory://, got {value!r}")
        return value


def describe_errors(exc: ValidationError) -> str:
    """Pydantic's errors on one line, each named by its environment variable."""

    def variable(loc: tuple[int | str, ...]) -> str:
        name = str(loc[0]) if loc else "settings"
        return name if name.isupper() else f"STREAM_APP_{name.upper()}"

    def message(text: str) -> str:  # a validator's ValueError: its own words
        return text.removeprefix("Value error, ")

    return "; ".join(
        f"{variable(error['loc'])}: {message(error['msg'])}" for error in exc.errors()
    )
