"""The engine's Store over one Faust table: one value per patient.

Every key the engine uses starts with its patient, so a patient's whole
state (its record, courses, days and line locations) is kept as one table
value, a *bundle*: the encoded records of the patient, each under its kind
and key (stream_app.stream.codec encodes the records; a bundle is a msgpack list of
`[kind, key, record]`). A table write is what Faust pays for most (a RocksDB
put, a changelog message through its producer buffer, a persisted offset):
with bundles a batch writes each patient it touched once, however many of
its courses, days and claims changed (issue 9: at most one changelog write
per touched patient per batch).

Writes are held (`hold_writes`) until `flush`, which the worker calls at the
end of each batch, or after each event when it evaluates event by event.
Until then the records a batch reads or writes are kept decoded and shared
with the engine, as MemoryStore shares them with replay; `flush` encodes the
changed ones and writes each changed patient's bundle as a new value (Faust
writes a table value to its changelog on assignment). Without `hold_writes`
every change is written at once (tests, and tools that read the tables).

After a flush the patients of the batch stay decoded for the next batches
(the `KEEP_PATIENTS` most recently used, issue 22): a claim stream brings a
patient back every week or month, and reading and decoding the bundle again
was a tenth of the worker's time. The table is still the truth: the kept
patients are exactly what was written, and they are forgotten when a batch is
cut short (`discard_held`) and when partitions are assigned (`forget`), since
another worker may have changed them in between.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import AbstractContextManager
from typing import Any

import msgspec

from stream_app.core.model import CourseState, DayState, LineLocation, PatientState
from stream_app.core.store import CourseKey, DayKey, LocationKey
from stream_app.stream import codec

_SEP = "\x1f"

PATIENT, COURSE, DAY, CLAIM_LOCATIONS = range(4)
Table = MutableMapping[bytes, bytes | None]
Bundle = dict[tuple[int, bytes], bytes]  # (kind, key without the patient) -> record

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[tuple[int, bytes, bytes]])


def _key(*parts: object) -> bytes:
    return _SEP.join(str(part) for part in parts).encode()


# Bundles are compressed (zlib, fastest level) once they are this long: a
# patient's JSON records repeat the same ids and codes line after line, and
# every byte of a table value is paid again by the changelog's producer, the
# broker and RocksDB (issue 22: about 12 KB a patient, a tenth compressed).
COMPRESS_FROM = 512
_ZLIB = 0x78  # a zlib stream's first byte; a msgpack list never starts with it


def encode_bundle(bundle: Bundle) -> bytes:
    raw = _encoder.encode([(kind, key, record) for (kind, key), record in bundle.items()])
    return zlib.compress(raw, 1) if len(raw) >= COMPRESS_FROM else raw


def decode_bundle(raw: bytes) -> Bundle:
    """Compressed or not (values written before issue 22 are not)."""
    if raw[0] == _ZLIB:
        raw = zlib.decompress(raw)
    return {(kind, key): record for kind, key, record in _decoder.decode(raw)}


_DECODE: dict[int, Callable[[bytes], Any]] = {
    PATIENT: codec.decode_patient,
    COURSE: codec.decode_course,
    DAY: codec.decode_day,
    CLAIM_LOCATIONS: codec.decode_claim_locations,
}
_ENCODE: dict[int, Callable[[Any], bytes]] = {
    PATIENT: codec.encode_patient,
    COURSE: codec.encode_course,
    DAY: codec.encode_day,
    CLAIM_LOCATIONS: codec.encode_claim_locations,
}
_UNREAD = object()
# Patients kept decoded between batches (most recently used first to stay).
KEEP_PATIENTS = 512


class _Patient:
    """One patient's state while a batch runs: the bundle as read, and the
    records decoded or changed since (None: deleted). Records are encoded
    again only when the patient is written, once per batch."""

    __slots__ = ("bundle", "changed", "records")

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.records: dict[tuple[int, bytes], Any] = {}
        self.changed: set[tuple[int, bytes]] = set()

    def get(self, kind: int, key: bytes) -> Any:
        record = self.records.get((kind, key), _UNREAD)
        if record is _UNREAD:
            raw = self.bundle.get((kind, key))
            record = self.records[kind, key] = _DECODE[kind](raw) if raw else None
        return record

    def encode_changes(self) -> bool:
        """Fold the changed records into the bundle; True if it changed."""
        modified = False
        for kind, key in self.changed:
            record = self.records[kind, key]
            raw = None if record is None else _ENCODE[kind](record)
            if self.bundle.get((kind, key)) != raw:
                modified = True
                if raw is None:
                    del self.bundle[kind, key]
                else:
                    self.bundle[kind, key] = raw
        self.changed.clear()
        return modified


class FaustStore:
    def __init__(self, state: Table, keep: int = KEEP_PATIENTS) -> None:
        self.state = state
        # Patients read or changed since the last flush, by patient key.
        self._patients: dict[bytes, _Patient] = {}
        # Patients of earlier batches, as written, kept decoded (held writes only).
        self._kept: OrderedDict[bytes, _Patient] = OrderedDict()
        self._keep = keep
        # Patients changed since the last flush -> the partition to write them in.
        self._dirty: dict[bytes, int] = {}
        self._holding = False
        # The partition of the event being evaluated: every key it touches
        # starts with its patient, so they all live in this partition.
        self.partition = 0

    def hold_writes(self) -> None:
        """From now on keep writes until `flush`."""
        self._holding = True

    def flush(self, as_partition: Callable[[int], AbstractContextManager[object]]) -> int:
        """Write each changed patient's bundle once, each partition's inside
        `as_partition(p)` (Faust takes a table write's partition from the
        current event); returns the number of table writes."""
        dirty, patients = self._dirty, self._patients
        self._dirty, self._patients = {}, {}
        by_partition: dict[int, list[bytes]] = {}
        for key, partition in dirty.items():
            by_partition.setdefault(partition, []).append(key)
        written = 0
        for partition, keys in by_partition.items():
            with as_partition(partition):
                for key in keys:
                    written += self._write(key, patients[key])
        kept = self._kept
        for key, patient in patients.items():
            kept[key] = patient
            kept.move_to_end(key)
        while len(kept) > self._keep:
            kept.popitem(last=False)
        return written

    def discard_held(self) -> None:
        """Forget the held writes of a batch cut short: its events are read
        again from the committed offset (the kept patients too: the batch may
        have changed them in place)."""
        self._dirty, self._patients = {}, {}
        self.forget()

    def forget(self) -> None:
        """Read every patient from the table again (partitions were assigned:
        another worker may have changed them)."""
        self._kept.clear()

    def _write(self, key: bytes, patient: _Patient) -> int:
        if not patient.encode_changes():
            return 0  # nothing changed: no write
        if patient.bundle:
            self.state[key] = encode_bundle(patient.bundle)
        elif self.state.get(key) is not None:
            del self.state[key]
        return 1

    def _patient(self, patient_id: str) -> tuple[bytes, _Patient]:
        key = patient_id.encode()
        patient = self._patients.get(key)
        if patient is None:
            patient = self._kept.pop(key, None)
            if patient is None:
                raw = self.state.get(key)
                patient = _Patient(decode_bundle(raw) if raw else {})
            if self._holding:
                self._patients[key] = patient
        return key, patient

    def _get(self, patient_id: str, kind: int, key: bytes) -> Any:
        return self._patient(patient_id)[1].get(kind, key)

    def _set(self, patient_id: str, kind: int, key: bytes, record: Any) -> None:
        """`record` None deletes."""
        patient_key, patient = self._patient(patient_id)
        patient.records[kind, key] = record
        patient.changed.add((kind, key))
        if self._holding:
            self._dirty[patient_key] = self.partition
        else:
            self._write(patient_key, patient)

    # What the worker reads besides the engine: patients (to adopt a
    # partition) and every day and course record (the state gauges).

    def patient_keys(self) -> Iterator[bytes]:
        return iter(self.state)

    def records(self, kind: int) -> Iterator[bytes]:
        for raw in self.state.values():
            if raw:
                for (found, _), record in decode_bundle(raw).items():
                    if found == kind:
                        yield record

    # The engine's Store protocol. Records are shared with the engine until
    # the flush, as MemoryStore shares them with replay.

    def get_patient(self, patient_id: str) -> PatientState | None:
        return self._get(patient_id, PATIENT, b"")  # type: ignore[no-any-return]

    def put_patient(self, patient_id: str, state: PatientState) -> None:
        self._set(patient_id, PATIENT, b"", state)

    def del_patient(self, patient_id: str) -> None:
        self._set(patient_id, PATIENT, b"", None)

    def get_course(self, key: CourseKey) -> CourseState | None:
        return self._get(key[0], COURSE, _key(key[1], key[2]))  # type: ignore[no-any-return]

    def put_course(self, key: CourseKey, state: CourseState) -> None:
        self._set(key[0], COURSE, _key(key[1], key[2]), state)

    def del_course(self, key: CourseKey) -> None:
        self._set(key[0], COURSE, _key(key[1], key[2]), None)

    def get_day(self, key: DayKey) -> DayState | None:
        return self._get(key[0], DAY, _key(key[1], key[2]))  # type: ignore[no-any-return]

    def put_day(self, key: DayKey, state: DayState) -> None:
        self._set(key[0], DAY, _key(key[1], key[2]), state)

    def del_day(self, key: DayKey) -> None:
        self._set(key[0], DAY, _key(key[1], key[2]), None)

    # Line locations are kept per claim, {line number: location}: the
    # locations of a claim's lines change together.

    def _locations(self, key: LocationKey) -> dict[int, LineLocation]:
        found = self._get(key[0], CLAIM_LOCATIONS, key[1].encode())
        return found if found is not None else {}

    def claim_locations(self, patient_id: str, claim_id: str) -> dict[int, LineLocation]:
        return dict(self._locations((patient_id, claim_id, 0)))

    def get_location(self, key: LocationKey) -> LineLocation | None:
        return self._locations(key).get(key[2])

    def put_location(self, key: LocationKey, location: LineLocation) -> None:
        locations = self._locations(key)
        if locations.get(key[2]) != location:
            self._set(key[0], CLAIM_LOCATIONS, key[1].encode(), {**locations, key[2]: location})

    def del_location(self, key: LocationKey) -> None:
        locations = self._locations(key)
        if key[2] in locations:
            rest = {number: where for number, where in locations.items() if number != key[2]}
            self._set(key[0], CLAIM_LOCATIONS, key[1].encode(), rest or None)
