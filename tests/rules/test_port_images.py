"""Port images (77417): the six rules of SPEC 6 that concern them."""

from datetime import date, timedelta

import pytest
from helpers import DAY, check_rule, cl, delivery, end, run, void

PROFESSIONAL = ("port-image-professional", "deny", "4", "final")
PER_DAY = ("port-image-units-per-day", "deny", "151", "final")
FREQUENCY = ("port-image-frequency", "deny", "151", "provisional")
WITH_IGRT = ("port-image-with-igrt", "deny", "97", "final")
WITH_SIM = ("port-image-with-verification-sim", "deny", "97", "final")
MODALITY = ("port-image-modality", "deny", "97", "provisional")


def day(n: int) -> str:
    """The n-th treatment day (1-based) counted from DAY."""
    return (date.fromisoformat(DAY) + timedelta(days=n - 1)).isoformat()


def fractions(
    n: int, *, course: str = "C1", site: str = "prostate", claim: str = "D", first: int = 1, **kw
) -> list[dict]:
    """n single-fraction 3DCRT deliveries on consecutive days."""
    return [
        delivery(claim, i, day(first + i - 1), course=course, site=site, **kw)
        for i in range(1, n + 1)
    ]


def port(claim: str, number: int, n: int = 1, **kw) -> dict:
    return cl(claim, number, "77417", day(n), **kw)


# -- port-image-professional -------------------------------------------------


@pytest.mark.parametrize(
    "docs, before",
    [
        pytest.param([port("A", 1, mods=["26"])], {("A", 1): None}, id="77417-26"),
        pytest.param(
            [delivery("D", 1), port("A", 1, mods=["26"])],
            {("A", 1): None},
            id="77417-26-with-a-fraction",
        ),
        pytest.param([port("A", 1, mods=["59", "26"])], {("A", 1): None}, id="26-among-modifiers"),
        pytest.param(
            [port("A", 1, mods=["26"], ctype="institutional")],
            {("A", 1): None},
            id="77417-26-institutional",
        ),
        pytest.param(
            [port("A", 1), port("A", 2, 2, mods=["26"])], {("A", 2): None}, id="only-the-26-line"
        ),
        pytest.param([port("A", 1)], {}, id="no-modifier"),
        pytest.param([port("A", 1, mods=["TC"])], {}, id="77417-TC"),
        pytest.param([port("A", 1, ctype="institutional")], {}, id="institutional-no-modifier"),
        pytest.param(
            [cl("A", 1, "77387", mods=["26"]), cl("A", 2, "77014", mods=["26"])],
            {},
            id="26-on-other-guidance-codes",
        ),
    ],
)
def test_port_image_professional(docs, before):
    check_rule(*PROFESSIONAL, docs, before)


# -- port-image-units-per-day ------------------------------------------------


@pytest.mark.parametrize(
    "docs, before",
    [
        pytest.param([port("A", 1, units=2)], {("A", 1): 1}, id="one-line-2-units"),
        pytest.param([port("A", 1, units=3)], {("A", 1): 2}, id="one-line-3-units"),
        pytest.param([port("A", 1), port("B", 1)], {("B", 1): 1}, id="two-claims-latest-claim"),
        pytest.param([port("B", 1), port("A", 1)], {("B", 1): 1}, id="two-claims-reverse-arrival"),
        pytest.param([port("A", 2), port("A", 1)], {("A", 2): 1}, id="same-claim-latest-line"),
        pytest.param([port("B", 1), port("A", 9)], {("B", 1): 1}, id="claim-id-before-line-number"),
        pytest.param(
            [port("A", 1, units=2), port("B", 1)],
            {("A", 1): 1, ("B", 1): 1},
            id="excess-2-spread-over-latest",
        ),
        pytest.param(
            [port("A", 3), port("A", 2), port("A", 1)], {("A", 2): 1, ("A", 3): 1}, id="three-lines"
        ),
        pytest.param(
            [port("A", 1, course="C1"), port("B", 1, course="C2")],
            {("B", 1): 1},
            id="two-courses-same-site",
        ),
        pytest.param([port("A", 1)], {}, id="one-unit"),
        pytest.param([port("A", 1, 1), port("B", 1, 2)], {}, id="different-days"),
        pytest.param(
            [port("A", 1, site="prostate"), port("B", 1, site="pelvis")], {}, id="different-sites"
        ),
        pytest.param(
            [port("A", 1, patient="P1"), port("B", 1, patient="P2")], {}, id="different-patients"
        ),
        pytest.param([port("A", 1), port("B", 1), void("B", 1)], {}, id="second-line-voided"),
        pytest.param([port("A", 1, units=2), port("A", 1)], {}, id="corrected-to-1-unit"),
    ],
)
def test_port_image_units_per_day(docs, before):
    check_rule(*PER_DAY, docs, before)


def test_units_per_day_evidence_names_the_other_port_lines():
    r = run([port("B", 1), port("A", 1)])
    alert = r.open_for("port-image-units-per-day")[("B", 1)]
    assert alert["evidence"] == [
        {"claim_id": "A", "line_number": 1, "hcpcs": "77417", "date_of_service": DAY}
    ]


# -- port-image-frequency ----------------------------------------------------


@pytest.mark.parametrize(
    "docs, before, after",
    [
        pytest.param(
            [*fractions(14), port("P", 1, 1), port("P", 2, 6), port("P", 3, 11)],
            {},
            {("P", 3): 1},
            id="standard-example-14-fractions-3-units",
        ),
        pytest.param(
            [*fractions(14), port("P", 1, 1), port("P", 2, 6)], {}, {}, id="14-fractions-2-units"
        ),
        pytest.param(
            [*fractions(10), port("P", 1, 1), port("P", 2, 5), port("P", 3, 10)],
            {("P", 3): 1},
            {("P", 3): 1},
            id="10-fractions-3-units",
        ),
        pytest.param(
            [*fractions(4), port("P", 1, 1)],
            {},
            {("P", 1): 1},
            id="4-fractions-1-unit-ceil-then-floor",
        ),
        pytest.param([*fractions(5), port("P", 1, 1)], {}, {}, id="5-fractions-1-unit"),
        pytest.param(
            [*fractions(9), port("P", 1, 1), port("P", 2, 6)],
            {},
            {("P", 2): 1},
            id="9-fractions-2-units",
        ),
        pytest.param([port("P", 1, 1)], {("P", 1): 1}, {("P", 1): 1}, id="no-fractions"),
        pytest.param(
            [delivery("D", i, day(i), code="77761", modality=None) for i in (1, 2, 3)]
            + [port("P", 1, 3)],
            {("P", 1): 1},
            {("P", 1): 1},
            id="brachytherapy-has-no-fractions",
        ),
        pytest.param(
            [*fractions(6), port("P", 1, 1, units=2)],
            {},
            {("P", 1): 1},
            id="one-line-2-units-6-fractions",
        ),
        pytest.param(
            [*fractions(5), port("P", 1, 1), port("P", 2, 2), port("P", 3, 3)],
            {("P", 2): 1, ("P", 3): 1},
            {("P", 2): 1, ("P", 3): 1},
            id="excess-2-on-the-2-latest",
        ),
        pytest.param(
            [*fractions(11), port("P", 3, 11), port("P", 2, 6), port("P", 1, 1)],
            {},
            {("P", 3): 1},
            id="latest-by-date-not-arrival",
        ),
        pytest.param(
            [*fractions(5), port("Z", 1, 1), port("A", 1, 3)],
            {("A", 1): 1},
            {("A", 1): 1},
            id="date-orders-before-claim-id",
        ),
        pytest.param(
            [*fractions(5), port("B", 1, 5), port("A", 2, 5)],
            {("B", 1): 1},
            {("B", 1): 1},
            id="same-date-claim-id-orders",
        ),
        pytest.param(
            [*fractions(5), port("A", 2, 5), port("A", 10, 5)],
            {("A", 10): 1},
            {("A", 10): 1},
            id="same-claim-line-number-orders-numerically",
        ),
        pytest.param(
            fractions(4) + fractions(10, course="C2", claim="E") + [port("P", 1, 1)],
            {},
            {("P", 1): 1},
            id="other-course-fractions-do-not-count",
        ),
        pytest.param(
            fractions(4) + fractions(10, site="pelvis", claim="E") + [port("P", 1, 1)],
            {},
            {("P", 1): 1},
            id="other-site-fractions-do-not-count",
        ),
        pytest.param(
            [delivery("D", 1, day(1), units=10), port("P", 1, 1), port("P", 2, 2)],
            {},
            {},
            id="fractions-are-units",
        ),
    ],
)
def test_port_image_frequency(docs, before, after):
    check_rule(*FREQUENCY, docs, before, after)


def test_standard_example_on_course_end():
    """14 fractions allow 2 units of 77417; 3 units -> 1 excess on the latest."""
    r = run([*fractions(14), port("P", 1, 1), port("P", 2, 6), port("P", 3, 11)])
    assert r.open_for("port-image-frequency") == {}  # ceil(14/5) = 3 allowed so far
    emitted = r.feed(end(day(14)))
    assert [(m["rule_id"], m["claim_id"], m["line_number"]) for m in emitted] == [
        ("port-image-frequency", "P", 3)
    ]
    alert = emitted[0]
    assert (alert["status"], alert["finality"], alert["excess_units"]) == ("open", "final", 1)
    assert "3 port-image units for 14 fractions; 2 allowed" in alert["message"]
    assert alert["evidence"] == [
        {"claim_id": "P", "line_number": 1, "hcpcs": "77417", "date_of_service": day(1)},
        {"claim_id": "P", "line_number": 2, "hcpcs": "77417", "date_of_service": day(6)},
    ]


def test_provisional_becomes_final_with_a_higher_sequence():
    r = run([*fractions(10), port("P", 1, 1), port("P", 2, 5), port("P", 3, 10)])
    alert = r.open_for("port-image-frequency")[("P", 3)]
    assert alert["finality"] == "provisional"
    emitted = r.feed(end(day(10)))
    assert len(emitted) == 1
    assert emitted[0]["alert_id"] == alert["alert_id"]
    assert emitted[0]["finality"] == "final"
    assert emitted[0]["sequence"] > alert["sequence"]


def test_later_fractions_cure_a_provisional_excess():
    r = run([*fractions(5), port("P", 1, 1), port("P", 2, 5)])
    got = r.open_for("port-image-frequency")
    assert {k: (a["excess_units"], a["finality"]) for k, a in got.items()} == {
        ("P", 2): (1, "provisional")
    }
    r.feed(*fractions(5, claim="E", first=6))
    assert r.open_for("port-image-frequency") == {}
    assert r.messages[-1]["status"] == "resolved"
    r.close_all()
    assert r.open_for("port-image-frequency") == {}


def test_a_line_for_a_closed_course_is_final_at_once():
    r = run([*fractions(5), port("P", 1, 1), end(day(5))])
    assert r.open_for("port-image-frequency") == {}
    r.feed(port("P", 2, 5))
    alert = r.open_for("port-image-frequency")[("P", 2)]
    assert (alert["finality"], alert["excess_units"]) == ("final", 1)


@pytest.mark.parametrize(
    "gap, closed",
    [
        pytest.param(44, False, id="44-days-idle-still-open"),
        pytest.param(45, True, id="45-days-idle-closes"),
    ],
)
def test_course_closes_after_45_idle_days_of_patient_event_time(gap, closed):
    r = run([*fractions(4), port("P", 1, 4)])
    assert r.open_for("port-image-frequency") == {}
    later = (date.fromisoformat(day(4)) + timedelta(days=gap)).isoformat()
    r.feed(cl("X", 1, "77280", later, course="C2", site="pelvis"))
    got = r.open_for("port-image-frequency")
    if closed:
        assert {k: (a["excess_units"], a["finality"]) for k, a in got.items()} == {
            ("P", 1): (1, "final")
        }
    else:
        assert got == {}


def test_a_late_line_dated_inside_an_idle_closed_course_is_final():
    r = run([*fractions(4), port("P", 1, 4)])
    r.feed(cl("X", 1, "77280", "2024-04-21", course="C2", site="pelvis"))  # 45 days on
    r.feed(port("P", 2, 2))  # late arrival, dated inside the closed course
    got = r.open_for("port-image-frequency")
    assert {k: (a["excess_units"], a["finality"]) for k, a in got.items()} == {
        ("P", 1): (1, "final"),
        ("P", 2): (1, "final"),
    }


def test_a_later_dated_line_does_not_reopen_an_idle_closed_course():
    r = run([*fractions(4), port("P", 1, 4)])  # course C1: 2024-03-04 .. 2024-03-07
    r.feed(cl("X", 1, "77280", "2024-04-21", course="C2", site="pelvis"))  # C1 idle 45 days
    assert r.open_for("port-image-frequency")[("P", 1)]["finality"] == "final"
    r.feed(cl("Q", 1, "77387", "2024-04-22", mods=["26"]))  # a new line for closed C1
    got = r.open_for("port-image-frequency")
    assert {k: (a["excess_units"], a["finality"]) for k, a in got.items()} == {
        ("P", 1): (1, "final")
    }
    assert r.open_for("igrt-without-fraction")[("Q", 1)]["finality"] == "final"


def test_stream_event_time_closes_an_idle_course_of_a_silent_patient():
    # SPEC 4: event time is the stream's, so another patient's later line
    # closes P1's course once it has been idle for 45 days.
    r = run([*fractions(4), port("P", 1, 4)])
    r.feed(cl("X", 1, "77280", "2024-04-20", patient="P2"))  # 44 days: still open
    assert r.open_for("port-image-frequency") == {}
    r.feed(cl("X", 2, "77280", "2024-04-21", patient="P2"))  # 45 days: closed
    got = r.open_for("port-image-frequency")
    assert {k: (a["excess_units"], a["finality"]) for k, a in got.items()} == {
        ("P", 1): (1, "final")
    }


# -- port-image-with-igrt / port-image-with-verification-sim ------------------


@pytest.mark.parametrize(
    "docs, before",
    [
        pytest.param(
            [delivery("D", 1), port("A", 1), cl("B", 1, "77387", mods=["26"])],
            {("A", 1): None},
            id="77387-26-same-day",
        ),
        pytest.param(
            [cl("B", 1, "77387", mods=["TC"]), port("A", 1)],
            {("A", 1): None},
            id="77387-TC-arrives-first",
        ),
        pytest.param(
            [port("A", 1), port("A", 2), cl("A", 3, "77387")],
            {("A", 1): None, ("A", 2): None},
            id="every-port-line-of-the-day",
        ),
        pytest.param(
            [port("A", 1, course="C1"), cl("B", 1, "77387", course="C2")],
            {("A", 1): None},
            id="other-course-same-site-is-same-day",
        ),
        pytest.param([port("A", 1, 1), cl("B", 1, "77387", day(2))], {}, id="next-day"),
        pytest.param(
            [port("A", 1, site="prostate"), cl("B", 1, "77387", site="pelvis")], {}, id="other-site"
        ),
        pytest.param(
            [port("A", 1, patient="P1"), cl("B", 1, "77387", patient="P2")], {}, id="other-patient"
        ),
        pytest.param(
            [port("A", 1), cl("B", 1, "G6002"), cl("B", 2, "77014")], {}, id="other-guidance-codes"
        ),
        pytest.param([port("A", 1), cl("B", 1, "77387"), void("B", 1)], {}, id="77387-voided"),
    ],
)
def test_port_image_with_igrt(docs, before):
    check_rule(*WITH_IGRT, docs, before)


def test_port_image_with_igrt_alert_is_on_77417_with_77387_as_evidence():
    r = run([cl("B", 1, "77387", mods=["26"]), port("A", 1)])
    alerts = r.open_for("port-image-with-igrt")
    assert list(alerts) == [("A", 1)]
    assert alerts[("A", 1)]["hcpcs"] == "77417"
    assert alerts[("A", 1)]["evidence"] == [
        {"claim_id": "B", "line_number": 1, "hcpcs": "77387", "date_of_service": DAY}
    ]


@pytest.mark.parametrize(
    "docs, before",
    [
        pytest.param([port("A", 1), cl("B", 1, "77280")], {("A", 1): None}, id="77280-same-day"),
        pytest.param(
            [cl("B", 1, "77280"), port("A", 1, mods=["TC"])], {("A", 1): None}, id="77280-first"
        ),
        pytest.param([port("A", 1), cl("B", 1, "77285")], {}, id="77285-is-not-verification"),
        pytest.param([port("A", 1), cl("B", 1, "77290")], {}, id="77290-is-not-verification"),
        pytest.param([port("A", 1, 2), cl("B", 1, "77280", day(1))], {}, id="77280-day-before"),
        pytest.param(
            [port("A", 1, site="prostate"), cl("B", 1, "77280", site="pelvis")], {}, id="other-site"
        ),
    ],
)
def test_port_image_with_verification_sim(docs, before):
    check_rule(*WITH_SIM, docs, before)


# -- port-image-modality -----------------------------------------------------


def dlv(code: str, n: int = 1, modality: str | None = None, claim: str = "D", **kw) -> dict:
    return delivery(claim, n, day(n), code=code, modality=modality, **kw)


PORT_ON_1 = port("A", 1, 1)
PORT_ON_2 = port("A", 1, 2)


@pytest.mark.parametrize(
    "docs, before",
    [
        pytest.param([dlv("77373"), PORT_ON_1], {("A", 1): None}, id="SBRT-77373"),
        pytest.param([dlv("G0340"), PORT_ON_1], {("A", 1): None}, id="SBRT-G0340"),
        pytest.param([dlv("77371"), PORT_ON_1], {("A", 1): None}, id="SRS-77371"),
        pytest.param([dlv("G0339"), PORT_ON_1], {("A", 1): None}, id="SRS-G0339"),
        pytest.param([dlv("77424"), PORT_ON_1], {("A", 1): None}, id="IORT-77424"),
        pytest.param(
            [dlv("77412", modality="ELECTRON"), PORT_ON_1],
            {("A", 1): None},
            id="electron-by-event-modality",
        ),
        pytest.param([dlv("77761"), PORT_ON_1], {("A", 1): None}, id="brachy-77761"),
        pytest.param(
            [dlv("77385", modality="ELECTRON"), PORT_ON_1],
            {("A", 1): None},
            id="explicit-modality-beats-IMRT-code",
        ),
        pytest.param(
            [dlv("77373"), dlv("77371", claim="E"), PORT_ON_1],
            {("A", 1): None},
            id="SBRT-and-SRS-day",
        ),
        pytest.param(
            [dlv("77373", 1), PORT_ON_2], {("A", 1): None}, id="no-delivery-that-day-course-is-SBRT"
        ),
        pytest.param(
            [dlv("77412", 2, modality="3DCRT"), dlv("77373", 1, claim="E"), PORT_ON_1],
            {("A", 1): None},
            id="day-SBRT-wins-over-course-3DCRT",
        ),
        pytest.param([dlv("77412", modality="3DCRT"), PORT_ON_1], {}, id="3DCRT"),
        pytest.param([dlv("77402", modality="2DCRT"), PORT_ON_1], {}, id="2DCRT"),
        pytest.param([dlv("77385"), PORT_ON_1], {}, id="IMRT-77385"),
        pytest.param([dlv("77520"), PORT_ON_1], {}, id="PBT-77520"),
        pytest.param([dlv("77401"), PORT_ON_1], {}, id="SUPERFICIAL-77401"),
        pytest.param([dlv("77412"), PORT_ON_1], {}, id="unknown-external-beam"),
        pytest.param(
            [dlv("77373", modality="3DCRT"), PORT_ON_1], {}, id="explicit-3DCRT-beats-SBRT-code"
        ),
        pytest.param(
            [dlv("77373"), dlv("77412", modality="3DCRT", claim="E"), PORT_ON_1],
            {},
            id="SBRT-and-3DCRT-day",
        ),
        pytest.param(
            [dlv("77373"), dlv("77412", claim="E"), PORT_ON_1],
            {},
            id="SBRT-and-unknown-day-suppressed",
        ),
        pytest.param([PORT_ON_1, cl("B", 1, "77280")], {}, id="course-without-delivery"),
        pytest.param(
            [dlv("77373", 1), dlv("77412", 3, modality="3DCRT"), PORT_ON_2],
            {},
            id="no-delivery-that-day-course-SBRT-and-3DCRT",
        ),
        pytest.param(
            [dlv("77373", 1), dlv("77412", 3), PORT_ON_2],
            {},
            id="no-delivery-that-day-course-has-unknown",
        ),
        pytest.param(
            [dlv("77373", 1), dlv("77412", 2, modality="3DCRT", claim="E"), PORT_ON_2],
            {},
            id="day-3DCRT-wins-over-course-SBRT",
        ),
        pytest.param(
            [dlv("77373", 1, course="C2", site="pelvis"), PORT_ON_2],
            {},
            id="SBRT-in-another-course",
        ),
    ],
)
def test_port_image_modality(docs, before):
    check_rule(*MODALITY, docs, before)


def test_port_image_modality_follows_the_course_modalities():
    r = run([PORT_ON_2])
    assert r.open_for("port-image-modality") == {}
    r.feed(dlv("77373", 1))
    assert r.open_for("port-image-modality")[("A", 1)]["finality"] == "provisional"
    r.feed(dlv("77412", 3, modality="3DCRT", claim="E"))
    assert r.open_for("port-image-modality") == {}
    r.feed(void("E", 3))
    r.feed(end(day(3)))
    assert r.open_for("port-image-modality")[("A", 1)]["finality"] == "final"
