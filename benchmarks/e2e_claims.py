"""Pieces of benchmarks/e2e.py for claim messages: the two streams (line and
claim messages of the same lines), replay's rate on them, changelog writes
counted on the broker, and the targets of issue 9.

Nothing here is used by stream_app.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_app.core.engine import Engine
from stream_app.core.store import MemoryStore
from stream_app.inputs import read_lines
from stream_app.replay import Replay
from stream_app.synth import stream as synth
from stream_app.synth.claims import as_claims

FRACTIONS = 42  # ~101 lines per patient
LINES_PER_PATIENT = 80  # --patients by default: enough for --lines, the courses cut late
FIXED_TIME = "2026-01-01T00:00:00Z"
# Today's worker on line messages (benchmarks/README.md, 1M lines, 2026-11-27).
TODAY_BATCHED = 1027.0
TODAY_UNBATCHED = 750.0
TARGET_LATENCY_P99 = 0.250
TARGET_RSS_MIB = 400.0


def default_patients(lines: int) -> int:
    return max(10, -(-lines // LINES_PER_PATIENT))


def message_lines(doc: dict[str, Any]) -> int:
    """Claim lines a message carries: a claim its lines, anything else 1."""
    lines = doc.get("lines") if doc.get("kind") == "claim" else None
    return len(lines) if isinstance(lines, list) else 1


# -- streams --------------------------------------------------------------------------


@dataclass(frozen=True)
class Streams:
    """The same `lines` lines as line messages and as claim messages."""

    lines_path: Path
    claims_path: Path
    lines: int  # line messages = lines the claim messages carry (+ the others)
    claim_messages: int  # messages of the claims stream (claims and the rest)
    claims: int  # claim messages among them

    @property
    def lines_per_message(self) -> float:
        return self.lines / self.claim_messages if self.claim_messages else 0.0


def _cut(
    docs: Iterable[dict[str, Any]],
    limit: int,
    out: io.BufferedWriter,
) -> Iterator[dict[str, Any]]:
    """The first `limit` documents, each written to `out` as a line message."""
    dumps = orjson.dumps
    for count, doc in enumerate(docs):
        if count == limit:
            return
        out.write(dumps(doc) + b"\n")
        yield doc


def _count(path: Path) -> tuple[int, int, int]:
    """(lines, messages, claims) of a stream file."""
    lines = messages = claims = 0
    with path.open("rb") as stream:
        for raw in read_lines(stream):
            doc = orjson.loads(raw)
            messages += 1
            claims += doc.get("kind") == "claim"
            lines += message_lines(doc)
    return lines, messages, claims


def build_streams(cache: Path, lines: int, patients: int, seed: int, reuse: bool) -> Streams:
    """A Synth stream cut at `lines` line messages, and the same lines as the
    claim messages of `generate --format claims` (stream_app.synth.claims),
    both cached in `cache`."""
    stem = f"e2e-{lines}-p{patients}-seed{seed}"
    lines_path, claims_path = cache / f"{stem}.jsonl", cache / f"{stem}-claims.jsonl"
    if not (reuse and lines_path.exists() and claims_path.exists()):
        cache.mkdir(parents=True, exist_ok=True)
        generator = synth.Synth(
            patients, fractions=FRACTIONS, violation_rate=0.02, seed=seed, void_rate=0.02
        )
        lines_partial = lines_path.with_suffix(".partial")
        claims_partial = claims_path.with_suffix(".partial")
        with lines_partial.open("wb") as line_out, claims_partial.open("wb") as claim_out:
            for message in as_claims(_cut(generator.events(), lines, line_out)):
                claim_out.write(orjson.dumps(message) + b"\n")
        lines_partial.replace(lines_path)
        claims_partial.replace(claims_path)
    found, messages, claims = _count(claims_path)
    if found < lines:
        print(
            f"note: the stream has only {found:,} lines ({patients:,} patients); "
            "raise --patients for more",
            file=sys.stderr,
        )
    return Streams(lines_path, claims_path, found, messages, claims)


def latency_messages(
    count: int,
    patients: int,
    seed: int,
    claims: bool,
) -> list[tuple[list[tuple[str, int]], bytes]]:
    """`count` lines of a stream where every course has one violation, as line
    or claim messages: (the (claim_id, line_number) each carries, encoded)."""
    generator = synth.Synth(patients, fractions=FRACTIONS, violation_rate=1.0, seed=seed)

    def first() -> Iterator[dict[str, Any]]:
        for number, doc in enumerate(generator.events()):
            if number == count:
                return
            yield doc

    out: list[tuple[list[tuple[str, int]], bytes]] = []
    for doc in as_claims(first()) if claims else first():
        claim_id = str(doc.get("claim_id"))
        if doc.get("kind") == "claim":
            keys = [(claim_id, int(line["line_number"])) for line in doc["lines"]]
        else:
            keys = [(claim_id, int(doc.get("line_number") or 0))]
        out.append((keys, orjson.dumps(doc)))
    return out


# -- replay -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Replayed:
    lines: int
    messages: int
    seconds: float
    alerts: int

    @property
    def rate(self) -> float:
        return self.lines / self.seconds if self.seconds else 0.0


def orjson_rate(path: Path) -> float:
    """Lines/s of an orjson parse-and-dump loop over a stream file's lines
    (benchmarks/engine.py's baseline): the cost of touching the JSON at all."""
    with path.open("rb") as stream:
        raw = stream.readlines()
    started = time.perf_counter()
    for line in raw:
        orjson.dumps(orjson.loads(line))
    return len(raw) / (time.perf_counter() - started)


def replay_rate(path: Path, lines: int) -> Replayed:
    """stream_app.replay.Replay on a MemoryStore over a stream file, in this
    process: the engine alone (parse, apply, encode alerts to /dev/null), no
    close_all at the end (a worker does not close courses at the end either)."""
    with open(os.devnull, "wb") as sink, path.open("rb") as stream:
        replay = Replay(
            Engine(MemoryStore()), sink, io.StringIO(), close_at_end=False, fixed_time=FIXED_TIME
        )
        started = time.perf_counter()
        summary = replay.run(read_lines(stream))
        seconds = time.perf_counter() - started
    return Replayed(lines, summary.lines_read, seconds, sum(summary.alerts.messages.values()))


# -- broker -----------------------------------------------------------------------------


async def changelog_messages(bootstrap: str, app_id: str) -> dict[str, int]:
    """Messages on each changelog topic of a Faust app (end offsets), by table."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # every topic's partitions
        topics = sorted(
            t
            for t in await consumer.topics()
            if t.startswith(f"{app_id}-") and t.endswith("-changelog")
        )
        found: dict[str, int] = {}
        for topic in topics:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                raise RuntimeError(f"no partitions known for {topic}")
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
            table = topic.removeprefix(f"{app_id}-").removesuffix("-changelog")
            found[table] = sum(ends.values())
        return found
    finally:
        await consumer.stop()


# -- targets ----------------------------------------------------------------------------


@dataclass
class Targets:
    """Issue 9's targets, from the figures of one run (None: not measured)."""

    claims_rate: float | None = None  # (a) worker lines/s on claim messages by patient
    lines_rate: float | None = None  # (b) on line messages by patient
    by_claim_rate: float | None = None  # (c) on line messages by claim (re-key path)
    by_claim_batched: bool = False
    today_by_claim: float | None = None  # (c)'s baseline measured on the same stream
    replay_claims_rate: float | None = None  # lines/s
    floor_claims_rate: float | None = None  # Faust pass floor, claim messages/s
    floor_lines_rate: float | None = None  # Faust pass floor, line messages/s
    orjson_rate: float | None = None  # orjson parse-and-dump loop over the line messages
    quix_rate: float | None = None  # the Quix Streams peer, line messages/s
    lines_per_message: float = 0.0  # of the claim stream
    latency_p99: float | None = None  # alert consumer, seconds
    latency_sustained: bool = False
    latency_rate: float | None = None  # lines/s
    rss_mib: float | None = None
    rss_courses: int = 0
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        found += self._claims()
        if self.replay_claims_rate and self.orjson_rate:
            found.append(
                _verdict(
                    "replay, claims >= 0.12 x orjson loop (issue 22)",
                    self.replay_claims_rate,
                    0.12 * self.orjson_rate,
                    f"0.12 x {self.orjson_rate:,.0f} lines/s, orjson loads+dumps of the same lines",
                )
            )
        if self.quix_rate and self.claims_rate:
            found.append(
                (
                    "(a) against the Quix Streams peer (report only)",
                    f"{self.claims_rate:,.0f} lines/s vs {self.quix_rate:,.0f} line msgs/s "
                    f"({self.claims_rate / self.quix_rate:.2f}x)",
                )
            )
        if self.lines_rate is not None and self.floor_lines_rate:
            found.append(
                _verdict(
                    "(b) lines by patient >= 0.5 x floor",
                    self.lines_rate,
                    0.5 * self.floor_lines_rate,
                    f"0.5 x {self.floor_lines_rate:,.0f} msgs/s (pass floor, line messages)",
                )
            )
        if self.by_claim_rate is not None:
            today = TODAY_BATCHED if self.by_claim_batched else TODAY_UNBATCHED
            kind = "with batches" if self.by_claim_batched else "without batches"
            basis = f"{today:,.0f} lines/s, 2026-11-27 {kind}"
            if self.today_by_claim:
                today = self.today_by_claim
                basis = f"{today:,.0f} lines/s, the previous worker on this stream"
            found.append(_verdict("(c) lines by claim >= today", self.by_claim_rate, today, basis))
        if self.latency_p99 is not None and self.latency_rate is not None:
            ok = self.latency_p99 <= TARGET_LATENCY_P99 and self.latency_sustained
            found.append(
                (
                    "p99 produce -> alert <= 250 ms (rules that publish at once)",
                    f"{'PASS' if ok else 'FAIL'}: {1000 * self.latency_p99:,.0f} ms at "
                    f"{self.latency_rate:,.0f} lines/s"
                    + ("" if self.latency_sustained else " (not sustained)"),
                )
            )
        if self.rss_mib is not None:
            ok = self.rss_mib <= TARGET_RSS_MIB
            found.append(
                (
                    f"worker RSS, {self.rss_courses:,} open courses <= 400 MiB",
                    f"{'PASS' if ok else 'FAIL'}: VmRSS {self.rss_mib:,.0f} MiB",
                )
            )
        return found

    def _claims(self) -> list[tuple[str, str]]:
        if self.claims_rate is None:
            return []
        floor = self.floor_claims_rate
        floor_text = "pass floor on claim messages"
        if floor is None and self.floor_lines_rate is not None:
            floor, floor_text = self.floor_lines_rate, "pass floor on LINE messages"
        limits: list[tuple[float, str]] = []
        if self.replay_claims_rate:
            limits.append(
                (self.replay_claims_rate, f"replay {self.replay_claims_rate:,.0f} lines/s")
            )
        if floor:
            limit = floor * self.lines_per_message
            limits.append(
                (
                    limit,
                    f"{floor:,.0f} msgs/s x {self.lines_per_message:.2f} "
                    f"lines/msg = {limit:,.0f} lines/s ({floor_text})",
                )
            )
        if not limits:
            return [("(a) claims by patient", "no limit measured (run replay and floor too)")]
        lower, text = min(limits)
        return [
            _verdict(
                "(a) claims by patient >= 0.5 x min(replay, floor x lines/msg)",
                self.claims_rate,
                0.5 * lower,
                f"0.5 x {text}",
            )
        ]


def _verdict(what: str, measured: float, needed: float, basis: str) -> tuple[str, str]:
    verdict = "PASS" if measured >= needed else "FAIL"
    return what, (
        f"{verdict}: {measured:,.0f} lines/s vs {needed:,.0f} needed "
        f"({basis}; {measured / needed:.2f}x)"
    )
