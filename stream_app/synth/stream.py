"""Synthetic claim-line streams (`stream-app generate`): seeded, realistic, fast.

Each patient has one radiation-therapy course (some a second one at another
site). A course is planned (consult, simulation, dosimetry), then treated on
weekdays (US federal holidays off) with the delivery, guidance, port-image,
physics and management lines a hospital (837I technical + 837P professional
with modifier 26, POS 22/19) or a freestanding centre (837P global, POS 11)
would bill for that modality, payer and year. 2025 and 2026 follow the code
sets of their year (77385/77386/G6003-G6016 until 2025, 77402/77407/77412 with
a modality and professional-only 77387, which includes intrafraction tracking,
from 2026: 77014, G6001, G6002 and G6017 are deleted then).

With violation rate 0 the stream is clean: it produces no alert at all. With
a rate R, a fraction R of the courses gets one violation picked from a menu
that covers every rule of SPEC 6 (a few picks also trip a related rule, as a
real billing error would). Course starts are spread evenly over `span_days`
and events come out merged by date, as intake would deliver them: dates of
service never go backwards (late voids name a line by its identity only and
carry no date).

`generate` yields event documents; `generate_lines` yields encoded JSON lines
and can salt them with invalid ones. The command, `stream-app generate`, is
stream_app/synth/generate.py.
"""

from __future__ import annotations

import bisect
import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from random import Random
from typing import Any, BinaryIO, Final

import orjson

from stream_app.synth.claims import as_claims

Doc = dict[str, Any]

DEFAULT_START: Final = date(2025, 1, 1)
DEFAULT_SPAN_DAYS: Final = 640  # last courses start in early October 2026
DEFAULT_FRACTIONS: Final = 25
SECOND_COURSE_RATE: Final = 0.15
COURSE_END_RATE: Final = 0.85
DEFAULT_VOID_RATE: Final = 0.05  # `--voids` with no value

PROF: Final = "professional"
INST: Final = "institutional"
PC: Final = "26"
TC: Final = "TC"

_Y2026: Final = date(2026, 1, 1).toordinal()

# Families of treatment (SPEC 3.2 modalities, plus how they are billed here).
F3D: Final = "3DCRT"
F2D: Final = "2DCRT"
FIMRT: Final = "IMRT"
FPBT: Final = "PBT"
FSBRT: Final = "SBRT"
FSUP: Final = "SUPERFICIAL"
FBRACHY: Final = "BRACHY"
FELECTRON: Final = "ELECTRON"
_SCALED: Final = frozenset({F3D, F2D, FIMRT, FPBT, FSUP, FELECTRON})
_IGRT_ALLOWED: Final = frozenset({F2D, F3D, FIMRT, FPBT, FSUP})  # 77387
_CT_ALLOWED: Final = frozenset({F2D, F3D, FIMRT})  # 77014
_KV_ALLOWED: Final = frozenset({F3D, FIMRT})  # G6002
_US_ALLOWED: Final = frozenset({F2D, F3D, FSUP})  # G6001
_PORT_ALLOWED: Final = frozenset({F2D, F3D, FIMRT, FPBT, FSUP})  # 77417
_IMRT_DELIVERY: Final = frozenset({"77385", "77386", "G6015", "G6016"})

# Guidance technique of a course; the code billed for it depends on the
# payer, the setting, the delivery code of the day and the year.
CBCT: Final = "cbct"
KV: Final = "kv"
US: Final = "us"
NONE: Final = "none"

# Codes with only a professional or only a technical component; the rest
# are split (institutional TC line + professional -26 line) in a hospital.
_PROF_ONLY: Final = frozenset(
    {"99205", "99204", "77261", "77262", "77263", "77427", "77431", "77435", "77469"}
)
_TECH_ONLY: Final = frozenset(
    {
        "77336",
        "77370",
        "77401",
        "77402",
        "77407",
        "77412",
        "77385",
        "77386",
        "77373",
        "G6015",
        "G6016",
        "G0340",
        "G6017",
        "77520",
        "77522",
        "77523",
        "77525",
        *(f"G{n:04d}" for n in range(6003, 6015)),
    }
)

PAYERS: Final[tuple[tuple[str, float, tuple[str, ...]], ...]] = (
    ("medicare", 0.45, ("MCR-JH", "MCR-J15", "MCR-JE", "MCR-JL")),
    ("commercial", 0.37, ("AETNA", "BCBS-IL", "CIGNA", "UHC", "ANTHEM-CA")),
    ("medicaid", 0.11, ("MCD-TX", "MCD-NY", "MCD-CA")),
    ("other", 0.07, ("TRICARE", "VA-CCN", "WC-LIBERTY")),
)


@dataclass(frozen=True, slots=True)
class Rx:
    """A kind of course: family (modality), site, diagnoses, usual fractions."""

    family: str
    site: str
    dx: tuple[str, ...]
    fractions: tuple[int, ...]
    weight: float
    hospital_share: float


CATALOG: Final[tuple[Rx, ...]] = (
    Rx(F3D, "left-breast", ("C50.412", "C50.912", "D05.12"), (16, 25, 30), 7, 0.6),
    Rx(F3D, "right-breast", ("C50.411", "C50.911", "D05.11"), (16, 25, 30), 7, 0.6),
    Rx(F3D, "rectum", ("C20",), (25, 28), 3, 0.6),
    Rx(F3D, "lung", ("C34.11", "C34.31", "C34.90"), (15, 30), 3, 0.6),
    Rx(F2D, "spine", ("C79.51",), (1, 5, 10), 4, 0.6),
    Rx(F2D, "whole-brain", ("C79.31",), (5, 10), 2, 0.6),
    Rx(F2D, "left-hip", ("C79.51",), (5, 10), 1, 0.6),
    Rx(FIMRT, "prostate", ("C61",), (20, 28, 39, 44), 12, 0.55),
    Rx(FIMRT, "head-neck", ("C32.9", "C10.9", "C01", "C09.9"), (30, 33, 35), 6, 0.7),
    Rx(FIMRT, "left-breast", ("C50.412", "C50.912"), (16, 25), 4, 0.6),
    Rx(FIMRT, "cervix", ("C53.9",), (25, 28), 2, 0.7),
    Rx(FIMRT, "pancreas", ("C25.0",), (25, 28), 2, 0.7),
    Rx(FIMRT, "brain", ("C71.9", "C71.1"), (30,), 3, 0.7),
    Rx(FPBT, "prostate", ("C61",), (20, 28, 39, 44), 2, 1.0),
    Rx(FPBT, "brain", ("C71.9", "D33.2"), (30, 33), 1, 1.0),
    Rx(FPBT, "esophagus", ("C15.5",), (25, 28), 1, 1.0),
    Rx(FPBT, "head-neck", ("C10.9", "C11.9"), (33, 35), 1, 1.0),
    Rx(FSBRT, "lung", ("C34.11", "C34.12", "C34.31"), (3, 4, 5), 5, 0.7),
    Rx(FSBRT, "liver", ("C22.0", "C78.7"), (3, 5), 1, 0.8),
    Rx(FSBRT, "spine", ("C79.51",), (1, 3, 5), 2, 0.8),
    Rx(FSBRT, "prostate", ("C61",), (5,), 2, 0.6),
    Rx(FSUP, "skin-face", ("C44.311", "C44.319", "C44.329"), (8, 10, 16, 20), 4, 0.15),
    Rx(FSUP, "skin-scalp", ("C44.42", "C44.41"), (10, 15, 20), 2, 0.15),
    Rx(FSUP, "skin-ear", ("C44.212", "C44.221"), (10, 16), 1, 0.15),
    Rx(FSUP, "left-earlobe", ("L91.0",), (3,), 1, 0.15),
    Rx(FBRACHY, "cervix", ("C53.0", "C53.9"), (4, 5), 2, 1.0),
    Rx(FBRACHY, "vaginal-cuff", ("C54.1",), (3,), 2, 1.0),
    Rx(FBRACHY, "prostate", ("C61",), (1,), 1, 1.0),
    Rx(FELECTRON, "chest-wall", ("C50.911", "C50.912"), (5, 10), 1, 0.6),
    Rx(FELECTRON, "skin-nose", ("C44.311",), (10, 15), 1, 0.5),
)
_CUMULATIVE: Final = tuple(sum(rx.weight for rx in CATALOG[: i + 1]) for i in range(len(CATALOG)))


# -- calendar ------------------------------------------------------------------

_ISO: dict[int, str] = {}


def iso(day: int) -> str:
    text = _ISO.get(day)
    if text is None:
        text = _ISO[day] = date.fromordinal(day).isoformat()
    return text


_MONTH: dict[int, int] = {}


def _month(day: int) -> int:
    found = _MONTH.get(day)
    if found is None:
        d = date.fromordinal(day)
        found = _MONTH[day] = d.year * 12 + d.month
    return found


def weekday(day: int) -> int:
    """0 = Monday (ordinal 1, 0001-01-01, was a Monday)."""
    return (day - 1) % 7


def _observed(d: date) -> int:
    wd = d.weekday()
    return d.toordinal() + (-1 if wd == 5 else 1 if wd == 6 else 0)


def _nth_weekday(year: int, month: int, wd: int, n: int) -> int:
    first = date(year, month, 1).toordinal()
    return first + (wd - weekday(first)) % 7 + 7 * (n - 1)


def _last_weekday(year: int, month: int, wd: int) -> int:
    nxt = date(year + (month == 12), month % 12 + 1, 1).toordinal()
    last = nxt - 1
    return last - (weekday(last) - wd) % 7


_HOLIDAYS: dict[int, frozenset[int]] = {}


def holidays(year: int) -> frozenset[int]:
    """US federal holidays a clinic closes for (observed dates)."""
    found = _HOLIDAYS.get(year)
    if found is None:
        found = _HOLIDAYS[year] = frozenset(
            {
                _observed(date(year, 1, 1)),
                _last_weekday(year, 5, 0),  # Memorial Day
                _observed(date(year, 7, 4)),
                _nth_weekday(year, 9, 0, 1),  # Labor Day
                _nth_weekday(year, 11, 3, 4),  # Thanksgiving
                _observed(date(year, 12, 25)),
            }
        )
    return found


_TREATMENT_DAY: dict[int, bool] = {}


def is_treatment_day(day: int) -> bool:
    """A weekday that is not a holiday."""
    found = _TREATMENT_DAY.get(day)
    if found is None:
        year = date.fromordinal(day).year
        found = _TREATMENT_DAY[day] = (
            weekday(day) < 5 and day not in holidays(year) and (day not in holidays(year + 1))
        )
    return found


def next_treatment_day(day: int, skip: int = 0) -> int:
    """The first treatment day >= day, then `skip` more treatment days."""
    while not is_treatment_day(day):
        day += 1
    for _ in range(skip):
        day += 1
        while not is_treatment_day(day):
            day += 1
    return day


_PROF_LAGS: Final = (0, 1, 1, 2, 3, 5)
_INST_LAGS: Final = (1, 2, 3, 4, 7, 10)
_CLOCK: list[str] = []


def _clock() -> list[str]:
    """HH:MM:SS from 06:00:00, one per second of 16 hours."""
    if not _CLOCK:
        _CLOCK.extend(
            f"{h:02d}:{m:02d}:{sec:02d}"
            for h in range(6, 22)
            for m in range(60)
            for sec in range(60)
        )
    return _CLOCK


# -- patients and courses -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Patient:
    index: int
    patient_id: str
    payer_type: str
    payer_id: str


@dataclass(slots=True)
class _Claim:
    claim_id: str
    next_line: int = 1


@dataclass(slots=True)
class Stats:
    patients: int = 0
    courses: int = 0
    events: int = 0
    lines: int = 0
    families: Counter[str] = field(default_factory=Counter)
    violations: Counter[str] = field(default_factory=Counter)
    episodes: Counter[str] = field(default_factory=Counter)  # voids and corrections
    invalid: Counter[str] = field(default_factory=Counter)
    claims: int = 0  # claim messages written (--format claims)
    claim_lines: Counter[int] = field(default_factory=Counter)  # lines per claim -> claims

    def render(self) -> str:
        def counts(counter: Counter[str]) -> str:
            return " ".join(f"{k}={v}" for k, v in sorted(counter.items())) or "-"

        return "\n".join(
            [
                f"generate: {self.lines} {'messages' if self.claims else 'lines'}, "
                f"{self.events} events, {self.patients} patients, "
                f"{self.courses} courses",
                f"  modalities: {counts(self.families)}",
                f"  injected violations: {sum(self.violations.values())} {counts(self.violations)}",
                f"  voids/corrections: {sum(self.episodes.values())} {counts(self.episodes)}",
                f"  invalid lines: {sum(self.invalid.values())} {counts(self.invalid)}",
                *([self._claims_line()] if self.claims else []),
            ]
        )

    def _claims_line(self) -> str:
        sizes = sorted(self.claim_lines.elements())
        mean = sum(sizes) / len(sizes)
        return (
            f"  claim messages: {self.claims}, lines per claim: mean {mean:.1f}, "
            f"median {sizes[len(sizes) // 2]}, max {sizes[-1]}"
        )


class _Course:
    """Builds the events of one course as a list of (day, order, document)."""

    def __init__(
        self, patient: Patient, number: int, start: int, rx: Rx, rng: Random, fractions_scale: float
    ) -> None:
        self.patient = patient
        self.rx = rx
        self.rng = rng
        self.family = rx.family
        self.hospital = rng.random() < rx.hospital_share
        self.pos = ("22" if rng.random() < 0.85 else "19") if self.hospital else "11"
        self.course_id = f"{patient.patient_id}-RT{number + 1}"
        self.site = rx.site
        self.claim_prefix = f"{patient.index:07d}{number}"
        self.dx: list[str] = ["Z51.0", rng.choice(rx.dx)]
        self.accepts_pc_2025 = patient.payer_type != "medicare"
        self.events: list[tuple[int, float, Doc]] = []
        self.claims: dict[tuple[bool, int], _Claim] = {}
        self.n_claims = 0
        self.fraction_days: list[int] = []
        self.session_days: list[int] = []  # brachytherapy: no fractions
        self.course_end: Doc | None = None
        self.delivery: dict[int, Doc] = {}
        self.port_days: list[int] = []
        self.sim_day = 0
        self.vsim_day = 0
        self.last_day = start
        typical = rng.choice(rx.fractions)
        self.n_fractions = (
            max(1, round(typical * fractions_scale)) if rx.family in _SCALED else typical
        )
        self.technique = self._pick_technique()
        self.ports = (
            self.family in (F3D, F2D)
            or (self.family == FIMRT and rng.random() < 0.4)
            or (self.family == FPBT and rng.random() < 0.2)
        )
        self.intrafraction = (self.family == FSBRT and rng.random() < 0.4) or (
            self.family == FIMRT and self.site in ("prostate", "left-breast") and rng.random() < 0.3
        )
        self.inst_tc_code = (
            "77014"
            if (self.technique == CBCT and self.family in _CT_ALLOWED and rng.random() < 0.3)
            else "77387"
        )
        self.imrt_code = "77386" if self.site in ("head-neck", "cervix", "pancreas") else "77385"
        self.pbt_code = rng.choice(("77522", "77523", "77525"))
        self.g_code = {
            F3D: rng.choice(("G6011", "G6012", "G6013", "G6014")),
            F2D: rng.choice(("G6003", "G6004", "G6005")),
            FELECTRON: "G6005",
        }.get(self.family, "")
        self.conv_code = {
            F3D: rng.choice(("77412", "77407")),
            F2D: "77402",
            FELECTRON: "77402",
            FIMRT: "77412",
        }.get(self.family, "")
        self._build(start)

    # -- helpers -------------------------------------------------------------
    def _pick_technique(self) -> str:
        r = self.rng.random()
        if self.family in (F3D, FIMRT):
            return CBCT if r < 0.5 else KV if r < 0.9 else (US if self.family == F3D else NONE)
        if self.family == F2D:
            return CBCT if r < 0.35 else NONE
        if self.family == FPBT:
            return CBCT if r < 0.6 else KV
        return NONE

    def _claim(self, day: int, prof: bool) -> _Claim:
        # Professional claims are weekly, institutional ones monthly.
        period = (day - 1) // 7 if prof else _month(day)
        claim = self.claims.get((prof, period))
        if claim is None:
            self.n_claims += 1
            yy = iso(day)[2:4]
            claim = _Claim(f"{'P' if prof else 'I'}{yy}{self.claim_prefix}{self.n_claims:03d}")
            self.claims[(prof, period)] = claim
        return claim

    def _received(self, day: int, prof: bool) -> str:
        """Intake time: days after the service, between 06:00 and 22:00 UTC."""
        random = self.rng.random
        lag = (_PROF_LAGS if prof else _INST_LAGS)[int(random() * 6)]
        return f"{iso(day + lag)}T{_clock()[int(random() * 57_600)]}Z"

    def line(
        self,
        day: int,
        hcpcs: str,
        claim_type: str,
        modifiers: list[str] | None = None,
        units: int = 1,
        modality: str | None = None,
        order: float | None = None,
    ) -> Doc:
        prof = claim_type == PROF
        claim = self._claim(day, prof)
        doc: Doc = {
            "claim_id": claim.claim_id,
            "line_number": claim.next_line,
            "patient_id": self.patient.patient_id,
            "course_id": self.course_id,
            "site": self.site,
            "date_of_service": iso(day),
            "hcpcs": hcpcs,
            "modifiers": modifiers or [],
            "units": units,
            "claim_type": claim_type,
        }
        claim.next_line += 1
        if prof:
            doc["place_of_service"] = self.pos
        doc["payer_id"] = self.patient.payer_id
        doc["payer_type"] = self.patient.payer_type
        doc["diagnosis_codes"] = self.dx
        if modality is not None:
            doc["modality"] = modality
        doc["received_at"] = self._received(day, prof)
        self.events.append((day, float(len(self.events)) if order is None else order, doc))
        return doc

    def bill(self, day: int, hcpcs: str, units: int = 1, modality: str | None = None) -> None:
        """A service as this setting bills it: split, professional or technical."""
        if not self.hospital or hcpcs in _PROF_ONLY:
            self.line(day, hcpcs, PROF, None, units, modality)
        elif hcpcs in _TECH_ONLY:
            self.line(day, hcpcs, INST, None, units, modality)
        else:
            self.line(day, hcpcs, INST, None, units, modality)
            self.line(day, hcpcs, PROF, [PC], units, modality)

    # -- the course ----------------------------------------------------------
    def _build(self, start: int) -> None:
        rng, family = self.rng, self.family
        day = next_treatment_day(start)
        self.bill(day, rng.choice(("99205", "99204")))
        day = next_treatment_day(day, rng.randint(1, 4))
        self.sim_day = day
        palliative = family == F2D or (family == F3D and self.n_fractions <= 10)
        if family == FSUP:
            self.bill(day, "77261")
            self.bill(day, "77280")
            self.bill(day, "77300")
            self.bill(day, "77332", rng.randint(1, 2))
        elif family == FBRACHY:
            self.bill(day, "77263")
        elif family == FELECTRON:
            self.bill(day, "77285")
            self.bill(day, "77262")
        else:
            self.bill(day, "77280" if palliative else "77290")
            if family == FSBRT:
                self.bill(day, "77293")
            self.bill(day, "77262" if palliative else "77263")
        day = next_treatment_day(day, rng.randint(2, 5))
        if family == FIMRT:
            self.bill(day, "77301")
            self.bill(day, "77338")
            self.bill(day, "77300", rng.randint(1, 4))
        elif family in (F3D, FPBT, FSBRT):
            self.bill(day, "77295")
            self.bill(day, "77300", rng.randint(2, 6))
            self.bill(day, "77334", rng.randint(1, 3))
            if family == FSBRT:
                self.bill(day, "77470")
        elif family == F2D:
            self.bill(day, "77300", rng.randint(1, 3))
            self.bill(day, "77334")
        elif family == FELECTRON:
            self.bill(day, "77321")
            self.bill(day, "77300")
            self.bill(day, "77332")
        if family in (F3D, FIMRT, FPBT) and not palliative:
            day = next_treatment_day(day + 1)
            self.vsim_day = day
            self.bill(day, "77280")
        if family == FBRACHY:
            self._brachy(day)
        else:
            self._external(day)
        if rng.random() < COURSE_END_RATE:
            self.course_end = {
                "kind": "course_end",
                "patient_id": self.patient.patient_id,
                "course_id": self.course_id,
                "site": self.site,
                "date": iso(self.last_day),
                "received_at": self._received(self.last_day, True),
            }

    def finish(self) -> None:
        """Order the events; the course_end comes after the last day's lines."""
        if self.course_end is not None:
            self.events.append((self.last_day, float("inf"), self.course_end))
        self.events.sort(key=lambda event: (event[0], event[1]))

    def _external(self, day: int) -> None:
        n = self.n_fractions
        # SBRT, superficial and keloid courses treat every other treatment day.
        gap = 1 if self.family in (FSBRT, FSUP) else 0
        for k in range(1, n + 1):
            day = next_treatment_day(day + 1, gap if k > 1 else 0)
            self.fraction_days.append(day)
            self._fraction(day, k)
            if k % 5 == 0 or (k == n and n % 5 >= 3):
                self.bill(day, "77336")
                if self.family != FSBRT and n >= 5:
                    self.bill(day, "77427")
            if k == n and n < 5 and self.family != FSBRT:
                self.bill(day, "77431")
        if self.family == FSBRT:
            self.bill(day, "77435")
        self.last_day = day

    def _brachy(self, day: int) -> None:
        code = {"cervix": "77771", "vaginal-cuff": "77770"}.get(self.site, "77778")
        plan = "77318" if code == "77778" else "77316"
        self.bill(day, "77370")
        for k in range(self.n_fractions):
            day = next_treatment_day(day + 1, 2 if k else 0)
            self.session_days.append(day)
            self.bill(day, "77290" if k == 0 else "77280")
            self.bill(day, plan)
            self.bill(day, code)
            if k % 2 == 1:
                self.bill(day, "77336")
        self.last_day = day

    def delivery_code(self, day: int) -> tuple[str, str | None]:
        family, y26 = self.family, day >= _Y2026
        medicare_office = not self.hospital and self.patient.payer_type == "medicare"
        if family == FIMRT:
            if y26:
                return self.conv_code, FIMRT
            return ("G6015", None) if medicare_office else (self.imrt_code, None)
        if family in (F3D, F2D, FELECTRON):
            if medicare_office and not y26:
                return self.g_code, family
            return self.conv_code, family
        if family == FPBT:
            return self.pbt_code, None
        if family == FSBRT:
            return ("G0340", None) if medicare_office and self.site != "spine" else ("77373", None)
        return "77401", None  # superficial

    def _medicare_code(self) -> str | None:
        """The G-code or 77014 a Medicare physician bills instead of 77387 before 2026."""
        family, technique = self.family, self.technique
        if technique == US and family in _US_ALLOWED:
            return "G6001"
        if technique == KV and family in _KV_ALLOWED:
            return "G6002"
        if family in _CT_ALLOWED:
            return "77014"
        return None

    def guidance(self, day: int, imrt_day: bool) -> list[tuple[str, str, list[str]]]:
        """Clean guidance lines of a fraction day: (hcpcs, claim_type, modifiers)."""
        if self.technique == NONE:
            return []
        y26 = day >= _Y2026
        lines: list[tuple[str, str, list[str]]] = []
        pc_code = "77387" if y26 or self.accepts_pc_2025 else self._medicare_code()
        if self.hospital:
            if pc_code is not None:
                lines.append((pc_code, PROF, [PC]))
            if not y26 and not imrt_day:  # TC of IGRT is bundled with IMRT delivery
                lines.append((self.inst_tc_code, INST, []))
        elif pc_code is not None:
            # Freestanding: one global line, professional-only where the TC is
            # bundled (IMRT days) or not billable (77387 from 2026).
            professional_only = pc_code == "77387" and (y26 or imrt_day)
            lines.append((pc_code, PROF, [PC] if professional_only else []))
        return lines

    def _fraction(self, day: int, k: int) -> None:
        code, modality = self.delivery_code(day)
        self.delivery[day] = self.line(
            day, code, INST if self.hospital else PROF, None, 1, modality
        )
        port_day = self.ports and k % 5 == 0
        for hcpcs, claim_type, modifiers in self.guidance(day, code in _IMRT_DELIVERY):
            if port_day and hcpcs == "77387":
                continue  # port images and IGRT are not billable the same day
            self.line(day, hcpcs, claim_type, modifiers)
        if port_day:
            self.port_days.append(day)
            self.line(day, "77417", INST if self.hospital else PROF)
        if self.intrafraction and day < _Y2026:  # from 2026 part of 77387 (G6017 deleted)
            self.line(day, "G6017", INST if self.hospital else PROF)

    # -- editing, for violations and voids ------------------------------------
    def docs_on(self, day: int) -> list[tuple[int, float, Doc]]:
        return [event for event in self.events if event[0] == day and "hcpcs" in event[2]]

    def remove(self, doc: Doc) -> None:
        self.events = [event for event in self.events if event[2] is not doc]

    def order_of(self, doc: Doc) -> float:
        for _, order, other in self.events:
            if other is doc:
                return order
        return float(len(self.events))

    def pc_guidance(self, day: int) -> list[Doc]:
        return [
            doc
            for _, _, doc in self.docs_on(day)
            if doc["hcpcs"] in ("77014", "77387", "G6001", "G6002") and doc["claim_type"] == PROF
        ]

    def guidance_docs(self, day: int, *codes: str) -> list[Doc]:
        return [doc for _, _, doc in self.docs_on(day) if doc["hcpcs"] in codes]

    def pc_mods(self) -> list[str]:
        return [PC] if self.hospital else []

    def claim_type_tc(self) -> str:
        return INST if self.hospital else PROF


# -- violations ------------------------------------------------------------------
# Each takes a course and returns True if it could inject its violation.

Injector = Callable[[_Course], bool]


def _pick(course: _Course, days: Sequence[int]) -> int | None:
    return course.rng.choice(days) if days else None


def _v_port_units(c: _Course) -> bool:
    """Two units on one port-image day; the unit of the port day before it is
    not billed, so the course total stays within one per five fractions."""
    if not c.port_days:
        return False
    at = c.rng.randrange(1, len(c.port_days)) if len(c.port_days) > 1 else 0
    c.guidance_docs(c.port_days[at], "77417")[0]["units"] = 2
    if at > 0:
        c.remove(c.guidance_docs(c.port_days[at - 1], "77417")[0])
    return True


def _v_port_professional(c: _Course) -> bool:
    day = _pick(c, c.port_days)
    if day is None:
        return False
    doc = c.guidance_docs(day, "77417")[0]
    if c.hospital:
        order = c.order_of(doc)
        c.remove(doc)
        c.line(day, "77417", PROF, [PC], order=order)
    else:
        doc["modifiers"] = [PC]
    return True


def _v_port_with_igrt(c: _Course) -> bool:
    days = [d for d in c.port_days if d >= _Y2026 or c.accepts_pc_2025]
    day = _pick(c, days)
    if day is None:
        return False
    for doc in c.pc_guidance(day):
        c.remove(doc)
    c.line(day, "77387", PROF, [PC])
    return True


def _v_ct_with_simulation(c: _Course) -> bool:
    if c.family not in _CT_ALLOWED:
        return False
    day = c.vsim_day or c.sim_day
    c.line(day, "77014", PROF, c.pc_mods())
    return True


def _v_igrt_tc_with_imrt(c: _Course) -> bool:
    days = [
        d
        for d, doc in c.delivery.items()
        if doc["hcpcs"] in _IMRT_DELIVERY and d not in c.port_days
    ]
    day = _pick(c, days)
    if day is None:
        return False
    if not c.hospital:
        for doc in c.pc_guidance(day):
            c.remove(doc)
    c.line(day, "77387", c.claim_type_tc(), [TC])
    return True


def _v_intrafraction_units(c: _Course) -> bool:
    day = _pick(c, [d for d in c.fraction_days if d < _Y2026])  # G6017 is deleted from 2026
    if day is None:
        return False
    found = c.guidance_docs(day, "G6017")
    if found:
        found[0]["units"] = 2
    else:
        c.line(day, "G6017", c.claim_type_tc(), None, 2)
    return True


def _v_igrt_without_fraction(c: _Course) -> bool:
    if c.session_days:
        # Stereoscopic X-ray to check the applicator: not IGRT of a fraction
        # (and G6002 is no brachytherapy guidance either).
        c.line(c.rng.choice(c.session_days), "G6002", PROF, [PC])
        return True
    # A Saturday within the course: no treatment that day.
    saturdays = [d + (5 - weekday(d)) % 7 for d in c.fraction_days]
    days = [d for d in saturdays if c.fraction_days and d < c.fraction_days[-1]]
    day = _pick(c, days)
    if day is None:
        return False
    if c.family in _IGRT_ALLOWED and c.family != FSUP and (day >= _Y2026 or c.accepts_pc_2025):
        code = "77387"
    elif c.family in _KV_ALLOWED:
        code = "G6002"
    elif c.family in _US_ALLOWED and c.family != FSUP:
        code = "G6001"
    else:
        return False
    c.line(day, code, PROF, [PC])
    return True


def _v_ultrasound_institutional(c: _Course) -> bool:
    if not c.hospital or c.family not in (F2D, F3D):
        return False
    days = [d for d in c.fraction_days if d not in c.port_days]
    day = _pick(c, days)
    if day is None:
        return False
    for doc in c.guidance_docs(day, "77387", "77014"):
        if doc["claim_type"] == INST:
            c.remove(doc)
    c.line(day, "G6001", INST)
    return True


def _v_hospital_missing_26(c: _Course) -> bool:
    """The physician bills 77014 from the hospital without modifier 26 (and the
    hospital bills no technical guidance that day, so only the 26 is wrong)."""
    if not c.hospital or c.family not in _CT_ALLOWED:
        return False
    days = [d for d in c.fraction_days if c.pc_guidance(d)]
    day = _pick(c, days)
    if day is None:
        return False
    order = c.order_of(c.pc_guidance(day)[0])
    for doc in c.guidance_docs(day, "77014", "77387", "G6001", "G6002"):
        c.remove(doc)
    c.line(day, "77014", PROF, [], order=order)
    return True


def _v_deleted_77421(c: _Course) -> bool:
    if c.session_days:  # ultrasound guidance of the needles, coded as before 2015
        c.line(c.rng.choice(c.session_days), "76950", PROF, c.pc_mods())
        return True
    day = _pick(c, c.fraction_days)
    if day is None:
        return False
    for doc in c.pc_guidance(day):
        c.remove(doc)
    c.line(day, c.rng.choice(("77421", "76950")), PROF, c.pc_mods())
    return True


def _v_deleted_2026(c: _Course) -> bool:
    days = [d for d in c.fraction_days if d >= _Y2026 and c.family in (F3D, F2D, FIMRT)]
    day = _pick(c, days)
    if day is None:
        return False
    doc = c.delivery[day]
    doc["hcpcs"] = c.imrt_code if c.family == FIMRT else c.g_code
    return True


def _v_igrt_tc_2026(c: _Course) -> bool:
    if c.family not in _IGRT_ALLOWED or c.family == FSUP:
        return False
    days = [d for d in c.fraction_days if d >= _Y2026 and d not in c.port_days]
    day = _pick(c, days)
    if day is None:
        return False
    if c.hospital:
        c.line(day, "77387", INST)
    else:
        found = c.guidance_docs(day, "77387")
        if found:
            found[0]["modifiers"] = []
        else:
            c.line(day, "77387", PROF, [TC])
    return True


def _v_77387_pc_medicare(c: _Course) -> bool:
    if c.accepts_pc_2025 or c.family not in _IGRT_ALLOWED or c.family == FSUP:
        return False
    days = [d for d in c.fraction_days if d < _Y2026 and d not in c.port_days]
    day = _pick(c, days)
    if day is None:
        return False
    for doc in c.pc_guidance(day):
        c.remove(doc)
    c.line(day, "77387", PROF, [PC])
    return True


def _v_port_frequency(c: _Course) -> bool:
    days = [d for k, d in enumerate(c.fraction_days, start=1) if k % 5 != 0]
    if not c.ports or not days:
        return False
    day = c.rng.choice(days)
    for doc in c.guidance_docs(day, "77387"):
        c.remove(doc)
    c.line(day, "77417", c.claim_type_tc())
    return True


def _v_port_with_verification_sim(c: _Course) -> bool:
    day = _pick(c, c.port_days)
    if day is None:
        return False
    for doc in c.guidance_docs(day, "77014"):
        c.remove(doc)
    c.bill(day, "77280")
    return True


def _v_port_modality(c: _Course) -> bool:
    # Five fractions or more, so that the one unit is within the frequency.
    if c.family in _PORT_ALLOWED or c.family == FBRACHY or c.n_fractions < 5:
        return False
    day = _pick(c, c.fraction_days)
    if day is None:
        return False
    c.line(day, "77417", c.claim_type_tc())
    return True


def _v_superficial_skin(c: _Course) -> bool:
    if c.family != FSUP:
        return False
    day = _pick(c, c.fraction_days)
    if day is None:
        return False
    c.line(day, "G6001", PROF, c.pc_mods())
    return True


def _v_guidance_modality(c: _Course) -> bool:
    day = _pick(c, c.fraction_days)
    if day is None:
        return False
    if c.family == FPBT:
        code = "G6002"
    elif c.family == FIMRT:
        code = "G6001"
    elif c.family == F2D:
        code = "G6002"
    elif c.family in (FSBRT, FELECTRON):
        code = "77014"
    else:
        return False
    for doc in c.pc_guidance(day):
        c.remove(doc)
    c.line(day, code, PROF, c.pc_mods())
    return True


def _v_double_localization(c: _Course) -> bool:
    if c.family not in _CT_ALLOWED:
        return False
    days = [d for d in c.fraction_days if c.pc_guidance(d)]
    day = _pick(c, days)
    if day is None:
        day = _pick(c, c.fraction_days)
        if day is None:
            return False
        c.line(day, "77014", PROF, c.pc_mods(), 2)
    else:
        existing = c.pc_guidance(day)[0]["hcpcs"]
        code = "G6002" if existing == "77014" and c.family in _KV_ALLOWED else "77014"
        c.line(day, code, PROF, c.pc_mods())
    return True


VIOLATIONS: Final[dict[str, Injector]] = {
    "port-image-extra-units": _v_port_units,
    "port-image-26": _v_port_professional,
    "port-image-with-77387": _v_port_with_igrt,
    "77014-with-simulation": _v_ct_with_simulation,
    "77387-tc-with-imrt": _v_igrt_tc_with_imrt,
    "g6017-extra-units": _v_intrafraction_units,
    "igrt-on-non-treatment-day": _v_igrt_without_fraction,
    "g6001-institutional": _v_ultrasound_institutional,
    "pos22-without-26": _v_hospital_missing_26,
    "deleted-77421-76950": _v_deleted_77421,
    "deleted-2026-delivery": _v_deleted_2026,
    "77387-tc-in-2026": _v_igrt_tc_2026,
    "77387-26-medicare-2025": _v_77387_pc_medicare,
    "port-image-too-often": _v_port_frequency,
    "port-image-with-77280": _v_port_with_verification_sim,
    "port-image-sbrt-electron": _v_port_modality,
    "igrt-superficial-skin": _v_superficial_skin,
    "guidance-wrong-modality": _v_guidance_modality,
    "two-localizations-one-fraction": _v_double_localization,
}


# -- voids, corrections, duplicates (all clean) ------------------------------


def _e_duplicate(c: _Course) -> bool:
    day, order, doc = c.rng.choice([e for e in c.events if "hcpcs" in e[2]])
    copy = dict(doc, received_at=c._received(day, doc["claim_type"] == PROF))
    c.events.append((day, order + 0.5, copy))
    return True


def _e_correction(c: _Course) -> bool:
    day, order, doc = c.rng.choice([e for e in c.events if "hcpcs" in e[2]])
    corrected = dict(
        doc,
        diagnosis_codes=[*doc["diagnosis_codes"], "Z79.899"],
        received_at=c._received(day + 2, doc["claim_type"] == PROF),
    )
    c.events.append((day, order + 0.5, corrected))
    return True


def _voidable(c: _Course) -> list[tuple[int, float, Doc]]:
    deliveries = {id(doc) for doc in c.delivery.values()}
    return [e for e in c.events if "hcpcs" in e[2] and id(e[2]) not in deliveries]


def _void_of(c: _Course, day: int, doc: Doc, with_date: bool) -> Doc:
    void: Doc = {
        "action": "void",
        "patient_id": doc["patient_id"],
        "claim_id": doc["claim_id"],
        "line_number": doc["line_number"],
    }
    if with_date:
        void.update(
            course_id=doc["course_id"],
            site=doc["site"],
            date_of_service=doc["date_of_service"],
            hcpcs=doc["hcpcs"],
            claim_type=doc["claim_type"],
        )
    void["received_at"] = c._received(day, True)
    return void


def _e_late_void(c: _Course) -> bool:
    """A guidance, port-image, planning or management line withdrawn days later
    (identity only: no date of service, so dates never go backwards)."""
    day, _, doc = c.rng.choice(_voidable(c))
    later = day + c.rng.randint(1, 6)
    c.events.append((later, float(len(c.events)) + 1000.0, _void_of(c, later, doc, False)))
    return True


def _e_void_reinstate(c: _Course) -> bool:
    day, order, doc = c.rng.choice(_voidable(c))
    c.events.append((day, order + 0.3, _void_of(c, day, doc, True)))
    c.events.append((day, order + 0.6, dict(doc, received_at=c._received(day + 1, True))))
    return True


def _e_rebill(c: _Course) -> bool:
    """A delivery line re-billed on a new line, then the old line voided."""
    day = _pick(c, list(c.delivery))
    if day is None:
        return False
    doc = c.delivery[day]
    order = c.order_of(doc)
    claim = c._claim(day, doc["claim_type"] == PROF)
    rebilled = dict(doc, line_number=claim.next_line, received_at=c._received(day + 1, True))
    claim.next_line += 1
    c.events.append((day, order + 0.3, rebilled))
    c.events.append((day, order + 0.6, _void_of(c, day, doc, True)))
    c.delivery[day] = rebilled
    return True


EPISODES: Final[dict[str, Injector]] = {
    "duplicate": _e_duplicate,
    "correction": _e_correction,
    "late-void": _e_late_void,
    "void-reinstate": _e_void_reinstate,
    "rebill-delivery": _e_rebill,
}


# -- the stream ----------------------------------------------------------------------


class Synth:
    """A seeded synthetic stream; `events()` yields documents in date order."""

    def __init__(
        self,
        patients: int,
        fractions: int = DEFAULT_FRACTIONS,
        violation_rate: float = 0.0,
        seed: int = 0,
        *,
        start: date = DEFAULT_START,
        span_days: int = DEFAULT_SPAN_DAYS,
        void_rate: float = 0.0,
    ) -> None:
        if patients < 0 or fractions < 1 or span_days < 1:
            raise ValueError("patients >= 0, fractions >= 1 and span_days >= 1 are required")
        if not 0.0 <= violation_rate <= 1.0 or not 0.0 <= void_rate <= 1.0:
            raise ValueError("rates are between 0 and 1")
        self.patients = patients
        self.fractions_scale = fractions / DEFAULT_FRACTIONS
        self.violation_rate = violation_rate
        self.void_rate = void_rate
        self.seed = seed
        self.start = start.toordinal()
        self.span_days = span_days
        self.stats = Stats()

    def _rng(self, *parts: int) -> Random:
        value = self.seed & 0xFFFF_FFFF
        for part in parts:
            value = (value * 1_000_003 + part + 1) & 0xFFFF_FFFF_FFFF_FFFF
        return Random(value)

    def _patient(self, index: int) -> Patient:
        rng = self._rng(index, 0)
        number = (index * 982_451_653 + (self.seed * 7_919) % 10**9) % 10**9
        r = rng.random()
        payer_type, _, ids = PAYERS[-1]
        for candidate in PAYERS:
            if r < candidate[1]:
                payer_type, _, ids = candidate
                break
            r -= candidate[1]
        return Patient(index, f"M{number:09d}", payer_type, rng.choice(ids))

    def _rx(self, rng: Random, not_site: str | None) -> Rx:
        while True:
            rx = CATALOG[bisect.bisect_right(_CUMULATIVE, rng.random() * _CUMULATIVE[-1])]
            if rx.site != not_site:
                return rx

    def _starts(self) -> list[tuple[int, int, int]]:
        """(start day, patient index, course number), in start order."""
        starts: list[tuple[int, int, int]] = []
        end = self.start + self.span_days
        for index in range(self.patients):
            first = self.start + (index * self.span_days) // max(self.patients, 1)
            starts.append((first, index, 0))
            rng = self._rng(index, 1)
            if rng.random() < SECOND_COURSE_RATE:
                second = first + rng.randint(45, 240)
                if second < end:
                    starts.append((second, index, 1))
        starts.sort()
        return starts

    def _course(self, start: int, index: int, number: int, sites: dict[int, str]) -> _Course:
        rng = self._rng(index, 2 + number)
        rx = self._rx(rng, sites.pop(index, None))
        if number == 0:
            sites[index] = rx.site
        course = _Course(self._patient(index), number, start, rx, rng, self.fractions_scale)
        stats = self.stats
        stats.courses += 1
        stats.patients += number == 0
        stats.families[rx.family] += 1
        if rng.random() < self.violation_rate:
            menu = list(VIOLATIONS.items())
            rng.shuffle(menu)
            for name, inject in menu:
                if inject(course):
                    stats.violations[name] += 1
                    break
        if rng.random() < self.void_rate:
            name, episode = rng.choice(list(EPISODES.items()))
            if episode(course):
                stats.episodes[name] += 1
        course.finish()
        return course

    def events(self) -> Iterator[Doc]:
        """Merge the courses by date: all of a course's events of a day together,
        courses of a day in the order they started."""
        starts = self._starts()
        sites: dict[int, str] = {}  # site of a patient's first course, until the second
        heap: list[tuple[int, int]] = []  # (next event day, serial)
        open_courses: dict[int, tuple[list[tuple[int, float, Doc]], int]] = {}
        serial = 0
        next_start = 0
        stats = self.stats
        while next_start < len(starts) or heap:
            if next_start < len(starts) and (not heap or starts[next_start][0] <= heap[0][0]):
                day, index, number = starts[next_start]
                next_start += 1
                events = self._course(day, index, number, sites).events
                if events:
                    serial += 1
                    open_courses[serial] = (events, 0)
                    heapq.heappush(heap, (events[0][0], serial))
                continue
            day, key = heap[0]
            events, position = open_courses[key]
            while position < len(events) and events[position][0] == day:
                stats.events += 1
                yield events[position][2]
                position += 1
            if position < len(events):
                open_courses[key] = (events, position)
                heapq.heapreplace(heap, (events[position][0], key))
            else:
                del open_courses[key]
                heapq.heappop(heap)


def generate(
    patients: int,
    fractions: int = DEFAULT_FRACTIONS,
    violation_rate: float = 0.0,
    seed: int = 0,
    *,
    start: date = DEFAULT_START,
    span_days: int = DEFAULT_SPAN_DAYS,
    void_rate: float = 0.0,
) -> Iterator[Doc]:
    """Event documents (SPEC 1) of a synthetic stream, in date order."""
    return Synth(
        patients,
        fractions,
        violation_rate,
        seed,
        start=start,
        span_days=span_days,
        void_rate=void_rate,
    ).events()


# -- invalid lines -----------------------------------------------------------------


def _invalid(rng: Random, doc: Doc, encoded: bytes) -> tuple[str, bytes]:
    # Only a full claim line is mangled field by field; others are cut short.
    kind = rng.randrange(7) if "hcpcs" in doc and "action" not in doc else rng.randrange(2)
    if kind == 0:
        return "not_json", encoded[: max(1, len(encoded) // 2)]
    if kind == 1:
        return "not_object", orjson.dumps([doc.get("claim_id"), doc.get("line_number")])
    bad = dict(doc)
    if kind == 2:
        year = str(bad.get("date_of_service", "2025"))[:4]
        bad["date_of_service"] = f"{year}-02-30"
        reason = "bad_date"
    elif kind == 3:
        bad["units"] = 0
        reason = "bad_field"
    elif kind == 4:
        bad.pop("patient_id", None)
        reason = "missing_field"
    elif kind == 5:
        bad["hcpcs"] = "7738"
        reason = "bad_field"
    else:
        bad["kind"] = "claim_header"
        reason = "unknown_kind"
    return reason, orjson.dumps(bad)


def generate_lines(
    synth: Synth,
    invalid_rate: float = 0.0,
    max_lines: int | None = None,
    *,
    claims: bool = False,
) -> Iterator[bytes]:
    """Encoded messages (no newline) of a stream, with a share of invalid ones:
    line messages, or with `claims` the same lines as claim messages (SPEC 1.1)
    submitted weekly (professional) and monthly (institutional)."""
    rng = Random(synth.seed ^ 0x5EED)
    stats = synth.stats
    dumps = orjson.dumps
    limit = max_lines if max_lines is not None else -1
    written = 0
    docs = as_claims(synth.events()) if claims else synth.events()
    for doc in docs:
        if doc.get("kind") == "claim":
            stats.claims += 1
            stats.claim_lines[len(doc["lines"])] += 1
        if written == limit:
            return
        encoded = dumps(doc)
        yield encoded
        written += 1
        if invalid_rate and rng.random() < invalid_rate and written != limit:
            reason, garbage = _invalid(rng, doc, encoded)
            stats.invalid[reason] += 1
            yield garbage
            written += 1
        stats.lines = written
    stats.lines = written


def write_lines(out: BinaryIO, encoded: Iterable[bytes], batch_size: int = 4096) -> None:
    """Write encoded messages as JSON lines, a few thousand per write."""
    batch: list[bytes] = []
    for line in encoded:
        batch.append(line)
        if len(batch) >= batch_size:
            batch.append(b"")
            out.write(b"\n".join(batch))
            batch.clear()
    if batch:
        batch.append(b"")
        out.write(b"\n".join(batch))


def main(argv: list[str]) -> int:
    """`stream-app generate` (its options and output are in stream_app/synth/generate.py)."""
    from stream_app.synth.generate import main as generate_main

    return generate_main(argv)
