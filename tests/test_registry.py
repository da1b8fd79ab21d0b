"""The rule registry (SPEC 6) and `stream-app rules` (SPEC 7)."""

import json
import re
from pathlib import Path

import pytest

from stream_app.cli import main
from stream_app.core.rules import Registry, RegistryError, discover, load_registry
from stream_app.core.rules.base import RuleSpec

REPO = Path(__file__).resolve().parents[1]
STANDARD = REPO / "../shared/seed/igrt-coding-standard.md"
SPEC = REPO / "../shared/spec/SPEC.md"
STANDARD_TITLE = "Image Guidance – Radiation Oncology Coding Standard"

# SPEC 6, in table order: rule_id -> (severity, CARC, finality)
SPEC_RULES = {
    "deleted-code": ("deny", "181", "final"),
    "port-image-professional": ("deny", "4", "final"),
    "port-image-units-per-day": ("deny", "151", "final"),
    "port-image-frequency": ("deny", "151", "provisional"),
    "port-image-with-igrt": ("deny", "97", "final"),
    "port-image-with-verification-sim": ("deny", "97", "final"),
    "port-image-modality": ("deny", "97", "provisional"),
    "ct-guidance-with-simulation": ("deny", "97", "final"),
    "igrt-tc-with-imrt": ("deny", "97", "final"),
    "igrt-per-fraction": ("deny", "151", "provisional"),
    "intrafraction-per-fraction": ("deny", "151", "provisional"),
    "igrt-without-fraction": ("review", "107", "provisional"),
    "igrt-superficial-skin": ("deny", "50", "final"),
    "igrt-modality": ("review", "50", "provisional"),
    "igrt-pc-modifier-hospital": ("deny", "4", "final"),
    "ultrasound-guidance-hopps": ("deny", "97", "final"),
    "igrt-77387-pc-not-accepted": ("deny", "96", "final"),
    "igrt-tc-2026": ("deny", "97", "final"),
}


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def test_eighteen_rules_in_spec_order(registry):
    assert len(registry.rules) == 18
    assert list(registry.ids) == list(SPEC_RULES)
    assert [r.spec.rule_id for r in registry.rules] == list(SPEC_RULES)


def test_ids_match_the_spec_table():
    if not SPEC.exists():
        pytest.skip("SPEC.md is not next to the repository")
    text = SPEC.read_text(encoding="utf-8")
    section = text[text.index("## 6. Rules") : text.index("## 7.")]
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|", section, re.M)
    assert rows == list(SPEC_RULES)


@pytest.mark.parametrize("rule_id", list(SPEC_RULES))
def test_rule_declaration(registry, rule_id):
    spec: RuleSpec = registry.specs[rule_id]
    assert spec.title.strip()
    assert (spec.severity, spec.carc, spec.finality) == SPEC_RULES[rule_id]
    assert re.fullmatch(r"\d+", spec.carc)
    assert spec.citation.strip()
    assert len(spec.doc) > 20, "the rule needs a docstring saying what it checks"


def _headings(markdown: str) -> set[str]:
    found = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            found.add(line.lstrip("#").strip().replace("*", "").strip())
    return found


@pytest.mark.parametrize("rule_id", list(SPEC_RULES))
def test_citation_is_a_heading_of_the_standard(registry, rule_id):
    if not STANDARD.exists():
        pytest.skip("the coding standard is not next to the repository")
    citation = registry.specs[rule_id].citation
    headings = _headings(STANDARD.read_text(encoding="utf-8"))
    assert STANDARD_TITLE in headings
    assert citation == STANDARD_TITLE or citation in headings, citation


def test_registry_sorts_rules_into_spec_order():
    assert list(Registry(reversed(discover())).ids) == list(SPEC_RULES)


def test_registry_rejects_a_duplicate_id():
    rules = discover()
    with pytest.raises(RegistryError, match="port-image-frequency"):
        Registry([*rules, next(r for r in rules if r.spec.rule_id == "port-image-frequency")])


def test_registry_rejects_a_missing_id():
    rules = [r for r in discover() if r.spec.rule_id != "igrt-tc-2026"]
    with pytest.raises(RegistryError, match="igrt-tc-2026"):
        Registry(rules)


def test_registry_rejects_an_unknown_id():
    from dataclasses import replace

    rules = discover()
    extra = type(rules[0])(replace(rules[0].spec, rule_id="made-up-rule"), rules[0].check)
    with pytest.raises(RegistryError, match="made-up-rule"):
        Registry([*rules, extra])


def test_rules_cli_lists_all_18(capsys):
    assert main(["rules"]) == 0
    out = capsys.readouterr().out
    for rule_id, (severity, carc, _) in SPEC_RULES.items():
        row = next(line for line in out.splitlines() if line.startswith(rule_id + " "))
        assert severity in row.split() and carc in row.split(), row
    assert (
        sum(1 for line in out.splitlines() if line.split()[:1] and line.split()[0] in SPEC_RULES)
        == 18
    )


def test_rules_cli_json(capsys, registry):
    assert main(["rules", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["rule_id"] for r in rows] == list(SPEC_RULES)
    for row in rows:
        assert (row["severity"], row["carc"]) == SPEC_RULES[row["rule_id"]][:2]
        assert row["title"] and row["citation"] == registry.specs[row["rule_id"]].citation


# -- the dated code data ------------------------------------------------------


def test_every_code_of_the_code_lists_is_in_the_code_data():
    from stream_app.core import codes

    listed = (
        set(codes.DELIVERY_MODALITY)
        | codes.ALLOWED_BILLABLE_GROUP
        | codes.LOCALIZATION_CODES
        | codes.IGRT_NEEDING_FRACTION
        | codes.SIMULATION_CODES
        | codes.IMRT_DELIVERY_CODES
        | set(codes.ALLOWED_MODALITIES)
        | {"76950", "77421", "0197T"}
    )
    assert listed <= set(codes.CODES.history)
    for entry in codes.CODE_TABLE:
        if entry.valid_from or entry.valid_until:
            assert entry.source is not None, entry


def test_the_2026_code_changes_are_in_the_data_with_their_source():
    from stream_app.core import codes

    deleted_2026 = {
        "77014",
        "G6001",
        "G6002",
        "G6017",
        "77385",
        "77386",
        *(f"G{n}" for n in range(6003, 6017)),
    }
    on_2026 = {code for code, (first, _) in codes.CODES.deletions.items() if first == "2026-01-01"}
    assert on_2026 == deleted_2026
    for code in deleted_2026:
        entry = codes.CODES.history[code][-1]
        assert (entry.valid_until, entry.source) == ("2025-12-31", codes.ASTRO_2026)
        assert entry.replaced_by and entry.note
    for code in ("77014", "G6001", "G6002", "G6017"):
        assert codes.CODES.history[code][-1].replaced_by == ("77387",)
    for code in ("76950", "77421", "0197T"):
        entry = codes.CODES.history[code][-1]
        assert (entry.deleted_from, entry.source) == ("2015-01-01", codes.STANDARD_2024)
    igrt = codes.CODES.history["77387"]
    assert [e.valid_from for e in igrt] == ["2015-01-01", codes.IGRT_2026_CHANGE]
    assert igrt[-1].source == codes.ASTRO_2026 and igrt[-1].valid_until is None
    assert codes.RULESET == "evolent-igrt-2024.04+2026"


def test_registry_fails_at_start_up_on_a_code_the_data_lacks():
    from stream_app.core import codes

    table = codes.CodeTable(e for e in codes.CODE_TABLE if e.code != "G6017")
    with pytest.raises(RegistryError, match=r"intrafraction-per-fraction.*G6017"):
        Registry(discover(), code_table=table)


def test_registry_fails_on_a_rule_naming_an_unknown_code():
    from dataclasses import replace

    rules = discover()
    first = rules[0]
    bad = type(first)(replace(first.spec, uses=frozenset({"99999"})), first.check)
    with pytest.raises(RegistryError, match="99999"):
        Registry([bad, *rules[1:]])


@pytest.mark.parametrize(
    "entries, message",
    [
        pytest.param([("77417", None, "2027-13-01")], "not a date", id="bad-date"),
        pytest.param([("77417", "2027-01-01", "2026-01-01")], "before valid_from", id="reversed"),
        pytest.param([("77417", None, "2027-06-30", None)], "needs its source", id="no-source"),
        pytest.param(
            [("77417", None, "2027-06-30"), ("77417", "2027-08-01", None)],
            "does not follow",
            id="gap",
        ),
    ],
)
def test_inconsistent_code_data_is_rejected(entries, message):
    from stream_app.core import codes

    built = []
    for row in entries:
        code, start, until, *source = row
        built.append(codes.CodeEntry(code, start, until, source[0] if source else codes.ASTRO_2026))
    with pytest.raises(codes.CodeTableError, match=message):
        codes.CodeTable(built)


def test_rules_cli_shows_the_codes_and_their_dates(capsys):
    assert main(["rules"]) == 0
    out = capsys.readouterr().out
    block = out[out.index("\ndeleted-code ") : out.index("\nport-image-professional ")]
    assert "77014 G6001 G6002 G6017: until 2025-12-31, then 77387 [ASTRO, Winter 2026]" in block
    assert "77385 77386 G6003–G6016: until 2025-12-31, then 77402/77407/77412" in block
    assert "0197T 76950 77421: until 2014-12-31, then 77387 [Evolent, revised March 2024]" in block
    ct = out[out.index("\nct-guidance-with-simulation ") : out.index("\nigrt-tc-with-imrt ")]
    assert "77280 77285 77290 77295: no dated change" in ct
    assert "Major Radiation Oncology Code Changes in 2026" in out


def test_rules_cli_json_gives_the_codes_of_each_rule(capsys):
    assert main(["rules", "--json"]) == 0
    rows = {r["rule_id"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    g6017 = [c for c in rows["intrafraction-per-fraction"]["codes"] if c["code"] == "G6017"]
    assert g6017 == [
        {
            "code": "G6017",
            "valid_from": None,
            "valid_until": "2025-12-31",
            "replaced_by": ["77387"],
            "source": 'ASTRO, "Major Radiation Oncology Code Changes in 2026", ASTROnews, '
            "Winter 2026",
            "note": g6017[0]["note"],
        }
    ]
    deleted = {c["code"] for c in rows["deleted-code"]["codes"]}
    assert {"77014", "G6001", "G6002", "G6017", "77385", "0197T"} <= deleted
    assert "77387" not in deleted
    ct = {c["code"] for c in rows["ct-guidance-with-simulation"]["codes"]}
    assert ct == {"77014", "77280", "77285", "77290", "77295"}
    igrt = [c for c in rows["igrt-tc-2026"]["codes"] if c["code"] == "77387"]
    assert [(c["valid_from"], c["valid_until"]) for c in igrt] == [
        ("2015-01-01", "2025-12-31"),
        ("2026-01-01", None),
    ]
