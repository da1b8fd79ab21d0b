"""Compact byte encodings of engine state for changelog-backed tables.

Values are lists rather than objects to keep changelog records small.
"""

from __future__ import annotations

from typing import Any

import orjson

from stream_app.core.model import (
    CourseRef,
    CourseState,
    CourseStatus,
    DayState,
    Line,
    LineLocation,
    Memo,
    PatientState,
)


def _line_fields(line: Line) -> list[Any]:
    return [
        line.patient_id,
        line.course_id,
        line.site,
        line.claim_id,
        line.line_number,
        line.date_of_service,
        line.hcpcs,
        list(line.modifiers),
        line.units,
        line.claim_type,
        line.place_of_service,
        line.payer_id,
        line.payer_type,
        list(line.diagnosis_codes),
        line.modality,
    ]


def _line(fields: list[Any]) -> Line:
    fields[7] = tuple(fields[7])
    fields[13] = tuple(fields[13])
    return Line(*fields)


def _evidence(raw: list[list[Any]]) -> tuple[tuple[str, int, str, str], ...]:
    return tuple((e[0], e[1], e[2], e[3]) for e in raw)


def encode_day(day: DayState) -> bytes:
    return orjson.dumps(
        {
            "l": [_line_fields(line) for line in day.lines.values()],
            "m": [
                [claim, number, {rid: list(memo) for rid, memo in memos.items()}]
                for (claim, number), memos in day.memos.items()
            ],
            "v": [_line_fields(line) for line in day.voided.values()],
        }
    )


def decode_day(raw: bytes) -> DayState:
    doc = orjson.loads(raw)
    lines = (_line(fields) for fields in doc["l"])
    return DayState(
        lines={line.key: line for line in lines},
        memos={
            (claim, number): {
                rid: Memo(m[0], m[1], m[2], m[3], _evidence(m[4]), m[5] if len(m) > 5 else 0)
                for rid, m in memos.items()
            }
            for claim, number, memos in doc["m"]
        },
        voided={line.key: line for line in (_line(fields) for fields in doc["v"])},
    )


def encode_course(course: CourseState) -> bytes:
    return orjson.dumps(
        {
            "d": course.dates,
            "f": course.fractions,
            "m": course.modalities,
            "s": course.skin_lines,
            "p": [[c, n, d, u] for (c, n), (d, u) in course.port_lines.items()],
        }
    )


def decode_course(raw: bytes) -> CourseState:
    doc = orjson.loads(raw)
    return CourseState(
        dates=doc["d"],
        fractions=doc["f"],
        modalities=doc["m"],
        skin_lines=doc["s"],
        port_lines={(c, n): (d, u) for c, n, d, u in doc["p"]},
    )


def encode_patient(patient: PatientState) -> bytes:
    return orjson.dumps(
        {
            "w": patient.watermark,
            "c": [[ref.course_id, ref.site, *status] for ref, status in patient.courses.items()],
            "h": [[site, day, until] for (site, day), until in patient.holds.items()],
        }
    )


def decode_patient(raw: bytes) -> PatientState:
    doc = orjson.loads(raw)
    return PatientState(
        watermark=doc["w"],
        courses={CourseRef(c[0], c[1]): CourseStatus(*c[2:]) for c in doc["c"]},
        holds={(h[0], h[1]): h[2] for h in doc.get("h", ())},
    )


def encode_claim_locations(locations: dict[int, LineLocation]) -> bytes:
    """Where each line of one claim lives, by line number."""
    return orjson.dumps({str(number): list(where) for number, where in locations.items()})


def decode_claim_locations(raw: bytes) -> dict[int, LineLocation]:
    return {int(number): LineLocation(*where) for number, where in orjson.loads(raw).items()}
