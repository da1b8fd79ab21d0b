"""The incremental engine against a deliberately naive oracle (issue 11).

The oracle keeps only the final set of live lines (upserts and claim messages
applied, voids taken out) and which courses are closed. To answer, it runs
every rule of the registry on every day from scratch, with day and course
views built from those lines alone. A hypothesis test feeds random streams
(line messages, claim messages, voids, corrections, duplicates, course ends,
idle closing; pruning off) to both: the folded open alerts must be equal,
before and after closing every course.

Messages are not compared: an open alert is not re-sent when only its text
would change (SPEC 2), so its message can be older than the oracle's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import orjson
from helpers import FIXED_TIME
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.core import codes
from stream_app.core.alerts import build_alert, fold
from stream_app.core.engine import Engine, EngineSettings
from stream_app.core.events import (
    ClaimEvent,
    ClaimLineEvent,
    CourseEndEvent,
    Event,
    Invalid,
    parse_event,
)
from stream_app.core.model import Line
from stream_app.core.profiles import ProfileBook
from stream_app.core.rules import FINAL, DayView, load_registry
from stream_app.core.rules.base import CourseView
from stream_app.core.store import MemoryStore

IDLE_DAYS = 45
# The oracle publishes at once, so the engine runs without holds (SPEC 4.1);
# tests/test_holds.py checks that holds leave the closed fold unchanged.
NO_PRUNING = EngineSettings(course_idle_days=IDLE_DAYS, retain_days=1_000_000, hold_days=0)

Identity = tuple[str, str, int]  # (patient, claim, line number)
CourseKey = tuple[str, str, str]  # (patient, course, site)
Summary = dict[tuple[str, str, str, int], tuple[str, int | None, tuple[tuple[Any, ...], ...]]]


@dataclass
class Oracle:
    """Live lines and closed courses; rules run from scratch on demand."""

    lines: dict[Identity, Line] = field(default_factory=dict)
    last_seen: dict[CourseKey, str] = field(default_factory=dict)
    ended: set[CourseKey] = field(default_factory=set)
    closed: set[CourseKey] = field(default_factory=set)
    watermark: str = ""

    def feed(self, event: Event) -> None:
        if isinstance(event, CourseEndEvent):
            key = (event.patient_id, event.course_id, event.site)
            self.ended.add(key)
            self.last_seen.setdefault(key, event.date)
            self._advance(event.date)
        elif isinstance(event, ClaimEvent):
            claim = [i for i in self.lines if i[:2] == (event.patient_id, event.claim_id)]
            listed = {line.line_number for line in event.lines}
            if event.frequency != "original":
                for identity in claim:
                    if event.frequency == "void" or identity[2] not in listed:
                        del self.lines[identity]
            for line in event.lines if event.frequency != "void" else ():
                self._upsert(line)
            self._advance(event.date)
        elif isinstance(event, ClaimLineEvent):
            line = event.line
            if event.action == "void":
                self.lines.pop((line.patient_id, line.claim_id, line.line_number), None)
            else:
                self._upsert(line)
            self._advance(line.date_of_service)
        self._close_idle()

    def _upsert(self, line: Line) -> None:
        identity = (line.patient_id, line.claim_id, line.line_number)
        if self.lines.get(identity) == line:
            return
        self.lines[identity] = line
        key = (line.patient_id, line.course_id, line.site)
        self.last_seen[key] = max(self.last_seen.get(key, ""), line.date_of_service)

    def _advance(self, day: str) -> None:
        self.watermark = max(self.watermark, day)

    def _close_idle(self) -> None:
        now = date.fromisoformat(self.watermark).toordinal() if self.watermark else None
        for key, seen in self.last_seen.items():
            if key in self.ended or (
                now is not None and now - date.fromisoformat(seen).toordinal() >= IDLE_DAYS
            ):
                self.closed.add(key)

    def close_all(self) -> None:
        self.closed |= set(self.last_seen)

    # -- evaluation from scratch -------------------------------------------
    def course_view(self, patient: str, course_id: str, site: str) -> CourseView:
        table = codes.CODES
        lines = [
            line
            for line in self.lines.values()
            if (line.patient_id, line.course_id, line.site) == (patient, course_id, site)
        ]
        live = [line for line in lines if not table.deleted(line.hcpcs, line.date_of_service)]
        return CourseView(
            modalities=frozenset(
                m for m in (line.delivery_modality() for line in lines) if m is not None
            ),
            fractions=sum(line.fractions() for line in lines),
            closed=(patient, course_id, site) in self.closed,
            has_skin_dx=any(line.has_skin_or_keloid_dx() for line in live),
            port_lines=tuple(
                sorted(
                    (line.date_of_service, line.claim_id, line.line_number, line.units)
                    for line in live
                    if line.hcpcs == codes.PORT_IMAGE
                )
            ),
        )

    def day_view(self, patient: str, site: str, day: str) -> DayView:
        table = codes.CODES
        on_day = sorted(
            (
                line
                for line in self.lines.values()
                if (line.patient_id, line.site, line.date_of_service) == (patient, site, day)
            ),
            key=lambda line: (line.claim_id, line.line_number),
        )
        billable = [line for line in on_day if not table.deleted(line.hcpcs, day)]
        by_code: dict[str, list[Line]] = {}
        for line in billable:
            by_code.setdefault(line.hcpcs, []).append(line)
        modalities = frozenset(
            m for m in (line.delivery_modality() for line in on_day) if m is not None
        )
        book = ProfileBook()
        return DayView(
            date_of_service=day,
            lines=billable,
            by_code=by_code,
            fractions=sum(line.fractions() for line in on_day),
            modalities=modalities,
            has_delivery=bool(modalities),
            course=lambda course_id: self.course_view(patient, course_id, site),
            profile=lambda line: book.resolve(line.payer_id, line.payer_type),
            deleted=[
                (line, entry)
                for line in on_day
                if (entry := table.deleted(line.hcpcs, day)) is not None
            ],
        )

    def open_alerts(self) -> Summary:
        registry = load_registry()
        book = ProfileBook()
        days = {(line.patient_id, line.site, line.date_of_service) for line in self.lines.values()}
        found: Summary = {}
        for patient, site, day in sorted(days):
            view = self.day_view(patient, site, day)
            for declared in registry.rules:  # every rule, every day
                for violation in declared.check(view):
                    line = self.lines[(patient, *violation.key)]
                    if (
                        violation.rule_id
                        in book.resolve(line.payer_id, line.payer_type).disabled_rules
                    ):
                        continue
                    closed = (patient, line.course_id, line.site) in self.closed
                    finality = FINAL if declared.spec.finality == FINAL or closed else "provisional"
                    found[(violation.rule_id, patient, *violation.key)] = (
                        finality,
                        violation.excess_units,
                        violation.evidence,
                    )
        return found


def engine_summary(messages: list[dict[str, Any]]) -> Summary:
    return {
        (a["rule_id"], a["patient_id"], a["claim_id"], a["line_number"]): (
            a["finality"],
            a["excess_units"],
            tuple(
                (e["claim_id"], e["line_number"], e["hcpcs"], e["date_of_service"])
                for e in a["evidence"]
            ),
        )
        for a in fold(messages).values()
    }


# -- random streams -------------------------------------------------------------

DELIVERY = ["77412", "77402", "77385", "77401", "77373", "77761", "77520"]
GUIDANCE = ["77014", "77387", "77417", "77417", "G6001", "G6002", "G6017"]
OTHER = ["77280", "77285", "77290", "77295", "76950"]
COURSES = [("C1", "prostate"), ("C1", "prostate"), ("C2", "pelvis"), ("C2", "prostate")]
BASES = [date(2024, 3, 4), date(2025, 12, 1)]
PATIENTS = ["P1", "P2"]
CLAIMS = ["A", "B", "C", "D"]


@st.composite
def line_fields(draw: st.DrawFn, base: date, offsets: list[int]) -> dict[str, Any]:
    course, site = draw(st.sampled_from(COURSES))
    code = draw(st.sampled_from(DELIVERY * 2 + GUIDANCE * 2 + OTHER))
    doc: dict[str, Any] = {
        "course_id": course,
        "site": site,
        "date_of_service": (base + timedelta(days=draw(st.sampled_from(offsets)))).isoformat(),
        "hcpcs": code,
        "claim_type": draw(st.sampled_from(["professional", "professional", "institutional"])),
        "units": draw(st.integers(1, 3)),
        "modifiers": draw(st.sampled_from([[], [], ["26"], ["TC"]])),
    }
    if code in DELIVERY and draw(st.booleans()):
        doc["modality"] = draw(
            st.sampled_from(["3DCRT", "IMRT", "ELECTRON", "SBRT", "SUPERFICIAL"])
        )
    optional = {
        "place_of_service": st.sampled_from(["11", "22"]),
        "payer_type": st.sampled_from(["medicare", "commercial"]),
        "diagnosis_codes": st.sampled_from([["C44.91"], ["C61"], ["L91.0"]]),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            doc[name] = draw(strategy)
    return doc


@st.composite
def stream(draw: st.DrawFn) -> list[dict[str, Any]]:
    base = draw(st.sampled_from(BASES))
    # Wide enough apart for a course to close by idleness (45 days).
    offsets = draw(st.lists(st.integers(0, 70), min_size=1, max_size=5, unique=True))
    docs: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(3, 24))):
        patient = draw(st.sampled_from(PATIENTS))
        claim = draw(st.sampled_from(CLAIMS))
        kind = draw(st.sampled_from(["line"] * 5 + ["void", "claim", "end", "again"]))
        if kind == "again" and docs:
            docs.append(draw(st.sampled_from(docs)))  # a duplicate, later
        elif kind == "void":
            docs.append(
                {
                    "action": "void",
                    "patient_id": patient,
                    "claim_id": claim,
                    "line_number": draw(st.integers(1, 3)),
                }
            )
        elif kind == "claim":
            frequency = draw(st.sampled_from(["original", "replacement", "replacement", "void"]))
            doc: dict[str, Any] = {
                "kind": "claim",
                "patient_id": patient,
                "claim_id": claim,
                "frequency": frequency,
            }
            if frequency != "void":
                numbers = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3, unique=True))
                doc["lines"] = [
                    {"line_number": n, **draw(line_fields(base, offsets))} for n in numbers
                ]
            docs.append(doc)
        elif kind == "end":
            course, site = draw(st.sampled_from(COURSES))
            when = base + timedelta(days=draw(st.sampled_from(offsets)))
            docs.append(
                {
                    "kind": "course_end",
                    "patient_id": patient,
                    "course_id": course,
                    "site": site,
                    "date": when.isoformat(),
                }
            )
        else:
            docs.append(
                {
                    "patient_id": patient,
                    "claim_id": claim,
                    "line_number": draw(st.integers(1, 3)),
                    **draw(line_fields(base, offsets)),
                }
            )
    return docs


def parsed(doc: dict[str, Any]) -> Event:
    event = parse_event(orjson.dumps(doc))
    assert not isinstance(event, Invalid), (doc, event)
    return event


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(stream())
def test_engine_equals_the_naive_oracle(docs: list[dict[str, Any]]) -> None:
    engine = Engine(MemoryStore(), settings=NO_PRUNING)
    oracle = Oracle()
    messages: list[dict[str, Any]] = []
    for doc in docs:
        event = parsed(doc)
        messages.extend(build_alert(t, FIXED_TIME) for t in engine.apply(event).transitions)
        oracle.feed(event)
    assert engine_summary(messages) == oracle.open_alerts()
    assert engine.pruned_courses == 0
    store = engine.store
    assert isinstance(store, MemoryStore)
    messages.extend(build_alert(t, FIXED_TIME) for t in engine.close_all(store.patient_ids()))
    oracle.close_all()
    assert engine_summary(messages) == oracle.open_alerts()


def test_the_oracle_can_fail() -> None:
    """The oracle sees a violation the engine never got (a test must be able to fail)."""
    oracle = Oracle()
    for number in (1, 2):
        oracle.feed(
            parsed(
                {
                    "patient_id": "P1",
                    "claim_id": "A",
                    "line_number": number,
                    "course_id": "C1",
                    "site": "prostate",
                    "date_of_service": "2024-03-04",
                    "hcpcs": "77417",
                    "claim_type": "institutional",
                }
            )
        )
    assert engine_summary([]) != oracle.open_alerts()
