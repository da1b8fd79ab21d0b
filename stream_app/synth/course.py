"""One synthetic radiation-therapy course: `Course` plans and treats it and
bills every service as its setting would (hospital: institutional technical
line + professional -26 line; freestanding: professional global), on weekly
professional and monthly institutional claims. Each claim is submitted once
its period is over (submission.py), and every line of it carries that
submission time as its received_at. `violations` and `edits` change a built
course before it is finished (sorted into submission order)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from random import Random
from typing import Any, Final

from stream_app.synth.calendar import iso, month_index, next_treatment_day
from stream_app.synth.catalog import (
    CBCT,
    CT_ALLOWED,
    F2D,
    F3D,
    FBRACHY,
    FELECTRON,
    FIMRT,
    FPBT,
    FSBRT,
    FSUP,
    IMRT_DELIVERY,
    INST,
    KV,
    KV_ALLOWED,
    NONE,
    PC,
    PROF,
    PROF_ONLY,
    SCALED,
    TECH_ONLY,
    US,
    US_ALLOWED,
    Y2026,
    Rx,
)
from stream_app.synth.submission import COURSE_END_LAG, claim_submitted, received_at

Doc = dict[str, Any]

COURSE_END_RATE: Final = 0.85

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
    received_at: str  # when it is submitted: every line of it carries this
    next_line: int = 1


class Course:
    """Builds the events of one course as a list of (day, order, document)."""

    def __init__(
        self,
        patient: Patient,
        number: int,
        start: int,
        rx: Rx,
        rng: Random,
        fractions_scale: float,
        timing: Random,
    ) -> None:
        self.patient = patient
        self.rx = rx
        self.rng = rng  # what is billed
        self.timing = timing  # when it is received
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
            max(1, round(typical * fractions_scale)) if rx.family in SCALED else typical
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
            if (self.technique == CBCT and self.family in CT_ALLOWED and rng.random() < 0.3)
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

    def claim(self, day: int, prof: bool) -> _Claim:
        # Professional claims are weekly, institutional ones monthly.
        period = (day - 1) // 7 if prof else month_index(day)
        claim = self.claims.get((prof, period))
        if claim is None:
            self.n_claims += 1
            yy = iso(day)[2:4]
            claim_id = f"{'P' if prof else 'I'}{yy}{self.claim_prefix}{self.n_claims:03d}"
            claim = _Claim(claim_id, claim_submitted(self.timing, day, PROF if prof else INST))
            self.claims[(prof, period)] = claim
        return claim

    def received(self, day: int, low: int, high: int) -> str:
        """A time `low` to `high` days (uniform) after a day, 06:00 to 22:00 UTC."""
        return received_at(self.timing, day, low, high)

    def after(self, doc: Doc, low: int, high: int) -> str:
        """A time `low` to `high` days after a document was received."""
        return self.received(date.fromisoformat(doc["received_at"][:10]).toordinal(), low, high)

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
        claim = self.claim(day, prof)
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
        doc["received_at"] = claim.received_at
        self.events.append((day, float(len(self.events)) if order is None else order, doc))
        return doc

    def bill(self, day: int, hcpcs: str, units: int = 1, modality: str | None = None) -> None:
        """A service as this setting bills it: split, professional or technical."""
        if not self.hospital or hcpcs in PROF_ONLY:
            self.line(day, hcpcs, PROF, None, units, modality)
        elif hcpcs in TECH_ONLY:
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
                "received_at": self.received(self.last_day, *COURSE_END_LAG),
            }

    def finish(self) -> None:
        """Order the events as they are received: by received_at, the lines of
        one submission together, by date of service."""
        if self.course_end is not None:
            self.events.append((self.last_day, float("inf"), self.course_end))
        self.events.sort(
            key=lambda event: (
                event[2]["received_at"],
                event[2].get("claim_id", ""),
                event[0],
                event[1],
            )
        )

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
        family, y26 = self.family, day >= Y2026
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
        if technique == US and family in US_ALLOWED:
            return "G6001"
        if technique == KV and family in KV_ALLOWED:
            return "G6002"
        if family in CT_ALLOWED:
            return "77014"
        return None

    def guidance(self, day: int, imrt_day: bool) -> list[tuple[str, str, list[str]]]:
        """Clean guidance lines of a fraction day: (hcpcs, claim_type, modifiers)."""
        if self.technique == NONE:
            return []
        y26 = day >= Y2026
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
        for hcpcs, claim_type, modifiers in self.guidance(day, code in IMRT_DELIVERY):
            if port_day and hcpcs == "77387":
                continue  # port images and IGRT are not billable the same day
            self.line(day, hcpcs, claim_type, modifiers)
        if port_day:
            self.port_days.append(day)
            self.line(day, "77417", INST if self.hospital else PROF)
        if self.intrafraction and day < Y2026:  # from 2026 part of 77387 (G6017 deleted)
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


# A violation or an edit: changes a built course, True if it could.
Injector = Callable[[Course], bool]


def pick(course: Course, days: Sequence[int]) -> int | None:
    """One of these days, at random, or None if there is none."""
    return course.rng.choice(days) if days else None
