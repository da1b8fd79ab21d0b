"""Port images (77417): technical only, one unit per five fractions, never with
IGRT or a verification simulation on the same day, and not for every modality."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from stream_app.core import codes
from stream_app.core.model import Line, LineKey
from stream_app.core.rules import citations
from stream_app.core.rules.base import (
    FINAL,
    PROVISIONAL_UNTIL_CLOSED,
    DayView,
    Violation,
    evidence_of,
    latest_excess,
    modality_conflict,
    plural,
    rule,
    units_over,
)


@rule(
    "port-image-professional",
    title="Port images billed with a professional component",
    severity="deny",
    carc="4",
    citation=citations.PORT_IMAGES_77417,
    finality=FINAL,
    applies_to=[codes.PORT_IMAGE],
)
def port_image_professional(day: DayView) -> Iterator[Violation]:
    """77417 is technical only: modifier 26 is never billable on it."""
    for line in day.coded(codes.PORT_IMAGE):
        if codes.PC_MODIFIER in line.modifiers:
            yield Violation(
                "port-image-professional",
                line.key,
                "77417 port images have no professional component; modifier 26 is not billable",
            )


@rule(
    "port-image-units-per-day",
    title="More than one unit of port images on one day",
    severity="deny",
    carc="151",
    citation=citations.STANDARDS_77417,
    finality=FINAL,
    applies_to=[codes.PORT_IMAGE],
)
def port_image_units_per_day(day: DayView) -> Iterator[Violation]:
    """77417 is billable as a quantity of one, however many images were taken."""
    port_lines = day.coded(codes.PORT_IMAGE)
    return units_over(
        "port-image-units-per-day",
        port_lines,
        1,
        lambda total: (
            f"{plural(total, 'port-image unit')} on {day.date_of_service}; 1 allowed per day"
        ),
        port_lines,
    )


@rule(
    "port-image-frequency",
    title="Port images billed more often than once per five fractions",
    severity="deny",
    carc="151",
    citation=citations.STANDARDS_77417,
    finality=PROVISIONAL_UNTIL_CLOSED,
    applies_to=[codes.PORT_IMAGE],
    port_units=True,
    uses=codes.DELIVERY_CODES,
    held_while="always",
)
def port_image_frequency(day: DayView) -> Iterator[Violation]:
    """77417 may be billed once for each five fractions of the course: 14
    fractions allow 2 units. Until the course closes the allowance is rounded
    up, since later fractions may still be billed."""
    by_course: dict[str, list[Line]] = {}
    for line in day.coded(codes.PORT_IMAGE):
        by_course.setdefault(line.course_id, []).append(line)
    for course_id, lines_today in by_course.items():
        course = day.course(course_id)
        excess = frequency_excess(course.port_lines, course.fractions, course.closed)
        if not excess:
            continue
        total = sum(units for *_, units in course.port_lines)
        allowed = allowance(course.fractions, course.closed)
        for line in lines_today:
            if line.key not in excess:
                continue
            evidence = tuple(
                sorted(
                    (claim, number, codes.PORT_IMAGE, date)
                    for date, claim, number, _ in course.port_lines
                    if (claim, number) != line.key
                )
            )
            yield Violation(
                "port-image-frequency",
                line.key,
                f"{plural(total, 'port-image unit')} for {plural(course.fractions, 'fraction')}; "
                f"{allowed} allowed",
                excess[line.key],
                evidence,
            )


def allowance(fractions: int, closed: bool) -> int:
    """Port-image units a course of `fractions` allows: rounded down once the
    course is closed, up while later fractions may still come."""
    per = codes.FRACTIONS_PER_PORT_IMAGE
    return fractions // per if closed else -(-fractions // per)


def frequency_excess(
    port_lines: Iterable[tuple[str, str, int, int]], fractions: int, closed: bool
) -> dict[LineKey, int]:
    """The port-image units beyond the course's allowance, by line (the
    latest lines in SPEC order hold them); `port_lines` are (date, claim,
    line, units). The engine uses it too, to re-check only the lines whose
    outcome can change."""
    held = sorted(port_lines)
    total = sum(units for *_, units in held)
    allowed = allowance(fractions, closed)
    if total <= allowed:
        return {}
    return latest_excess([((c, n), u) for _, c, n, u in held], total - allowed)


def _port_images_with(
    day: DayView, rule_id: str, other_code: str, other_name: str
) -> Iterator[Violation]:
    others = day.coded(other_code)
    if not others:
        return
    for line in day.coded(codes.PORT_IMAGE):
        yield Violation(
            rule_id,
            line.key,
            f"77417 port images are not billable on the same day as {other_code} ({other_name}) "
            f"for the same site",
            None,
            evidence_of(others),
        )


@rule(
    "port-image-with-igrt",
    title="Port images on the same day as IGRT",
    severity="deny",
    carc="97",
    citation=citations.STANDARDS_77417,
    finality=FINAL,
    applies_to=[codes.PORT_IMAGE],
    uses=[codes.IGRT],
)
def port_image_with_igrt(day: DayView) -> Iterator[Violation]:
    """Port images are not billable on the same date and site as 77387."""
    return _port_images_with(day, "port-image-with-igrt", codes.IGRT, "IGRT")


@rule(
    "port-image-with-verification-sim",
    title="Port images on the same day as a verification simulation",
    severity="deny",
    carc="97",
    citation=citations.STANDARDS_77417,
    finality=FINAL,
    applies_to=[codes.PORT_IMAGE],
    uses=[codes.VERIFICATION_SIMULATION],
)
def port_image_with_verification_sim(day: DayView) -> Iterator[Violation]:
    """Port images are not billable on the same date and site as 77280."""
    return _port_images_with(
        day,
        "port-image-with-verification-sim",
        codes.VERIFICATION_SIMULATION,
        "verification simulation",
    )


@rule(
    "port-image-modality",
    title="Port images with a modality that does not allow them",
    severity="deny",
    carc="97",
    citation=citations.STANDARDS_77417,
    finality=PROVISIONAL_UNTIL_CLOSED,
    applies_to=[codes.PORT_IMAGE],
    course_facts=True,
    uses=codes.DELIVERY_CODES,
    held_while="no-delivery",
)
def port_image_modality(day: DayView) -> Iterator[Violation]:
    """Port images are not billable for brachytherapy, electron beam, IORT, SBRT or SRS."""
    allowed = codes.ALLOWED_MODALITIES[codes.PORT_IMAGE]
    for line in day.coded(codes.PORT_IMAGE):
        modalities = day.line_modalities(line)
        if modality_conflict(modalities, allowed):
            yield Violation(
                "port-image-modality",
                line.key,
                f"77417 port images are not billable with {'/'.join(sorted(modalities))} delivery",
            )
