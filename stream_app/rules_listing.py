"""`stream-app rules`: the rules, their codes and the codes' dates (SPEC 7)."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence

from stream_app.core.codes import CodeEntry


def run_rules(args: argparse.Namespace) -> int:
    import orjson

    from stream_app.core.rules import load_registry

    registry = load_registry()

    def entry_json(entry: CodeEntry) -> dict[str, object]:
        return {
            "code": entry.code,
            "valid_from": entry.valid_from,
            "valid_until": entry.valid_until,
            "replaced_by": list(entry.replaced_by),
            "source": None if entry.source is None else str(entry.source),
            "note": entry.note,
        }

    if args.json:
        for spec in registry.specs.values():
            sys.stdout.write(
                orjson.dumps(
                    {
                        "rule_id": spec.rule_id,
                        "title": spec.title,
                        "severity": spec.severity,
                        "carc": spec.carc,
                        "citation": spec.citation,
                        "finality": spec.finality,
                        "codes": [entry_json(e) for e in registry.code_entries(spec.rule_id)],
                    }
                ).decode()
                + "\n"
            )
        return 0
    width = max(len(rid) for rid in registry.ids)
    print(f"{'RULE':<{width}}  SEVERITY  CARC  FINALITY     TITLE")
    for spec in registry.specs.values():
        print(
            f"{spec.rule_id:<{width}}  {spec.severity:<8}  {spec.carc:<4}  "
            f"{spec.finality:<11}  {spec.title}"
        )
        print(f"    § {spec.citation}")
        for text in _code_groups(registry.code_entries(spec.rule_id)):
            print(textwrap.fill(text, 100, initial_indent="    ", subsequent_indent="        "))
    print("\nSources of the dates:")
    for source in dict.fromkeys(str(e.source) for e in registry.code_table.entries if e.source):
        print(f"    {source}")
    return 0


def _code_groups(entries: Sequence[CodeEntry]) -> list[str]:
    """Codes with the same dates, replacement and source on one line:
    `77014 G6001 G6002: until 2025-12-31, then 77387 [ASTRO, Winter 2026]`."""
    groups: dict[tuple[str, str], list[str]] = {}
    for entry in entries:
        dates = (
            f"from {entry.valid_from}" if entry.valid_from else "",
            f"until {entry.valid_until}" if entry.valid_until else "",
            f"then {'/'.join(entry.replaced_by)}" if entry.replaced_by else "",
        )
        effective = ", ".join(part for part in dates if part) or "no dated change"
        if entry.valid_from and entry.note:  # a code whose terms changed: say how
            effective += f" ({entry.note.split(';')[0]})"
        source = entry.source
        label = f" [{source.title.split(',')[0]}, {source.published}]" if source else ""
        groups.setdefault((effective, label), []).append(entry.code)
    return [
        f"{' '.join(_ranges(found))}: {effective}{label}"
        for (effective, label), found in groups.items()
    ]


def _ranges(found: list[str]) -> list[str]:
    """G6003 G6004 ... G6016 -> G6003–G6016 (runs of three or more)."""
    runs: list[list[str]] = []
    for code in sorted(found):
        last = runs[-1][-1] if runs else ""
        if (
            last
            and code[:-2] == last[:-2]
            and code[-2:].isdigit()
            and last[-2:].isdigit()
            and int(code[-2:]) == int(last[-2:]) + 1
        ):
            runs[-1].append(code)
        else:
            runs.append([code])
    return [
        f"{run[0]}–{run[-1]}" if len(run) >= 3 else code
        for run in runs
        for code in ([run[0]] if len(run) >= 3 else run)
    ]
