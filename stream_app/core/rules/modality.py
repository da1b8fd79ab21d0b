"""Guidance that the treatment modality does not support."""

from __future__ import annotations

from collections.abc import Iterator

from stream_app.core import codes
from stream_app.core.rules import citations
from stream_app.core.rules.base import (
    FINAL,
    PROVISIONAL_UNTIL_CLOSED,
    DayView,
    Violation,
    evidence_of,
    modality_conflict,
    rule,
)

_SKIN_GUIDANCE = (codes.IGRT, codes.ULTRASOUND)
_GUIDANCE_WITH_MODALITIES = (codes.IGRT, codes.ULTRASOUND, codes.STEREOSCOPIC, codes.CT_GUIDANCE)


@rule(
    "igrt-superficial-skin",
    title="IGRT for superficial therapy of skin cancer or keloid",
    severity="deny",
    carc="50",
    citation=citations.STANDARDS_77387,
    finality=FINAL,
    applies_to=_SKIN_GUIDANCE,
    course_facts=True,
    uses=codes.DELIVERY_CODES,
)
def igrt_superficial_skin(day: DayView) -> Iterator[Violation]:
    """77387 and G6001 are not medically necessary when superficial radiation
    therapy treats skin cancer (C43, C44, D03, D04) or keloids (L91.0)."""
    for line in day.coded(*_SKIN_GUIDANCE):
        course = day.course(line.course_id)
        if codes.SUPERFICIAL not in course.modalities:
            continue
        if course.has_skin_dx or line.has_skin_or_keloid_dx():
            superficial_today = [
                other for other in day.lines if other.delivery_modality() == codes.SUPERFICIAL
            ]
            yield Violation(
                "igrt-superficial-skin",
                line.key,
                f"{line.hcpcs} is not medically necessary with superficial radiation therapy "
                f"for skin cancer or keloid",
                None,
                evidence_of(superficial_today),
            )


@rule(
    "igrt-modality",
    title="Guidance code not used with this modality",
    severity="review",
    carc="50",
    citation=citations.STANDARDS_77387,
    finality=PROVISIONAL_UNTIL_CLOSED,
    applies_to=_GUIDANCE_WITH_MODALITIES,
    course_facts=True,
    uses=codes.DELIVERY_CODES,
    held_while="no-delivery",
)
def igrt_modality(day: DayView) -> Iterator[Violation]:
    """77387 goes with 2DCRT, 3DCRT, IMRT, PBT and superficial; G6001 with
    2DCRT, 3DCRT and superficial; G6002 with 3DCRT and IMRT; 77014 with 2DCRT,
    3DCRT and IMRT."""
    for line in day.coded(*_GUIDANCE_WITH_MODALITIES):
        allowed = codes.ALLOWED_MODALITIES[line.hcpcs]
        modalities = day.line_modalities(line)
        if modality_conflict(modalities, allowed):
            yield Violation(
                "igrt-modality",
                line.key,
                f"{line.hcpcs} is used with {'/'.join(sorted(allowed))}, not with "
                f"{'/'.join(sorted(modalities))} delivery",
            )
