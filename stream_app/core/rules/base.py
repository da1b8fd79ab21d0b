"""What a rule sees and what it returns. Nothing here knows about Kafka."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from stream_app.core import codes
from stream_app.core.model import Evidence, Line, LineKey
from stream_app.core.profiles import Profile

Severity = Literal["deny", "review"]
# SPEC 4.1: while a violation of the rule is held (kept in state, unpublished).
HeldWhile = Literal["always", "no-delivery"]
FINAL: Literal["final"] = "final"
PROVISIONAL_UNTIL_CLOSED: Literal["provisional"] = "provisional"


@dataclass(frozen=True, slots=True)
class RuleSpec:
    rule_id: str
    title: str
    severity: Severity
    carc: str
    citation: str  # heading of the standard's section the rule comes from
    finality: Literal["final", "provisional"]  # "provisional": until the course closes
    doc: str
    applies_to: frozenset[str]  # codes of the lines the rule can alert on
    course_facts: bool  # reads the course's modalities or diagnoses
    port_units: bool  # reads the course's fractions and port-image units
    uses: frozenset[str] = frozenset()  # other codes it reads (evidence, fractions, ...)
    # Judges the lines whose code is deleted on their date (DayView.deleted);
    # every other rule never sees them.
    on_deleted: bool = False
    # SPEC 4.1: a violation a claim still expected could cure is held while
    # this holds (and for at most hold_days); None: published at once.
    held_while: HeldWhile | None = None

    @property
    def codes(self) -> frozenset[str]:
        """Every code the rule names; the code data must know each of them."""
        return self.applies_to | self.uses


class Violation(NamedTuple):
    rule_id: str
    key: LineKey
    message: str
    excess_units: int | None = None
    evidence: Evidence = ()


@dataclass(frozen=True, slots=True)
class CourseView:
    modalities: frozenset[str]
    fractions: int
    closed: bool
    has_skin_dx: bool
    port_lines: tuple[tuple[str, str, int, int], ...]  # (date, claim, line, units), sorted


@dataclass(slots=True)
class DayView:
    """One patient, site and date of service: its lines and what rules ask of it.

    `lines` and `by_code` hold only the lines whose code is billable on their
    date; a line whose code is deleted on its date is in `deleted` (with the
    code's last entry) and nowhere else, except that a deleted delivery code
    still counts in `fractions` and `modalities` (SPEC 6, deleted-code).
    """

    date_of_service: str
    lines: Sequence[Line]  # ordered by (date_of_service, claim_id, line_number)
    by_code: dict[str, list[Line]]
    fractions: int
    modalities: frozenset[str]
    has_delivery: bool
    course: Callable[[str], CourseView]
    profile: Callable[[Line], Profile]
    deleted: Sequence[tuple[Line, codes.CodeEntry]] = ()

    def coded(self, *hcpcs: str) -> list[Line]:
        found: list[Line] = []
        for code in hcpcs:
            found.extend(self.by_code.get(code, ()))
        return found

    def has_any(self, hcpcs: Iterable[str]) -> bool:
        return any(code in self.by_code for code in hcpcs)

    def line_modalities(self, line: Line) -> frozenset[str]:
        """SPEC 3.2: the day's modalities if the day has a delivery, else the course's."""
        if self.has_delivery:
            return self.modalities
        return self.course(line.course_id).modalities


CheckFn = Callable[[DayView], Iterator[Violation]]


@dataclass(frozen=True, slots=True)
class Rule:
    spec: RuleSpec
    check: CheckFn


def rule(
    rule_id: str,
    *,
    title: str,
    severity: Severity,
    carc: str,
    citation: str,
    finality: Literal["final", "provisional"],
    applies_to: Iterable[str],
    course_facts: bool = False,
    port_units: bool = False,
    uses: Iterable[str] = (),
    on_deleted: bool = False,
    held_while: HeldWhile | None = None,
) -> Callable[[CheckFn], Rule]:
    """Declare a rule; the function's docstring says what it checks.

    `applies_to` lists the codes of the lines the rule can alert on: the
    engine runs a rule only on days that bill one of them. `uses` lists the
    other codes it reads (as evidence, for fractions or modalities), so that
    the registry can check them against the code data. An `on_deleted` rule
    runs on days with a line whose code is deleted on its date. A rule with
    `held_while` has its violations held while that condition holds (SPEC 4.1):
    "always" or "no-delivery" (the line's day has no delivery yet).
    """

    def declare(check: CheckFn) -> Rule:
        doc = (check.__doc__ or "").strip()
        spec = RuleSpec(
            rule_id,
            title,
            severity,
            carc,
            citation,
            finality,
            doc,
            frozenset(applies_to),
            course_facts,
            port_units,
            frozenset(uses),
            on_deleted,
            held_while,
        )
        return Rule(spec, check)

    return declare


def evidence_of(lines: Iterable[Line], exclude: Line | None = None) -> Evidence:
    return tuple(
        sorted(
            (line.claim_id, line.line_number, line.hcpcs, line.date_of_service)
            for line in lines
            if line is not exclude
        )
    )


def latest_excess(holdings: Sequence[tuple[LineKey, int]], excess: int) -> dict[LineKey, int]:
    """Spread `excess` units over the latest holdings (already in SPEC order)."""
    assigned: dict[LineKey, int] = {}
    for key, units in reversed(holdings):
        if excess <= 0:
            break
        taken = min(units, excess)
        assigned[key] = taken
        excess -= taken
    return assigned


def units_over(
    rule_id: str,
    holders: Sequence[Line],
    allowed: int,
    message: Callable[[int], str],
    context: Sequence[Line],
) -> Iterator[Violation]:
    """Alerts on the latest units of `holders` beyond `allowed` (SPEC 6);
    `message` gets the total units, `context` lines become the evidence."""
    total = sum(line.units for line in holders)
    if total <= allowed:
        return
    excess = latest_excess([(line.key, line.units) for line in holders], total - allowed)
    text = message(total)
    for line in holders:
        if line.key in excess:
            yield Violation(
                rule_id, line.key, text, excess[line.key], evidence_of(context, exclude=line)
            )


def modality_conflict(modalities: frozenset[str], allowed: frozenset[str]) -> bool:
    """SPEC 3.2: non-empty, no unknown external beam, nothing in common."""
    return (
        bool(modalities)
        and codes.UNKNOWN_EXTERNAL not in modalities
        and modalities.isdisjoint(allowed)
    )


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
