"""Lines per claim of `stream-app generate --format claims`.

    .venv/bin/python benchmarks/claim_sizes.py                     # 2,000 patients
    .venv/bin/python benchmarks/claim_sizes.py --patients 10000 --fractions 42

Generates the same stream as `stream-app generate --format claims --patients N`
(professional claims weekly, institutional claims monthly; violation and void
rates as given) and prints the distribution of lines per claim message, in
all and by claim type, and the share of the other messages (voids, course
ends: line messages between the claims). benchmarks/README.md states its
output.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream_app.synth.claims import as_claims  # noqa: E402
from stream_app.synth.stream import DEFAULT_FRACTIONS, Synth  # noqa: E402

PERCENTILES = (10, 25, 50, 75, 90, 99)


def claim_type(claim: dict[str, object]) -> str:
    """The claim's type: stated once on the claim, or on its lines."""
    found = claim.get("claim_type")
    if isinstance(found, str):
        return found
    lines = claim.get("lines")
    types = {line.get("claim_type") for line in lines} if isinstance(lines, list) else set()
    return str(types.pop()) if len(types) == 1 else "mixed"


def describe(sizes: list[int]) -> str:
    if not sizes:
        return "none"
    ordered = sorted(sizes)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else []
    pct = ", ".join(
        f"p{p} {cuts[p - 1]:.0f}" if cuts else f"p{p} {ordered[0]}" for p in PERCENTILES
    )
    mean = statistics.fmean(ordered)
    return (
        f"{len(ordered):,} claims, {sum(ordered):,} lines; mean {mean:.1f}, {pct}, "
        f"min {ordered[0]}, max {ordered[-1]}"
    )


BINS = ((1, 1), (2, 4), (5, 9), (10, 19), (20, 29), (30, 39), (40, None))


def histogram(sizes: list[int]) -> str:
    """Share of claims by lines per claim."""
    shares = []
    for low, high in BINS:
        n = sum(1 for size in sizes if size >= low and (high is None or size <= high))
        label = f"{low}" if low == high else f"{low}-{high}" if high else f">={low}"
        shares.append(f"{label}: {100 * n / len(sizes):.1f}%")
    return ", ".join(shares)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--fractions", type=int, default=DEFAULT_FRACTIONS)
    parser.add_argument("--violation-rate", type=float, default=0.0)
    parser.add_argument("--voids", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    synth = Synth(
        args.patients, args.fractions, args.violation_rate, args.seed, void_rate=args.voids
    )
    by_type: dict[str, list[int]] = {}
    others: Counter[str] = Counter()
    for doc in as_claims(synth.events()):
        if doc.get("kind") == "claim":
            by_type.setdefault(claim_type(doc), []).append(len(doc["lines"]))
        else:
            others[f"{doc.get('kind', 'claim_line')}/{doc.get('action', '-')}"] += 1
    sizes = [size for found in by_type.values() for size in found]
    lines = sum(sizes)
    messages = len(sizes) + sum(others.values())
    print(
        f"generate --format claims --patients {args.patients} --fractions {args.fractions} "
        f"--violation-rate {args.violation_rate} --voids {args.voids} --seed {args.seed}"
    )
    print(
        f"messages      {messages:,}: {len(sizes):,} claims carrying {lines:,} lines, "
        f"{sum(others.values()):,} other messages "
        f"({', '.join(f'{k} {v:,}' for k, v in sorted(others.items())) or '-'})"
    )
    print(
        f"lines/message {(lines + sum(others.values())) / messages:.2f} "
        f"(every line once, others count 1)"
    )
    print(f"all claims    {describe(sizes)}")
    print(f"              {histogram(sizes)}")
    for name, found in sorted(by_type.items()):
        print(
            f"{name:<13} {describe(found)}; {100 * len(found) / len(sizes):.0f}% of claims, "
            f"{100 * sum(found) / lines:.0f}% of lines"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
