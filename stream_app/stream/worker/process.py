"""The worker process: settings, topics, the Faust worker, and its exit code
(0, 2 bad settings or profiles, 3 topics, 4 a stall it could not heal); under
exactly-once, local tables a crash may have left ahead of Kafka are dropped."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import sys
from pathlib import Path

import faust
import mode.loop
from faust.exceptions import ImproperlyConfigured
from pydantic import ValidationError

from stream_app.core.profiles import ProfileBook, ProfileError
from stream_app.core.rules import load_registry
from stream_app.stream import health
from stream_app.stream.settings import WorkerSettings, describe_errors
from stream_app.stream.topics import TopicSetupError, ensure_topics, partition_count
from stream_app.stream.worker.app import build_app
from stream_app.stream.worker.trace import trace

log = logging.getLogger("stream_app.stream.worker")


def _not_routine_backpressure(record: logging.LogRecord) -> bool:
    """Faust warns "producer buffer full" (and logs the flush) whenever table
    writes queue more than 100 changelog messages: several times a second
    under load. That is its normal flow control, not a fault."""
    return not str(record.msg).startswith(("producer buffer full", "producer flush took"))


def run_worker() -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("faust.transport.producer").addFilter(_not_routine_backpressure)
    try:
        settings = WorkerSettings()
    except ValidationError as exc:
        print(f"stream-app worker: bad settings: {describe_errors(exc)}", file=sys.stderr)
        return 2
    if settings.trace:
        trace.setLevel(logging.DEBUG)
    try:
        mode.loop.use(settings.loop)  # as Faust's `worker --loop` does
    except ImportError:
        print(
            f"stream-app worker: STREAM_APP_LOOP={settings.loop} needs the {settings.loop} "
            "package (pip install uvloop)",
            file=sys.stderr,
        )
        return 2
    registry = load_registry()
    try:
        profiles = ProfileBook.load_or_default(settings.payer_profiles, registry.ids)
    except ProfileError as exc:
        print(f"stream-app worker: {exc}", file=sys.stderr)
        return 2
    # Before any topic is created: the web port, the data directory.
    problem = web_port_problem(settings.web_bind, settings.web_port) or data_dir_problem(
        settings.data_dir
    )
    if problem:
        print(f"stream-app worker: {problem}", file=sys.stderr)
        return 2
    try:
        asyncio.run(ensure_topics(settings))
    except TopicSetupError as exc:
        print(f"stream-app worker: {exc}", file=sys.stderr)
        return 3
    input_partitions = asyncio.run(partition_count(settings, settings.input_topic))
    direct = input_partitions == settings.partitions
    if not direct:
        log.warning(
            "input topic %s has %d partitions, not STREAM_APP_PARTITIONS=%d: every message "
            "takes the re-key topic",
            settings.input_topic,
            input_partitions,
            settings.partitions,
        )
    from stream_app.stream import kafka_backoff

    kafka_backoff.install()  # no busy loop while the broker is down
    try:
        app = build_app(settings, profiles, direct=direct)
    except ImproperlyConfigured as exc:  # a value Faust refuses that the settings let by
        print(f"stream-app worker: bad settings: {exc}", file=sys.stderr)
        return 2
    tables_dir = Path(app.conf.tabledir)
    if settings.processing_guarantee == "exactly_once" and settings.store.startswith("rocksdb"):
        drop_tables_after_crash(tables_dir)
    worker = make_worker(app, settings)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code in (0, None):
            mark_clean_shutdown(tables_dir)
            if health.exit_requested():
                return health.EXIT_STALLED
        raise
    mark_clean_shutdown(tables_dir)
    return health.EXIT_STALLED if health.exit_requested() else 0


def make_worker(app: faust.App, settings: WorkerSettings) -> faust.Worker:
    """Faust's worker, its terminal spinner off unless stdout and stderr are
    both terminals: otherwise a log file gets its escape codes and backspaces
    (`^H^[[?25h OK ^`) when the worker is ready; Faust then logs "Ready"."""
    worker = faust.Worker(app, loglevel=settings.log_level, override_logging=False)
    if not (_isatty(sys.stdout) and _isatty(sys.stderr)):
        worker.spinner = None
    return worker


def _isatty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed
        return False


def data_dir_problem(data_dir: Path) -> str | None:
    """Why the worker could not keep its tables in `data_dir`, or None."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"STREAM_APP_DATA_DIR={str(data_dir)!r}: cannot create it ({exc.strerror or exc})"
    if not os.access(data_dir, os.W_OK | os.X_OK):
        return f"STREAM_APP_DATA_DIR={str(data_dir)!r}: not a directory the worker may write to"
    return None


def web_port_problem(bind: str, port: int) -> str | None:
    """Why the web server (/metrics, /healthz, /readyz) could not listen on
    bind:port, or None. Bound and let go at once, with SO_REUSEADDR as
    aiohttp binds, so a port another process listens on is found before the
    worker creates its topics, not after (Faust's OSError traceback)."""
    where = f"[{bind}]:{port}" if ":" in bind else f"{bind}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            bind or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (OSError, UnicodeError) as exc:
        return f"STREAM_APP_WEB_BIND={bind!r} is not an address to listen on ({exc})"
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        return (
            f"cannot listen on {where} for /metrics and the health endpoints "
            f"({exc.strerror or exc}); set STREAM_APP_WEB_PORT to a free port "
            "(or STREAM_APP_WEB_BIND)"
        )
    return None


CLEAN_SHUTDOWN_MARKER = "clean-shutdown"


def drop_tables_after_crash(tables_dir: Path) -> bool:
    """Under exactly-once, drop local tables that a crash may have left ahead
    of what Kafka committed; True if dropped.

    RocksDB keeps every table write at once, including those of a transaction
    that the crash aborted; the restarted worker would then take the aborted
    events as already applied and never send their alerts. Tables rebuilt
    from the changelogs (read_committed) hold only committed writes. This is
    what Kafka Streams does with its checkpoint file under exactly-once.
    """
    marker = tables_dir / CLEAN_SHUTDOWN_MARKER
    if marker.exists():
        marker.unlink()  # a crash from now on leaves no marker
        return False
    if not tables_dir.exists() or not any(tables_dir.iterdir()):
        return False
    log.warning(
        "exactly-once: the last run did not shut down cleanly; dropping local tables "
        "in %s and rebuilding them from the changelog topics",
        tables_dir,
    )
    shutil.rmtree(tables_dir)
    return True


def mark_clean_shutdown(tables_dir: Path) -> None:
    if tables_dir.exists():
        (tables_dir / CLEAN_SHUTDOWN_MARKER).touch()
