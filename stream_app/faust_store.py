"""The engine's Store over Faust tables.

Each value is encoded to bytes on `put` and decoded on `get`, so the engine
never shares an object with the table: every change is an assignment, which
Faust writes to the table's changelog.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from . import codec
from .model import CourseState, DayState, LineLocation, PatientState
from .store import CourseKey, DayKey, LocationKey

_SEP = "\x1f"


def _key(*parts: object) -> bytes:
    return _SEP.join(str(part) for part in parts).encode()


class FaustStore:
    def __init__(
        self,
        patients: MutableMapping[bytes, bytes | None],
        courses: MutableMapping[bytes, bytes | None],
        days: MutableMapping[bytes, bytes | None],
        locations: MutableMapping[bytes, bytes | None],
    ) -> None:
        self.patients = patients
        self.courses = courses
        self.days = days
        self.locations = locations
        # The patient record as last read: most lines leave it unchanged, and
        # an unchanged value need not cost a changelog message.
        self._patient_read: tuple[bytes, bytes] | None = None

    @staticmethod
    def _delete(table: MutableMapping[bytes, bytes | None], key: bytes) -> None:
        if table.get(key) is not None:
            del table[key]

    def get_patient(self, patient_id: str) -> PatientState | None:
        key = _key(patient_id)
        raw = self.patients.get(key)
        self._patient_read = (key, raw) if raw else None
        return codec.decode_patient(raw) if raw else None

    def put_patient(self, patient_id: str, state: PatientState) -> None:
        key, raw = _key(patient_id), codec.encode_patient(state)
        if self._patient_read != (key, raw):
            self.patients[key] = raw
        self._patient_read = (key, raw)

    def del_patient(self, patient_id: str) -> None:
        self._patient_read = None
        self._delete(self.patients, _key(patient_id))

    def get_course(self, key: CourseKey) -> CourseState | None:
        raw = self.courses.get(_key(*key))
        return codec.decode_course(raw) if raw else None

    def put_course(self, key: CourseKey, state: CourseState) -> None:
        self.courses[_key(*key)] = codec.encode_course(state)

    def del_course(self, key: CourseKey) -> None:
        self._delete(self.courses, _key(*key))

    def get_day(self, key: DayKey) -> DayState | None:
        raw = self.days.get(_key(*key))
        return codec.decode_day(raw) if raw else None

    def put_day(self, key: DayKey, state: DayState) -> None:
        self.days[_key(*key)] = codec.encode_day(state)

    def del_day(self, key: DayKey) -> None:
        self._delete(self.days, _key(*key))

    def get_location(self, key: LocationKey) -> LineLocation | None:
        raw = self.locations.get(_key(*key))
        return codec.decode_location(raw) if raw else None

    def put_location(self, key: LocationKey, location: LineLocation) -> None:
        self.locations[_key(*key)] = codec.encode_location(location)

    def del_location(self, key: LocationKey) -> None:
        self._delete(self.locations, _key(*key))
