"""Guidance and modality (SPEC 3.2, 6): igrt-superficial-skin, igrt-modality."""

import pytest
from helpers import DAY, check_rule, cl, delivery, run, void

SKIN = ("igrt-superficial-skin", "deny", "50", "final")
MODALITY = ("igrt-modality", "review", "50", "provisional")
DAY2 = "2024-03-05"
DAY3 = "2024-03-06"


def sup(claim="D", number=1, dos=DAY, **kw):
    """Superficial radiation therapy delivery (77401)."""
    return delivery(claim, number, dos, code="77401", modality=None, **kw)


@pytest.mark.parametrize(
    "docs, before",
    [
        pytest.param(
            [sup(), cl("A", 1, "77387", dx=["C44.91"])], {("A", 1): None}, id="77387-line-has-C44"
        ),
        pytest.param(
            [sup(), cl("A", 1, "G6001", dx=["C4491"])],
            {("A", 1): None},
            id="G6001-line-has-C44-no-dot",
        ),
        pytest.param(
            [sup(dx=["C43.9"]), cl("A", 1, "77387")], {("A", 1): None}, id="delivery-line-has-C43"
        ),
        pytest.param(
            [sup(), cl("A", 1, "77387"), cl("B", 1, "77280", DAY2, dx=["D04.5"])],
            {("A", 1): None},
            id="any-course-line-D04",
        ),
        pytest.param([sup(), cl("A", 1, "77387", dx=["D03.9"])], {("A", 1): None}, id="D03"),
        pytest.param(
            [sup(), cl("A", 1, "G6001", dx=["L91.0"])], {("A", 1): None}, id="keloid-L91.0"
        ),
        pytest.param(
            [sup(dos=DAY2), cl("A", 1, "77387", DAY, dx=["C44.311"])],
            {("A", 1): None},
            id="superficial-on-another-day-of-the-course",
        ),
        pytest.param(
            [delivery("D", 1, modality="SUPERFICIAL"), cl("A", 1, "77387", dx=["C44.91"])],
            {("A", 1): None},
            id="explicit-SUPERFICIAL-modality",
        ),
        pytest.param(
            [sup(), delivery("E", 1, modality="3DCRT"), cl("A", 1, "77387", dx=["C44.91"])],
            {("A", 1): None},
            id="course-includes-superficial-among-others",
        ),
        pytest.param(
            [sup(), cl("A", 1, "77387", dx=["C44.91"]), cl("A", 2, "G6001")],
            {("A", 1): None, ("A", 2): None},
            id="course-dx-flags-every-line",
        ),
        pytest.param([sup(), cl("A", 1, "77387", dx=["C61"])], {}, id="prostate-dx"),
        pytest.param([sup(), cl("A", 1, "G6001", dx=["L91.8"])], {}, id="L91.8-not-keloid"),
        pytest.param([sup(), cl("A", 1, "77387")], {}, id="no-dx"),
        pytest.param(
            [delivery("D", 1, modality="3DCRT"), cl("A", 1, "77387", dx=["C44.91"])],
            {},
            id="no-superficial-in-course",
        ),
        pytest.param(
            [sup(), cl("A", 1, "G6002", dx=["C44.91"]), cl("A", 2, "77014", dx=["C44.91"])],
            {},
            id="G6002-and-77014-not-covered",
        ),
        pytest.param(
            [
                delivery("D", 1, code="77401", modality="ELECTRON"),
                cl("A", 1, "77387", dx=["C44.91"]),
            ],
            {},
            id="explicit-modality-not-superficial",
        ),
        pytest.param(
            [sup(course="C2", site="pelvis"), cl("A", 1, "77387", dx=["C44.91"])],
            {},
            id="superficial-in-another-course",
        ),
        pytest.param(
            [
                sup(),
                cl("A", 1, "77387"),
                cl("B", 1, "77280", dx=["C44.91"], course="C2", site="pelvis"),
            ],
            {},
            id="skin-dx-in-another-course",
        ),
        pytest.param(
            [sup(), cl("A", 1, "77387", dx=["C44.91"]), void("D", 1)],
            {},
            id="superficial-delivery-voided",
        ),
    ],
)
def test_igrt_superficial_skin(docs, before):
    check_rule(*SKIN, docs, before)


def test_superficial_skin_follows_course_facts_and_is_final_at_once():
    r = run([cl("A", 1, "77387", DAY, dx=["C44.91"])])
    assert r.open_for("igrt-superficial-skin") == {}
    r.feed(sup(dos=DAY3))
    alert = r.open_for("igrt-superficial-skin")[("A", 1)]
    assert alert["finality"] == "final"
    r.feed(cl("A", 1, "77387", DAY))  # corrected: no skin diagnosis
    assert r.open_for("igrt-superficial-skin") == {}
    r.feed(cl("B", 1, "77280", DAY2, dx=["L91.0"]))  # a keloid diagnosis elsewhere in the course
    assert set(r.open_for("igrt-superficial-skin")) == {("A", 1)}


# -- igrt-modality ---------------------------------------------------------------


def dlv(code, modality=None, claim="D", number=1, dos=DAY, **kw):
    return delivery(claim, number, dos, code=code, modality=modality, **kw)


@pytest.mark.parametrize(
    "docs, before",
    [
        pytest.param([dlv("77401"), cl("A", 1, "G6002")], {("A", 1): None}, id="G6002-superficial"),
        pytest.param(
            [dlv("77402", "2DCRT"), cl("A", 1, "G6002")], {("A", 1): None}, id="G6002-2DCRT"
        ),
        pytest.param([dlv("77385"), cl("A", 1, "G6001")], {("A", 1): None}, id="G6001-IMRT"),
        pytest.param([dlv("77520"), cl("A", 1, "G6001")], {("A", 1): None}, id="G6001-PBT"),
        pytest.param([dlv("77520"), cl("A", 1, "77014")], {("A", 1): None}, id="77014-PBT"),
        pytest.param([dlv("77401"), cl("A", 1, "77014")], {("A", 1): None}, id="77014-superficial"),
        pytest.param([dlv("77373"), cl("A", 1, "77387")], {("A", 1): None}, id="77387-SBRT"),
        pytest.param([dlv("77371"), cl("A", 1, "77387")], {("A", 1): None}, id="77387-SRS"),
        pytest.param(
            [dlv("77412", "ELECTRON"), cl("A", 1, "77387")], {("A", 1): None}, id="77387-ELECTRON"
        ),
        pytest.param([dlv("77424"), cl("A", 1, "G6002")], {("A", 1): None}, id="G6002-IORT"),
        pytest.param([dlv("77761"), cl("A", 1, "77387")], {("A", 1): None}, id="77387-BRACHY"),
        pytest.param(
            [dlv("77385", "SBRT"), cl("A", 1, "G6002")],
            {("A", 1): None},
            id="explicit-SBRT-beats-IMRT-code",
        ),
        pytest.param(
            [dlv("77373", dos=DAY2), cl("A", 1, "77387", DAY)],
            {("A", 1): None},
            id="no-delivery-that-day-course-SBRT",
        ),
        pytest.param(
            [dlv("77412", "3DCRT", dos=DAY2), dlv("77373", claim="E"), cl("A", 1, "77387")],
            {("A", 1): None},
            id="day-SBRT-wins-over-course",
        ),
        pytest.param(
            [dlv("77385"), cl("A", 1, "G6001"), cl("A", 2, "G6002"), cl("A", 3, "77014")],
            {("A", 1): None},
            id="only-the-code-that-conflicts",
        ),
        pytest.param([dlv("77385"), cl("A", 1, "G6002")], {}, id="G6002-IMRT"),
        pytest.param([dlv("77412", "3DCRT"), cl("A", 1, "G6002")], {}, id="G6002-3DCRT"),
        pytest.param([dlv("77402", "2DCRT"), cl("A", 1, "G6001")], {}, id="G6001-2DCRT"),
        pytest.param([dlv("77401"), cl("A", 1, "G6001")], {}, id="G6001-superficial"),
        pytest.param([dlv("77412", "3DCRT"), cl("A", 1, "77014")], {}, id="77014-3DCRT"),
        pytest.param([dlv("77385"), cl("A", 1, "77014")], {}, id="77014-IMRT"),
        pytest.param([dlv("77520"), cl("A", 1, "77387")], {}, id="77387-PBT"),
        pytest.param([dlv("77401"), cl("A", 1, "77387")], {}, id="77387-superficial"),
        pytest.param(
            [dlv("77373", "3DCRT"), cl("A", 1, "77387")], {}, id="explicit-3DCRT-beats-SBRT-code"
        ),
        pytest.param([dlv("77412"), cl("A", 1, "G6002")], {}, id="unknown-external-suppresses"),
        pytest.param(
            [dlv("77401"), dlv("77412", claim="E"), cl("A", 1, "G6002")],
            {},
            id="superficial-plus-unknown-suppresses",
        ),
        pytest.param(
            [dlv("77401"), dlv("77412", "3DCRT", claim="E"), cl("A", 1, "G6002")],
            {},
            id="one-shared-modality-is-enough",
        ),
        pytest.param(
            [dlv("77373"), cl("A", 1, "G6017"), cl("A", 2, "77417", mods=["TC"])],
            {},
            id="G6017-and-77417-not-this-rule",
        ),
        pytest.param([cl("A", 1, "77387")], {}, id="no-delivery-in-course"),
        pytest.param(
            [
                dlv("77373", dos=DAY2),
                dlv("77412", "3DCRT", claim="E", dos=DAY3),
                cl("A", 1, "77387"),
            ],
            {},
            id="no-delivery-that-day-course-shares",
        ),
        pytest.param(
            [dlv("77373", dos=DAY2), dlv("77412", claim="E", dos=DAY3), cl("A", 1, "77387")],
            {},
            id="no-delivery-that-day-course-unknown",
        ),
        pytest.param(
            [dlv("77373", dos=DAY2), dlv("77412", "3DCRT", claim="E"), cl("A", 1, "77387")],
            {},
            id="day-3DCRT-wins-over-course-SBRT",
        ),
        pytest.param(
            [dlv("77373", site="pelvis", course="C2"), cl("A", 1, "77387")],
            {},
            id="SBRT-of-another-course-and-site",
        ),
    ],
)
def test_igrt_modality(docs, before):
    check_rule(*MODALITY, docs, before)


def test_igrt_modality_is_provisional_then_final():
    r = run([dlv("77373", dos=DAY2), cl("A", 1, "G6002", DAY)])
    alert = r.open_for("igrt-modality")[("A", 1)]
    assert (alert["finality"], alert["severity"], alert["carc"]) == ("provisional", "review", "50")
    r.feed(dlv("77412", "3DCRT", claim="E", dos=DAY3))  # the course turns out to be 3DCRT too
    assert r.open_for("igrt-modality") == {}
    r.feed(void("E", 1))
    r.close_all()
    assert r.open_for("igrt-modality")[("A", 1)]["finality"] == "final"
