"""Alert transitions: the memo of each alert against what rules find now
(SPEC 2). An alert is re-sent only when its status, finality, excess units or
evidence change."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from stream_app.core.context import Context
from stream_app.core.model import DayState, Evidence, Line, LineKey, Memo
from stream_app.core.profiles import Profile
from stream_app.core.rules import FINAL, RuleSpec, Violation
from stream_app.core.rules.base import CourseView

PROVISIONAL = "provisional"


class Transition(NamedTuple):
    """One alert message to emit: an alert opened, changed or resolved."""

    spec: RuleSpec
    line: Line
    status: str  # "open" | "resolved"
    finality: str
    excess_units: int | None
    evidence: Evidence
    message: str
    sequence: int
    profile: Profile


def resolved_message(spec: RuleSpec, line: Line) -> str:
    return (
        f"resolved: {spec.title.lower()} no longer applies to {line.hcpcs} "
        f"on {line.date_of_service}"
    )


def diff(
    context: Context,
    course_view: Callable[[str, str], CourseView],
    day: DayState,
    key: LineKey,
    violations: dict[str, Violation],
    only: frozenset[str] | None,
) -> list[Transition]:
    memos = day.memos.get(key, {})
    line = day.lines.get(key) or day.voided.get(key)
    if line is None:  # only resolved memos can be left without their line
        return []
    profile = context.profile_of(line.payer_id, line.payer_type)
    specs = context.registry.specs
    updated = dict(memos)
    transitions: list[Transition] = []
    for rule_id, violation in violations.items():
        spec = specs[rule_id]
        closed = spec.finality == FINAL or course_view(line.course_id, line.site).closed
        finality = FINAL if closed else PROVISIONAL
        memo = memos.get(rule_id)
        if (
            memo is not None
            and memo.is_open
            and (memo.finality, memo.excess_units, memo.evidence)
            == (finality, violation.excess_units, violation.evidence)
        ):
            continue
        sequence = memo.sequence + 1 if memo else 1
        updated[rule_id] = Memo(
            sequence, True, finality, violation.excess_units, violation.evidence
        )
        transitions.append(
            Transition(
                spec,
                line,
                "open",
                finality,
                violation.excess_units,
                violation.evidence,
                violation.message,
                sequence,
                profile,
            )
        )
    for rule_id, memo in memos.items():
        if only is not None and rule_id not in only:
            continue
        if memo.is_open and rule_id not in violations:
            spec = specs[rule_id]
            updated[rule_id] = memo._replace(sequence=memo.sequence + 1, is_open=False)
            transitions.append(
                Transition(
                    spec,
                    line,
                    "resolved",
                    memo.finality,
                    memo.excess_units,
                    memo.evidence,
                    resolved_message(spec, line),
                    memo.sequence + 1,
                    profile,
                )
            )
    if transitions:
        day.memos[key] = updated
    return transitions
