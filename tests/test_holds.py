"""Holds (SPEC 4.1): a violation that a claim still expected could cure is
kept in state, unpublished, while its rule's condition holds and for at most
`hold_days` of event time past its line's date of service.

For each held rule: held then cured (no message at all), held then expired
(opens provisional), expired after its course closed (opens final), published
then cured (resolved), `hold_days = 0` (today's messages) and, for the
modality rules, the day's delivery arriving (the hold ends at once). Then the
rules that are not held, and property tests over the order of claims."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import DAY, Run, cl, delivery, end, void
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.core.alerts import fold
from stream_app.core.engine import Engine, EngineSettings
from stream_app.core.events import Invalid, parse_event
from stream_app.core.profiles import DEFAULT_HOLD_DAYS, ProfileBook
from stream_app.core.rules import load_registry
from stream_app.core.store import MemoryStore

REGISTRY = load_registry()
HELD_RULES = {
    "igrt-without-fraction",
    "igrt-modality",
    "port-image-modality",
    "port-image-frequency",
}


def plus(iso: str, days: int) -> str:
    return (date.fromisoformat(iso) + timedelta(days=days)).isoformat()


D1 = plus(DAY, 1)  # the held line's date in the modality scenarios


def clock(to: str) -> dict[str, Any]:
    """A line of another patient: moves event time to `to`, nothing else."""
    return delivery("T", 1, to, patient="P-CLOCK", course="K", site="brain")


@dataclass(frozen=True)
class Scenario:
    rule_id: str
    line: tuple[str, int]  # the (claim, line) the alert is on
    setup: tuple[dict[str, Any], ...]  # violation held after these
    cure: tuple[dict[str, Any], ...]  # a later claim that cures it
    on: str  # the held line's date of service


SCENARIOS = [
    Scenario(
        "igrt-without-fraction",
        ("B", 1),
        (delivery("A", 1, plus(DAY, -1)), cl("B", 1, "77387", DAY, mods=["26"])),
        (delivery("H", 1, DAY, ctype="institutional"),),
        DAY,
    ),
    Scenario(
        "igrt-modality",
        ("B", 1),
        (delivery("A", 1, DAY, code="77373", modality=None), cl("B", 1, "77387", D1, mods=["26"])),
        (delivery("H", 1, D1, modality="3DCRT", ctype="institutional"),),
        D1,
    ),
    Scenario(
        "port-image-modality",
        ("B", 1),
        (delivery("A", 1, DAY, code="77373", modality=None), cl("B", 1, "77417", D1)),
        (delivery("H", 1, D1, modality="3DCRT", ctype="institutional"),),
        D1,
    ),
    Scenario(
        "port-image-frequency",
        ("B", 2),
        (
            *(delivery("A", n, plus(DAY, n - 1)) for n in range(1, 6)),
            cl("B", 1, "77417", DAY),
            cl("B", 2, "77417", D1),
        ),
        tuple(delivery("H", n, plus(DAY, n + 4), ctype="institutional") for n in range(1, 6)),
        D1,
    ),
]
IDS = [s.rule_id for s in SCENARIOS]


def started(scenario: Scenario, hold_days: int | None = None) -> Run:
    run = Run(hold_days=hold_days)
    run.feed(*scenario.setup)
    return run


def messages_for(run: Run, scenario: Scenario) -> list[dict[str, Any]]:
    claim, number = scenario.line
    return [
        m
        for m in run.messages
        if (m["rule_id"], m["claim_id"], m["line_number"]) == (scenario.rule_id, claim, number)
    ]


def statuses(run: Run, scenario: Scenario) -> list[tuple[str, str, int]]:
    return [(m["status"], m["finality"], m["sequence"]) for m in messages_for(run, scenario)]


def held_now(run: Run) -> int:
    return sum(run.engine.context.holds.held().values())


@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_published_at_once_without_a_hold(scenario: Scenario) -> None:
    """hold_days = 0: today's messages, the violation opens provisional at once."""
    run = started(scenario, hold_days=0)
    assert statuses(run, scenario) == [("open", "provisional", 1)]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_held_then_cured_publishes_nothing(scenario: Scenario) -> None:
    run = started(scenario)
    assert statuses(run, scenario) == []
    assert run.engine.context.holds.started[scenario.rule_id] == 1
    run.feed(*scenario.cure)
    run.feed(clock(plus(scenario.on, 400)))
    run.close_all()
    assert statuses(run, scenario) == []
    assert run.engine.context.holds.cured[scenario.rule_id] == 1
    assert held_now(run) == 0
    # Nothing of it is left in state either.
    assert all(
        not any(memo.is_held for memos in day.memos.values() for memo in memos.values())
        for day in run.engine.store.days.values()
    )


@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_held_then_expired_opens_provisional(scenario: Scenario) -> None:
    """A hold shorter than the course's idle days: the course is still open
    when event time reaches the line's date + hold_days."""
    run = started(scenario, hold_days=30)
    run.feed(clock(plus(scenario.on, 29)))
    assert statuses(run, scenario) == []
    run.feed(clock(plus(scenario.on, 30)))
    assert statuses(run, scenario) == [("open", "provisional", 1)]
    assert run.engine.context.holds.published[scenario.rule_id] == 1


@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_held_then_published_then_cured_resolves(scenario: Scenario) -> None:
    run = started(scenario, hold_days=30)
    run.feed(clock(plus(scenario.on, 30)))
    run.feed(*scenario.cure)
    assert statuses(run, scenario) == [("open", "provisional", 1), ("resolved", "provisional", 2)]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_expired_after_its_course_closed_opens_final(scenario: Scenario) -> None:
    """Closing a course ends no hold (a hospital claim for the course's last
    weeks can still come, with the fractions that allow more port images)."""
    run = started(scenario)
    run.feed(end(scenario.on))
    assert statuses(run, scenario) == []
    run.feed(clock(plus(scenario.on, DEFAULT_HOLD_DAYS - 1)))
    assert statuses(run, scenario) == []
    run.feed(clock(plus(scenario.on, DEFAULT_HOLD_DAYS)))
    assert statuses(run, scenario) == [("open", "final", 1)]


def test_a_course_closed_while_held_can_still_be_cured() -> None:
    """The course ends (idle here) before the hospital's claim with its last
    fractions: the port-image excess they allow is never published."""
    [scenario] = [s for s in SCENARIOS if s.rule_id == "port-image-frequency"]
    run = started(scenario)
    run.feed(clock(plus(plus(DAY, 4), 45)))  # the course closes, idle
    run.feed(*scenario.cure)
    run.close_all()
    assert statuses(run, scenario) == []


@pytest.mark.parametrize(
    "scenario", [s for s in SCENARIOS if s.rule_id.endswith("modality")], ids=IDS[1:3]
)
def test_the_days_delivery_arriving_ends_a_modality_hold_at_once(scenario: Scenario) -> None:
    """An SBRT delivery on the held line's day: the day's modalities now say
    the same as the course's did, and the alert opens with that message."""
    run = started(scenario)
    run.feed(delivery("H", 1, scenario.on, code="77373", modality=None, ctype="institutional"))
    assert statuses(run, scenario) == [("open", "provisional", 1)]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_once_published_never_held_again(scenario: Scenario) -> None:
    """Published, cured (resolved), then the violation comes back: it opens
    again at once, whatever hold_days says."""
    run = started(scenario, hold_days=30)
    run.feed(clock(plus(scenario.on, 30)))
    run.feed(*scenario.cure)
    run.feed(*(void(doc["claim_id"], doc["line_number"]) for doc in scenario.cure))
    assert [s for s, _, _ in statuses(run, scenario)] == ["open", "resolved", "open"]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_a_void_of_the_held_line_cures_it(scenario: Scenario) -> None:
    run = started(scenario)
    claim, number = scenario.line
    run.feed(void(claim, number))
    run.close_all()
    assert statuses(run, scenario) == []
    assert run.engine.context.holds.cured[scenario.rule_id] == 1


def test_hold_days_from_the_payer_profile(tmp_path: Any) -> None:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text('[default]\nhold_days = 10\n[payers.FAST]\nhold_days = 0\n')
    book = ProfileBook.load(profiles, REGISTRY.ids)
    assert book.resolve("OTHER", "commercial").hold_days == 10
    assert book.resolve("FAST", "commercial").hold_days == 0
    scenario = SCENARIOS[0]
    run = Run(book, hold_days=None)
    run.feed(*scenario.setup)
    assert statuses(run, scenario) == []
    run.feed(clock(plus(DAY, 10)))
    assert statuses(run, scenario) == [("open", "provisional", 1)]
    fast = Run(book, hold_days=None)
    fast.feed(*scenario.setup[:1], cl("B", 1, "77387", DAY, mods=["26"], payer_id="FAST"))
    assert statuses(fast, scenario) == [("open", "provisional", 1)]


def test_holds_survive_the_store() -> None:
    """Holds are state: a new engine over the same store (a restarted worker,
    its tables recovered) publishes the held violation when its hold ends."""
    scenario = SCENARIOS[0]
    first = Run(hold_days=None)
    first.feed(*scenario.setup)
    store = first.engine.store
    second = Engine(store)
    found = second.adopt(0, store.patient_ids(), DAY)
    assert found == 1
    late = second.tick(0, plus(DAY, DEFAULT_HOLD_DAYS))
    assert [(t.spec.rule_id, t.status) for t in late] == [("igrt-without-fraction", "open")]


# -- rules that are not held ------------------------------------------------


def _replay_messages(lines: list[bytes], hold_days: int | None) -> list[dict[str, Any]]:
    engine = Engine(MemoryStore(), REGISTRY, settings=EngineSettings(hold_days=hold_days))
    from helpers import FIXED_TIME

    from stream_app.core.alerts import build_alert

    out: list[dict[str, Any]] = []
    for raw in lines:
        event = parse_event(raw)
        if isinstance(event, Invalid):
            continue
        out.extend(build_alert(t, FIXED_TIME) for t in engine.apply(event).transitions)
    out.extend(
        build_alert(t, FIXED_TIME) for t in engine.close_all(engine.store.patient_ids())
    )
    return out


def test_rules_not_held_publish_at_once_whatever_hold_days() -> None:
    """The sample stream: every message of a rule that is not held is the same,
    in the same order, for hold_days 0, the default and 1000; the fold is the
    same."""
    lines = (Path(__file__).parent.parent / "examples" / "sample-claims.jsonl").read_bytes()
    raw = [line for line in lines.splitlines() if line.strip()]
    runs = {days: _replay_messages(raw, days) for days in (0, None, 1000)}

    def not_held(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [m for m in messages if m["rule_id"] not in HELD_RULES]

    assert not_held(runs[0])
    assert not_held(runs[0]) == not_held(runs[None]) == not_held(runs[1000])
    assert _summary(runs[0]) == _summary(runs[None]) == _summary(runs[1000])
    assert len(runs[None]) < len(runs[0])  # the sample has held violations


def test_every_held_rule_is_declared() -> None:
    assert REGISTRY.held_rules == HELD_RULES
    for rule_id in HELD_RULES:
        assert REGISTRY.specs[rule_id].finality == "provisional"


# -- properties ---------------------------------------------------------------


def _summary(messages: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {
        aid: (a["finality"], a["excess_units"], orjson.dumps(a["evidence"]))
        for aid, a in fold(messages).items()
    }


PROPERTIES = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
CODES = ["77387", "77417", "G6002", "G6017", "77014", "77412", "77373", "77771"]


@st.composite
def claims(draw: st.DrawFn) -> list[bytes]:
    """Distinct claims of two patients over a few weeks: deliveries and the
    guidance and port-image codes the held rules look at."""
    out: list[bytes] = []
    n_claims = draw(st.integers(1, 8))
    for index in range(n_claims):
        patient = draw(st.sampled_from(["P1", "P2"]))
        ctype = draw(st.sampled_from(["professional", "institutional"]))
        lines = []
        for number in range(1, draw(st.integers(1, 4)) + 1):
            code = draw(st.sampled_from(CODES))
            line: dict[str, Any] = {
                "line_number": number,
                "hcpcs": code,
                "date_of_service": plus(DAY, draw(st.integers(0, 20))),
                "units": draw(st.integers(1, 2)),
            }
            if code == "77387" and ctype == "professional":
                line["modifiers"] = ["26"]
            if code == "77412":
                line["modality"] = draw(st.sampled_from(["3DCRT", "IMRT", "ELECTRON"]))
            lines.append(line)
        doc = {
            "kind": "claim",
            "claim_id": f"C{index}",
            "patient_id": patient,
            "claim_type": ctype,
            "course_id": "K",
            "site": "prostate",
            "lines": lines,
        }
        out.append(orjson.dumps(doc))
    return out


@PROPERTIES
@given(claims(), st.randoms(use_true_random=False))
def test_the_closed_fold_is_the_same_for_any_hold_days_in_any_order(
    docs: list[bytes], rng: Any
) -> None:
    baseline = _summary(_replay_messages(docs, 0))
    for hold_days in (1, 60, 1000):
        shuffled = list(docs)
        rng.shuffle(shuffled)
        assert _summary(_replay_messages(shuffled, hold_days)) == baseline, hold_days


@PROPERTIES
@given(claims(), st.randoms(use_true_random=False))
def test_nothing_is_published_for_a_violation_cured_within_its_hold(
    docs: list[bytes], rng: Any
) -> None:
    """Every claim is dated within a hold of the others (no voids, no
    corrections). A violation that leaves the held set in an event that sends
    no message for it was cured; no message is sent for it later unless it is
    held again. At the end of the replay closing a course lowers the
    port-image allowance (floor instead of ceiling): a new violation, so
    port-image-frequency is left out of that last check."""
    shuffled = list(docs)
    rng.shuffle(shuffled)
    engine = Engine(MemoryStore(), REGISTRY, settings=EngineSettings(hold_days=60))
    cured: set[str] = set()
    held = _held_now(engine)
    for raw in shuffled:
        sent = {_alert_id(t) for t in engine.apply(parse_event(raw)).transitions}
        assert not sent & cured
        now = _held_now(engine)
        cured = (cured - now) | (held - now - sent)
        held = now
    at_end = {_alert_id(t) for t in engine.close_all(engine.store.patient_ids())}
    assert not {a for a in at_end & cured if not a.startswith("port-image-frequency:")}


def _alert_id(transition: Any) -> str:
    line = transition.line
    return f"{transition.spec.rule_id}:{line.patient_id}:{line.claim_id}:{line.line_number}"


def _held_now(engine: Engine) -> set[str]:
    store = engine.store
    assert isinstance(store, MemoryStore)
    return {
        f"{rule_id}:{patient}:{claim}:{number}"
        for (patient, _, _), day in store.days.items()
        for (claim, number), memos in day.memos.items()
        for rule_id, memo in memos.items()
        if memo.is_held
    }
