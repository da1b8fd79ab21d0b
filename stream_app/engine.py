"""The engine: applies one event to a patient's state and returns the alert
transitions it causes (SPEC 2 and 4).

It is the only place that decides alerts; replay and the Kafka worker both
call `Engine.apply`. Rules are pure functions of a `DayView`; the engine keeps
the state, re-evaluates exactly the days an event can affect, and diffs the
violations against the memo of what was last emitted for each alert.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from . import codes
from .events import ClaimEvent, ClaimLineEvent, CourseEndEvent, Event, event_date, event_patient
from .model import (
    CourseRef,
    CourseState,
    CourseStatus,
    DayState,
    Evidence,
    Line,
    LineKey,
    LineLocation,
    Memo,
    PatientState,
    date_ordinal,
)
from .profiles import Profile, ProfileBook
from .rules import FINAL, DayView, Registry, RuleSpec, Violation, load_registry
from .rules.base import CourseView
from .rules.port_images import allowance, frequency_excess
from .store import Store

PROVISIONAL = "provisional"


class Transition(NamedTuple):
    """One alert message to emit: an alert opened, changed or resolved."""

    spec: RuleSpec
    line: Line
    status: str  # "open" | "resolved"
    finality: str
    excess_units: int | None
    evidence: Evidence
    message: str
    sequence: int
    profile: Profile


@dataclass(slots=True)
class Result:
    outcome: str  # processed | duplicate | void | void_unknown | course_end
    transitions: list[Transition]


class Due(NamedTuple):
    """When a patient's courses next need a look, as date ordinals: `close`
    against event time (an open course idle), `prune` against settled event
    time (a closed course far enough behind to drop)."""

    close: int | None
    prune: int | None


class _Scope:
    """Event time of one stream (a replay, or one Kafka partition) and the
    patients of that stream ordered by when their courses next need a look.

    `settled` is event time that no part of the stream can still be behind:
    replay has one clock so it equals `watermark`; the worker's is the lowest
    date any input partition has reached, idle ones included, because an idle
    partition may yet bring older lines. Closing follows `watermark` (so a
    stream read to its end closes what replay closes); pruning, which cannot
    be undone, follows `settled`."""

    def __init__(self) -> None:
        self.watermark = ""
        self.settled = ""
        self.latest = ""  # the latest date any part of the stream has reached
        self.close_heap: list[tuple[int, str]] = []
        self.prune_heap: list[tuple[int, str]] = []
        self.due: dict[str, Due] = {}

    def advance(self, event_date: str, settled: str | None = None, latest: str = "") -> None:
        """Move the clocks on; `settled` defaults to `event_date` (one clock)."""
        if event_date > self.watermark:
            self.watermark = event_date
        self.latest = max(self.latest, self.watermark, latest)
        settled = event_date if settled is None else settled
        if settled > self.settled:
            self.settled = min(settled, self.watermark)

    def touch(self, patient_id: str, due: Due | None) -> None:
        if due is None:
            self.due.pop(patient_id, None)
            return
        held = self.due.get(patient_id)
        if held == due:
            return
        self.due[patient_id] = due
        if due.close is not None and (held is None or held.close != due.close):
            heapq.heappush(self.close_heap, (due.close, patient_id))
        if due.prune is not None and (held is None or held.prune != due.prune):
            heapq.heappush(self.prune_heap, (due.prune, patient_id))

    def pop_due(self) -> Iterator[str]:
        """Patients due for a look (each once), their entries taken off."""
        close, prune = self.close_heap, self.prune_heap
        if (not close or not self.watermark or close[0][0] > date_ordinal(self.watermark)) and (
            not prune or not self.settled or prune[0][0] > date_ordinal(self.settled)
        ):
            return iter(())  # nothing due: the common case
        found: dict[str, None] = {}
        if self.watermark:
            self._pop(self.close_heap, date_ordinal(self.watermark), "close", found)
        if self.settled:
            self._pop(self.prune_heap, date_ordinal(self.settled), "prune", found)
        for patient_id in found:
            self.due.pop(patient_id, None)
        return iter(found)

    def _pop(
        self, heap: list[tuple[int, str]], now: int, kind: str, found: dict[str, None]
    ) -> None:
        while heap and heap[0][0] <= now:
            due, patient_id = heapq.heappop(heap)
            held = self.due.get(patient_id)
            if held is not None and getattr(held, kind) == due:  # else a stale entry
                found[patient_id] = None


@dataclass(frozen=True, slots=True)
class EngineSettings:
    course_idle_days: int = 45
    # A closed course whose last line is this many days behind the stream's
    # watermark is dropped from state; a later line for it is evaluated final.
    retain_days: int = 120


class Engine:
    def __init__(
        self,
        store: Store,
        registry: Registry | None = None,
        profiles: ProfileBook | None = None,
        settings: EngineSettings = EngineSettings(),
    ) -> None:
        self.store = store
        self.registry = registry or load_registry()
        self.settings = settings
        book = profiles or ProfileBook()
        self.profile_of = lru_cache(maxsize=4096)(book.resolve)
        self._scopes: dict[int, _Scope] = {}
        self.pruned_courses = 0
        # Rule checks run so far (one per rule and day evaluated): a count
        # that tests use to see that evaluation follows what changed.
        self.rule_runs = 0

    def apply(
        self,
        event: Event,
        scope: int = 0,
        watermark: str | None = None,
        settled: str | None = None,
        latest: str = "",
    ) -> Result:
        """Apply one event; its transitions include those of courses of other
        patients in the same scope that event time made idle (SPEC 4).

        A scope is one stream with its own event time: replay uses one, the
        worker one per partition, so a scope only ever touches its own keys.
        Event time is the latest date seen, or `watermark` when the caller
        knows better (the worker's low watermark across input partitions);
        `settled` is what pruning goes by (see _Scope), `watermark` if not given;
        `latest` the latest date any part of the stream has reached, which
        stamps a course's last arrival for pruning.
        """
        stream = self._scope(scope)
        stream.advance(event_date(event) if watermark is None else watermark, settled, latest)
        if isinstance(event, CourseEndEvent):
            result, due = self._course_end(event, stream.watermark, stream.latest)
        elif isinstance(event, ClaimEvent):
            result, due = self._claim(event, stream.watermark, stream.latest)
        else:
            result, due = self._claim_line(event, stream.watermark, stream.latest)
        patient_id = event_patient(event)
        if result.outcome not in ("duplicate", "void_unknown"):
            stream.touch(patient_id, due)
        result.transitions.extend(self._sweep(stream))
        return result

    def tick(
        self, scope: int, watermark: str, settled: str | None = None, latest: str = ""
    ) -> list[Transition]:
        """Event time moved on without an event of this scope."""
        stream = self._scope(scope)
        stream.advance(watermark, settled, latest)
        return self._sweep(stream)

    def _sweep(self, stream: _Scope) -> list[Transition]:
        transitions: list[Transition] = []
        for idle_patient in list(stream.pop_due()):
            closed, next_due = self._maintain(idle_patient, stream)
            transitions.extend(closed)
            stream.touch(idle_patient, next_due)
        return transitions

    def watermark(self, scope: int = 0) -> str:
        return self._scope(scope).watermark

    def adopt(self, scope: int, patient_ids: Iterable[str], watermark: str = "") -> int:
        """Rebuild a scope's idle index from stored patients (a worker taking
        over a partition) at the given event time; returns how many it found."""
        stream = self._scopes[scope] = _Scope()
        stream.advance(watermark)
        found = 0
        for patient_id in patient_ids:
            patient = self.store.get_patient(patient_id)
            if patient is None:
                continue
            found += 1
            stream.touch(patient_id, self._next_due(patient))
        return found

    def _scope(self, scope: int) -> _Scope:
        found = self._scopes.get(scope)
        if found is None:
            found = self._scopes[scope] = _Scope()
        return found

    def close_all(self, patient_ids: Iterable[str]) -> list[Transition]:
        """Close every course of these patients (the end of a replay)."""
        transitions: list[Transition] = []
        for patient_id in patient_ids:
            work = _Work(self, patient_id, "")
            for ref, status in list(work.patient.courses.items()):
                if not status.ended:
                    work.patient.courses[ref] = status._replace(ended=True)
            transitions.extend(work.finish())
        return transitions

    def restate(self, event: Event) -> list[Transition]:
        """The current alert messages of the event's scope, sequences unchanged.

        After a crash an event can be in state already while its alerts never
        reached the topic; re-sending the current state is harmless to a
        consumer that folds by alert_id, and makes sure nothing is lost.
        """
        if isinstance(event, CourseEndEvent):
            work = _Work(self, event.patient_id, "")
            ref = CourseRef(event.course_id, event.site)
            days = [(ref.site, d) for d in work.course(ref).dates]
        elif isinstance(event, ClaimEvent):
            work = _Work(self, event.patient_id, "")
            locations = self.store.claim_locations(event.patient_id, event.claim_id).values()
            days = sorted({(location.site, location.date_of_service) for location in locations})
        else:
            work = _Work(self, event.line.patient_id, "")
            location = self.store.get_location(
                (event.line.patient_id, event.line.claim_id, event.line.line_number)
            )
            if location is None:
                return []
            days = [(location.site, location.date_of_service)]
        transitions: list[Transition] = []
        for site, day_date in days:
            transitions.extend(work.restate_day(site, day_date))
        return transitions

    def _next_due(self, patient: PatientState) -> Due | None:
        idle, retain = self.settings.course_idle_days, self.settings.retain_days
        live = [status for status in patient.courses.values() if not status.pruned]
        if not live:
            return None
        close = [date_ordinal(s.last_seen) + idle for s in live if not s.closed]
        prune = [date_ordinal(s.prune_after) + retain for s in live if s.closed]
        return Due(min(close, default=None), min(prune, default=None))

    def _maintain(self, patient_id: str, stream: _Scope) -> tuple[list[Transition], Due | None]:
        """Close the patient's idle courses, then drop closed ones far behind."""
        work = _Work(self, patient_id, stream.watermark, stream.latest)
        settled = stream.settled
        transitions = work.finish()
        patient = work.patient
        # Nothing settled yet: prune nothing.
        horizon = date_ordinal(settled) - self.settings.retain_days if settled else -1
        for ref, status in list(patient.courses.items()):
            if (
                status.closed
                and not status.pruned
                and date_ordinal(status.prune_after) <= horizon
            ):
                self._drop_course(patient_id, ref)
                patient.courses[ref] = status._replace(pruned=True)
                self.pruned_courses += 1
        due = self._next_due(patient)
        if due is None:
            # Nothing left that a rule could need: forget the patient.
            self.store.del_patient(patient_id)
        else:
            self.store.put_patient(patient_id, patient)
        return transitions, due

    def _drop_course(self, patient_id: str, ref: CourseRef) -> None:
        course_key = (patient_id, ref.course_id, ref.site)
        course = self.store.get_course(course_key)
        if course is None:
            return
        for day_date in course.dates:
            day_key = (patient_id, ref.site, day_date)
            day = self.store.get_day(day_key)
            if day is None:
                continue
            gone = [key for key, line in day.lines.items() if line.course_id == ref.course_id]
            for key in gone:
                del day.lines[key]
                day.memos.pop(key, None)
                day.voided.pop(key, None)
                self.store.del_location((patient_id, *key))
            if day.lines:
                self.store.put_day(day_key, day)
            else:
                self.store.del_day(day_key)
        self.store.del_course(course_key)

    def _course_end(
        self, event: CourseEndEvent, watermark: str, arrival: str
    ) -> tuple[Result, Due | None]:
        work = _Work(self, event.patient_id, watermark, arrival)
        ref = CourseRef(event.course_id, event.site)
        status = work.patient.courses.get(ref) or CourseStatus(
            event.date, False, False, False, arrival
        )
        work.patient.courses[ref] = status._replace(ended=True)
        work.advance(event.date)
        return Result("course_end", work.finish()), self._next_due(work.patient)

    def _claim_line(
        self, event: ClaimLineEvent, watermark: str, arrival: str
    ) -> tuple[Result, Due | None]:
        line = event.line
        work = _Work(self, line.patient_id, watermark, arrival)
        location = self.store.get_location((line.patient_id, line.claim_id, line.line_number))
        if event.action == "void":
            if not work.withdraw(location, line.key):
                return Result("void_unknown", []), None
            return Result("void", work.finish()), self._next_due(work.patient)
        if not work.upsert(line, location):
            return Result("duplicate", []), None
        return Result("processed", work.finish()), self._next_due(work.patient)

    def _claim(self, event: ClaimEvent, watermark: str, arrival: str) -> tuple[Result, Due | None]:
        """A whole claim (SPEC 1.1): every line applied, then one evaluation."""
        work = _Work(self, event.patient_id, watermark, arrival)
        known = self.store.claim_locations(event.patient_id, event.claim_id)
        listed = {line.line_number for line in event.lines}
        withdrawn = {
            "void": sorted(known),
            "replacement": sorted(number for number in known if number not in listed),
        }.get(event.frequency, [])
        changed = False
        for number in withdrawn:
            changed |= work.withdraw(known[number], (event.claim_id, number))
        if event.frequency != "void":
            for line in event.lines:
                changed |= work.upsert(line, known.get(line.line_number))
        if not changed:
            return Result("void_unknown" if event.frequency == "void" else "duplicate", []), None
        outcome = "void" if event.frequency == "void" else "processed"
        return Result(outcome, work.finish()), self._next_due(work.patient)


def _course_of(day: DayState, key: LineKey) -> str | None:
    line = day.lines.get(key) or day.voided.get(key)
    return None if line is None else line.course_id


def _resolved_message(spec: RuleSpec, line: Line) -> str:
    return (
        f"resolved: {spec.title.lower()} no longer applies to {line.hcpcs} "
        f"on {line.date_of_service}"
    )


class _CourseSnapshot(NamedTuple):
    """A course's rule inputs as loaded, to see what an event changed."""

    facts: tuple[frozenset[str], bool]
    fractions: int
    port_lines: dict[LineKey, tuple[str, int]]


def _snapshot(course: CourseState) -> _CourseSnapshot:
    return _CourseSnapshot(course.facts(), course.fractions, dict(course.port_lines))


def _port_excess(
    port_lines: dict[LineKey, tuple[str, int]], fractions: int, closed: bool
) -> dict[LineKey, int]:
    if sum(units for _, units in port_lines.values()) <= allowance(fractions, closed):
        return {}  # the common case, without sorting
    held = [(d, claim, number, units) for (claim, number), (d, units) in port_lines.items()]
    return frequency_excess(held, fractions, closed)


class _Work:
    """The state one event touches, loaded once, written back once."""

    def __init__(
        self, engine: Engine, patient_id: str, watermark: str, arrival: str | None = None
    ) -> None:
        self.engine = engine
        self.watermark = watermark  # the stream's event time
        # What a line arriving now is stamped with for pruning: the latest date
        # the stream has reached anywhere (replay: the same as event time).
        self.arrival = watermark if arrival is None else arrival
        self.store = engine.store
        self.patient_id = patient_id
        self.patient = self.store.get_patient(patient_id) or PatientState()
        self.days: dict[tuple[str, str], DayState] = {}
        self.courses: dict[CourseRef, CourseState] = {}
        self.snapshots: dict[CourseRef, _CourseSnapshot] = {}
        # (site, date) -> rule ids to re-run there; None: every rule
        self.to_evaluate: dict[tuple[str, str], frozenset[str] | None] = {}
        self.views: dict[CourseRef, CourseView] = {}
        self.dirty_days: set[tuple[str, str]] = set()
        self.dirty_courses: set[CourseRef] = set()

    # -- loading -----------------------------------------------------------
    def day(self, site: str, day_date: str) -> DayState:
        found = self.days.get((site, day_date))
        if found is None:
            found = self.store.get_day((self.patient_id, site, day_date)) or DayState()
            self.days[(site, day_date)] = found
        return found

    def course(self, ref: CourseRef) -> CourseState:
        found = self.courses.get(ref)
        if found is None:
            found = self.store.get_course((self.patient_id, *ref)) or CourseState()
            self.courses[ref] = found
            self.snapshots[ref] = _snapshot(found)
        return found

    def line_at(self, location: LineLocation, key: LineKey) -> Line | None:
        return self.day(location.site, location.date_of_service).lines.get(key)

    # -- changes -----------------------------------------------------------
    def upsert(self, line: Line, location: LineLocation | None) -> bool:
        """Bring in the line's latest version; False if it is already there."""
        previous = self.line_at(location, line.key) if location else None
        if previous == line:
            return False
        if previous is not None:
            self.remove(previous, departing=False)
        if location is not None and (location.site, location.date_of_service) != (
            line.site,
            line.date_of_service,
        ):
            self.move_memos(location, line)
        self.add(line)
        self.store.put_location(
            (line.patient_id, line.claim_id, line.line_number),
            LineLocation(line.course_id, line.site, line.date_of_service),
        )
        self.advance(line.date_of_service)
        return True

    def withdraw(self, location: LineLocation | None, key: LineKey) -> bool:
        """Void the line at `location`; False if there is none to void."""
        previous = self.line_at(location, key) if location else None
        if previous is None:
            return False
        self.remove(previous, departing=True)
        return True

    def add(self, line: Line) -> None:
        site, seen, ref = line.site, line.date_of_service, line.course_ref
        day = self.day(site, seen)
        key = line.key
        day.lines[key] = line
        day.voided.pop(key, None)
        self.evaluate(site, seen)
        self.dirty_days.add((site, seen))
        self.dirty_courses.add(ref)
        course = self.course(ref)
        course.dates[seen] = course.dates.get(seen, 0) + 1
        self._count(course, line, +1)
        # Event time is date-of-service time: a line arrives, in event time,
        # on its date of service. So a course is idle once event time is the
        # idle days past its latest date of service, whatever the arrival order.
        arrival = self.arrival
        status = self.patient.courses.get(ref)
        if status is None:
            status = CourseStatus(seen, False, False, False, arrival)
        else:
            status = CourseStatus(
                max(status.last_seen, seen),
                status.ended,
                status.closed,
                False,
                max(status.last_arrival, arrival),
            )
        self.patient.courses[ref] = status

    def remove(self, line: Line, *, departing: bool) -> None:
        day = self.day(line.site, line.date_of_service)
        del day.lines[line.key]
        self.evaluate(line.site, line.date_of_service)
        self.dirty_days.add((line.site, line.date_of_service))
        self.dirty_courses.add(line.course_ref)
        if departing and line.key in day.memos:
            day.voided[line.key] = line
        course = self.course(line.course_ref)
        remaining = course.dates.get(line.date_of_service, 0) - 1
        if remaining > 0:
            course.dates[line.date_of_service] = remaining
        else:
            course.dates.pop(line.date_of_service, None)
        self._count(course, line, -1)

    def _count(self, course: CourseState, line: Line, sign: int) -> None:
        """Add (or take back) a line's part in the course facts. A line whose
        code is deleted on its date counts only its fractions and modality."""
        course.fractions += sign * line.fractions()
        modality = line.delivery_modality()
        if modality is not None:
            left = course.modalities.get(modality, 0) + sign
            if left > 0:
                course.modalities[modality] = left
            else:
                course.modalities.pop(modality, None)
        if self.engine.registry.code_table.deleted(line.hcpcs, line.date_of_service):
            return
        if line.has_skin_or_keloid_dx():
            course.skin_lines += sign
        if line.hcpcs == codes.PORT_IMAGE:
            if sign > 0:
                course.port_lines[line.key] = (line.date_of_service, line.units)
            else:
                course.port_lines.pop(line.key, None)

    def move_memos(self, old: LineLocation, line: Line) -> None:
        """A corrected line changed day: its alert memos follow it."""
        old_day = self.day(old.site, old.date_of_service)
        memos = old_day.memos.pop(line.key, None)
        old_day.voided.pop(line.key, None)
        self.evaluate(old.site, old.date_of_service)
        self.dirty_days.add((old.site, old.date_of_service))
        if memos:
            self.day(line.site, line.date_of_service).memos[line.key] = memos
            self.dirty_days.add((line.site, line.date_of_service))

    def advance(self, event_date: str) -> None:
        if event_date > self.patient.watermark:
            self.patient.watermark = event_date

    # -- evaluation ----------------------------------------------------------
    def finish(self) -> list[Transition]:
        closed_before = self._update_closure()
        registry = self.engine.registry
        for ref, course in list(self.courses.items()):
            before = self.snapshots[ref]
            if course.facts() != before.facts:
                self._evaluate_course(ref, course.dates, registry.course_fact_rules)
            self._recheck_ports(ref, course, before, closed_before.get(ref))
        transitions: list[Transition] = []
        for (site, day_date), only in sorted(self.to_evaluate.items()):
            evaluated = self._evaluate_day(site, day_date, only)
            if evaluated:
                self.dirty_days.add((site, day_date))
                transitions.extend(evaluated)
        self._write_back()
        return transitions

    def _recheck_ports(
        self, ref: CourseRef, course: CourseState, before: _CourseSnapshot, was_closed: bool | None
    ) -> None:
        """Re-run the port-unit rules on the days whose outcome can change:
        those of lines with excess units before or after the event. With the
        same port lines (so the same evidence) and the same finality, only
        lines whose excess changed."""
        status = self.patient.courses.get(ref)
        closed = bool(status and status.closed)
        closing = was_closed is not None and was_closed != closed
        same_lines = before.port_lines == course.port_lines
        if same_lines and before.fractions == course.fractions and not closing:
            return
        old = _port_excess(
            before.port_lines, before.fractions, closed if was_closed is None else was_closed
        )
        new = _port_excess(course.port_lines, course.fractions, closed)
        if same_lines and not closing:
            keys = {key for key in old.keys() | new.keys() if old.get(key) != new.get(key)}
        else:
            keys = old.keys() | new.keys()
        rules = self.engine.registry.port_unit_rules
        for key in keys:
            held = course.port_lines.get(key) or before.port_lines[key]
            self.evaluate(ref.site, held[0], rules)

    def _update_closure(self) -> dict[CourseRef, bool]:
        """Close the courses that are due; returns the courses whose closing
        changed, with what it was before."""
        idle = self.engine.settings.course_idle_days
        watermark = date_ordinal(self.watermark) if self.watermark else None
        changed: dict[CourseRef, bool] = {}
        for ref, status in list(self.patient.courses.items()):
            if not status.last_arrival and self.arrival:
                # Arrived before the worker knew event time: count it as now.
                status = status._replace(last_arrival=self.arrival)
                self.patient.courses[ref] = status
            # Closing is final (SPEC 4): a later line for the course is evaluated final.
            closed = (
                status.closed
                or status.ended
                or (
                    watermark is not None
                    and bool(status.last_seen)
                    and watermark - date_ordinal(status.last_seen) >= idle
                )
            )
            if closed != status.closed:
                self.patient.courses[ref] = status._replace(closed=closed)
                changed[ref] = status.closed
                self._finalize(ref, self.course(ref))
        return changed

    def _finalize(self, ref: CourseRef, course: CourseState) -> None:
        """Closing changes the finality of open provisional alerts (and the
        port-image allowance, see _recheck_ports): re-run the provisional
        rules on the days that hold one of the course's."""
        provisional = self.engine.registry.provisional_rules
        for day_date in course.dates:
            day = self.day(ref.site, day_date)
            if any(
                memo.is_open and rule_id in provisional
                for key, memos in day.memos.items()
                if _course_of(day, key) == ref.course_id
                for rule_id, memo in memos.items()
            ):
                self.evaluate(ref.site, day_date, provisional)

    def evaluate(self, site: str, day_date: str, only: frozenset[str] | None = None) -> None:
        key = (site, day_date)
        if key in self.to_evaluate:
            held = self.to_evaluate[key]
            only = None if held is None or only is None else held | only
        self.to_evaluate[key] = only

    def _evaluate_course(
        self, ref: CourseRef, dates: Iterable[str], only: frozenset[str] | None = None
    ) -> None:
        for day_date in dates:
            self.evaluate(ref.site, day_date, only)

    def course_view(self, course_id: str, site: str) -> CourseView:
        ref = CourseRef(course_id, site)
        view = self.views.get(ref)
        if view is None:
            course = self.course(ref)
            status = self.patient.courses.get(ref)
            view = CourseView(
                modalities=frozenset(course.modalities),
                fractions=course.fractions,
                closed=bool(status and status.closed),
                has_skin_dx=course.skin_lines > 0,
                port_lines=tuple(
                    sorted(
                        (d, claim, number, units)
                        for (claim, number), (d, units) in course.port_lines.items()
                    )
                ),
            )
            self.views[ref] = view
        return view

    def _day_view(self, site: str, day_date: str, day: DayState) -> DayView:
        """What rules see of a day. A line whose code is deleted on its date
        goes to `deleted` only: no other rule sees it, as a line or as
        evidence; a deleted delivery code still counts its fractions and
        modality (SPEC 6, deleted-code). This is the one place that hides it."""
        table = self.engine.registry.code_table
        lines: list[Line] = []
        deleted: list[tuple[Line, codes.CodeEntry]] = []
        by_code: dict[str, list[Line]] = {}
        fractions = 0
        modalities = set()
        # in (claim_id, line_number) order, which is the order of the keys
        for _, line in sorted(day.lines.items()):
            modality = line.delivery_modality()
            if modality is not None:
                modalities.add(modality)
                fractions += line.fractions()
            entry = table.deleted(line.hcpcs, day_date)
            if entry is not None:
                deleted.append((line, entry))
                continue
            lines.append(line)
            by_code.setdefault(line.hcpcs, []).append(line)
        engine = self.engine
        return DayView(
            date_of_service=day_date,
            lines=lines,
            by_code=by_code,
            fractions=fractions,
            modalities=frozenset(modalities),
            has_delivery=bool(modalities),
            course=lambda course_id: self.course_view(course_id, site),
            profile=lambda line: engine.profile_of(line.payer_id, line.payer_type),
            deleted=deleted,
        )

    def restate_day(self, site: str, day_date: str) -> list[Transition]:
        day = self.day(site, day_date)
        current = self._violations(site, day_date, day)
        specs = self.engine.registry.specs
        transitions: list[Transition] = []
        for key, memos in day.memos.items():
            line = day.lines.get(key) or day.voided.get(key)
            if line is None:
                continue
            profile = self.engine.profile_of(line.payer_id, line.payer_type)
            for rule_id, memo in memos.items():
                spec = specs[rule_id]
                violation = current.get(key, {}).get(rule_id)
                if memo.is_open:
                    message = violation.message if violation else spec.title
                    status = "open"
                else:
                    message = _resolved_message(spec, line)
                    status = "resolved"
                transitions.append(
                    Transition(
                        spec,
                        line,
                        status,
                        memo.finality,
                        memo.excess_units,
                        memo.evidence,
                        message,
                        memo.sequence,
                        profile,
                    )
                )
        return transitions

    def _violations(
        self, site: str, day_date: str, day: DayState, only: frozenset[str] | None = None
    ) -> dict[LineKey, dict[str, Violation]]:
        current: dict[LineKey, dict[str, Violation]] = {}
        if day.lines:
            view = self._day_view(site, day_date, day)
            for declared in self.engine.registry.for_codes(view.by_code, bool(view.deleted)):
                if only is not None and declared.spec.rule_id not in only:
                    continue
                self.engine.rule_runs += 1
                for violation in declared.check(view):
                    line = day.lines[violation.key]
                    if violation.rule_id in view.profile(line).disabled_rules:
                        continue
                    current.setdefault(violation.key, {})[violation.rule_id] = violation
        return current

    def _evaluate_day(
        self, site: str, day_date: str, only: frozenset[str] | None
    ) -> list[Transition]:
        day = self.day(site, day_date)
        current = self._violations(site, day_date, day, only)
        transitions: list[Transition] = []
        for key in current.keys() | day.memos.keys():
            transitions.extend(self._diff(day, key, current.get(key, {}), only))
        return transitions

    def _diff(
        self,
        day: DayState,
        key: LineKey,
        violations: dict[str, Violation],
        only: frozenset[str] | None,
    ) -> list[Transition]:
        memos = day.memos.get(key, {})
        line = day.lines.get(key) or day.voided.get(key)
        if line is None:  # only resolved memos can be left without their line
            return []
        profile = self.engine.profile_of(line.payer_id, line.payer_type)
        specs = self.engine.registry.specs
        updated = dict(memos)
        transitions: list[Transition] = []
        for rule_id, violation in violations.items():
            spec = specs[rule_id]
            closed = spec.finality == FINAL or self.course_view(line.course_id, line.site).closed
            finality = FINAL if closed else PROVISIONAL
            memo = memos.get(rule_id)
            if (
                memo is not None
                and memo.is_open
                and (memo.finality, memo.excess_units, memo.evidence)
                == (finality, violation.excess_units, violation.evidence)
            ):
                continue
            sequence = memo.sequence + 1 if memo else 1
            updated[rule_id] = Memo(
                sequence, True, finality, violation.excess_units, violation.evidence
            )
            transitions.append(
                Transition(
                    spec,
                    line,
                    "open",
                    finality,
                    violation.excess_units,
                    violation.evidence,
                    violation.message,
                    sequence,
                    profile,
                )
            )
        for rule_id, memo in memos.items():
            if only is not None and rule_id not in only:
                continue
            if memo.is_open and rule_id not in violations:
                spec = specs[rule_id]
                updated[rule_id] = memo._replace(sequence=memo.sequence + 1, is_open=False)
                transitions.append(
                    Transition(
                        spec,
                        line,
                        "resolved",
                        memo.finality,
                        memo.excess_units,
                        memo.evidence,
                        _resolved_message(spec, line),
                        memo.sequence + 1,
                        profile,
                    )
                )
        if transitions:
            day.memos[key] = updated
        return transitions

    def _write_back(self) -> None:
        pid = self.patient_id
        for site, day_date in self.dirty_days:
            day = self.days[(site, day_date)]
            if day.lines or day.memos or day.voided:
                self.store.put_day((pid, site, day_date), day)
            else:
                self.store.del_day((pid, site, day_date))
        for ref in self.dirty_courses:
            course = self.courses[ref]
            if course.dates or course.port_lines:
                self.store.put_course((pid, *ref), course)
            else:
                self.store.del_course((pid, *ref))
        self.store.put_patient(pid, self.patient)
