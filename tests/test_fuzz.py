"""Mutation fuzzing of the parser and the engine.

100,000 inputs (mutated sample lines, random JSON documents, random bytes) go
through `parse_event` and every valid one through an engine: no exception may
escape and every rejection must carry a reason. Inputs that once broke
something live in tests/fuzz_corpus/ and are replayed on every run.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from stream_app.core.engine import Engine
from stream_app.core.events import Invalid, parse_event
from stream_app.core.store import MemoryStore

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample-claims.jsonl"
CORPUS = Path(__file__).resolve().parent / "fuzz_corpus"
FUZZ_INPUTS = 100_000

_VALUES: list[object] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**63,
    1.5,
    "",
    " ",
    "x" * 300,
    "2025-02-30",
    "2025-13-01",
    "77417",
    "G6001",
    "26",
    "TC",
    [],
    ["26", "TC"],
    [1, 2],
    {},
    {"a": 1},
    "１９",
    "\u0000",
    "institutional",
    "void",
    "course_end",
    "claim_line",
    "SBRT",
    "C44.91",
]


def _mutate_bytes(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:
            del data[pos : pos + rng.randint(1, 8)]
        elif op == 1:
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif op == 2 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        else:
            data = data[:pos]
    return bytes(data)


def _mutate_document(rng: random.Random, raw: bytes) -> bytes:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    if not isinstance(doc, dict):
        return raw
    for _ in range(rng.randint(1, 3)):
        keys = list(doc)
        op = rng.randrange(3)
        if op == 0 and keys:
            doc.pop(rng.choice(keys))
        elif op == 1 and keys:
            doc[rng.choice(keys)] = rng.choice(_VALUES)
        else:
            doc[rng.choice(["extra", "schema_version", "kind", "action", "units"])] = rng.choice(
                _VALUES
            )
    return orjson.dumps(doc)


def fuzz_inputs(count: int, seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    base = [line for line in SAMPLE.read_bytes().splitlines() if line.strip()]
    for _ in range(count):
        roll = rng.random()
        raw = rng.choice(base)
        if roll < 0.45:
            yield _mutate_document(rng, raw) if raw.startswith(b"{") else raw
        elif roll < 0.85:
            yield _mutate_bytes(rng, raw)
        elif roll < 0.95:
            yield raw  # valid lines keep the engine's state interesting
        else:
            yield bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))


def _feed(engine: Engine, raw: bytes, outcomes: Counter[str]) -> None:
    event = parse_event(raw)
    if isinstance(event, Invalid):
        assert event.reason and event.reason != "internal", (raw[:200], event)
        assert event.detail
        outcomes[f"invalid:{event.reason}"] += 1
        return
    outcomes[engine.apply(event).outcome] += 1


def test_fuzzed_inputs_never_escape_and_always_have_a_reason() -> None:
    engine = Engine(MemoryStore())
    outcomes: Counter[str] = Counter()
    for raw in fuzz_inputs(FUZZ_INPUTS, seed=20261127):
        _feed(engine, raw, outcomes)
    assert sum(outcomes.values()) == FUZZ_INPUTS
    # The mix must exercise both sides: many rejections and many applied events.
    assert sum(v for k, v in outcomes.items() if k.startswith("invalid:")) > FUZZ_INPUTS // 3
    assert outcomes["processed"] > FUZZ_INPUTS // 20
    engine.close_all(engine.store.patient_ids())  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", sorted(CORPUS.glob("*.bin")), ids=lambda p: p.name)
def test_regression_corpus(case: Path) -> None:
    engine = Engine(MemoryStore())
    outcomes: Counter[str] = Counter()
    for raw in case.read_bytes().split(b"\n"):
        _feed(engine, raw, outcomes)
