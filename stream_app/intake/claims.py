"""From one 837 transaction set to claim messages (SPEC 1.1 and 10).

The loops are followed here, from the segments `x12.read_interchanges` gives:

    2000A HL*..*20   billing provider (2010AA NM1*85: the NPI for course_id)
    2000B HL*..*22   subscriber: SBR (SBR09 payer_type), 2010BA NM1*IL (member
                     id), 2010BB NM1*PR (payer_id)
    2000C HL*..*23   dependent patient: PAT, 2010CA NM1*QC, DMG
    2300  CLM        claim: DTP*434, REF*G1, HI before its first NM1 or SBR;
                     after those come 2310 providers and 2320/2330 other
                     subscribers and payers (coordination of benefits), which
                     are never read as this claim's patient, payer or course
    2400  LX         line: SV1 or SV2, DTP*472, REF*G1 before its first
                     2410 LIN / 2420 NM1 / 2430 SVD / 2440 LQ

A dependent's patient_id is the subscriber's member id followed by
`-D:` and the first 10 hex digits of SHA-256 over "LAST|FIRST|CCYYMMDD"
(NM103, NM104 of NM1*QC, DMG02; upper case, spaces trimmed): the same person
gets the same id in every file, and no name appears in the id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from stream_app.core.events import Invalid, parse_event
from stream_app.intake.elements import (
    Rejected,
    components,
    dtp_date,
    line_number,
    payer_type,
    units,
)
from stream_app.intake.sites import SiteMap
from stream_app.intake.x12 import Segment, Transaction

FREQUENCIES: Final = {"7": "replacement", "8": "void"}
DX_QUALIFIERS: Final = frozenset({"ABK", "ABF", "BK", "BF"})
ICD9_QUALIFIERS: Final = frozenset({"BK", "BF"})
PRODUCT_QUALIFIERS: Final = frozenset({"ER", "HC", "HP", "IV", "WK", "N4"})
_DX_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_LINE_LOOP_STARTS: Final = frozenset({"LIN", "NM1", "SVD", "LQ"})


@dataclass(frozen=True, slots=True)
class Converted:
    message: dict[str, Any]
    lines_left_out: int
    icd9_left_out: int
    frequency_code: str


@dataclass(frozen=True, slots=True)
class Failed:
    claim_id: str
    where: str  # "segment 27 SV1"
    message: str
    frequency_code: str


@dataclass(slots=True)
class _Party:
    member_id: str = ""
    payer_id: str = ""
    filing_code: str = ""
    dependent_name: list[str] = field(default_factory=lambda: ["", "", ""])


@dataclass(slots=True)
class _Line:
    lx: Segment
    service: Segment | None = None
    date: Segment | None = None
    authorization: str = ""
    closed: bool = False  # a 2410/2420/2430/2440 loop has begun


@dataclass(slots=True)
class _Claim:
    clm: Segment
    statement: Segment | None = None
    authorization: str = ""
    diagnoses: list[tuple[str, str, Segment]] = field(default_factory=list)  # qualifier, code
    lines: list[_Line] = field(default_factory=list)
    closed: bool = False  # a 2310/2320/2330 loop has begun


def dependent_suffix(last: str, first: str, birth_date: str) -> str:
    key = "|".join(part.strip().upper() for part in (last, first, birth_date))
    return "-D:" + hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:10]


def claim_type_of(version: str) -> str | None:
    if "X222" in version:
        return "professional"
    if "X223" in version:
        return "institutional"
    return None


class Mapper:
    """Maps the claims of one transaction set; keeps no state across sets."""

    def __init__(self, transaction: Transaction, sites: SiteMap, claim_type: str) -> None:
        self.transaction = transaction
        self.sites = sites
        self.claim_type = claim_type
        self.component = transaction.delimiters.component
        self.billing_npi = ""
        self.party = _Party()
        self.level = ""

    def claims(self) -> Iterator[Converted | Failed]:
        claim: _Claim | None = None
        for segment in self.transaction.segments:
            sid = segment.sid
            if sid in ("HL", "CLM", "SE"):
                if claim is not None:
                    yield self._finish(claim)
                    claim = None
                if sid == "HL":
                    self._hierarchy(segment)
                elif sid == "CLM":
                    claim = _Claim(segment)
            elif claim is None:
                self._header(segment)
            else:
                _collect(claim, segment, self.component)

    def _hierarchy(self, hl: Segment) -> None:
        self.level = hl.get(3)
        if self.level == "20":
            self.billing_npi = ""
            self.party = _Party()
        elif self.level == "22":
            self.party = _Party()
        elif self.level == "23":
            self.party.dependent_name = ["", "", ""]

    def _header(self, segment: Segment) -> None:
        sid, level, party = segment.sid, self.level, self.party
        if sid == "NM1":
            entity = segment.get(1)
            if level == "20" and entity == "85":
                self.billing_npi = segment.get(9)
            elif level == "22" and entity == "IL":
                party.member_id = segment.get(9)
            elif level == "22" and entity == "PR":
                party.payer_id = segment.get(9)
            elif level == "23" and entity == "QC":
                party.dependent_name[0:2] = [segment.get(3), segment.get(4)]
        elif sid == "SBR" and level == "22":
            party.filing_code = segment.get(9)
        elif sid == "DMG" and level == "23":
            party.dependent_name[2] = segment.get(2)

    def _finish(self, claim: _Claim) -> Converted | Failed:
        code = components(claim.clm.get(5), self.component)
        frequency_code = code[2] if len(code) > 2 else ""
        try:
            message, left_out, icd9 = self._message(claim, frequency_code)
        except Rejected as rejected:
            where = claim.clm if rejected.segment is None else rejected.segment
            return Failed(
                claim.clm.get(1) or "(no CLM01)",
                f"segment {where.position} {where.sid}",
                rejected.message,
                frequency_code,
            )
        return Converted(message, left_out, icd9, frequency_code)

    def _message(self, claim: _Claim, frequency_code: str) -> tuple[dict[str, Any], int, int]:
        clm, party = claim.clm, self.party
        claim_id = clm.get(1)
        if not claim_id:
            raise Rejected(clm, "CLM01 (the claim number) is empty")
        if not party.member_id:
            raise Rejected(clm, "no subscriber member id (2010BA NM1*IL NM109)")
        codes, icd9_left_out = self._diagnoses(claim)
        frequency = FREQUENCIES.get(frequency_code, "original")
        message: dict[str, Any] = {
            "kind": "claim",
            "claim_id": claim_id,
            "frequency": frequency,
            "patient_id": self._patient_id(),
            "claim_type": self.claim_type,
        }
        if self.claim_type == "professional":
            message["place_of_service"] = self._place_of_service(clm)
        if party.payer_id:
            message["payer_id"] = party.payer_id
        message["payer_type"] = payer_type(party.filing_code)
        carried = [code for code, _ in codes if code]
        if carried:
            message["diagnosis_codes"] = carried
        message["course_id"] = self._course(claim, claim.authorization)
        message["site"] = self.sites.first_site(carried)
        if self.transaction.received_at:
            message["received_at"] = self.transaction.received_at
        lines: list[dict[str, Any]] = []
        by_number: dict[int, _Line] = {}
        left_out = 0
        if frequency != "void":  # a void withdraws the whole claim: no lines
            for line in claim.lines:
                mapped = self._line(claim, line, codes, message)
                if mapped is None:
                    left_out += 1
                    continue
                if mapped["line_number"] in by_number:
                    raise Rejected(line.lx, f"LX01 {mapped['line_number']} appears twice")
                by_number[mapped["line_number"]] = line
                lines.append(mapped)
            if not lines:
                raise Rejected(clm, "no service line with a HCPCS code")
        message["lines"] = lines
        problem = validate(message)
        if problem is not None:
            raise Rejected(_segment_named(problem, by_number, clm), problem)
        return message, left_out, icd9_left_out

    def _patient_id(self) -> str:
        party = self.party
        if self.level == "23":
            return party.member_id + dependent_suffix(*party.dependent_name)
        return party.member_id

    def _place_of_service(self, clm: Segment) -> str:
        parts = components(clm.get(5), self.component)
        if len(parts) < 3 or len(parts[0]) != 2:
            raise Rejected(
                clm,
                f"CLM05 {clm.get(5)!r} is not facility code{self.component}qualifier"
                f"{self.component}frequency with the ISA16 component separator "
                f"{self.component!r}",
            )
        return parts[0]

    def _diagnoses(self, claim: _Claim) -> tuple[list[tuple[str, Segment]], int]:
        """HI codes in order; pointers count them all. A code that SPEC 1 cannot
        carry (numeric ICD-9 under BK/BF) keeps its place with an empty code."""
        codes: list[tuple[str, Segment]] = []
        left_out = 0
        for qualifier, code, segment in claim.diagnoses:
            bare = code.replace(".", "")
            shaped = 3 <= len(bare) <= 7 and bare[0].isalpha() and set(bare) <= _DX_CHARS
            if shaped:
                codes.append((code, segment))
            elif qualifier in ICD9_QUALIFIERS:
                codes.append(("", segment))
                left_out += 1
            else:
                raise Rejected(segment, f"{qualifier} diagnosis {code!r} is not an ICD-10-CM code")
        return codes, left_out

    def _course(self, claim: _Claim, authorization: str) -> str:
        if authorization:
            return authorization
        if self.billing_npi:
            return "NPI:" + self.billing_npi
        raise Rejected(claim.clm, "no prior authorization (REF*G1) and no billing provider NPI")

    def _line(
        self,
        claim: _Claim,
        line: _Line,
        codes: list[tuple[str, Segment]],
        message: dict[str, Any],
    ) -> dict[str, Any] | None:
        service = line.service
        if service is None:
            raise Rejected(line.lx, "a service line without SV1 or SV2")
        number = line_number(line.lx)
        procedure_at = 1 if service.sid == "SV1" else 2
        procedure = components(service.get(procedure_at), self.component)
        ref = f"{service.sid}{procedure_at:02d}"
        if procedure == [""]:
            return None  # an 837I line with only a revenue code
        if procedure[0] not in PRODUCT_QUALIFIERS:
            raise Rejected(
                service,
                f"{ref} {service.get(procedure_at)!r} does not start with a product/service "
                f"qualifier and the ISA16 component separator {self.component!r}",
            )
        if procedure[0] != "HC" or len(procedure) < 2 or not procedure[1]:
            return None  # not a HCPCS code (NDC, HIPPS, ...)
        doc: dict[str, Any] = {
            "line_number": number,
            "hcpcs": procedure[1],
            "date_of_service": self._service_date(claim, line),
        }
        modifiers = [m for m in procedure[2:6] if m]
        if modifiers:
            doc["modifiers"] = modifiers
        units_at = 4 if service.sid == "SV1" else 5
        count = units(service, units_at)
        if count is not None:
            doc["units"] = count
        if service.sid == "SV1":
            pos = service.get(5)
            if pos and pos != message.get("place_of_service"):
                doc["place_of_service"] = pos
        course = self._course(claim, line.authorization or claim.authorization)
        if course != message["course_id"]:
            doc["course_id"] = course
        site = self._site(service, codes)
        if site != message["site"]:
            doc["site"] = site
        return doc

    def _service_date(self, claim: _Claim, line: _Line) -> str:
        dtp = line.date or claim.statement
        if dtp is None:
            raise Rejected(
                line.lx,
                f"line {line.lx.get(1)}: no date of service (no DTP*472 on the line "
                "and no statement dates DTP*434 on the claim)",
            )
        return dtp_date(dtp)

    def _site(self, service: Segment, codes: list[tuple[str, Segment]]) -> str:
        if service.sid == "SV2":  # 837I: the principal diagnosis, then the others
            return self.sites.first_site([code for code, _ in codes if code])
        pointed: list[str] = []
        for pointer in components(service.get(7), self.component):
            if not pointer:
                continue
            if not pointer.isdigit() or not 1 <= int(pointer) <= len(codes):
                raise Rejected(
                    service,
                    f"SV107 diagnosis pointer {pointer!r} does not name one of the claim's "
                    f"{len(codes)} diagnoses",
                )
            code = codes[int(pointer) - 1][0]
            if code:
                pointed.append(code)
        return self.sites.first_site(pointed)


def validate(message: dict[str, Any]) -> str | None:
    """Why the claim message breaks SPEC 1/1.1, or None: the processor's own
    parser (stream_app.core.events) reads it as the worker and replay will, every
    line with the claim's values filled in."""
    try:
        raw = orjson.dumps(message)
    except orjson.JSONEncodeError:
        return "a value is not UTF-8 text"
    parsed = parse_event(raw)
    if isinstance(parsed, Invalid):
        return f"fails SPEC 1: {parsed.detail}"
    return None


def _segment_named(problem: str, lines: dict[int, _Line], clm: Segment) -> Segment:
    """The service segment of the line a SPEC 1 problem names, else the CLM."""
    _, _, rest = problem.partition("line_number ")
    number = rest.partition(":")[0]
    line = lines.get(int(number)) if number.isdigit() else None
    if line is None:
        return clm
    return line.service or line.lx


def _collect(claim: _Claim, segment: Segment, component: str) -> None:
    """Keep what the mapping reads from a segment inside a CLM loop."""
    sid = segment.sid
    if sid == "LX":
        claim.lines.append(_Line(segment))
        return
    if claim.lines:
        line = claim.lines[-1]
        if sid in _LINE_LOOP_STARTS:
            line.closed = True
        elif line.closed:
            return
        elif sid in ("SV1", "SV2") and line.service is None:
            line.service = segment
        elif sid == "DTP" and segment.get(1) == "472":
            line.date = segment
        elif sid == "REF" and segment.get(1) == "G1":
            line.authorization = segment.get(2)
        return
    if sid in ("NM1", "SBR"):
        claim.closed = True
    elif claim.closed:
        return
    elif sid == "DTP" and segment.get(1) == "434":
        claim.statement = segment
    elif sid == "REF" and segment.get(1) == "G1":
        claim.authorization = segment.get(2)
    elif sid == "HI":
        for element in segment.elements[1:]:
            parts = element.split(component)
            if len(parts) > 1 and parts[0].strip() in DX_QUALIFIERS:
                claim.diagnoses.append((parts[0].strip(), parts[1].strip().upper(), segment))
