"""Bundling (SPEC 6): ct-guidance-with-simulation, igrt-tc-with-imrt."""

import pytest
from helpers import DAY, check_rule, cl, delivery, run, void

CT_SIM = ("ct-guidance-with-simulation", "deny", "97", "final")
TC_IMRT = ("igrt-tc-with-imrt", "deny", "97", "final")
NEXT_DAY = "2024-03-05"


@pytest.mark.parametrize(
    "docs, before",
    [
        pytest.param([cl("A", 1, "77014"), cl("B", 1, "77280")], {("A", 1): None}, id="with-77280"),
        pytest.param([cl("A", 1, "77014"), cl("B", 1, "77285")], {("A", 1): None}, id="with-77285"),
        pytest.param(
            [cl("B", 1, "77290"), cl("A", 1, "77014", mods=["26"])],
            {("A", 1): None},
            id="with-77290-sim-first",
        ),
        pytest.param(
            [
                cl("A", 1, "77014", mods=["TC"]),
                cl("A", 2, "77014", mods=["26"]),
                cl("A", 3, "77290"),
            ],
            {("A", 1): None, ("A", 2): None},
            id="every-77014-line-of-the-day",
        ),
        pytest.param(
            [cl("A", 1, "77014", course="C1"), cl("B", 1, "77280", course="C2")],
            {("A", 1): None},
            id="other-course-same-site",
        ),
        pytest.param(
            [cl("A", 1, "77014"), cl("B", 1, "77295")],
            {("A", 1): None},
            id="with-77295-3d-simulation-aided-field-setting",
        ),
        pytest.param(
            [cl("A", 1, "77014", "2015-06-01"), cl("B", 1, "77295", "2015-06-01")],
            {("A", 1): None},
            id="with-77295-in-2015",
        ),
        pytest.param(
            [
                cl("A", 1, "77014", "2025-12-31", mods=["26"]),
                cl("B", 1, "77295", "2025-12-31", ctype="institutional"),
            ],
            {("A", 1): None},
            id="with-77295-on-2025-12-31",
        ),
        pytest.param(
            [cl("A", 1, "77014", "2026-01-01", mods=["26"]), cl("B", 1, "77295", "2026-01-01")],
            {},
            id="77014-deleted-on-2026-01-01-is-deleted-code-only",
        ),
        pytest.param(
            [cl("A", 1, "77014", "2026-01-05"), cl("B", 1, "77280", "2026-01-05")],
            {},
            id="77014-with-77280-in-2026-is-deleted-code-only",
        ),
        pytest.param(
            [cl("A", 1, "77014"), cl("B", 1, "77280", NEXT_DAY)], {}, id="simulation-next-day"
        ),
        pytest.param(
            [cl("A", 1, "77014"), cl("B", 1, "77280", site="pelvis")],
            {},
            id="simulation-other-site",
        ),
        pytest.param(
            [cl("A", 1, "77014"), cl("B", 1, "77280", patient="P2")],
            {},
            id="simulation-other-patient",
        ),
        pytest.param(
            [cl("A", 1, "77387"), cl("A", 2, "G6002"), cl("B", 1, "77280")],
            {},
            id="other-guidance-with-simulation",
        ),
        pytest.param(
            [cl("A", 1, "77014"), cl("B", 1, "77280"), void("B", 1)], {}, id="simulation-voided"
        ),
    ],
)
def test_ct_guidance_with_simulation(docs, before):
    check_rule(*CT_SIM, docs, before)


def test_ct_guidance_with_simulation_evidence():
    r = run([cl("B", 2, "77290"), cl("B", 1, "77280"), cl("A", 1, "77014")])
    alert = r.open_for("ct-guidance-with-simulation")[("A", 1)]
    assert alert["hcpcs"] == "77014"
    assert alert["evidence"] == [
        {"claim_id": "B", "line_number": 1, "hcpcs": "77280", "date_of_service": DAY},
        {"claim_id": "B", "line_number": 2, "hcpcs": "77290", "date_of_service": DAY},
    ]


@pytest.mark.parametrize(
    "docs, before",
    [
        pytest.param(
            [cl("D", 1, "77385"), cl("A", 1, "77387", mods=["TC"])],
            {("A", 1): None},
            id="TC-with-77385",
        ),
        pytest.param(
            [cl("D", 1, "77386"), cl("A", 1, "77387", ctype="institutional")],
            {("A", 1): None},
            id="institutional-with-77386",
        ),
        pytest.param(
            [cl("A", 1, "77387"), cl("D", 1, "G6015")],
            {("A", 1): None},
            id="global-with-G6015-imrt-last",
        ),
        pytest.param(
            [cl("D", 1, "G6016"), cl("A", 1, "77387", mods=["TC"])],
            {("A", 1): None},
            id="TC-with-G6016",
        ),
        pytest.param(
            [cl("D", 1, "77385", modality="3DCRT"), cl("A", 1, "77387", mods=["TC"])],
            {("A", 1): None},
            id="code-not-modality-decides",
        ),
        pytest.param(
            [cl("D", 1, "77385", course="C2"), cl("A", 1, "77387", mods=["TC"])],
            {("A", 1): None},
            id="imrt-of-other-course-same-site",
        ),
        pytest.param(
            [cl("D", 1, "77385"), cl("A", 1, "77387", mods=["26"])], {}, id="PC-only-is-fine"
        ),
        pytest.param(
            [
                cl("D", 1, "77385"),
                cl("A", 1, "77387", mods=["26"]),
                cl("B", 1, "77387", ctype="institutional"),
            ],
            {("B", 1): None},
            id="PC-line-fine-institutional-line-not",
        ),
        pytest.param(
            [delivery("D", 1, modality="3DCRT"), cl("A", 1, "77387", mods=["TC"])],
            {},
            id="TC-with-3DCRT-delivery",
        ),
        pytest.param(
            [delivery("D", 1, modality="IMRT"), cl("A", 1, "77387", mods=["TC"])],
            {},
            id="TC-with-77412-IMRT-modality-not-an-imrt-code",
        ),
        pytest.param(
            [cl("D", 1, "77385", NEXT_DAY), cl("A", 1, "77387", mods=["TC"])],
            {},
            id="imrt-next-day",
        ),
        pytest.param(
            [cl("D", 1, "77385", site="pelvis"), cl("A", 1, "77387", mods=["TC"])],
            {},
            id="imrt-other-site",
        ),
        pytest.param(
            [cl("D", 1, "77385"), cl("A", 1, "G6002", mods=["TC"])], {}, id="G6002-TC-not-77387"
        ),
        pytest.param(
            [cl("D", 1, "77385"), cl("A", 1, "77387", mods=["TC"]), void("D", 1)],
            {},
            id="imrt-voided",
        ),
    ],
)
def test_igrt_tc_with_imrt(docs, before):
    check_rule(*TC_IMRT, docs, before)


def test_igrt_tc_with_imrt_evidence_and_correction_to_pc():
    r = run([cl("D", 1, "77385"), cl("A", 1, "77387", mods=["TC"])])
    alert = r.open_for("igrt-tc-with-imrt")[("A", 1)]
    assert alert["evidence"] == [
        {"claim_id": "D", "line_number": 1, "hcpcs": "77385", "date_of_service": DAY}
    ]
    assert alert["modifiers"] == ["TC"]
    emitted = r.feed(cl("A", 1, "77387", mods=["26"]))
    assert [
        (m["rule_id"], m["status"]) for m in emitted if m["rule_id"] == "igrt-tc-with-imrt"
    ] == [("igrt-tc-with-imrt", "resolved")]
    assert r.open_for("igrt-tc-with-imrt") == {}
