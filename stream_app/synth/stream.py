"""Synthetic claim-line streams (`stream-app generate`): seeded, realistic, fast.

Each patient has one radiation-therapy course (some a second one at another
site). A course is planned (consult, simulation, dosimetry), then treated on
weekdays (US federal holidays off) with the delivery, guidance, port-image,
physics and management lines a hospital (837I technical + 837P professional
with modifier 26, POS 22/19) or a freestanding centre (837P global, POS 11)
would bill for that modality, payer and year. 2025 and 2026 follow the code
sets of their year (77385/77386/G6003-G6016 until 2025, 77402/77407/77412 with
a modality and professional-only 77387, which includes intrafraction tracking,
from 2026: 77014, G6001, G6002 and G6017 are deleted then).

With violation rate 0 the stream is clean: it leaves no alert open. With
a rate R, a fraction R of the courses gets one violation picked from a menu
that covers every rule of SPEC 6 (a few picks also trip a related rule, as a
real billing error would). Course starts are spread evenly over `span_days`.
Events come out as a payer receives them, in submission order (received_at):
professional claims weekly, 1-6 days after the week; institutional claims
monthly, 5-30 days after the month; every line carries its claim's
submission time (submission.py, benchmarks/README.md).

`generate` yields event documents; `generate_lines` yields encoded JSON lines
and can salt them with invalid ones. The parts: catalog.py (codes, payers,
kinds of course), calendar.py (treatment days), course.py (one course),
submission.py (when it is received),
violations.py and edits.py (what changes a course), claims.py (lines as claim
messages). The command, `stream-app generate`, is stream_app/synth/generate.py.
"""

from __future__ import annotations

import bisect
import heapq
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from random import Random
from typing import BinaryIO, Final

import orjson

from stream_app.synth.calendar import iso
from stream_app.synth.catalog import CATALOG, CUMULATIVE, PAYERS, Rx
from stream_app.synth.claims import as_claims
from stream_app.synth.course import Course, Doc, Patient
from stream_app.synth.edits import EPISODES
from stream_app.synth.submission import earliest_received
from stream_app.synth.violations import VIOLATIONS

DEFAULT_START: Final = date(2025, 1, 1)
DEFAULT_SPAN_DAYS: Final = 640  # last courses start in early October 2026
DEFAULT_FRACTIONS: Final = 25
SECOND_COURSE_RATE: Final = 0.15
DEFAULT_VOID_RATE: Final = 0.05  # `--voids` with no value
MAX_PATIENTS: Final = 10_000_000  # `--patients`: 1.2 billion lines, more than anyone needs


@dataclass(slots=True)
class Stats:
    patients: int = 0
    courses: int = 0
    events: int = 0
    lines: int = 0
    families: Counter[str] = field(default_factory=Counter)
    violations: Counter[str] = field(default_factory=Counter)
    episodes: Counter[str] = field(default_factory=Counter)  # voids and corrections
    invalid: Counter[str] = field(default_factory=Counter)
    claims: int = 0  # claim messages written (--format claims)
    claim_lines: Counter[int] = field(default_factory=Counter)  # lines per claim -> claims

    def render(self) -> str:
        def counts(counter: Counter[str]) -> str:
            return " ".join(f"{k}={v}" for k, v in sorted(counter.items())) or "-"

        return "\n".join(
            [
                f"generate: {self.lines} {'messages' if self.claims else 'lines'}, "
                f"{self.events} events, {self.patients} patients, "
                f"{self.courses} courses",
                f"  modalities: {counts(self.families)}",
                f"  injected violations: {sum(self.violations.values())} {counts(self.violations)}",
                f"  voids/corrections: {sum(self.episodes.values())} {counts(self.episodes)}",
                f"  invalid lines: {sum(self.invalid.values())} {counts(self.invalid)}",
                *([self._claims_line()] if self.claims else []),
            ]
        )

    def _claims_line(self) -> str:
        sizes = sorted(self.claim_lines.elements())
        mean = sum(sizes) / len(sizes)
        return (
            f"  claim messages: {self.claims}, lines per claim: mean {mean:.1f}, "
            f"median {sizes[len(sizes) // 2]}, max {sizes[-1]}"
        )


class Synth:
    """A seeded synthetic stream; `events()` yields documents in submission order."""

    def __init__(
        self,
        patients: int,
        fractions: int = DEFAULT_FRACTIONS,
        violation_rate: float = 0.0,
        seed: int = 0,
        *,
        start: date = DEFAULT_START,
        span_days: int = DEFAULT_SPAN_DAYS,
        void_rate: float = 0.0,
    ) -> None:
        if patients < 0 or fractions < 1 or span_days < 1:
            raise ValueError("patients >= 0, fractions >= 1 and span_days >= 1 are required")
        if not 0.0 <= violation_rate <= 1.0 or not 0.0 <= void_rate <= 1.0:
            raise ValueError("rates are between 0 and 1")
        self.patients = patients
        self.fractions_scale = fractions / DEFAULT_FRACTIONS
        self.violation_rate = violation_rate
        self.void_rate = void_rate
        self.seed = seed
        self.start = start.toordinal()
        self.span_days = span_days
        self.stats = Stats()

    def _rng(self, *parts: int) -> Random:
        value = self.seed & 0xFFFF_FFFF
        for part in parts:
            value = (value * 1_000_003 + part + 1) & 0xFFFF_FFFF_FFFF_FFFF
        return Random(value)

    def _timing(self, index: int, number: int) -> Random:
        """The generator of a course's received times, apart from what it bills."""
        return self._rng(index, 4 + number)

    def _patient(self, index: int) -> Patient:
        rng = self._rng(index, 0)
        number = (index * 982_451_653 + (self.seed * 7_919) % 10**9) % 10**9
        r = rng.random()
        payer_type, _, ids = PAYERS[-1]
        for candidate in PAYERS:
            if r < candidate[1]:
                payer_type, _, ids = candidate
                break
            r -= candidate[1]
        return Patient(index, f"M{number:09d}", payer_type, rng.choice(ids))

    def _rx(self, rng: Random, not_site: str | None) -> Rx:
        while True:
            rx = CATALOG[bisect.bisect_right(CUMULATIVE, rng.random() * CUMULATIVE[-1])]
            if rx.site != not_site:
                return rx

    def _starts(self) -> Iterator[tuple[int, int, int, bool]]:
        """(start day, patient index, course number, a second course follows),
        in start order, patient by patient: first courses start in patient
        order, and a second one waits in a heap until its day comes."""
        seconds: list[tuple[int, int, int, bool]] = []
        end = self.start + self.span_days
        for index in range(self.patients):
            first = self.start + (index * self.span_days) // self.patients
            while seconds and seconds[0][:2] < (first, index):
                yield heapq.heappop(seconds)
            rng = self._rng(index, 1)
            second = first + rng.randint(45, 240) if rng.random() < SECOND_COURSE_RATE else end
            yield first, index, 0, second < end
            if second < end:
                heapq.heappush(seconds, (second, index, 1, False))
        while seconds:
            yield heapq.heappop(seconds)

    def _course(
        self, start: int, index: int, number: int, second: bool, sites: dict[int, str]
    ) -> Course:
        rng = self._rng(index, 2 + number)
        rx = self._rx(rng, sites.pop(index, None))
        if second:  # the patient's second course is at another site
            sites[index] = rx.site
        timing = self._timing(index, number)
        course = Course(self._patient(index), number, start, rx, rng, self.fractions_scale, timing)
        stats = self.stats
        stats.courses += 1
        stats.patients += number == 0
        stats.families[rx.family] += 1
        if rng.random() < self.violation_rate:
            menu = list(VIOLATIONS.items())
            rng.shuffle(menu)
            for name, inject in menu:
                if inject(course):
                    stats.violations[name] += 1
                    break
        if rng.random() < self.void_rate:
            name, episode = rng.choice(list(EPISODES.items()))
            if episode(course):
                stats.episodes[name] += 1
        course.finish()
        return course

    def events(self) -> Iterator[Doc]:
        """The events of every course in the order they are received (by
        received_at; equal times by course start, a course's own in its order).

        Nothing is built before it can be needed: a course that has started
        waits, unbuilt, under a lower bound of its first message's time
        (`earliest_received`), and is built when the stream reaches that
        bound; a course that has not started yet receives nothing before its
        start day. So the first messages come at once however many patients
        there are, and what is held is the courses under way."""
        sites: dict[int, str] = {}  # site of a patient's first course, until the second
        # Built courses: (received_at of the next event, serial) -> events, position.
        built: list[tuple[str, int]] = []
        open_courses: dict[int, tuple[list[tuple[int, float, Doc]], int]] = {}
        # Started courses not built yet: (bound, serial, start day, index, number, second).
        waiting: list[tuple[str, int, int, int, int, bool]] = []
        starts = enumerate(self._starts())
        upcoming = next(starts, None)
        stats = self.stats
        while True:
            horizon = iso(upcoming[1][0]) if upcoming is not None else None
            if (
                built
                and (not waiting or built[0] < waiting[0][:2])
                and (horizon is None or built[0][0] < horizon)
            ):
                key = built[0][1]
                events, position = open_courses[key]
                stats.events += 1
                yield events[position][2]
                position += 1
                if position < len(events):
                    open_courses[key] = (events, position)
                    heapq.heapreplace(built, (events[position][2]["received_at"], key))
                else:
                    del open_courses[key]
                    heapq.heappop(built)
            elif waiting and (horizon is None or waiting[0][0] < horizon):
                _, serial, day, index, number, second = heapq.heappop(waiting)
                events = self._course(day, index, number, second, sites).events
                if events:
                    open_courses[serial] = (events, 0)
                    heapq.heappush(built, (events[0][2]["received_at"], serial))
            elif upcoming is not None:
                serial, (day, index, number, second) = upcoming
                bound = earliest_received(day, self._timing(index, number))
                heapq.heappush(waiting, (bound, serial, day, index, number, second))
                upcoming = next(starts, None)
            else:
                return


def generate(
    patients: int,
    fractions: int = DEFAULT_FRACTIONS,
    violation_rate: float = 0.0,
    seed: int = 0,
    *,
    start: date = DEFAULT_START,
    span_days: int = DEFAULT_SPAN_DAYS,
    void_rate: float = 0.0,
) -> Iterator[Doc]:
    """Event documents (SPEC 1) of a synthetic stream, in submission order."""
    return Synth(
        patients,
        fractions,
        violation_rate,
        seed,
        start=start,
        span_days=span_days,
        void_rate=void_rate,
    ).events()


# -- invalid lines -----------------------------------------------------------------


def _invalid(rng: Random, doc: Doc, encoded: bytes) -> tuple[str, bytes]:
    # Only a full claim line is mangled field by field; others are cut short.
    kind = rng.randrange(7) if "hcpcs" in doc and "action" not in doc else rng.randrange(2)
    if kind == 0:
        return "not_json", encoded[: max(1, len(encoded) // 2)]
    if kind == 1:
        return "not_object", orjson.dumps([doc.get("claim_id"), doc.get("line_number")])
    bad = dict(doc)
    if kind == 2:
        year = str(bad.get("date_of_service", "2025"))[:4]
        bad["date_of_service"] = f"{year}-02-30"
        reason = "bad_date"
    elif kind == 3:
        bad["units"] = 0
        reason = "bad_field"
    elif kind == 4:
        bad.pop("patient_id", None)
        reason = "missing_field"
    elif kind == 5:
        bad["hcpcs"] = "7738"
        reason = "bad_field"
    else:
        bad["kind"] = "claim_header"
        reason = "unknown_kind"
    return reason, orjson.dumps(bad)


def generate_lines(
    synth: Synth,
    invalid_rate: float = 0.0,
    max_lines: int | None = None,
    *,
    claims: bool = False,
) -> Iterator[bytes]:
    """Encoded messages (no newline) of a stream, with a share of invalid ones:
    line messages, or with `claims` the same lines as claim messages (SPEC 1.1)
    submitted weekly (professional) and monthly (institutional), in the same
    submission order."""
    rng = Random(synth.seed ^ 0x5EED)
    stats = synth.stats
    dumps = orjson.dumps
    limit = max_lines if max_lines is not None else -1
    written = 0
    if written == limit:
        return
    docs = as_claims(synth.events()) if claims else synth.events()
    try:
        for doc in docs:
            if doc.get("kind") == "claim":
                stats.claims += 1
                stats.claim_lines[len(doc["lines"])] += 1
            encoded = dumps(doc)
            yield encoded
            written += 1
            if invalid_rate and rng.random() < invalid_rate and written != limit:
                reason, garbage = _invalid(rng, doc, encoded)
                stats.invalid[reason] += 1
                yield garbage
                written += 1
            if written == limit:  # stop at once: nothing more is generated
                return
    finally:
        stats.lines = written


def write_lines(out: BinaryIO, encoded: Iterable[bytes], batch_size: int = 4096) -> None:
    """Write encoded messages as JSON lines, a few thousand per write."""
    batch: list[bytes] = []
    for line in encoded:
        batch.append(line)
        if len(batch) >= batch_size:
            batch.append(b"")
            out.write(b"\n".join(batch))
            batch.clear()
    if batch:
        batch.append(b"")
        out.write(b"\n".join(batch))
