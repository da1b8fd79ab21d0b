"""Guidance per fraction (SPEC 6): igrt-per-fraction, intrafraction-per-fraction,
igrt-without-fraction; and payer profiles that turn a rule off or override it."""

import pytest
from helpers import DAY, check_rule, cl, delivery, end, run, void

from stream_app.core.profiles import ProfileBook
from stream_app.core.rules import load_registry

PER_FRACTION = ("igrt-per-fraction", "deny", "151", "provisional")
INTRAFRACTION = ("intrafraction-per-fraction", "deny", "151", "provisional")
WITHOUT = ("igrt-without-fraction", "review", "107", "provisional")
NEXT_DAY = "2024-03-05"

F1 = delivery("D", 1)  # one 3DCRT fraction on DAY
F1_UNKNOWN = delivery("D", 1, modality=None)  # one external-beam fraction, technique unknown


@pytest.mark.parametrize(
    "docs, before",
    [
        pytest.param(
            [F1, cl("A", 1, "77387"), cl("A", 2, "G6002")],
            {("A", 2): 1},
            id="two-global-lines-one-fraction",
        ),
        pytest.param(
            [F1, cl("A", 1, "77387", mods=["26"]), cl("A", 2, "77014", mods=["26"])],
            {("A", 2): 1},
            id="two-PC-lines-77014-counts-on-fraction-day",
        ),
        pytest.param(
            [F1, cl("A", 1, "G6001", mods=["TC"]), cl("A", 2, "77387", mods=["TC"])],
            {("A", 2): 1},
            id="two-TC-lines",
        ),
        pytest.param(
            [F1, cl("A", 1, "G6002", ctype="institutional"), cl("B", 1, "77387", mods=["TC"])],
            {("B", 1): 1},
            id="institutional-is-TC",
        ),
        pytest.param([F1, cl("A", 1, "77387", units=2)], {("A", 1): 1}, id="one-line-2-units"),
        pytest.param(
            [
                F1,
                cl("A", 1, "77387", mods=["26"]),
                cl("A", 2, "G6002", mods=["26"]),
                cl("A", 3, "G6001", mods=["26"]),
            ],
            {("A", 2): 1, ("A", 3): 1},
            id="excess-2-on-the-latest-2",
        ),
        pytest.param(
            [
                F1,
                cl("A", 1, "77387"),
                cl("A", 2, "77014", mods=["26"]),
                cl("A", 3, "G6002", mods=["TC"]),
            ],
            {("A", 2): 1, ("A", 3): 1},
            id="PC-and-TC-counted-separately",
        ),
        pytest.param(
            [F1, cl("B", 1, "G6002", mods=["26"]), cl("A", 1, "77387", mods=["26"])],
            {("B", 1): 1},
            id="latest-by-claim-not-arrival",
        ),
        pytest.param(
            [F1, cl("A", 10, "G6002", mods=["26"]), cl("A", 9, "77387", mods=["26"])],
            {("A", 10): 1},
            id="latest-by-line-number",
        ),
        pytest.param(
            [F1_UNKNOWN, cl("A", 1, "77387"), cl("A", 2, "G6002")],
            {("A", 2): 1},
            id="unknown-external-beam-is-a-fraction",
        ),
        pytest.param(
            [delivery("D", 1, code="77373", modality=None), cl("A", 1, "77387", units=2)],
            {("A", 1): 1},
            id="SBRT-is-a-fraction",
        ),
        pytest.param(
            [F1, cl("A", 1, "77387", mods=["26"]), cl("A", 2, "G6002", mods=["TC"])],
            {},
            id="one-PC-one-TC",
        ),
        pytest.param(
            [F1, cl("A", 1, "77387", ctype="institutional"), cl("B", 1, "77387", mods=["26"])],
            {},
            id="institutional-TC-plus-PC",
        ),
        pytest.param(
            [delivery("D", 1), delivery("D", 2), cl("A", 1, "77387"), cl("A", 2, "G6002")],
            {},
            id="two-fractions-two-globals",
        ),
        pytest.param(
            [delivery("D", 1, units=2), cl("A", 1, "77387", units=2)], {}, id="fraction-units-count"
        ),
        pytest.param(
            [F1, cl("A", 1, "77387", mods=["26"]), cl("A", 2, "G6017", mods=["26"])],
            {},
            id="G6017-is-not-localization",
        ),
        pytest.param(
            [F1, cl("A", 1, "77387", mods=["26"]), cl("A", 2, "77417")],
            {},
            id="77417-is-not-localization",
        ),
        pytest.param(
            [cl("A", 1, "77387", mods=["26"]), cl("A", 2, "G6002", mods=["26"])],
            {},
            id="no-fraction-day",
        ),
        pytest.param(
            [
                delivery("D", 1, code="77761", modality=None),
                cl("A", 1, "77387", mods=["26"]),
                cl("A", 2, "G6002", mods=["26"]),
            ],
            {},
            id="brachy-day-has-no-fractions",
        ),
        pytest.param(
            [delivery("D", 1, site="pelvis"), cl("A", 1, "77387"), cl("A", 2, "G6002")],
            {},
            id="fraction-at-other-site",
        ),
        pytest.param(
            [F1, cl("A", 1, "77387"), cl("A", 2, "G6002"), void("A", 2)],
            {},
            id="second-line-voided",
        ),
    ],
)
def test_igrt_per_fraction(docs, before):
    check_rule(*PER_FRACTION, docs, before)


def test_igrt_per_fraction_evidence_message_and_cure():
    r = run([F1, cl("A", 1, "77387", mods=["26"]), cl("A", 2, "G6002", mods=["26"])])
    alert = r.open_for("igrt-per-fraction")[("A", 2)]
    assert alert["finality"] == "provisional"
    assert alert["evidence"] == [
        {"claim_id": "A", "line_number": 1, "hcpcs": "77387", "date_of_service": DAY},
        {"claim_id": "D", "line_number": 1, "hcpcs": "77412", "date_of_service": DAY},
    ]
    assert "2 professional" in alert["message"] and "1 fraction" in alert["message"]
    r.feed(delivery("D", 2))  # a second fraction that day cures it
    assert r.open_for("igrt-per-fraction") == {}


@pytest.mark.parametrize(
    "docs, before",
    [
        pytest.param([F1, cl("A", 1, "G6017", units=2)], {("A", 1): 1}, id="2-units-1-fraction"),
        pytest.param(
            [F1, cl("A", 1, "G6017"), cl("A", 2, "G6017")], {("A", 2): 1}, id="two-lines-1-fraction"
        ),
        pytest.param(
            [F1, cl("B", 1, "G6017"), cl("A", 1, "G6017", units=2)],
            {("B", 1): 1, ("A", 1): 1},
            id="excess-2-spread-latest-first",
        ),
        pytest.param(
            [F1, cl("A", 1, "G6017", mods=["26"]), cl("A", 2, "G6017", mods=["TC"])],
            {("A", 2): 1},
            id="components-not-split",
        ),
        pytest.param([cl("A", 1, "G6017")], {("A", 1): 1}, id="no-fraction-that-day"),
        pytest.param(
            [delivery("D", 1, code="77761", modality=None), cl("A", 1, "G6017")],
            {("A", 1): 1},
            id="brachy-day",
        ),
        pytest.param([F1, cl("A", 1, "G6017")], {}, id="1-unit-1-fraction"),
        pytest.param(
            [delivery("D", 1, units=2), cl("A", 1, "G6017", units=2)], {}, id="2-units-2-fractions"
        ),
        pytest.param(
            [
                delivery("D", 1),
                delivery("D", 2, modality=None),
                cl("A", 1, "G6017"),
                cl("A", 2, "G6017"),
            ],
            {},
            id="two-lines-two-fractions",
        ),
        pytest.param(
            [F1, cl("A", 1, "G6017"), cl("A", 2, "77387", mods=["26"])],
            {},
            id="other-guidance-not-counted",
        ),
    ],
)
def test_intrafraction_per_fraction(docs, before):
    check_rule(*INTRAFRACTION, docs, before)


@pytest.mark.parametrize(
    "docs, before",
    [
        pytest.param([cl("A", 1, "77387", mods=["26"])], {("A", 1): None}, id="77387"),
        pytest.param([cl("A", 1, "G6001")], {("A", 1): None}, id="G6001"),
        pytest.param([cl("A", 1, "G6002", mods=["TC"])], {("A", 1): None}, id="G6002"),
        pytest.param([cl("A", 1, "G6017")], {("A", 1): None}, id="G6017"),
        pytest.param(
            [delivery("D", 1, code="77761", modality=None), cl("A", 1, "77387")],
            {("A", 1): None},
            id="brachy-is-no-fraction",
        ),
        pytest.param(
            [delivery("D", 1, site="pelvis"), cl("A", 1, "77387")],
            {("A", 1): None},
            id="fraction-at-other-site",
        ),
        pytest.param(
            [delivery("D", 1, NEXT_DAY), cl("A", 1, "77387")],
            {("A", 1): None},
            id="fraction-next-day",
        ),
        pytest.param(
            [delivery("D", 1, patient="P2"), cl("A", 1, "77387")],
            {("A", 1): None},
            id="fraction-of-other-patient",
        ),
        pytest.param(
            [cl("A", 1, "77387"), cl("A", 2, "G6017"), cl("A", 3, "77014")],
            {("A", 1): None, ("A", 2): None},
            id="each-line-not-77014",
        ),
        pytest.param([cl("A", 1, "77014")], {}, id="77014-alone"),
        pytest.param([cl("A", 1, "77417")], {}, id="77417-alone"),
        pytest.param([F1, cl("A", 1, "77387")], {}, id="with-3DCRT-fraction"),
        pytest.param([F1_UNKNOWN, cl("A", 1, "G6002")], {}, id="with-unknown-external-fraction"),
        pytest.param(
            [delivery("D", 1, code="77373", modality=None), cl("A", 1, "G6017")],
            {},
            id="with-SBRT-fraction",
        ),
        pytest.param(
            [delivery("D", 1, course="C2"), cl("A", 1, "77387")],
            {},
            id="fraction-of-other-course-same-site",
        ),
    ],
)
def test_igrt_without_fraction(docs, before):
    check_rule(*WITHOUT, docs, before)


def test_igrt_without_fraction_cured_by_a_late_delivery_then_reopened_by_its_void():
    r = run([cl("A", 1, "77387")])
    first = r.open_for("igrt-without-fraction")[("A", 1)]
    assert (first["finality"], first["severity"], first["carc"]) == ("provisional", "review", "107")
    r.feed(F1)
    assert r.open_for("igrt-without-fraction") == {}
    r.feed(void("D", 1), end(DAY))
    again = r.open_for("igrt-without-fraction")[("A", 1)]
    assert again["finality"] == "final"
    assert again["sequence"] > first["sequence"] + 1


# -- payer profiles from TOML --------------------------------------------------

PROFILES = """
[payers."ACME"]
disabled_rules = ["igrt-without-fraction"]

[payers."STRICT".overrides.igrt-without-fraction]
severity = "deny"
carc = "16"

[payer_types.medicaid]
disabled_rules = ["intrafraction-per-fraction"]
"""


@pytest.fixture
def book(tmp_path):
    path = tmp_path / "profiles.toml"
    path.write_text(PROFILES)
    return ProfileBook.load(path, load_registry().ids)


@pytest.mark.parametrize(
    "payer, expected",
    [
        pytest.param({"payer_id": "ACME"}, None, id="rule-turned-off-by-payer-id"),
        pytest.param(
            {"payer_id": "ACME", "payer_type": "medicare"}, None, id="payer-id-wins-over-type"
        ),
        pytest.param({"payer_id": "STRICT"}, ("deny", "16"), id="severity-and-carc-overridden"),
        pytest.param({"payer_id": "OTHER"}, ("review", "107"), id="unknown-payer-gets-default"),
        pytest.param({"payer_type": "medicaid"}, ("review", "107"), id="other-rule-off-for-type"),
        pytest.param({}, ("review", "107"), id="no-payer"),
    ],
)
def test_profile_file_turns_off_or_overrides_igrt_without_fraction(book, payer, expected):
    r = run(
        [cl("A", 1, "77387", mods=["26"], **payer), cl("B", 1, "G6002", mods=["26"])], profiles=book
    )
    got = r.open_for("igrt-without-fraction")
    assert got[("B", 1)]["severity"] == "review"  # the other line keeps the default
    if expected is None:
        assert ("A", 1) not in got
    else:
        assert (got[("A", 1)]["severity"], got[("A", 1)]["carc"]) == expected


def test_profile_by_payer_type_turns_off_intrafraction(book):
    docs = [
        cl("A", 1, "G6017", units=2, payer_type="medicaid"),
        cl("B", 1, "G6017", units=2, payer_type="commercial", site="pelvis"),
    ]
    r = run(docs, profiles=book)
    assert set(r.open_for("intrafraction-per-fraction")) == {("B", 1)}
