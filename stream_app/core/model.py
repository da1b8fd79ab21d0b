"""The data the engine holds: claim lines and the per-patient state around them.

Everything for one patient lives under keys that start with the patient id, so
a worker partitioned by patient holds all of a patient's state locally. Values
are small and replaced, never mutated after they are stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import NamedTuple

import msgspec

from stream_app.core import codes

LineKey = tuple[str, int]  # (claim_id, line_number) within one patient


class Line(msgspec.Struct, frozen=True, gc=False):
    """One billed claim line, as the latest upsert for its identity says.

    A frozen msgspec Struct: cheap to build and compare, and left out of the
    cyclic garbage collector (it holds only strings, ints and tuples)."""

    patient_id: str
    course_id: str
    site: str
    claim_id: str
    line_number: int
    date_of_service: str  # YYYY-MM-DD; ISO strings order like dates
    hcpcs: str
    modifiers: tuple[str, ...] = ()
    units: int = 1
    claim_type: str = "professional"
    place_of_service: str | None = None
    payer_id: str | None = None
    payer_type: str = "other"
    diagnosis_codes: tuple[str, ...] = ()  # upper case, no dots
    modality: str | None = None

    @property
    def key(self) -> LineKey:
        return (self.claim_id, self.line_number)

    @property
    def sort_key(self) -> tuple[str, str, int]:
        return (self.date_of_service, self.claim_id, self.line_number)

    @property
    def course_ref(self) -> CourseRef:
        return CourseRef(self.course_id, self.site)

    def components(self) -> tuple[bool, bool]:
        """(professional, technical) components the line carries (SPEC 3.3)."""
        if codes.PC_MODIFIER in self.modifiers:
            return (True, False)
        if codes.TC_MODIFIER in self.modifiers or self.claim_type == "institutional":
            return (False, True)
        return (True, True)

    def delivery_modality(self) -> str | None:
        """The modality of a delivery line (SPEC 3.2); None if not a delivery code."""
        if self.hcpcs not in codes.DELIVERY_MODALITY:
            return None
        if self.modality is not None:
            return self.modality
        return codes.DELIVERY_MODALITY[self.hcpcs] or codes.UNKNOWN_EXTERNAL

    def fractions(self) -> int:
        modality = self.delivery_modality()
        if modality is None or modality == codes.BRACHY:
            return 0
        return self.units

    def has_skin_or_keloid_dx(self) -> bool:
        return _skin_or_keloid(self.diagnosis_codes)


@lru_cache(maxsize=4096)
def _skin_or_keloid(diagnosis_codes: tuple[str, ...]) -> bool:
    """Asked for every line applied; a course's lines share a few diagnosis lists."""
    return any(dx.startswith(codes.SKIN_OR_KELOID_PREFIXES) for dx in diagnosis_codes)


class CourseRef(NamedTuple):
    course_id: str
    site: str


class CourseStatus(NamedTuple):
    """What the patient record knows of each course: enough to close it."""

    last_seen: str  # the latest date of service of the course's lines (its event time)
    ended: bool  # a course_end event arrived
    closed: bool  # as last evaluated: ended, idle, or closed at end of replay
    pruned: bool = False  # its lines were dropped from state (closed long ago)
    # The stream's event time when a line for it last arrived ("" while the
    # worker does not know event time yet). Only pruning uses it: a course
    # that is still receiving lines, however old their dates, keeps its state.
    last_arrival: str = ""

    @property
    def prune_after(self) -> str:
        return max(self.last_seen, self.last_arrival)


@dataclass(slots=True)
class PatientState:
    watermark: str = ""  # the patient's event time: latest date seen
    courses: dict[CourseRef, CourseStatus] = field(default_factory=dict)
    # (site, date) -> the earliest date ordinal at which a violation held on
    # that day must be looked at again (SPEC 4.1); only days with holds.
    holds: dict[tuple[str, str], int] = field(default_factory=dict)


# (sequence, is_open, finality, excess_units, evidence)
Evidence = tuple[tuple[str, int, str, str], ...]


class Memo(NamedTuple):
    """What was last published for one alert, or what is held of it.

    A held violation (SPEC 4.1) has `sequence` 0: nothing was ever published
    for it. Its hold ends by time on `held_until` (a date ordinal); the
    finality, excess units and evidence are those it would open with."""

    sequence: int
    is_open: bool
    finality: str
    excess_units: int | None
    evidence: Evidence
    held_until: int = 0

    @property
    def is_held(self) -> bool:
        return self.sequence == 0


@dataclass(slots=True)
class DayState:
    """Lines of one patient, site and date of service, and their alert memos.

    Memos outlive their line (a void leaves them as tombstones) so that a
    re-opened alert continues its sequence.
    """

    lines: dict[LineKey, Line] = field(default_factory=dict)
    memos: dict[LineKey, dict[str, Memo]] = field(default_factory=dict)
    voided: dict[LineKey, Line] = field(
        default_factory=dict
    )  # last version of voided lines with memos


@dataclass(slots=True)
class CourseState:
    """Running facts of one course (patient, course, site) that rules need."""

    dates: dict[str, int] = field(default_factory=dict)  # date -> lines present
    fractions: int = 0
    modalities: dict[str, int] = field(default_factory=dict)  # modality -> lines
    skin_lines: int = 0
    port_lines: dict[LineKey, tuple[str, int]] = field(default_factory=dict)  # -> (date, units)

    def facts(self) -> tuple[frozenset[str], bool]:
        """The facts whose change re-evaluates every day of the course."""
        return (frozenset(self.modalities), self.skin_lines > 0)


class LineLocation(NamedTuple):
    """Where the latest version of a line identity lives (present or voided)."""

    course_id: str
    site: str
    date_of_service: str


@lru_cache(maxsize=8192)
def date_ordinal(iso: str) -> int:
    return date.fromisoformat(iso).toordinal()
