"""The Quix Streams peer of benchmarks/e2e.py (issue 22): a Quix Streams
application over the line messages keyed by patient, one RocksDB state write
per message (its patient's key), no output. Messages/s from its first message
until `app.run()` returns after the last: the final checkpoint (state flushed
to RocksDB and its changelog, offsets committed) and the consumer's close are
inside, so a short stream understates it.

Quix Streams is a benchmark-only dependency (the `quix` extra); it pins
pydantic and pydantic-settings below what the project uses, so e2e.py runs it
from a virtualenv of its own, `.cache/quix-venv` (created on first use):

    python3 -m venv .cache/quix-venv && .cache/quix-venv/bin/pip install quixstreams

Run by e2e.py as `.cache/quix-venv/bin/python benchmarks/e2e_quix.py
BOOTSTRAP TOPIC GROUP EXPECTED STATE_DIR OUT_JSON`; it imports nothing of stream_app.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def main(bootstrap: str, topic: str, group: str, expected: int, state_dir: str, out: str) -> int:
    from quixstreams import Application, State

    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        state_dir=state_dir,
        loglevel="WARNING",
    )
    source = app.topic(topic, key_deserializer="bytes", value_deserializer="json")
    seen = {"n": 0, "first": 0.0}

    def write(value: Any, state: State) -> None:
        """One state write per message, under its patient's key."""
        if not seen["n"]:
            seen["first"] = time.monotonic()
        state.set("last", value.get("claim_id") if isinstance(value, dict) else None)
        seen["n"] += 1
        if seen["n"] >= expected:
            app.stop()

    app.dataframe(source).update(write, stateful=True)
    app.run()
    seconds = time.monotonic() - seen["first"]
    with open(out, "w") as result:
        json.dump(
            {"lines": seen["n"], "seconds": seconds, "cpu": time.process_time()},
            result,
        )
    return 0


if __name__ == "__main__":
    bootstrap, topic, group, expected, state_dir, out = sys.argv[1:7]
    raise SystemExit(main(bootstrap, topic, group, int(expected), state_dir, out))
