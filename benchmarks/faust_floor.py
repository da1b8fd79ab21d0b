"""The floor of any Faust worker: the bare baseline's work done by a Faust app.

Run by `benchmarks/e2e.py --only baseline,floor` as a subprocess, with the
worker's environment (WorkerSettings: broker, linger, store, data dir):

    python benchmarks/faust_floor.py MODE LINES OUT.json

MODE
  pass         one agent on the input topic: orjson-parse each message and
               send one message per input, keyed by patient, to a sink topic.
               The same work as the bare aiokafka loop, through Faust.
  rekey-table  the skeleton of `stream-app worker` without the engine: re-key
               each line by patient through a repartition topic, and in a
               second agent write one small value per line to one
               changelog-backed table (the worker writes about four).

The app is `stream_app.stream.worker.app.new_app` (the worker's Faust settings, except
the fetch size: Faust's default 4 MiB a partition, see FLOOR_FETCH_BYTES) and its
table has the worker's RocksDB options.

Experiments (environment, `pass` only):
  FLOOR_SENDS=2.9   messages sent per input (fractions carried over): the
                    worker's output (alerts, state changelog) without its engine
  FLOOR_RAW=1       send through Faust's producer directly instead of
                    Topic.send, as the worker sends under at-least-once

It stamps its first event and the moment it has handled LINES lines (after
flushing the producer), writes {"lines", "seconds", "cpu"} to OUT.json and
stops itself. Nothing here is used by stream_app.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import faust
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream_app.stream.settings import WorkerSettings  # noqa: E402
from stream_app.stream.worker.app import new_app, rocksdb_options  # noqa: E402

FLOOR_FETCH_BYTES = 4 * 1024 * 1024  # faust's default consumer_max_fetch_size


def build(mode: str, expected: int, out: Path) -> faust.App:
    settings = WorkerSettings()
    app = new_app(settings)
    # Faust's per-message cost, not the fetch size's: the worker fetches
    # FETCH_BYTES_PER_PARTITION (128 KiB, so that re-key records are not
    # starved behind a backlog), which costs an agent that does nothing
    # about 15 % on claim messages (benchmarks/README.md). The floor fetches
    # Faust's default instead.
    app.conf.consumer_max_fetch_size = FLOOR_FETCH_BYTES

    def topic(name: str) -> Any:
        return app.topic(name, key_type=bytes, value_type=bytes, partitions=settings.partitions)

    source = topic(settings.input_topic)
    sink = topic(f"{settings.id}-floor-out")
    rekeyed = topic(f"{settings.id}-floor-by-patient")
    table = app.Table(
        "floor",
        default=None,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
        options=rocksdb_options(settings),
    )
    handled = 0
    started = 0.0

    async def count() -> None:
        nonlocal handled, started
        if not started:
            started = time.perf_counter()
        handled += 1
        if handled == expected:
            await app.producer.flush()
            out.write_text(
                json.dumps(
                    {
                        "lines": handled,
                        "seconds": time.perf_counter() - started,
                        "cpu": time.process_time(),
                    }
                )
            )
            os.kill(os.getpid(), signal.SIGTERM)

    def patient(value: bytes) -> bytes:
        doc = orjson.loads(value)
        key = doc.get("patient_id") if isinstance(doc, dict) else None
        return key.encode() if isinstance(key, str) else b""

    # FLOOR_SENDS: messages sent per input (fractions carried over), to price
    # the worker's output (alerts and state writes) without its engine.
    sends_per_input = float(os.environ.get("FLOOR_SENDS", "1"))
    owed = 0.0
    # FLOOR_RAW=1: send through Faust's producer (aiokafka) directly, not Topic.send.
    raw_sends = os.environ.get("FLOOR_RAW") == "1"
    sink_name = sink.get_topic_name()

    if mode == "pass":

        @app.agent(source)
        async def passthrough(stream: Any) -> None:
            nonlocal owed
            async for event in stream.events():
                key = patient(event.value)
                owed += sends_per_input
                while owed >= 1:
                    owed -= 1
                    if raw_sends:
                        await app.producer.send(sink_name, key, event.value, None, None, None)
                    else:
                        await sink.send(key=key, value=event.value)
                await count()
    elif mode == "rekey-table":

        @app.agent(source)
        async def rekey(stream: Any) -> None:
            async for event in stream.events():
                await rekeyed.send(key=patient(event.value), value=event.value)

        @app.agent(rekeyed)
        async def store(stream: Any) -> None:
            async for event in stream.events():
                orjson.loads(event.value)
                table[event.key] = event.value[:64]
                await count()
    else:
        raise SystemExit(f"unknown mode {mode}")
    return app


def main() -> None:
    mode, expected, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    app = build(mode, expected, out)
    faust.Worker(app, loglevel="warning", override_logging=False).execute_from_commandline()


if __name__ == "__main__":
    main()
