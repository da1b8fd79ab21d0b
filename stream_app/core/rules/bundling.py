"""Bundling: guidance that is part of another service billed the same day."""

from __future__ import annotations

from collections.abc import Iterator

from stream_app.core import codes
from stream_app.core.rules import citations
from stream_app.core.rules.base import FINAL, DayView, Violation, evidence_of, rule


@rule(
    "ct-guidance-with-simulation",
    title="CT guidance on the same day as a simulation",
    severity="deny",
    carc="97",
    citation=citations.CBCT_77014,
    finality=FINAL,
    applies_to=[codes.CT_GUIDANCE],
    uses=codes.SIMULATION_CODES,
)
def ct_guidance_with_simulation(day: DayView) -> Iterator[Violation]:
    """77014 billed with a simulation (77280-77290) or a 3-D simulation-aided
    field setting (77295) is a bundled part of it, on any date."""
    simulations = day.coded(*sorted(codes.SIMULATION_CODES))
    if not simulations:
        return
    for line in day.coded(codes.CT_GUIDANCE):
        yield Violation(
            "ct-guidance-with-simulation",
            line.key,
            f"77014 on {day.date_of_service} is bundled into the simulation "
            f"({', '.join(sorted({s.hcpcs for s in simulations}))}) billed the same day",
            None,
            evidence_of(simulations),
        )


@rule(
    "igrt-tc-with-imrt",
    title="IGRT technical component on an IMRT delivery day",
    severity="deny",
    carc="97",
    citation=citations.IGRT_77387,
    finality=FINAL,
    applies_to=[codes.IGRT],
    uses=codes.IMRT_DELIVERY_CODES,
)
def igrt_tc_with_imrt(day: DayView) -> Iterator[Violation]:
    """The technical component of 77387 is bundled with IMRT delivery
    (77385, 77386, G6015, G6016) on the same date of service."""
    imrt = day.coded(*sorted(codes.IMRT_DELIVERY_CODES))
    if not imrt:
        return
    for line in day.coded(codes.IGRT):
        if line.components()[1]:
            yield Violation(
                "igrt-tc-with-imrt",
                line.key,
                f"the technical component of 77387 is bundled with IMRT delivery "
                f"({', '.join(sorted({d.hcpcs for d in imrt}))}) on {day.date_of_service}",
                None,
                evidence_of(imrt),
            )
