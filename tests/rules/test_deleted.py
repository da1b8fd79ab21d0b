"""deleted-code (SPEC 6): 76950/77421/0197T from 2015, 77385/77386/G6003-G6016 and
77014/G6001/G6002/G6017 from 2026. What the other rules no longer see is in
tests/rules/test_code_dates.py."""

import pytest
from helpers import check_rule, cl, delivery, end, run

RULE = ("deleted-code", "deny", "181", "final")

FIRES = [
    pytest.param([cl("A", 1, "76950", "2015-01-01")], id="76950-on-2015-01-01"),
    pytest.param([cl("A", 1, "77421", "2016-06-01")], id="77421-in-2016"),
    pytest.param([cl("A", 1, "0197T", "2015-01-01")], id="0197T-on-2015-01-01"),
    pytest.param([cl("A", 1, "76950", "2026-03-02")], id="76950-in-2026"),
    pytest.param([cl("A", 1, "77385", "2026-01-01")], id="77385-on-2026-01-01"),
    pytest.param([cl("A", 1, "77386", "2026-01-01")], id="77386-on-2026-01-01"),
    pytest.param([delivery("A", 1, "2026-01-01", code="G6003")], id="G6003-on-2026-01-01"),
    pytest.param([delivery("A", 1, "2026-02-10", code="G6010")], id="G6010-in-2026"),
    pytest.param([cl("A", 1, "G6015", "2026-01-01")], id="G6015-on-2026-01-01"),
    pytest.param([cl("A", 1, "G6016", "2026-01-01")], id="G6016-on-2026-01-01"),
    pytest.param(
        [cl("A", 1, "77385", "2026-01-01", mods=["26"], ctype="institutional")],
        id="77385-26-institutional-2026",
    ),
    *(
        pytest.param(
            [cl("A", 1, code, "2026-01-01", mods=mods, ctype=ctype)],
            id=f"{code}-{ctype}-{'-'.join(mods) or 'global'}-on-2026-01-01",
        )
        for code in ("77014", "G6001", "G6002", "G6017")
        for ctype, mods in (("professional", ["26"]), ("professional", []), ("institutional", []))
    ),
    pytest.param(
        [delivery("D", 1, "2026-03-02"), cl("A", 1, "G6017", "2026-03-02")],
        id="G6017-on-a-fraction-day-in-2026",
    ),
]

NOT_FIRES = [
    pytest.param([cl("A", 1, "76950", "2014-12-31")], id="76950-on-2014-12-31"),
    pytest.param([cl("A", 1, "77421", "2014-12-31")], id="77421-on-2014-12-31"),
    pytest.param([cl("A", 1, "0197T", "2014-06-30")], id="0197T-in-2014"),
    pytest.param([cl("A", 1, "77385", "2025-12-31")], id="77385-on-2025-12-31"),
    pytest.param([cl("A", 1, "77386", "2025-12-31")], id="77386-on-2025-12-31"),
    pytest.param([delivery("A", 1, "2025-12-31", code="G6003")], id="G6003-on-2025-12-31"),
    pytest.param([cl("A", 1, "G6016", "2025-12-31")], id="G6016-on-2025-12-31"),
    *(
        pytest.param(
            [cl("A", 1, code, "2025-12-31", mods=mods, ctype=ctype)],
            id=f"{code}-{ctype}-{'-'.join(mods) or 'global'}-on-2025-12-31",
        )
        for code in ("77014", "G6001", "G6002", "G6017")
        for ctype, mods in (("professional", ["26"]), ("professional", []), ("institutional", []))
    ),
    pytest.param([cl("A", 1, "77417", "2026-01-01")], id="77417-is-not-deleted"),
    pytest.param([delivery("A", 1, "2026-01-01", code="77402")], id="77402-is-not-deleted"),
    pytest.param([cl("A", 1, "77387", "2026-01-01", mods=["26"])], id="77387-is-not-deleted"),
]


@pytest.mark.parametrize("docs", FIRES)
def test_fires_final_on_the_line(docs):
    check_rule(*RULE, docs, {("A", 1): None})


@pytest.mark.parametrize("docs", NOT_FIRES)
def test_does_not_fire(docs):
    check_rule(*RULE, docs, {})


def test_only_the_deleted_line_of_a_claim_is_flagged():
    docs = [
        delivery("A", 1, "2015-03-02"),
        cl("A", 2, "76950", "2015-03-02"),
        cl("A", 3, "77387", "2015-03-02", mods=["26"]),
        cl("B", 1, "77421", "2015-03-03"),
    ]
    r = check_rule(*RULE, docs, {("A", 2): None, ("B", 1): None})
    alert = r.open_for("deleted-code")[("A", 2)]
    assert alert["hcpcs"] == "76950"
    assert alert["date_of_service"] == "2015-03-02"
    assert "2015-01-01" in alert["message"]


def test_is_final_before_the_course_closes_and_after_course_end():
    r = run([cl("A", 1, "77386", "2026-01-05")])
    assert r.open_for("deleted-code")[("A", 1)]["finality"] == "final"
    r.feed(end("2026-01-06"))
    assert r.open_for("deleted-code")[("A", 1)]["finality"] == "final"


def test_void_resolves_and_correction_to_an_earlier_date_resolves():
    r = run([cl("A", 1, "77385", "2026-01-01"), cl("B", 1, "0197T", "2015-01-01")])
    assert set(r.open_for("deleted-code")) == {("A", 1), ("B", 1)}
    r.feed(cl("A", 1, "77385", "2025-12-31"))  # corrected date of service
    r.feed({"action": "void", "claim_id": "B", "line_number": 1, "patient_id": "P1"})
    assert r.open_for("deleted-code") == {}
    resolved = [m for m in r.messages if m["status"] == "resolved"]
    assert {(m["claim_id"], m["line_number"]) for m in resolved} == {("A", 1), ("B", 1)}


@pytest.mark.parametrize(
    "code, instead",
    [
        ("77014", "77387-26"),
        ("G6001", "77387-26"),
        ("G6002", "77387-26"),
        ("G6017", "77387-26"),
        ("77385", "77402, 77407 and 77412"),
        ("G6011", "77402, 77407 and 77412"),
        ("0197T", "bill 77387 instead"),
    ],
)
def test_the_message_says_what_to_bill_instead(code, instead):
    r = run([cl("A", 1, code, "2026-02-02")])
    message = r.open_for("deleted-code")[("A", 1)]["message"]
    assert instead in message, message
    assert "not billable on 2026-02-02" in message


def test_the_2026_guidance_message_names_the_consolidation():
    r = run([cl("A", 1, "G6002", "2026-01-01", mods=["26"])])
    message = r.open_for("deleted-code")[("A", 1)]["message"]
    assert message.startswith("G6002 was deleted effective 2026-01-01")
    assert "consolidated into 77387" in message and "professional only" in message
