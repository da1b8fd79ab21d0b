"""The engine's Store over Faust tables.

Each value is encoded to bytes on `put` and decoded on `get`, so the engine
never shares an object with the table: every change is an assignment, which
Faust writes to the table's changelog.

The worker holds writes for a batch of events (`hold_writes`) and applies them
once at its end (`flush`): a course, day or patient record that several events
of the batch change costs one table write, one RocksDB put and one changelog
message instead of one per event. Reads see the held writes first.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from contextlib import AbstractContextManager

from . import codec
from .model import CourseState, DayState, LineLocation, PatientState
from .store import CourseKey, DayKey, LocationKey

_SEP = "\x1f"


def _key(*parts: object) -> bytes:
    return _SEP.join(str(part) for part in parts).encode()


_PATIENTS, _COURSES, _DAYS, _LOCATIONS = range(4)
Table = MutableMapping[bytes, bytes | None]
HeldWrites = dict[tuple[int, bytes], bytes | None]  # (table, key) -> value; None deletes


class FaustStore:
    def __init__(self, patients: Table, courses: Table, days: Table, locations: Table) -> None:
        self.patients = patients
        self.courses = courses
        self.days = days
        self.locations = locations
        self._tables = (patients, courses, days, locations)
        # The patient record as last read: most lines leave it unchanged, and
        # an unchanged value need not cost a changelog message.
        self._patient_read: tuple[bytes, bytes] | None = None
        # partition -> writes held for it; None writes straight through.
        self._held: dict[int, HeldWrites] | None = None
        # The partition of the event being evaluated: every key it touches
        # starts with its patient, so they all live in this partition.
        self.partition = 0

    def hold_writes(self) -> None:
        """From now on keep writes until `flush`."""
        if self._held is None:
            self._held = {}

    def flush(self, as_partition: Callable[[int], AbstractContextManager[object]]) -> int:
        """Apply the held writes, each partition's inside `as_partition(p)`
        (Faust takes a table write's partition from the current event)."""
        held, count = self._held, 0
        if not held:
            return 0
        self._held = {}
        for partition, writes in held.items():
            with as_partition(partition):
                for (table_index, key), raw in writes.items():
                    self._write(self._tables[table_index], key, raw)
                    count += 1
        return count

    @staticmethod
    def _write(table: Table, key: bytes, raw: bytes | None) -> None:
        if raw is not None:
            table[key] = raw
        elif table.get(key) is not None:
            del table[key]

    def _get(self, table_index: int, key: bytes) -> bytes | None:
        if self._held:
            writes = self._held.get(self.partition)
            if writes is not None and (table_index, key) in writes:
                return writes[table_index, key]
        return self._tables[table_index].get(key)

    def _set(self, table_index: int, key: bytes, raw: bytes | None) -> None:
        if self._held is None:
            self._write(self._tables[table_index], key, raw)
            return
        writes = self._held.get(self.partition)
        if writes is None:
            writes = self._held[self.partition] = {}
        writes[table_index, key] = raw

    def get_patient(self, patient_id: str) -> PatientState | None:
        key = _key(patient_id)
        raw = self._get(_PATIENTS, key)
        self._patient_read = (key, raw) if raw else None
        return codec.decode_patient(raw) if raw else None

    def put_patient(self, patient_id: str, state: PatientState) -> None:
        key, raw = _key(patient_id), codec.encode_patient(state)
        if self._patient_read != (key, raw):
            self._set(_PATIENTS, key, raw)
        self._patient_read = (key, raw)

    def del_patient(self, patient_id: str) -> None:
        self._patient_read = None
        self._set(_PATIENTS, _key(patient_id), None)

    def get_course(self, key: CourseKey) -> CourseState | None:
        raw = self._get(_COURSES, _key(*key))
        return codec.decode_course(raw) if raw else None

    def put_course(self, key: CourseKey, state: CourseState) -> None:
        self._set(_COURSES, _key(*key), codec.encode_course(state))

    def del_course(self, key: CourseKey) -> None:
        self._set(_COURSES, _key(*key), None)

    def get_day(self, key: DayKey) -> DayState | None:
        raw = self._get(_DAYS, _key(*key))
        return codec.decode_day(raw) if raw else None

    def put_day(self, key: DayKey, state: DayState) -> None:
        self._set(_DAYS, _key(*key), codec.encode_day(state))

    def del_day(self, key: DayKey) -> None:
        self._set(_DAYS, _key(*key), None)

    # Line locations are kept per claim, (patient, claim) -> {line number:
    # location}: a claim's lines mostly arrive together, so with held writes
    # the claim costs one table write instead of one per line.

    def _claim_locations(self, key: LocationKey) -> tuple[bytes, dict[int, LineLocation]]:
        claim_key = _key(key[0], key[1])
        raw = self._get(_LOCATIONS, claim_key)
        return claim_key, codec.decode_claim_locations(raw) if raw else {}

    def claim_locations(self, patient_id: str, claim_id: str) -> dict[int, LineLocation]:
        return self._claim_locations((patient_id, claim_id, 0))[1]

    def get_location(self, key: LocationKey) -> LineLocation | None:
        return self._claim_locations(key)[1].get(key[2])

    def put_location(self, key: LocationKey, location: LineLocation) -> None:
        claim_key, locations = self._claim_locations(key)
        if locations.get(key[2]) != location:
            locations[key[2]] = location
            self._set(_LOCATIONS, claim_key, codec.encode_claim_locations(locations))

    def del_location(self, key: LocationKey) -> None:
        claim_key, locations = self._claim_locations(key)
        if locations.pop(key[2], None) is not None:
            raw = codec.encode_claim_locations(locations) if locations else None
            self._set(_LOCATIONS, claim_key, raw)
