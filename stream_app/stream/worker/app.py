"""The worker's Faust app: its settings, topics and tables, and the parts
that do the work (routing, evaluation, output, health), wired together."""

from __future__ import annotations

from typing import Any

import faust

from stream_app.core.engine import Engine, EngineSettings
from stream_app.core.profiles import ProfileBook
from stream_app.core.rules import load_registry
from stream_app.stream import health, metrics
from stream_app.stream.faust import metrics as faust_metrics
from stream_app.stream.faust import patches as faust_patches
from stream_app.stream.faust_store import COURSE, DAY, FaustStore
from stream_app.stream.settings import WorkerSettings
from stream_app.stream.topics import STATE_TABLE, repartition_topic
from stream_app.stream.worker.evaluation import Evaluation
from stream_app.stream.worker.output import Output
from stream_app.stream.worker.routing import Routing

NEVER_DAYS = 1_000_000  # a retention that never comes
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# What one fetch takes of a partition. One poll hands the agent everything
# fetched for every partition, and the re-key topic's records (ticks, forwarded
# lines) wait behind all of it: at 4 MiB a partition, a backlog of line
# messages made a batch of about 130,000 records, so re-key partitions stood
# still for minutes on a loaded machine (seen as stalls). A record larger than
# this still comes, alone (Kafka returns the first batch of a fetch whole).
FETCH_BYTES_PER_PARTITION = 128 * 1024


def new_app(settings: WorkerSettings) -> faust.App:
    """The Faust app with the worker's settings, before agents and tables
    (benchmarks/faust_floor.py builds its floor on the same).

    Installs the seek-before-resume fix to Faust's table recovery first
    (stream_app.stream.faust.patches), which refuses any Faust but 0.15.3."""
    faust_patches.install()
    return faust.App(
        settings.id,
        broker=settings.broker_urls,
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_allow_declare=True,
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        web_enabled=True,
        autodiscover=False,
        producer_max_request_size=MAX_MESSAGE_BYTES,
        producer_linger=settings.producer_linger_seconds,
        consumer_max_fetch_size=FETCH_BYTES_PER_PARTITION,
        processing_guarantee=settings.processing_guarantee,
        broker_credentials=_credentials(settings),
        table_cleanup_interval=3600.0,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
        logging_config=None,
        # Every topic and table carries bytes that we encode ourselves.
        key_serializer="raw",
        value_serializer="raw",
    )


def rocksdb_options(settings: WorkerSettings) -> dict[str, int]:
    """Per-database RocksDB options of every table (see WorkerSettings)."""
    return {
        "write_buffer_size": settings.rocksdb_write_buffer_bytes,
        "max_write_buffer_number": 2,
        "block_cache_size": settings.rocksdb_block_cache_bytes,
    }


def build_app(settings: WorkerSettings, profiles: ProfileBook, *, direct: bool = True) -> faust.App:
    """The worker. With `direct` (the input topic has the worker's partition
    count, so its partition p holds the patients of table partition p) a
    message on its patient's partition is evaluated straight from the input
    topic; any other message takes one trip through the re-key topic."""
    app = new_app(settings)
    faust_metrics.install(app)

    def raw_topic(*names: str, **extra: Any) -> Any:
        return app.topic(
            *names,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
            **extra,
        )

    def raw_table(name: str) -> Any:
        # bytes key and value types make Faust use its raw codec for the table.
        return app.Table(
            name,
            default=None,
            partitions=settings.partitions,
            key_type=bytes,
            value_type=bytes,
            options=rocksdb_options(settings),
        )

    by_patient = raw_topic(repartition_topic(settings))
    # One agent reads both (see evaluation).
    both = raw_topic(settings.input_topic, repartition_topic(settings))
    store = FaustStore(raw_table(STATE_TABLE))
    engine = Engine(
        store,
        load_registry(),
        profiles,
        EngineSettings(
            course_idle_days=settings.course_idle_days,
            retain_days=settings.retain_days if settings.prune else NEVER_DAYS,
            hold_days=settings.hold_days,
        ),
    )
    output = Output(
        app,
        raw_topic(settings.alerts_topic),
        raw_topic(settings.dlq_topic),
        exactly_once=settings.processing_guarantee == "exactly_once",
    )
    routing = Routing(app, settings, by_patient, output, direct=direct)
    evaluation = Evaluation(app, settings, store, engine, output, routing)
    install_state_gauges(app, store, engine)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _on_partitions_assigned(sender: Any, assigned: Any, **_: Any) -> None:
        routing.on_assigned(assigned)
        ours = [tp for tp in assigned if tp.topic in both.topics]
        if ours:
            await evaluation.on_assigned(ours)

    checks = health.Health(
        app,
        {settings.input_topic: "input", by_patient.get_topic_name(): "rekey"},
        settings.stall_seconds,
    )
    checks.install_pages()
    checks.install_check()
    checks.quiet_startup()
    routing.install()
    evaluation.install(both)
    return app


def install_state_gauges(app: faust.App, store: FaustStore, engine: Engine) -> None:
    state_gauges = metrics.StateGauges(engine.registry.ids)

    async def _recount_state() -> None:
        await state_gauges.refresh(
            store.records(DAY),
            store.records(COURSE),
            generation=app.rebalancing_count,
            interrupted=lambda: bool(app.rebalancing),
        )

    app.timer(interval=metrics.StateGauges.TICK_SECONDS)(_recount_state)


def _credentials(settings: WorkerSettings) -> Any:
    if not settings.security_protocol.startswith("SASL"):
        if settings.security_protocol == "SSL":
            import ssl

            return faust.SSLCredentials(
                ssl.create_default_context(
                    cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
                )
            )
        return None
    ssl_context = None
    if settings.security_protocol == "SASL_SSL":
        import ssl

        ssl_context = ssl.create_default_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
        )
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=settings.sasl_password,
        mechanism=settings.sasl_mechanism,
        ssl_context=ssl_context,
    )
