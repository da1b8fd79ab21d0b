"""Where the engine keeps state: a protocol, and the in-memory store replay uses.

Keys always start with the patient id, so a store partitioned by patient holds
everything one event can touch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from stream_app.core.model import CourseState, DayState, LineLocation, PatientState

CourseKey = tuple[str, str, str]  # (patient_id, course_id, site)
DayKey = tuple[str, str, str]  # (patient_id, site, date_of_service)
LocationKey = tuple[str, str, int]  # (patient_id, claim_id, line_number)


class Store(Protocol):
    def get_patient(self, patient_id: str) -> PatientState | None: ...
    def put_patient(self, patient_id: str, state: PatientState) -> None: ...
    def del_patient(self, patient_id: str) -> None: ...
    def get_course(self, key: CourseKey) -> CourseState | None: ...
    def put_course(self, key: CourseKey, state: CourseState) -> None: ...
    def del_course(self, key: CourseKey) -> None: ...
    def get_day(self, key: DayKey) -> DayState | None: ...
    def put_day(self, key: DayKey, state: DayState) -> None: ...
    def del_day(self, key: DayKey) -> None: ...
    def get_location(self, key: LocationKey) -> LineLocation | None: ...
    def put_location(self, key: LocationKey, location: LineLocation) -> None: ...
    def del_location(self, key: LocationKey) -> None: ...
    def claim_locations(self, patient_id: str, claim_id: str) -> dict[int, LineLocation]:
        """Every line number of the claim that state knows (present or voided)."""
        ...


class MemoryStore:
    """Plain dictionaries; values are held as the engine hands them over."""

    def __init__(self) -> None:
        self.patients: dict[str, PatientState] = {}
        self.courses: dict[CourseKey, CourseState] = {}
        self.days: dict[DayKey, DayState] = {}
        # (patient, claim) -> {line number: location}, as the worker keeps them
        self.locations: dict[tuple[str, str], dict[int, LineLocation]] = {}

    def get_patient(self, patient_id: str) -> PatientState | None:
        return self.patients.get(patient_id)

    def put_patient(self, patient_id: str, state: PatientState) -> None:
        self.patients[patient_id] = state

    def del_patient(self, patient_id: str) -> None:
        self.patients.pop(patient_id, None)

    def get_course(self, key: CourseKey) -> CourseState | None:
        return self.courses.get(key)

    def put_course(self, key: CourseKey, state: CourseState) -> None:
        self.courses[key] = state

    def del_course(self, key: CourseKey) -> None:
        self.courses.pop(key, None)

    def get_day(self, key: DayKey) -> DayState | None:
        return self.days.get(key)

    def put_day(self, key: DayKey, state: DayState) -> None:
        self.days[key] = state

    def del_day(self, key: DayKey) -> None:
        self.days.pop(key, None)

    def get_location(self, key: LocationKey) -> LineLocation | None:
        found = self.locations.get((key[0], key[1]))
        return found.get(key[2]) if found else None

    def put_location(self, key: LocationKey, location: LineLocation) -> None:
        self.locations.setdefault((key[0], key[1]), {})[key[2]] = location

    def del_location(self, key: LocationKey) -> None:
        found = self.locations.get((key[0], key[1]))
        if found is not None:
            found.pop(key[2], None)
            if not found:
                del self.locations[(key[0], key[1])]

    def claim_locations(self, patient_id: str, claim_id: str) -> dict[int, LineLocation]:
        return dict(self.locations.get((patient_id, claim_id), {}))

    def patient_ids(self) -> Iterator[str]:
        return iter(list(self.patients))
