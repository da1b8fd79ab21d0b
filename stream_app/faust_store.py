"""The engine's Store over one Faust table: one value per patient.

Every key the engine uses starts with its patient, so a patient's whole
state (its record, courses, days and line locations) is kept as one table
value, a *bundle*: the encoded records of the patient, each under its kind
and key (stream_app.codec encodes the records; a bundle is a msgpack list of
`[kind, key, record]`). A table write is what Faust pays for most (a RocksDB
put, a changelog message through its producer buffer, a persisted offset):
with bundles a batch writes each patient it touched once, however many of
its courses, days and claims changed (issue 9: at most one changelog write
per touched patient per batch).

Writes are held (`hold_writes`) until `flush`, which the worker calls at the
end of each batch, or after each event when it evaluates event by event.
Bundles read during a batch are kept decoded until then; reads see the
batch's own changes first. Without `hold_writes` every change is written at
once (tests, and tools that read the tables).

Each value is encoded on `put` and decoded on `get`, so the engine never
shares an object with the table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from contextlib import AbstractContextManager

import msgspec

from . import codec
from .model import CourseState, DayState, LineLocation, PatientState
from .store import CourseKey, DayKey, LocationKey

_SEP = "\x1f"

PATIENT, COURSE, DAY, CLAIM_LOCATIONS = range(4)
Table = MutableMapping[bytes, bytes | None]
Bundle = dict[tuple[int, bytes], bytes]  # (kind, key without the patient) -> record

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[tuple[int, bytes, bytes]])


def _key(*parts: object) -> bytes:
    return _SEP.join(str(part) for part in parts).encode()


def encode_bundle(bundle: Bundle) -> bytes:
    return _encoder.encode([(kind, key, record) for (kind, key), record in bundle.items()])


def decode_bundle(raw: bytes) -> Bundle:
    return {(kind, key): record for kind, key, record in _decoder.decode(raw)}


class FaustStore:
    def __init__(self, state: Table) -> None:
        self.state = state
        # Bundles read or changed since the last flush, by patient key.
        self._bundles: dict[bytes, Bundle] = {}
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
        dirty, bundles = self._dirty, self._bundles
        self._dirty, self._bundles = {}, {}
        by_partition: dict[int, list[bytes]] = {}
        for patient, partition in dirty.items():
            by_partition.setdefault(partition, []).append(patient)
        for partition, patients in by_partition.items():
            with as_partition(partition):
                for patient in patients:
                    self._write(patient, bundles[patient])
        return len(dirty)

    def discard_held(self) -> None:
        """Forget the held writes of a batch cut short: its events are read
        again from the committed offset."""
        self._dirty, self._bundles = {}, {}

    def _write(self, patient: bytes, bundle: Bundle) -> None:
        if bundle:
            self.state[patient] = encode_bundle(bundle)
        elif self.state.get(patient) is not None:
            del self.state[patient]

    def _bundle(self, patient: bytes) -> Bundle:
        bundle = self._bundles.get(patient)
        if bundle is None:
            raw = self.state.get(patient)
            bundle = decode_bundle(raw) if raw else {}
            if self._holding:
                self._bundles[patient] = bundle
        return bundle

    def _get(self, patient_id: str, kind: int, key: bytes) -> bytes | None:
        return self._bundle(patient_id.encode()).get((kind, key))

    def _set(self, patient_id: str, kind: int, key: bytes, raw: bytes | None) -> None:
        patient = patient_id.encode()
        bundle = self._bundle(patient)
        if bundle.get((kind, key)) == raw:
            return  # unchanged: no write
        if raw is None:
            del bundle[kind, key]
        else:
            bundle[kind, key] = raw
        if self._holding:
            self._dirty[patient] = self.partition
        else:
            self._write(patient, bundle)

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

    # The engine's Store protocol.

    def get_patient(self, patient_id: str) -> PatientState | None:
        raw = self._get(patient_id, PATIENT, b"")
        return codec.decode_patient(raw) if raw else None

    def put_patient(self, patient_id: str, state: PatientState) -> None:
        self._set(patient_id, PATIENT, b"", codec.encode_patient(state))

    def del_patient(self, patient_id: str) -> None:
        self._set(patient_id, PATIENT, b"", None)

    def get_course(self, key: CourseKey) -> CourseState | None:
        raw = self._get(key[0], COURSE, _key(key[1], key[2]))
        return codec.decode_course(raw) if raw else None

    def put_course(self, key: CourseKey, state: CourseState) -> None:
        self._set(key[0], COURSE, _key(key[1], key[2]), codec.encode_course(state))

    def del_course(self, key: CourseKey) -> None:
        self._set(key[0], COURSE, _key(key[1], key[2]), None)

    def get_day(self, key: DayKey) -> DayState | None:
        raw = self._get(key[0], DAY, _key(key[1], key[2]))
        return codec.decode_day(raw) if raw else None

    def put_day(self, key: DayKey, state: DayState) -> None:
        self._set(key[0], DAY, _key(key[1], key[2]), codec.encode_day(state))

    def del_day(self, key: DayKey) -> None:
        self._set(key[0], DAY, _key(key[1], key[2]), None)

    # Line locations are kept per claim, {line number: location}: the
    # locations of a claim's lines change together.

    def claim_locations(self, patient_id: str, claim_id: str) -> dict[int, LineLocation]:
        raw = self._get(patient_id, CLAIM_LOCATIONS, claim_id.encode())
        return codec.decode_claim_locations(raw) if raw else {}

    def get_location(self, key: LocationKey) -> LineLocation | None:
        return self.claim_locations(key[0], key[1]).get(key[2])

    def put_location(self, key: LocationKey, location: LineLocation) -> None:
        locations = self.claim_locations(key[0], key[1])
        if locations.get(key[2]) != location:
            locations[key[2]] = location
            raw = codec.encode_claim_locations(locations)
            self._set(key[0], CLAIM_LOCATIONS, key[1].encode(), raw)

    def del_location(self, key: LocationKey) -> None:
        locations = self.claim_locations(key[0], key[1])
        if locations.pop(key[2], None) is not None:
            raw = codec.encode_claim_locations(locations) if locations else None
            self._set(key[0], CLAIM_LOCATIONS, key[1].encode(), raw)
