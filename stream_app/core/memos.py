"""Alert transitions: the memo of each alert against what rules find now
(SPEC 2). An alert is re-sent only when its status, finality, excess units or
evidence change; a violation of a held rule is kept unpublished while its hold
lasts (SPEC 4.1, core/holds.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from stream_app.core.context import Context
from stream_app.core.holds import DayHolds
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
    holds: DayHolds,
) -> tuple[list[Transition], bool]:
    """The messages the line's current violations call for, and whether its
    memos changed (a hold started, moved, cured or published counts too)."""
    memos = day.memos.get(key, {})
    line = day.lines.get(key) or day.voided.get(key)
    if line is None:  # only resolved memos can be left without their line
        return [], False
    profile = context.profile_of(line.payer_id, line.payer_type)
    specs = context.registry.specs
    counts = context.holds
    updated = dict(memos)
    transitions: list[Transition] = []
    changed = False
    for rule_id, violation in violations.items():
        spec = specs[rule_id]
        course_closed = course_view(line.course_id, line.site).closed
        finality = FINAL if spec.finality == FINAL or course_closed else PROVISIONAL
        memo = memos.get(rule_id)
        if spec.held_while is not None and (memo is None or memo.is_held):
            until = holds.until(line, profile)
            if holds.holding(spec.held_while, until):
                held = Memo(0, False, finality, violation.excess_units, violation.evidence, until)
                if memo != held:
                    updated[rule_id] = held
                    changed = True
                    if memo is None:
                        counts.started[rule_id] += 1
                continue
            if memo is not None:
                counts.published[rule_id] += 1
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
        changed = True
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
        if (only is not None and rule_id not in only) or rule_id in violations:
            continue
        if memo.is_held:  # cured while held: nothing was, or will be, published
            del updated[rule_id]
            changed = True
            counts.cured[rule_id] += 1
        elif memo.is_open:
            spec = specs[rule_id]
            updated[rule_id] = memo._replace(sequence=memo.sequence + 1, is_open=False)
            changed = True
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
    if changed:
        if updated:
            day.memos[key] = updated
        else:  # only held memos, all cured: the line leaves no trace
            day.memos.pop(key, None)
            day.voided.pop(key, None)
    return transitions, changed
