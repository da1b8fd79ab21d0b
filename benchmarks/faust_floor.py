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

The app is `stream_app.worker.app.new_app` (the worker's Faust settings) and its
table has the worker's RocksDB options. It stamps its first event and the
moment it has handled LINES lines (after flushing the producer), writes
{"lines", "seconds", "cpu"} to OUT.json and stops itself. Nothing here is used by stream_app.
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

from stream_app.settings import WorkerSettings  # noqa: E402
from stream_app.worker.app import new_app, rocksdb_options  # noqa: E402


def build(mode: str, expected: int, out: Path) -> faust.App:
    settings = WorkerSettings()
    app = new_app(settings)

    def topic(name: str) -> Any:
        return app.topic(name, key_type=bytes, value_type=bytes,
                         partitions=settings.partitions)

    source = topic(settings.input_topic)
    sink = topic(f"{settings.id}-floor-out")
    rekeyed = topic(f"{settings.id}-floor-by-patient")
    table = app.Table("floor", default=None, partitions=settings.partitions,
                      key_type=bytes, value_type=bytes, options=rocksdb_options(settings))
    handled = 0
    started = 0.0

    async def count() -> None:
        nonlocal handled, started
        if not started:
            started = time.perf_counter()
        handled += 1
        if handled == expected:
            await app.producer.flush()
            out.write_text(json.dumps({"lines": handled,
                                       "seconds": time.perf_counter() - started,
                                       "cpu": time.process_time()}))
            os.kill(os.getpid(), signal.SIGTERM)

    def patient(value: bytes) -> bytes:
        doc = orjson.loads(value)
        key = doc.get("patient_id") if isinstance(doc, dict) else None
        return key.encode() if isinstance(key, str) else b""

    if mode == "pass":
        @app.agent(source)
        async def passthrough(stream: Any) -> None:
            async for event in stream.events():
                await sink.send(key=patient(event.value), value=event.value)
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
