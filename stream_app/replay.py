"""`stream-app replay`: the engine over a JSON-lines file, no Kafka (SPEC 7)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO, TextIO

from stream_app.core.alerts import AlertCounts, encode_alert, normalise_rfc3339, now_rfc3339
from stream_app.core.engine import Engine, Transition
from stream_app.core.events import Event, Invalid, parse_event
from stream_app.core.holds import HoldCounts
from stream_app.core.store import MemoryStore
from stream_app.inputs import InvalidLines, relaxed_gc

# Every line replay writes to stderr starts with this.
PREFIX = "stream-app replay"
# Where invalid lines that look like an X12 837 file are pointed.
X12_HINT = "convert it first: stream-app intake x12 FILE | stream-app replay"


@dataclass
class ReplaySummary:
    lines_read: int = 0
    events: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    invalid: Counter[str] = field(default_factory=Counter)
    alerts: AlertCounts = field(default_factory=AlertCounts)
    pruned_courses: int = 0
    holds: HoldCounts = field(default_factory=HoldCounts)
    seconds: float = 0.0

    def record(self, transition: Transition) -> None:
        line, rule_id = transition.line, transition.spec.rule_id
        alert_id = f"{rule_id}:{line.patient_id}:{line.claim_id}:{line.line_number}"
        self.alerts.add(alert_id, rule_id, transition.status)

    def render(self) -> str:
        rate = self.lines_read / self.seconds if self.seconds else 0.0
        parts = [
            f"{PREFIX}: {self.lines_read} lines read in {self.seconds:.2f}s ({rate:,.0f} lines/s)",
            f"  events applied: {self.events} "
            + " ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items())),
            f"  invalid: {sum(self.invalid.values())} "
            + " ".join(f"{k}={v}" for k, v in sorted(self.invalid.items())),
            f"  courses pruned from state: {self.pruned_courses}",
            f"  holds: {sum(self.holds.held().values())} held at the end, "
            f"{sum(self.holds.cured.values())} cured while held, "
            f"{sum(self.holds.published.values())} published when their hold ended",
        ]
        parts.extend(f"  {line}" for line in self.alerts.render())
        return "\n".join(parts)


class Replay:
    """Feeds events to an engine and closes every course at the end unless
    told not to. Parse, evaluate and emit are separate steps so that the
    benchmark can time them."""

    # Invalid lines in a row reported one by one before the rest of the run
    # is summed up in one line.
    INVALID_SHOWN = 20

    def __init__(
        self,
        engine: Engine,
        out: BinaryIO,
        err: TextIO,
        *,
        close_at_end: bool = True,
        fixed_time: str | None = None,
        progress_seconds: float = 5.0,
    ) -> None:
        if not isinstance(engine.store, MemoryStore):
            raise TypeError("replay runs on a MemoryStore")
        self.engine = engine
        self.store: MemoryStore = engine.store
        self.out = out
        self.err = err
        self.close_at_end = close_at_end
        # one format of detected_at, given or not (2026-01-01T00:00:00.000Z)
        self.fixed_time = normalise_rfc3339(fixed_time) if fixed_time else None
        self.progress_seconds = progress_seconds
        self.summary = ReplaySummary()
        self._invalid = InvalidLines(err, PREFIX, X12_HINT, self.INVALID_SHOWN)

    def run(self, lines: Iterable[bytes]) -> ReplaySummary:
        started = time.perf_counter()
        next_progress = started + self.progress_seconds
        with relaxed_gc():
            for number, raw in enumerate(lines, start=1):
                self.summary.lines_read = number
                if not raw.strip():
                    continue
                self.feed(raw, number)
                if number % 4096 == 0 and time.perf_counter() >= next_progress:
                    elapsed = time.perf_counter() - started
                    self.err.write(f"{PREFIX}: {number:,} lines, {number / elapsed:,.0f} lines/s\n")
                    self.err.flush()
                    next_progress = time.perf_counter() + self.progress_seconds
            self._invalid.end_run()
            if self.close_at_end:
                self.emit(self.close())
        self.summary.seconds = time.perf_counter() - started
        self.summary.pruned_courses = self.engine.pruned_courses
        self.summary.holds = self.engine.context.holds
        self.out.flush()
        return self.summary

    def feed(self, raw: bytes, number: int) -> None:
        event = self.parse(raw, number)
        if event is not None:
            self.emit(self.evaluate(event))

    def parse(self, raw: bytes, number: int) -> Event | None:
        event = parse_event(raw)
        if isinstance(event, Invalid):
            self.summary.invalid[event.reason] += 1
            self._invalid.add(number, bytes(raw), event.reason, event.detail)
            return None
        if self._invalid.length:
            self._invalid.end_run()
        return event

    def evaluate(self, event: Event) -> list[Transition]:
        result = self.engine.apply(event)
        self.summary.events += 1
        self.summary.outcomes[result.outcome] += 1
        return result.transitions

    def close(self) -> list[Transition]:
        return self.engine.close_all(self.store.patient_ids())

    def emit(self, transitions: list[Transition]) -> None:
        if not transitions:
            return
        detected_at = self.fixed_time or now_rfc3339()
        write = self.out.write
        for transition in transitions:
            self.summary.record(transition)
            write(encode_alert(transition, detected_at) + b"\n")
