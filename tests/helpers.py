"""Small builders for claim-line events and a driver that folds the alerts.

Events are built as JSON documents and go through `parse_event`, so every
test also exercises the public input contract (SPEC 1).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from stream_app.core.alerts import build_alert, fold
from stream_app.core.engine import Engine, EngineSettings
from stream_app.core.events import Invalid, parse_event
from stream_app.core.profiles import ProfileBook
from stream_app.core.store import MemoryStore

DAY = "2024-03-04"  # a Monday; the default date of service
FIXED_TIME = "2024-06-01T00:00:00.000Z"


def cl(
    claim: str,
    number: int,
    hcpcs: str,
    dos: str = DAY,
    *,
    units: int | None = None,
    mods: list[str] | None = None,
    ctype: str = "professional",
    patient: str = "P1",
    course: str = "C1",
    site: str = "prostate",
    pos: str | None = None,
    payer_type: str | None = None,
    payer_id: str | None = None,
    dx: list[str] | None = None,
    modality: str | None = None,
) -> dict[str, Any]:
    """One claim-line upsert document."""
    doc: dict[str, Any] = {
        "claim_id": claim,
        "line_number": number,
        "patient_id": patient,
        "course_id": course,
        "site": site,
        "date_of_service": dos,
        "hcpcs": hcpcs,
        "claim_type": ctype,
    }
    optional = {
        "units": units,
        "modifiers": mods,
        "place_of_service": pos,
        "payer_type": payer_type,
        "payer_id": payer_id,
        "diagnosis_codes": dx,
        "modality": modality,
    }
    doc.update({k: v for k, v in optional.items() if v is not None})
    return doc


def void(claim: str, number: int, patient: str = "P1") -> dict[str, Any]:
    return {"action": "void", "claim_id": claim, "line_number": number, "patient_id": patient}


def end(
    date: str, *, patient: str = "P1", course: str = "C1", site: str = "prostate"
) -> dict[str, Any]:
    return {
        "kind": "course_end",
        "patient_id": patient,
        "course_id": course,
        "site": site,
        "date": date,
    }


def delivery(
    claim: str,
    number: int,
    dos: str = DAY,
    code: str = "77412",
    modality: str | None = "3DCRT",
    **kw: Any,
) -> dict[str, Any]:
    """An external-beam delivery line (3DCRT by default): one fraction."""
    return cl(claim, number, code, dos, modality=modality, **kw)


def parse(doc: dict[str, Any]):
    event = parse_event(orjson.dumps(doc))
    assert not isinstance(event, Invalid), (doc, event)
    return event


class Run:
    """An engine on a MemoryStore, and every alert message it emitted.

    `hold_days` is 0 (no holds, SPEC 4.1) unless given: the rule tables test
    what each rule finds, as it would be published at once; holds have their
    own tests (tests/test_holds.py), and `check_rule` checks that with the
    default holds the closed fold is the same."""

    def __init__(
        self, profiles: ProfileBook | None = None, hold_days: int | None = 0, **engine_kw: Any
    ) -> None:
        settings = engine_kw.pop("settings", None) or EngineSettings()
        settings = dataclasses.replace(settings, hold_days=hold_days)
        self.engine = Engine(MemoryStore(), profiles=profiles, settings=settings, **engine_kw)
        self.messages: list[dict[str, Any]] = []

    def feed(self, *docs: dict[str, Any]) -> list[dict[str, Any]]:
        emitted: list[dict[str, Any]] = []
        for doc in docs:
            result = self.engine.apply(parse(doc))
            emitted.extend(build_alert(t, FIXED_TIME) for t in result.transitions)
        self.messages.extend(emitted)
        return emitted

    def close_all(self) -> list[dict[str, Any]]:
        emitted = [
            build_alert(t, FIXED_TIME)
            for t in self.engine.close_all(self.engine.store.patient_ids())
        ]
        self.messages.extend(emitted)
        return emitted

    @property
    def open(self) -> dict[str, dict[str, Any]]:
        return fold(self.messages)

    def open_for(self, rule_id: str) -> dict[tuple[str, int], dict[str, Any]]:
        """Open alerts of one rule, by the (claim_id, line_number) they are on."""
        return {
            (a["claim_id"], a["line_number"]): a
            for a in self.open.values()
            if a["rule_id"] == rule_id
        }

    def summary(self) -> dict[str, tuple]:
        """alert_id -> (finality, excess_units, evidence, rule_id) of open alerts."""
        return {
            aid: (
                a["finality"],
                a["excess_units"],
                tuple(tuple(sorted(e.items())) for e in a["evidence"]),
                a["rule_id"],
            )
            for aid, a in self.open.items()
        }


def run(
    docs: list[dict[str, Any]],
    *,
    close: bool = False,
    profiles: ProfileBook | None = None,
    hold_days: int | None = 0,
) -> Run:
    r = Run(profiles, hold_days)
    r.feed(*docs)
    if close:
        r.close_all()
    return r


def check_rule(
    rule_id: str,
    severity: str,
    carc: str,
    finality: str,
    docs: list[dict[str, Any]],
    before: dict[tuple[str, int], int | None],
    after: dict[tuple[str, int], int | None] | None = None,
    profiles: ProfileBook | None = None,
) -> Run:
    """Feed `docs`; the rule's open alerts must be exactly `before` (line ->
    excess_units) with the rule's own finality; after closing every course
    they must be exactly `after` (default: the same lines), all final."""
    r = run(docs, profiles=profiles)
    got = r.open_for(rule_id)
    assert {k: a["excess_units"] for k, a in got.items()} == before
    for alert in got.values():
        assert alert["finality"] == finality, alert
        assert (alert["severity"], alert["carc"]) == (severity, carc), alert
        assert alert["status"] == "open"
        assert alert["alert_id"] == (
            f"{rule_id}:{alert['patient_id']}:{alert['claim_id']}:{alert['line_number']}"
        )
    r.close_all()
    got = r.open_for(rule_id)
    assert {k: a["excess_units"] for k, a in got.items()} == (before if after is None else after)
    for alert in got.values():
        assert alert["finality"] == "final", alert
        assert (alert["severity"], alert["carc"]) == (severity, carc), alert
    # With the default holds (SPEC 4.1) the fold once every course is closed
    # is the same, and a rule that is not held publishes the same at once.
    held = run(docs, profiles=profiles, hold_days=None)
    if rule_id not in held.engine.registry.held_rules:
        assert held.open_for(rule_id).keys() == before.keys()
    held.close_all()
    assert held.summary() == r.summary()
    return r
