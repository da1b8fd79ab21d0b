"""The engine: applies one event to a patient's state and returns the alert
transitions it causes (SPEC 2 and 4).

It is the only place that decides alerts; replay and the Kafka worker both
call `Engine.apply`. Rules are pure functions of a `DayView`; the engine keeps
the state, re-evaluates exactly the days an event can affect, and diffs the
violations against the memo of what was last emitted for each alert.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from stream_app.core.context import Context, EngineSettings
from stream_app.core.events import (
    ClaimEvent,
    ClaimLineEvent,
    CourseEndEvent,
    Event,
    event_date,
    event_patient,
)
from stream_app.core.memos import Transition
from stream_app.core.model import CourseRef, CourseStatus, PatientState, date_ordinal
from stream_app.core.profiles import ProfileBook
from stream_app.core.rules import Registry, load_registry
from stream_app.core.scope import Due, Scope
from stream_app.core.store import Store
from stream_app.core.work import Work


@dataclass(slots=True)
class Result:
    outcome: str  # processed | duplicate | void | void_unknown | course_end
    transitions: list[Transition]


__all__ = ["Engine", "EngineSettings", "Result", "Transition"]


class Engine:
    def __init__(
        self,
        store: Store,
        registry: Registry | None = None,
        profiles: ProfileBook | None = None,
        settings: EngineSettings | None = None,
    ) -> None:
        self.store = store
        self.registry = registry or load_registry()
        self.settings = settings = settings or EngineSettings()
        book = profiles or ProfileBook()
        self.profile_of = lru_cache(maxsize=4096)(book.resolve)
        self.context = Context(store, self.registry, self.profile_of, settings)
        self._scopes: dict[int, Scope] = {}
        self.pruned_courses = 0

    @property
    def rule_runs(self) -> int:
        """Rule checks run so far (one per rule and day evaluated)."""
        return self.context.rule_runs

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
        `settled` is what pruning goes by (see Scope), `watermark` if not given;
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

    def _sweep(self, stream: Scope) -> list[Transition]:
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
        stream = self._scopes[scope] = Scope()
        stream.advance(watermark)
        found = 0
        for patient_id in patient_ids:
            patient = self.store.get_patient(patient_id)
            if patient is None:
                continue
            found += 1
            stream.touch(patient_id, self._next_due(patient))
        return found

    def _scope(self, scope: int) -> Scope:
        found = self._scopes.get(scope)
        if found is None:
            found = self._scopes[scope] = Scope()
        return found

    def close_all(
        self, patient_ids: Iterable[str], release_holds: bool = True
    ) -> list[Transition]:
        """Close every course of these patients and, unless told not to, end
        every hold (the end of a replay, SPEC 4.1)."""
        transitions: list[Transition] = []
        for patient_id in patient_ids:
            work = Work(self.context, patient_id, "", release=release_holds)
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
            work = Work(self.context, event.patient_id, "")
            ref = CourseRef(event.course_id, event.site)
            days = [(ref.site, d) for d in work.course(ref).dates]
        elif isinstance(event, ClaimEvent):
            work = Work(self.context, event.patient_id, "")
            locations = self.store.claim_locations(event.patient_id, event.claim_id).values()
            days = sorted({(location.site, location.date_of_service) for location in locations})
        else:
            work = Work(self.context, event.line.patient_id, "")
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
        # A hold ending by time is looked at with the idle courses; nothing
        # is pruned while a hold lasts (its line must still be there).
        close: int | None = min(patient.holds.values()) if patient.holds else None
        prune: int | None = None
        live = False
        for status in patient.courses.values():
            if status.pruned:
                continue
            live = True
            if status.closed:
                if patient.holds:
                    continue
                due = date_ordinal(status.prune_after) + retain
                prune = due if prune is None or due < prune else prune
            else:
                due = date_ordinal(status.last_seen) + idle
                close = due if close is None or due < close else close
        return Due(close, prune) if live else None

    def _maintain(self, patient_id: str, stream: Scope) -> tuple[list[Transition], Due | None]:
        """Close the patient's idle courses, then drop closed ones far behind."""
        work = Work(self.context, patient_id, stream.watermark, stream.latest)
        settled = stream.settled
        transitions = work.finish()
        patient = work.patient
        # Nothing settled yet, or a hold still needs its line: prune nothing.
        horizon = (
            date_ordinal(settled) - self.settings.retain_days
            if settled and not patient.holds
            else -1
        )
        for ref, status in list(patient.courses.items()):
            if status.closed and not status.pruned and date_ordinal(status.prune_after) <= horizon:
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
        work = Work(self.context, event.patient_id, watermark, arrival)
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
        work = Work(self.context, line.patient_id, watermark, arrival)
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
        work = Work(self.context, event.patient_id, watermark, arrival)
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
