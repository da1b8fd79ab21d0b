"""Components (SPEC 3.3, 5, 6): igrt-pc-modifier-hospital, ultrasound-guidance-hopps,
igrt-77387-pc-not-accepted, igrt-tc-2026."""

import pytest
from helpers import check_rule, cl, delivery, run

from stream_app.core.profiles import Profile, ProfileBook
from stream_app.core.rules import load_registry

HOSPITAL = ("igrt-pc-modifier-hospital", "deny", "4", "final")
HOPPS = ("ultrasound-guidance-hopps", "deny", "97", "final")
NOT_ACCEPTED = ("igrt-77387-pc-not-accepted", "deny", "96", "final")
TC_2026 = ("igrt-tc-2026", "deny", "97", "final")
LAST_2025 = "2025-12-31"
FIRST_2026 = "2026-01-01"


@pytest.mark.parametrize(
    "docs, before",
    [
        pytest.param([cl("A", 1, "77014", pos="22")], {("A", 1): None}, id="77014-POS22-global"),
        pytest.param(
            [cl("A", 1, "77387", pos="19", mods=["TC"])], {("A", 1): None}, id="77387-POS19-TC"
        ),
        pytest.param(
            [cl("A", 1, "G6002", pos="22", mods=["59"])],
            {("A", 1): None},
            id="G6002-POS22-other-modifier",
        ),
        pytest.param(
            [
                delivery("D", 1),
                cl("A", 1, "77387", pos="22"),
                cl("A", 2, "G6002", pos="22", mods=["26"]),
            ],
            {("A", 1): None},
            id="only-the-line-without-26",
        ),
        pytest.param([cl("A", 1, "77014", pos="22", mods=["26"])], {}, id="77014-26"),
        pytest.param([cl("A", 1, "77387", pos="19", mods=["26", "59"])], {}, id="77387-26-59"),
        pytest.param([cl("A", 1, "77387", pos="11")], {}, id="POS11-freestanding"),
        pytest.param([cl("A", 1, "77387")], {}, id="no-POS"),
        pytest.param(
            [cl("A", 1, "G6002", pos="22", ctype="institutional")], {}, id="institutional-claim"
        ),
        pytest.param([cl("A", 1, "G6001", pos="22")], {}, id="G6001-not-covered"),
        pytest.param([cl("A", 1, "G6017", pos="22")], {}, id="G6017-not-covered"),
        pytest.param([cl("A", 1, "77417", pos="22")], {}, id="77417-not-covered"),
    ],
)
def test_igrt_pc_modifier_hospital(docs, before):
    check_rule(*HOSPITAL, docs, before)


@pytest.mark.parametrize(
    "docs, before",
    [
        pytest.param(
            [cl("A", 1, "G6001", ctype="institutional")], {("A", 1): None}, id="G6001-institutional"
        ),
        pytest.param(
            [delivery("D", 1), cl("A", 1, "G6001", ctype="institutional", pos="22", mods=["TC"])],
            {("A", 1): None},
            id="G6001-TC-institutional",
        ),
        pytest.param([cl("A", 1, "G6001", pos="22")], {}, id="G6001-professional-POS22"),
        pytest.param([cl("A", 1, "G6001", mods=["TC"])], {}, id="G6001-TC-professional"),
        pytest.param([cl("A", 1, "G6002", ctype="institutional")], {}, id="G6002-institutional"),
        pytest.param([cl("A", 1, "77387", ctype="institutional")], {}, id="77387-institutional"),
    ],
)
def test_ultrasound_guidance_hopps(docs, before):
    check_rule(*HOPPS, docs, before)


@pytest.mark.parametrize(
    "docs, before",
    [
        pytest.param(
            [cl("A", 1, "77387", LAST_2025, mods=["26"], payer_type="medicare")],
            {("A", 1): None},
            id="medicare-26-on-2025-12-31",
        ),
        pytest.param(
            [cl("A", 1, "77387", "2015-01-01", payer_type="medicare")],
            {("A", 1): None},
            id="medicare-global-carries-PC",
        ),
        pytest.param(
            [
                delivery("D", 1),
                cl("A", 1, "77387", mods=["26"], payer_type="medicare"),
                cl("A", 2, "77387", mods=["TC"], payer_type="medicare"),
            ],
            {("A", 1): None},
            id="only-the-PC-line",
        ),
        pytest.param(
            [cl("A", 1, "77387", FIRST_2026, mods=["26"], payer_type="medicare")],
            {},
            id="medicare-26-on-2026-01-01",
        ),
        pytest.param(
            [cl("A", 1, "77387", LAST_2025, mods=["TC"], payer_type="medicare")],
            {},
            id="medicare-TC",
        ),
        pytest.param(
            [cl("A", 1, "77387", ctype="institutional", payer_type="medicare")],
            {},
            id="medicare-institutional-is-TC",
        ),
        pytest.param(
            [cl("A", 1, "77387", mods=["26"], payer_type="commercial")], {}, id="commercial-accepts"
        ),
        pytest.param(
            [cl("A", 1, "77387", mods=["26"], payer_type="medicaid")], {}, id="medicaid-accepts"
        ),
        pytest.param([cl("A", 1, "77387", mods=["26"])], {}, id="default-payer-type-other-accepts"),
        pytest.param(
            [cl("A", 1, "77014", mods=["26"], payer_type="medicare")],
            {},
            id="77014-26-is-the-alternative",
        ),
        pytest.param(
            [cl("A", 1, "G6002", mods=["26"], payer_type="medicare")],
            {},
            id="G6002-26-is-the-alternative",
        ),
    ],
)
def test_igrt_77387_pc_not_accepted(docs, before):
    check_rule(*NOT_ACCEPTED, docs, before)


def test_77387_pc_message_names_the_alternatives():
    r = run([cl("A", 1, "77387", mods=["26"], payer_type="medicare")])
    message = r.open_for("igrt-77387-pc-not-accepted")[("A", 1)]["message"]
    for code in ("G6001", "G6002", "G6017", "77014"):
        assert code in message


PROFILES = """
[payers."MEDICARE-ADVANTAGE-X"]
accepts_77387_professional = true

[payers."ACME"]
accepts_77387_professional = false
[payers."ACME".overrides.igrt-77387-pc-not-accepted]
severity = "review"
carc = "16"

[payer_types.commercial]
disabled_rules = ["igrt-tc-2026"]
"""


@pytest.fixture
def book(tmp_path):
    path = tmp_path / "profiles.toml"
    path.write_text(PROFILES)
    return ProfileBook.load(path, load_registry().ids)


@pytest.mark.parametrize(
    "payer, expected",
    [
        pytest.param(
            {"payer_type": "medicare", "payer_id": "MEDICARE-ADVANTAGE-X"},
            None,
            id="profile-accepts-for-a-medicare-payer",
        ),
        pytest.param(
            {"payer_type": "commercial", "payer_id": "ACME"},
            ("review", "16"),
            id="profile-refuses-for-commercial-with-override",
        ),
        pytest.param(
            {"payer_type": "medicare", "payer_id": "UNKNOWN"},
            ("deny", "96"),
            id="unknown-payer-medicare-default",
        ),
        pytest.param(
            {"payer_type": "commercial", "payer_id": "UNKNOWN"},
            None,
            id="unknown-payer-commercial-default",
        ),
    ],
)
def test_accepts_77387_professional_from_profile_file(book, payer, expected):
    r = run([cl("A", 1, "77387", mods=["26"], **payer)], profiles=book)
    got = r.open_for("igrt-77387-pc-not-accepted")
    if expected is None:
        assert got == {}
    else:
        assert (got[("A", 1)]["severity"], got[("A", 1)]["carc"]) == expected


def test_profile_object_default_follows_payer_type():
    assert Profile("x").accepts_77387_pc("medicare") is False
    for payer_type in ("medicaid", "commercial", "other"):
        assert Profile("x").accepts_77387_pc(payer_type) is True
    book = ProfileBook(by_payer={"P": Profile("P", accepts_77387_professional=True)})
    r = run(
        [
            cl("A", 1, "77387", mods=["26"], payer_type="medicare", payer_id="P"),
            cl("B", 1, "77387", mods=["26"], payer_type="medicare", payer_id="Q"),
        ],
        profiles=book,
    )
    assert set(r.open_for("igrt-77387-pc-not-accepted")) == {("B", 1)}


@pytest.mark.parametrize(
    "docs, before",
    [
        pytest.param(
            [cl("A", 1, "77387", FIRST_2026, mods=["TC"])], {("A", 1): None}, id="TC-on-2026-01-01"
        ),
        pytest.param(
            [cl("A", 1, "77387", FIRST_2026)], {("A", 1): None}, id="global-on-2026-01-01"
        ),
        pytest.param(
            [cl("A", 1, "77387", "2026-07-01", ctype="institutional")],
            {("A", 1): None},
            id="institutional-2026",
        ),
        pytest.param([cl("A", 1, "77387", LAST_2025, mods=["TC"])], {}, id="TC-on-2025-12-31"),
        pytest.param([cl("A", 1, "77387", LAST_2025)], {}, id="global-on-2025-12-31"),
        pytest.param([cl("A", 1, "77387", FIRST_2026, mods=["26"])], {}, id="PC-in-2026"),
        pytest.param([cl("A", 1, "G6002", FIRST_2026, mods=["TC"])], {}, id="G6002-TC-in-2026"),
    ],
)
def test_igrt_tc_2026(docs, before):
    check_rule(*TC_2026, docs, before)


def test_igrt_tc_2026_turned_off_for_commercial_by_profile(book):
    docs = [
        cl("A", 1, "77387", FIRST_2026, mods=["TC"], payer_type="commercial"),
        cl("B", 1, "77387", FIRST_2026, mods=["TC"], payer_type="medicare"),
    ]
    r = run(docs, profiles=book)
    assert set(r.open_for("igrt-tc-2026")) == {("B", 1)}
