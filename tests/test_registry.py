"""The rule registry (SPEC 6) and `stream-app rules` (SPEC 7)."""

import json
import re
from pathlib import Path

import pytest

from stream_app.cli import main
from stream_app.rules import Registry, RegistryError, discover, load_registry
from stream_app.rules.base import RuleSpec

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
    section = text[text.index("## 6. Rules"):text.index("## 7.")]
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
    assert sum(1 for line in out.splitlines() if line.split()[:1] and
               line.split()[0] in SPEC_RULES) == 18


def test_rules_cli_json(capsys, registry):
    assert main(["rules", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["rule_id"] for r in rows] == list(SPEC_RULES)
    for row in rows:
        assert (row["severity"], row["carc"]) == SPEC_RULES[row["rule_id"]][:2]
        assert row["title"] and row["citation"] == registry.specs[row["rule_id"]].citation
