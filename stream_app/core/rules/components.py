"""Professional and technical components: who may bill which part, where."""

from __future__ import annotations

from collections.abc import Iterator

from stream_app.core import codes
from stream_app.core.rules import citations
from stream_app.core.rules.base import FINAL, DayView, Violation, rule

_PC_REQUIRED_IN_HOSPITAL = (codes.CT_GUIDANCE, codes.IGRT, codes.STEREOSCOPIC)


@rule(
    "igrt-pc-modifier-hospital",
    title="Professional guidance from a hospital outpatient department without modifier 26",
    severity="deny",
    carc="4",
    citation=citations.CBCT_77014,
    finality=FINAL,
    applies_to=_PC_REQUIRED_IN_HOSPITAL,
)
def igrt_pc_modifier_hospital(day: DayView) -> Iterator[Violation]:
    """A physician billing professionally from a hospital outpatient department
    (POS 19 or 22) bills the professional component, modifier 26, of 77014,
    77387 and G6002."""
    for line in day.coded(*_PC_REQUIRED_IN_HOSPITAL):
        if (
            line.claim_type == "professional"
            and line.place_of_service in codes.HOSPITAL_OUTPATIENT_POS
            and codes.PC_MODIFIER not in line.modifiers
        ):
            yield Violation(
                "igrt-pc-modifier-hospital",
                line.key,
                f"{line.hcpcs} on a professional claim from hospital outpatient POS "
                f"{line.place_of_service} needs modifier 26",
            )


@rule(
    "ultrasound-guidance-hopps",
    title="Ultrasound guidance billed by a hospital outpatient department",
    severity="deny",
    carc="97",
    citation=citations.ULTRASOUND_G6001,
    finality=FINAL,
    applies_to=[codes.ULTRASOUND],
)
def ultrasound_guidance_hopps(day: DayView) -> Iterator[Violation]:
    """Under HOPPS the technical component of G6001 is bundled with the delivery codes."""
    for line in day.coded(codes.ULTRASOUND):
        if line.claim_type == "institutional":
            yield Violation(
                "ultrasound-guidance-hopps",
                line.key,
                "G6001 on an institutional claim: its technical component is bundled "
                "with treatment delivery under HOPPS",
            )


@rule(
    "igrt-77387-pc-not-accepted",
    title="77387 professional component billed to a payer that does not accept it",
    severity="deny",
    carc="96",
    citation=citations.IGRT_77387,
    finality=FINAL,
    applies_to=[codes.IGRT],
)
def igrt_77387_pc_not_accepted(day: DayView) -> Iterator[Violation]:
    """Before 2026 some payers (Medicare by default) do not accept 77387-26;
    the physician bills G6001, G6002, G6017 or 77014-26 instead."""
    for line in day.coded(codes.IGRT):
        if (
            line.date_of_service < codes.IGRT_2026_CHANGE
            and line.components()[0]
            and not day.profile(line).accepts_77387_pc(line.payer_type)
        ):
            yield Violation(
                "igrt-77387-pc-not-accepted",
                line.key,
                "this payer does not accept 77387 billed professionally; bill G6001 "
                "(ultrasound), G6002 (stereoscopic X-ray), G6017 (intrafraction) or "
                "77014-26 (cone-beam CT) instead",
            )


@rule(
    "igrt-tc-2026",
    title="77387 technical component from 2026",
    severity="deny",
    carc="97",
    citation=citations.IGRT_77387,
    finality=FINAL,
    applies_to=[codes.IGRT],
)
def igrt_tc_2026(day: DayView) -> Iterator[Violation]:
    """From 2026-01-01 77387 is professional only; a technical component
    (modifier TC, an institutional claim, or a global line) is not billable."""
    for line in day.coded(codes.IGRT):
        if line.date_of_service >= codes.IGRT_2026_CHANGE and line.components()[1]:
            yield Violation(
                "igrt-tc-2026",
                line.key,
                f"77387 is professional-only from {codes.IGRT_2026_CHANGE}; its technical "
                f"component is not billable on {line.date_of_service}",
            )
