"""The state one event touches: loaded once, changed, evaluated, written
back once. Evaluation follows what changed: the days the event touched, the
port-image lines whose outcome can change, the days with open provisional
alerts of a course that closes, and every day of a course whose facts change."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from stream_app.core import codes
from stream_app.core.context import Context
from stream_app.core.holds import DayHolds, next_look
from stream_app.core.memos import Transition, diff, resolved_message
from stream_app.core.model import (
    CourseRef,
    CourseState,
    CourseStatus,
    DayState,
    Line,
    LineKey,
    LineLocation,
    PatientState,
    date_ordinal,
)
from stream_app.core.rules import DayView, Violation
from stream_app.core.rules.base import CourseView
from stream_app.core.rules.port_images import allowance, frequency_excess


def _course_of(day: DayState, key: LineKey) -> str | None:
    line = day.lines.get(key) or day.voided.get(key)
    return None if line is None else line.course_id


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


class Work:
    """The state one event touches, loaded once, written back once."""

    def __init__(
        self,
        context: Context,
        patient_id: str,
        watermark: str,
        arrival: str | None = None,
        *,
        release: bool = False,
    ) -> None:
        self.context = context
        self.watermark = watermark  # the stream's event time
        self.now = date_ordinal(watermark) if watermark else 0
        self.release = release  # end every hold (the end of a replay)
        # What a line arriving now is stamped with for pruning: the latest date
        # the stream has reached anywhere (replay: the same as event time).
        self.arrival = watermark if arrival is None else arrival
        self.store = context.store
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
        modality = line.delivery_modality()
        if modality is not None:
            if modality != codes.BRACHY:  # Line.fractions
                course.fractions += sign * line.units
            left = course.modalities.get(modality, 0) + sign
            if left > 0:
                course.modalities[modality] = left
            else:
                course.modalities.pop(modality, None)
        if self.context.registry.code_table.deleted(line.hcpcs, line.date_of_service):
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
        registry = self.context.registry
        for (site, day_date), until in self.patient.holds.items():
            if self.release or until <= self.now:
                self.evaluate(site, day_date, registry.held_rules)
        for ref, course in list(self.courses.items()):
            before = self.snapshots[ref]
            if course.facts() != before.facts:
                self._evaluate_course(ref, course.dates, registry.course_fact_rules)
            self._recheck_ports(ref, course, before, closed_before.get(ref))
        transitions: list[Transition] = []
        for (site, day_date), only in sorted(self.to_evaluate.items()):
            if self._evaluate_day(site, day_date, only, transitions):
                self.dirty_days.add((site, day_date))
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
        rules = self.context.registry.port_unit_rules
        for key in keys:
            held = course.port_lines.get(key) or before.port_lines[key]
            self.evaluate(ref.site, held[0], rules)

    def _update_closure(self) -> dict[CourseRef, bool]:
        """Close the courses that are due; returns the courses whose closing
        changed, with what it was before."""
        idle = self.context.settings.course_idle_days
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
        provisional = self.context.registry.provisional_rules
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
        table = self.context.registry.code_table
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
                if modality != codes.BRACHY:  # Line.fractions
                    fractions += line.units
            entry = table.deleted(line.hcpcs, day_date)
            if entry is not None:
                deleted.append((line, entry))
                continue
            lines.append(line)
            by_code.setdefault(line.hcpcs, []).append(line)
        profile_of = self.context.profile_of
        return DayView(
            date_of_service=day_date,
            lines=lines,
            by_code=by_code,
            fractions=fractions,
            modalities=frozenset(modalities),
            has_delivery=bool(modalities),
            course=lambda course_id: self.course_view(course_id, site),
            profile=lambda line: profile_of(line.payer_id, line.payer_type),
            deleted=deleted,
        )

    def restate_day(self, site: str, day_date: str) -> list[Transition]:
        day = self.day(site, day_date)
        current = self._violations(site, day_date, day)
        specs = self.context.registry.specs
        transitions: list[Transition] = []
        for key, memos in day.memos.items():
            line = day.lines.get(key) or day.voided.get(key)
            if line is None:
                continue
            profile = self.context.profile_of(line.payer_id, line.payer_type)
            for rule_id, memo in memos.items():
                if memo.is_held:  # never published: nothing to restate
                    continue
                spec = specs[rule_id]
                violation = current.get(key, {}).get(rule_id)
                if memo.is_open:
                    message = violation.message if violation else spec.title
                    status = "open"
                else:
                    message = resolved_message(spec, line)
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
        if not day.lines:
            return current
        registry = self.context.registry
        # The rules for the day's codes first: no view for a day none applies to.
        billed = {line.hcpcs for line in day.lines.values()}
        hidden = {code for code in billed if registry.code_table.deleted(code, day_date)}
        rules = [
            declared
            for declared in registry.for_codes(billed - hidden, bool(hidden))
            if only is None or declared.spec.rule_id in only
        ]
        if rules:
            view = self._day_view(site, day_date, day)
            for declared in rules:
                self.context.rule_runs += 1
                for violation in declared.check(view):
                    line = day.lines[violation.key]
                    if violation.rule_id in view.profile(line).disabled_rules:
                        continue
                    current.setdefault(violation.key, {})[violation.rule_id] = violation
        return current

    def _evaluate_day(
        self,
        site: str,
        day_date: str,
        only: frozenset[str] | None,
        transitions: list[Transition],
    ) -> bool:
        """Adds the day's transitions; True if its memos changed."""
        day = self.day(site, day_date)
        current = self._violations(site, day_date, day, only)
        holds = DayHolds(self.now, self.context.settings.hold_days, self.release, day)
        changed = False
        for key in current.keys() | day.memos.keys():
            found, memos_changed = diff(
                self.context, self.course_view, day, key, current.get(key, {}), only, holds
            )
            transitions.extend(found)
            changed |= memos_changed
        return changed

    def _write_back(self) -> None:
        pid = self.patient_id
        holds = self.patient.holds
        for site, day_date in self.dirty_days:
            day = self.days[(site, day_date)]
            look = next_look(day)
            if look is None:
                holds.pop((site, day_date), None)
            else:
                holds[(site, day_date)] = look
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
