"""Edits of a built course, all clean (no alert once the stream is folded):
duplicates, corrections, late voids, void-and-reinstate and rebilled
deliveries, as a payer's intake sees them: each is received some days after
the submission of the line it repeats, corrects or voids. `EPISODES` names
them."""

from __future__ import annotations

from typing import Final

from stream_app.synth.catalog import PROF
from stream_app.synth.course import Course, Doc, Injector, pick


def _e_duplicate(c: Course) -> bool:
    day, order, doc = c.rng.choice([e for e in c.events if "hcpcs" in e[2]])
    copy = dict(doc, received_at=c.after(doc, 1, 14))
    c.events.append((day, order + 0.5, copy))
    return True


def _e_correction(c: Course) -> bool:
    day, order, doc = c.rng.choice([e for e in c.events if "hcpcs" in e[2]])
    corrected = dict(
        doc,
        diagnosis_codes=[*doc["diagnosis_codes"], "Z79.899"],
        received_at=c.after(doc, 3, 20),
    )
    c.events.append((day, order + 0.5, corrected))
    return True


def _voidable(c: Course) -> list[tuple[int, float, Doc]]:
    deliveries = {id(doc) for doc in c.delivery.values()}
    return [e for e in c.events if "hcpcs" in e[2] and id(e[2]) not in deliveries]


def _void_of(doc: Doc, with_date: bool, received_at: str) -> Doc:
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
    void["received_at"] = received_at
    return void


def _e_late_void(c: Course) -> bool:
    """A guidance, port-image, planning or management line withdrawn days later
    (identity only: no date of service)."""
    day, _, doc = c.rng.choice(_voidable(c))
    later = day + c.rng.randint(1, 6)
    void = _void_of(doc, False, c.after(doc, 1, 10))
    c.events.append((later, float(len(c.events)) + 1000.0, void))
    return True


def _e_void_reinstate(c: Course) -> bool:
    day, order, doc = c.rng.choice(_voidable(c))
    void = _void_of(doc, True, c.after(doc, 1, 10))
    c.events.append((day, order + 0.3, void))
    c.events.append((day, order + 0.6, dict(doc, received_at=c.after(void, 1, 3))))
    return True


def _e_rebill(c: Course) -> bool:
    """A delivery line re-billed on a new line, then the old line voided."""
    day = pick(c, list(c.delivery))
    if day is None:
        return False
    doc = c.delivery[day]
    order = c.order_of(doc)
    claim = c.claim(day, doc["claim_type"] == PROF)
    received_at = c.after(doc, 1, 10)  # the new line, then the void of the old one
    rebilled = dict(doc, line_number=claim.next_line, received_at=received_at)
    claim.next_line += 1
    c.events.append((day, order + 0.3, rebilled))
    c.events.append((day, order + 0.6, _void_of(doc, True, received_at)))
    c.delivery[day] = rebilled
    return True


EPISODES: Final[dict[str, Injector]] = {
    "duplicate": _e_duplicate,
    "correction": _e_correction,
    "late-void": _e_late_void,
    "void-reinstate": _e_void_reinstate,
    "rebill-delivery": _e_rebill,
}
