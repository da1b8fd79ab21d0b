"""Claim messages (SPEC 1.1): parsing, table cases, and the property that a
stream of claims folds to the same open alerts as the same lines sent as
line messages."""

from typing import Any

import orjson
import pytest
from helpers import DAY, Run, cl, delivery, parse, void
from hypothesis import given
from hypothesis import strategies as st
from test_properties import SETTINGS, identity, scenario, void_of

from stream_app.core.events import ClaimEvent, Invalid, parse_event

LINE_KEYS = ("claim_id", "patient_id")


def claim(
    claim_id: str,
    lines: list[dict[str, Any]],
    frequency: str | None = None,
    patient: str = "P1",
    **claim_level: Any,
) -> dict[str, Any]:
    """A claim message of line documents (their claim and patient fields dropped)."""
    doc: dict[str, Any] = {
        "kind": "claim",
        "claim_id": claim_id,
        "patient_id": patient,
        **claim_level,
        "lines": [{k: v for k, v in line.items() if k not in LINE_KEYS} for line in lines],
    }
    if frequency is not None:
        doc["frequency"] = frequency
    return doc


# -- parsing -------------------------------------------------------------------


def test_claim_level_values_are_inherited_and_a_line_overrides_them():
    event = parse(
        claim(
            "C1",
            [
                {"line_number": 1, "hcpcs": "77412", "date_of_service": DAY},
                {
                    "line_number": 2,
                    "hcpcs": "77387",
                    "date_of_service": DAY,
                    "modifiers": ["26"],
                    "place_of_service": "22",
                    "payer_type": "medicare",
                    "diagnosis_codes": ["C44.91"],
                    "modality": "IMRT",
                },
            ],
            claim_type="professional",
            place_of_service="11",
            payer_type="commercial",
            payer_id="ACME",
            diagnosis_codes=["C61"],
            course_id="AUTH-7",
            site="prostate",
            modality="3DCRT",
        )
    )
    assert isinstance(event, ClaimEvent)
    first, second = event.lines
    assert (first.place_of_service, first.payer_type, first.diagnosis_codes, first.modality) == (
        "11",
        "commercial",
        ("C61",),
        "3DCRT",
    )
    assert (
        second.place_of_service,
        second.payer_type,
        second.diagnosis_codes,
        second.modality,
    ) == ("22", "medicare", ("C4491",), "IMRT")
    assert {line.payer_id for line in event.lines} == {"ACME"}
    assert {(line.patient_id, line.claim_id, line.course_id) for line in event.lines} == {
        ("P1", "C1", "AUTH-7")
    }
    assert event.frequency == "original"
    assert event.date == DAY


@pytest.mark.parametrize(
    ("doc", "reason", "names"),
    [
        pytest.param(claim("C1", []), "bad_field", "lines", id="no-lines"),
        pytest.param(
            {"kind": "claim", "claim_id": "C1", "patient_id": "P1"},
            "missing_field",
            "lines",
            id="lines-missing",
        ),
        pytest.param(
            claim("C1", [cl("C1", 1, "77412"), cl("C1", 2, "7741")]),
            "bad_field",
            "line_number 2: hcpcs",
            id="bad-hcpcs-names-the-line",
        ),
        pytest.param(
            claim(
                "C1",
                [
                    {
                        "line_number": 1,
                        "hcpcs": "77412",
                        "date_of_service": DAY,
                        "claim_type": "professional",
                        "site": "prostate",
                    }
                ],
            ),
            "missing_field",
            "line_number 1: course_id",
            id="course-neither-line-nor-claim",
        ),
        pytest.param(
            claim("C1", [cl("C1", 1, "77412"), cl("C1", 1, "77387")]),
            "bad_field",
            "appears twice",
            id="line-number-twice",
        ),
        pytest.param(
            claim("C1", [cl("C1", 1, "77412")], frequency="late"),
            "bad_field",
            "frequency",
            id="unknown-frequency",
        ),
        pytest.param(
            claim("C1", [cl("C1", 1, "77412")], payer_type="gov"),
            "bad_field",
            "payer_type",
            id="bad-claim-level-value",
        ),
        pytest.param(
            claim("C1", [cl("C1", 1, "77412", dos="2024-02-30")]),
            "bad_date",
            "line_number 1: date_of_service",
            id="impossible-date",
        ),
        pytest.param(
            {**claim("C1", [cl("C1", 1, "77412")]), "lines": ["x"]},
            "bad_field",
            "lines[0]",
            id="line-not-an-object",
        ),
    ],
)
def test_a_claim_with_any_invalid_part_is_invalid_as_a_whole(doc, reason, names):
    event = parse_event(orjson.dumps(doc))
    assert isinstance(event, Invalid)
    assert event.reason == reason
    assert names in event.detail


def test_a_void_claim_needs_no_lines():
    event = parse({"kind": "claim", "claim_id": "C1", "patient_id": "P1", "frequency": "void"})
    assert isinstance(event, ClaimEvent)
    assert event.lines == ()


# -- table cases ---------------------------------------------------------------

# A day with one fraction and two professional IGRT units: one is excess.
FRACTION = delivery("C1", 1)
IGRT_A = cl("C1", 2, "77387", mods=["26"])
IGRT_B = cl("C1", 3, "77387", mods=["26"])


def excess_lines(r: Run) -> set[tuple[str, int]]:
    return set(r.open_for("igrt-per-fraction"))


def test_a_duplicate_claim_changes_nothing():
    r = Run()
    first = r.feed(claim("C1", [FRACTION, IGRT_A, IGRT_B]))
    assert excess_lines(r) == {("C1", 3)}
    assert first
    assert r.feed(claim("C1", [FRACTION, IGRT_A, IGRT_B])) == []


def test_an_original_sent_again_with_fewer_lines_keeps_the_earlier_lines():
    r = Run()
    r.feed(claim("C1", [FRACTION, IGRT_A, IGRT_B]))
    assert r.feed(claim("C1", [FRACTION, IGRT_A])) == []
    assert excess_lines(r) == {("C1", 3)}


def test_a_replacement_withdraws_the_lines_it_no_longer_lists():
    r = Run()
    r.feed(claim("C1", [FRACTION, IGRT_A, IGRT_B]))
    emitted = r.feed(claim("C1", [FRACTION, IGRT_A], frequency="replacement"))
    assert [(m["status"], m["line_number"]) for m in emitted] == [("resolved", 3)]
    assert excess_lines(r) == set()
    assert r.feed(claim("C1", [FRACTION, IGRT_A], frequency="replacement")) == []


def test_a_void_claim_withdraws_every_line():
    r = Run()
    r.feed(claim("C1", [IGRT_A]), claim("C2", [delivery("C2", 1)]))
    assert r.open_for("igrt-without-fraction") == {}
    r.feed(claim("C2", [], frequency="void"))
    assert set(r.open_for("igrt-without-fraction")) == {("C1", 2)}
    assert r.feed(claim("C2", [], frequency="void")) == []


def test_a_claim_then_a_line_message_void_of_one_of_its_lines():
    r = Run()
    r.feed(claim("C1", [FRACTION, IGRT_A, IGRT_B]))
    r.feed(void("C1", 3))
    assert excess_lines(r) == set()
    r.feed(void("C1", 1))
    assert set(r.open_for("igrt-without-fraction")) == {("C1", 2)}


def test_alerts_are_computed_once_the_whole_claim_is_in():
    """As lines, 77387 before its fraction opens igrt-without-fraction and the
    fraction resolves it; as one claim nothing opens between its lines."""
    as_lines = Run()
    as_lines.feed(IGRT_A, FRACTION)
    assert [m["status"] for m in as_lines.messages] == ["open", "resolved"]
    as_claim = Run()
    assert as_claim.feed(claim("C1", [IGRT_A, FRACTION])) == []


def test_claim_level_modality_reaches_the_rules():
    """3DCRT inherited from the claim: G6002 with a 3DCRT fraction is fine;
    the same G6002 on a 2DCRT line (overridden) draws igrt-modality."""
    lines = [
        {"line_number": 1, "hcpcs": "77412", "date_of_service": DAY},
        {"line_number": 2, "hcpcs": "G6002", "modifiers": ["26"], "date_of_service": DAY},
    ]
    level = {"claim_type": "professional", "course_id": "C1", "site": "prostate"}
    r = Run()
    r.feed(claim("C1", lines, modality="3DCRT", **level))
    assert r.open_for("igrt-modality") == {}
    r = Run()
    overridden = [{**lines[0], "modality": "2DCRT"}, lines[1]]
    r.feed(claim("C1", overridden, modality="3DCRT", **level))
    assert set(r.open_for("igrt-modality")) == {("C1", 2)}


def test_claim_level_place_of_service_and_payer_type_reach_the_rules():
    hospital = claim(
        "C1", [cl("C1", 1, "77387", dos="2025-03-03")], place_of_service="22", payer_type="medicare"
    )
    r = Run()
    r.feed(delivery("D1", 1, dos="2025-03-03"), hospital)
    assert set(r.open_for("igrt-pc-modifier-hospital")) == {("C1", 1)}
    assert set(r.open_for("igrt-77387-pc-not-accepted")) == {("C1", 1)}
    r = Run()
    overridden = claim(
        "C1",
        [cl("C1", 1, "77387", dos="2025-03-03", pos="11", payer_type="commercial")],
        place_of_service="22",
        payer_type="medicare",
    )
    r.feed(delivery("D1", 1, dos="2025-03-03"), overridden)
    assert r.open_for("igrt-pc-modifier-hospital") == {}
    assert r.open_for("igrt-77387-pc-not-accepted") == {}


def test_claim_level_diagnosis_codes_reach_the_rules():
    lines = [cl("C1", 1, "77401", modality=None), cl("C1", 2, "77387", mods=["26"])]
    for line in lines:
        line.pop("diagnosis_codes", None)
    r = Run()
    r.feed(claim("C1", lines, diagnosis_codes=["C44.91"]))
    assert set(r.open_for("igrt-superficial-skin")) == {("C1", 2)}
    r = Run()
    r.feed(claim("C1", lines, diagnosis_codes=["C61"]))
    assert r.open_for("igrt-superficial-skin") == {}


# -- claims against line messages ------------------------------------------------


def _as_claims(lines: list[dict], grouping: dict[tuple, int]) -> list[list[dict]]:
    by_claim: dict[tuple, list[dict]] = {}
    for doc in lines:
        by_claim.setdefault(
            (doc["patient_id"], doc["claim_id"], grouping[identity(doc)]), []
        ).append(doc)
    return list(by_claim.values())


def folded(events: list[dict], close: bool = True) -> dict:
    r = Run()
    r.feed(*events)
    if close:
        r.close_all()
    return r.summary()


@SETTINGS
@given(scenario(course_ends=False), st.data())
def test_claims_fold_like_the_same_lines_in_any_order_of_distinct_claims(case, data):
    _, lines, _ = case
    claims = _as_claims(lines, {identity(doc): 0 for doc in lines})
    order = data.draw(st.permutations(claims))
    as_claims = [
        claim(group[0]["claim_id"], group, patient=group[0]["patient_id"]) for group in order
    ]
    as_lines = [doc for group in claims for doc in group]
    for close in (False, True):
        assert folded(as_claims, close) == folded(as_lines, close)


@SETTINGS
@given(scenario(course_ends=False), st.data())
def test_a_replacement_folds_like_voids_of_the_dropped_lines_then_upserts(case, data):
    _, lines, _ = case
    groups = _as_claims(lines, {identity(doc): 0 for doc in lines})
    first = data.draw(st.sampled_from(groups))
    kept = data.draw(st.lists(st.sampled_from(first), unique_by=identity, min_size=1))
    dropped = [doc for doc in first if doc not in kept]
    others = [doc for group in groups if group is not first for doc in group]
    pid, cid = first[0]["patient_id"], first[0]["claim_id"]
    as_claims = [
        *(claim(g[0]["claim_id"], g, patient=g[0]["patient_id"]) for g in groups),
        claim(cid, kept, frequency="replacement", patient=pid),
    ]
    as_lines = [*others, *first, *(void_of(doc) for doc in dropped), *kept]
    for close in (False, True):
        assert folded(as_claims, close) == folded(as_lines, close)
