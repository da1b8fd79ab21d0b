"""The rule registry: every rule of SPEC 6, one module per family.

To add a rule: declare it with `@rule(...)` in its family's module (or a new
module listed in FAMILIES), add its id to EXPECTED_RULE_IDS, and give it a
table of fires / does-not-fire cases in tests/rules/.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Final

from stream_app.core import codes
from stream_app.core.rules import bundling, components, deleted, modality, per_fraction, port_images
from stream_app.core.rules.base import (
    FINAL,
    PROVISIONAL_UNTIL_CLOSED,
    DayView,
    Rule,
    RuleSpec,
    Violation,
)

__all__ = [
    "EXPECTED_RULE_IDS",
    "FINAL",
    "PROVISIONAL_UNTIL_CLOSED",
    "DayView",
    "Registry",
    "RegistryError",
    "Rule",
    "RuleSpec",
    "Violation",
    "load_registry",
]

FAMILIES: Final[tuple[ModuleType, ...]] = (
    deleted,
    port_images,
    bundling,
    per_fraction,
    modality,
    components,
)

# SPEC 6, in the order of its table.
EXPECTED_RULE_IDS: Final = (
    "deleted-code",
    "port-image-professional",
    "port-image-units-per-day",
    "port-image-frequency",
    "port-image-with-igrt",
    "port-image-with-verification-sim",
    "port-image-modality",
    "ct-guidance-with-simulation",
    "igrt-tc-with-imrt",
    "igrt-per-fraction",
    "intrafraction-per-fraction",
    "igrt-without-fraction",
    "igrt-superficial-skin",
    "igrt-modality",
    "igrt-pc-modifier-hospital",
    "ultrasound-guidance-hopps",
    "igrt-77387-pc-not-accepted",
    "igrt-tc-2026",
)


class RegistryError(RuntimeError):
    """The rule set is not exactly the one the ruleset defines, or a rule
    names a code that the code data lacks."""


class Registry:
    """The rules of the ruleset and the dated code data they run on.

    `code_table` decides which lines are deleted on their date (the engine
    hides them from every rule but the `on_deleted` ones); a test or a payer
    can run the same rules on other code data.
    """

    def __init__(
        self,
        rules: Iterable[Rule],
        expected: Iterable[str] = EXPECTED_RULE_IDS,
        code_table: codes.CodeTable = codes.CODES,
    ) -> None:
        self.code_table = code_table
        self.rules: tuple[Rule, ...] = tuple(rules)
        seen: dict[str, Rule] = {}
        for declared in self.rules:
            if declared.spec.rule_id in seen:
                raise RegistryError(f"rule id declared twice: {declared.spec.rule_id}")
            seen[declared.spec.rule_id] = declared
        expected_ids = list(expected)
        missing = [rid for rid in expected_ids if rid not in seen]
        unknown = [rid for rid in seen if rid not in expected_ids]
        if missing or unknown:
            raise RegistryError(
                f"rule registry does not match the ruleset: missing {missing}, unknown {unknown}"
            )
        for declared in self.rules:
            unknown_codes = sorted(c for c in declared.spec.codes if c not in code_table)
            if unknown_codes:
                raise RegistryError(
                    f"rule {declared.spec.rule_id} names codes the code data lacks: "
                    f"{', '.join(unknown_codes)}"
                )
        order = {rid: index for index, rid in enumerate(expected_ids)}
        self.rules = tuple(sorted(self.rules, key=lambda r: order[r.spec.rule_id]))
        self.specs: dict[str, RuleSpec] = {r.spec.rule_id: r.spec for r in self.rules}
        self._for_codes: dict[tuple[frozenset[str], bool], tuple[Rule, ...]] = {}
        self.by_code: dict[str, tuple[Rule, ...]] = {}
        for declared in self.rules:
            for code in declared.spec.applies_to:
                self.by_code[code] = (*self.by_code.get(code, ()), declared)
        self.course_fact_rules = frozenset(
            r.spec.rule_id for r in self.rules if r.spec.course_facts
        )
        self.provisional_rules = frozenset(
            r.spec.rule_id for r in self.rules if r.spec.finality != FINAL
        )
        self.port_unit_rules = frozenset(r.spec.rule_id for r in self.rules if r.spec.port_units)
        self.held_rules = frozenset(r.spec.rule_id for r in self.rules if r.spec.held_while)
        self.deleted_rules = frozenset(r.spec.rule_id for r in self.rules if r.spec.on_deleted)

    def for_codes(self, billed: Iterable[str], deleted: bool = False) -> tuple[Rule, ...]:
        """The rules that can alert on a day billing these codes (and lines
        deleted on their date, if `deleted`), in registry order."""
        key = (frozenset(billed), deleted)
        found = self._for_codes.get(key)
        if found is None:
            ids = {rule.spec.rule_id for code in key[0] for rule in self.by_code.get(code, ())}
            if deleted:
                ids |= self.deleted_rules
            found = tuple(rule for rule in self.rules if rule.spec.rule_id in ids)
            if len(self._for_codes) < 4096:
                self._for_codes[key] = found
        return found

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self.specs)

    def code_entries(self, rule_id: str) -> tuple[codes.CodeEntry, ...]:
        """The dated entries of every code a rule uses (for `stream-app rules`),
        by code: an `on_deleted` rule uses every code the data deletes."""
        spec = self.specs[rule_id]
        used = set(spec.codes)
        if spec.on_deleted:
            used |= self.code_table.deletions.keys()
        table = self.code_table
        return tuple(entry for code in sorted(used) for entry in table.history[code])


def discover(families: Iterable[ModuleType] = FAMILIES) -> list[Rule]:
    return [
        value for module in families for value in vars(module).values() if isinstance(value, Rule)
    ]


def load_registry(code_table: codes.CodeTable = codes.CODES) -> Registry:
    return Registry(discover(), code_table=code_table)
