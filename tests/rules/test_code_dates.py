"""The 2026 code changes (SPEC 6, deleted-code): on both sides of 2026-01-01,
a code deleted on its date draws deleted-code and nothing else, and is
invisible to every other rule, as a line and as evidence; a deleted delivery
code still counts its fractions and modality.

Each case is a billing day built for a date; `before` is what every rule says
on 2025-12-31, `after` on 2026-01-01: (claim_id, line_number) -> rule ids of
the open alerts on that line, once every course is closed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helpers import cl, delivery, run

Docs = Callable[[str], list[dict[str, Any]]]
OLD, NEW = "2025-12-31", "2026-01-01"
SKIN = ["Z51.0", "C44.311"]


def _by_line(docs: list[dict[str, Any]]) -> dict[tuple[str, int], set[str]]:
    r = run(docs, close=True)
    found: dict[tuple[str, int], set[str]] = {}
    for alert in r.open.values():
        found.setdefault((alert["claim_id"], alert["line_number"]), set()).add(alert["rule_id"])
    return found


CASES: list[Any] = [
    # -- G6017 -------------------------------------------------------------
    pytest.param(
        lambda d: [delivery("D", 1, d), cl("A", 1, "G6017", d, units=2)],
        {("A", 1): {"intrafraction-per-fraction"}},
        {("A", 1): {"deleted-code"}},
        id="G6017-2-units-intrafraction-per-fraction",
    ),
    pytest.param(
        lambda d: [
            delivery("D", 1, d, ctype="institutional"),
            cl("I", 1, "G6017", d, units=2, ctype="institutional"),
        ],
        {("I", 1): {"intrafraction-per-fraction"}},
        {("I", 1): {"deleted-code"}},
        id="G6017-institutional-intrafraction-per-fraction",
    ),
    pytest.param(
        lambda d: [cl("A", 1, "G6017", d)],
        {("A", 1): {"igrt-without-fraction", "intrafraction-per-fraction"}},
        {("A", 1): {"deleted-code"}},
        id="G6017-igrt-without-fraction",
    ),
    # -- G6002 -------------------------------------------------------------
    pytest.param(
        lambda d: [cl("A", 1, "G6002", d, mods=["26"])],
        {("A", 1): {"igrt-without-fraction"}},
        {("A", 1): {"deleted-code"}},
        id="G6002-26-igrt-without-fraction",
    ),
    pytest.param(
        # 77387-26 on claim B is the later line: in 2025 the excess is its,
        # with the G6002 as evidence; in 2026 the G6002 counts for nothing.
        lambda d: [
            delivery("D", 1, d),
            cl("A", 1, "G6002", d, mods=["26"]),
            cl("B", 1, "77387", d, mods=["26"]),
        ],
        {("B", 1): {"igrt-per-fraction"}},
        {("A", 1): {"deleted-code"}},
        id="G6002-26-counted-by-igrt-per-fraction-only-in-2025",
    ),
    pytest.param(
        lambda d: [
            delivery("D", 1, d, code="77761", modality=None),
            cl("A", 1, "G6002", d, mods=["26"], pos="22"),
        ],
        {("A", 1): {"igrt-without-fraction", "igrt-modality"}},
        {("A", 1): {"deleted-code"}},
        id="G6002-26-brachytherapy-igrt-modality",
    ),
    pytest.param(
        lambda d: [delivery("D", 1, d, ctype="institutional"), cl("A", 1, "G6002", d, pos="22")],
        {("A", 1): {"igrt-pc-modifier-hospital"}},
        {("A", 1): {"deleted-code"}},
        id="G6002-professional-POS22-without-26",
    ),
    # -- G6001 -------------------------------------------------------------
    pytest.param(
        lambda d: [
            delivery("I", 1, d, ctype="institutional"),
            cl("I", 2, "G6001", d, ctype="institutional"),
        ],
        {("I", 2): {"ultrasound-guidance-hopps"}},
        {("I", 2): {"deleted-code"}},
        id="G6001-institutional-ultrasound-guidance-hopps",
    ),
    pytest.param(
        lambda d: [delivery("D", 1, d), cl("A", 1, "G6001", d, mods=["26"])],
        {},
        {("A", 1): {"deleted-code"}},
        id="G6001-professional-clean-in-2025",
    ),
    pytest.param(
        lambda d: [
            delivery("D", 1, d, code="77401", modality=None, dx=SKIN),
            cl("A", 1, "G6001", d, dx=SKIN),
        ],
        {("A", 1): {"igrt-superficial-skin"}},
        {("A", 1): {"deleted-code"}},
        id="G6001-superficial-skin",
    ),
    pytest.param(
        lambda d: [
            delivery("D", 1, d, code="77412", modality="IMRT"),
            cl("A", 1, "G6001", d, mods=["26"]),
        ],
        {("A", 1): {"igrt-modality"}},
        {("A", 1): {"deleted-code"}},
        id="G6001-with-IMRT-igrt-modality",
    ),
    pytest.param(
        # The deleted G6001's skin diagnosis does not count for the course,
        # nor its unit for igrt-per-fraction.
        lambda d: [
            delivery("D", 1, d, code="77401", modality=None),
            cl("A", 1, "G6001", d, mods=["26"], dx=SKIN),
            cl("B", 1, "77387", d, mods=["26"]),
        ],
        {
            ("A", 1): {"igrt-superficial-skin"},
            ("B", 1): {"igrt-superficial-skin", "igrt-per-fraction"},
        },
        {("A", 1): {"deleted-code"}},
        id="deleted-G6001-skin-diagnosis-not-a-course-fact",
    ),
    # -- 77014 -------------------------------------------------------------
    pytest.param(
        lambda d: [cl("A", 1, "77014", d, mods=["26"]), cl("B", 1, "77280", d)],
        {("A", 1): {"ct-guidance-with-simulation"}},
        {("A", 1): {"deleted-code"}},
        id="77014-with-77280",
    ),
    pytest.param(
        lambda d: [
            cl("I", 1, "77014", d, ctype="institutional"),
            cl("I", 2, "77295", d, ctype="institutional"),
        ],
        {("I", 1): {"ct-guidance-with-simulation"}},
        {("I", 1): {"deleted-code"}},
        id="77014-institutional-with-77295",
    ),
    pytest.param(
        lambda d: [
            delivery("D", 1, d, code="77373", modality=None),
            cl("A", 1, "77014", d, mods=["26"]),
        ],
        {("A", 1): {"igrt-modality"}},
        {("A", 1): {"deleted-code"}},
        id="77014-26-with-SBRT-igrt-modality",
    ),
    pytest.param(
        lambda d: [delivery("D", 1, d, ctype="institutional"), cl("A", 1, "77014", d, pos="19")],
        {("A", 1): {"igrt-pc-modifier-hospital"}},
        {("A", 1): {"deleted-code"}},
        id="77014-professional-POS19-without-26",
    ),
    pytest.param(
        lambda d: [
            delivery("D", 1, d),
            cl("A", 1, "77014", d, mods=["26"]),
            cl("A", 2, "77387", d, mods=["26"]),
        ],
        {("A", 2): {"igrt-per-fraction"}},
        {("A", 1): {"deleted-code"}},
        id="77014-26-counted-by-igrt-per-fraction-only-in-2025",
    ),
    # -- deleted delivery codes ----------------------------------------------
    pytest.param(
        lambda d: [
            cl("I", 1, "77385", d, ctype="institutional"),
            cl("I", 2, "77387", d, ctype="institutional"),
        ],
        {("I", 2): {"igrt-tc-with-imrt"}},
        {("I", 1): {"deleted-code"}, ("I", 2): {"igrt-tc-2026"}},
        id="77385-no-longer-bundles-the-77387-TC-it-is-gone",
    ),
    pytest.param(
        lambda d: [
            cl("I", 1, "77385", d, ctype="institutional"),
            cl("A", 1, "77387", d, mods=["26"], pos="22"),
        ],
        {},
        {("I", 1): {"deleted-code"}},
        id="deleted-77385-still-a-fraction-for-77387-26",
    ),
    pytest.param(
        lambda d: [cl("A", 1, "G6016", d), cl("A", 2, "77387", d, mods=["26"], units=2)],
        {("A", 2): {"igrt-per-fraction"}},
        {("A", 1): {"deleted-code"}, ("A", 2): {"igrt-per-fraction"}},
        id="deleted-G6016-still-counts-one-fraction",
    ),
    pytest.param(
        lambda d: [
            delivery("D", 1, d, code="G6005", modality="ELECTRON"),
            cl("A", 1, "77387", d, mods=["26"]),
        ],
        {("A", 1): {"igrt-modality"}},
        {("D", 1): {"deleted-code"}, ("A", 1): {"igrt-modality"}},
        id="deleted-G6005-still-gives-its-modality",
    ),
]


@pytest.mark.parametrize("docs, before, after", CASES)
def test_both_sides_of_2026_01_01(docs: Docs, before: dict, after: dict) -> None:
    assert _by_line(docs(OLD)) == before
    assert _by_line(docs(NEW)) == after


def test_deleted_delivery_is_not_evidence_but_its_fraction_counts() -> None:
    r = run(
        [
            cl("I", 1, "77386", NEW, ctype="institutional"),
            cl("A", 1, "77387", NEW, mods=["26"]),
            cl("A", 2, "77387", NEW, mods=["26"]),
        ]
    )
    alert = r.open_for("igrt-per-fraction")[("A", 2)]
    assert "for 1 fraction" in alert["message"]
    assert [e["hcpcs"] for e in alert["evidence"]] == ["77387"]


def test_a_deleted_code_is_not_evidence_of_port_image_with_verification_sim() -> None:
    # 77280 is not deleted: still evidence. (A deleted code is never evidence:
    # the rules only see lines whose code is billable on their date.)
    r = run(
        [
            delivery("D", 1, NEW),
            cl("A", 1, "77417", NEW),
            cl("B", 1, "77280", NEW),
            cl("C", 1, "77014", NEW),
        ]
    )
    alert = r.open_for("port-image-with-verification-sim")[("A", 1)]
    assert [e["hcpcs"] for e in alert["evidence"]] == ["77280"]
    assert set(r.open_for("deleted-code")) == {("C", 1)}


def test_a_correction_across_the_date_moves_the_line_between_the_rules() -> None:
    r = run([delivery("D", 1, OLD), cl("A", 1, "G6017", OLD, units=2)])
    assert set(r.open_for("intrafraction-per-fraction")) == {("A", 1)}
    r.feed(delivery("D", 1, NEW), cl("A", 1, "G6017", NEW, units=2))
    assert r.open_for("intrafraction-per-fraction") == {}
    assert set(r.open_for("deleted-code")) == {("A", 1)}
    r.feed(cl("A", 1, "G6017", OLD, units=2))  # corrected back: the deleted-code resolves
    assert r.open_for("deleted-code") == {}


# -- next year's changes are a data change ---------------------------------------


def _table_deleting_77417_from_mid_2027():
    """The code data with one new dated change: 77417 deleted from 2027-07-01."""
    from dataclasses import replace

    from stream_app.core import codes

    future = codes.Source("A payer bulletin", "May 2027")
    entries = [
        replace(
            e,
            valid_until="2027-06-30",
            source=future,
            replaced_by=("77387",),
            note="bill 77387 instead",
        )
        if e.code == "77417"
        else e
        for e in codes.CODE_TABLE
    ]
    return codes.CodeTable(entries)


def test_a_new_dated_entry_alone_makes_deleted_code_fire_from_its_date() -> None:
    from helpers import FIXED_TIME, parse

    from stream_app.core.alerts import build_alert, fold
    from stream_app.core.engine import Engine
    from stream_app.core.rules import load_registry
    from stream_app.core.store import MemoryStore

    docs = [
        delivery("D", 1, "2027-06-30"),
        cl("A", 1, "77417", "2027-06-30"),
        delivery("D", 2, "2027-07-01"),
        cl("B", 1, "77417", "2027-07-01"),
    ]

    def open_alerts(registry: Any) -> dict[tuple[str, int], set[str]]:
        engine = Engine(MemoryStore(), registry)
        messages = [
            build_alert(t, FIXED_TIME) for doc in docs for t in engine.apply(parse(doc)).transitions
        ]
        messages += [
            build_alert(t, FIXED_TIME) for t in engine.close_all(engine.store.patient_ids())
        ]
        found: dict[tuple[str, int], set[str]] = {}
        for alert in fold(messages).values():
            found.setdefault((alert["claim_id"], alert["line_number"]), set()).add(alert["rule_id"])
        return found

    # Today's data: two port-image units for 2 fractions (0 allowed).
    assert open_alerts(load_registry()) == {
        ("A", 1): {"port-image-frequency"},
        ("B", 1): {"port-image-frequency"},
    }
    # With the new entry: 2027-07-01 is deleted-code only, and its unit no
    # longer counts in the course, so 2027-06-30 holds the one excess unit.
    changed = open_alerts(load_registry(_table_deleting_77417_from_mid_2027()))
    assert changed == {("A", 1): {"port-image-frequency"}, ("B", 1): {"deleted-code"}}
