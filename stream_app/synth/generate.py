"""`stream-app generate`: write a synthetic claim stream (stream_app/synth/stream.py).

`add_arguments` declares the options on any parser (the `generate` subcommand
of stream_app/cli.py, or a parser of its own in `main`); `run` acts on them.
A new option is one `add_argument` here and its use in `run`. This is the
command layer: it imports the generator modules, they never import it.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

from stream_app import argtypes
from stream_app.synth.stream import (
    DEFAULT_FRACTIONS,
    DEFAULT_SPAN_DAYS,
    DEFAULT_START,
    DEFAULT_VOID_RATE,
    MAX_PATIENTS,
    Synth,
    generate_lines,
    write_lines,
)

DESCRIPTION = (
    "Write a seeded synthetic claim stream (JSON lines), in the order a payer receives it."
)


def _patients(text: str) -> int:
    """A whole number >= 0 and at most MAX_PATIENTS: more would not end."""
    value = argtypes.integer(0)(text)
    if value > MAX_PATIENTS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_PATIENTS} patients, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--patients",
        type=_patients,
        default=100,
        metavar="N",
        help=f"patients, one course each (some a second one); 0..{MAX_PATIENTS}, default 100",
    )
    parser.add_argument(
        "--fractions",
        type=argtypes.integer(1, 100),
        default=DEFAULT_FRACTIONS,
        metavar="M",
        help=f"fractions of a typical conventional course (1..100, default {DEFAULT_FRACTIONS}); "
        "sites scale around it, SBRT and brachytherapy keep theirs",
    )
    parser.add_argument(
        "--violation-rate",
        type=argtypes.rate,
        default=0.0,
        metavar="R",
        help="share of courses given one violation (0..1, default 0)",
    )
    parser.add_argument("--seed", type=argtypes.integer(), default=0, metavar="S", help="default 0")
    parser.add_argument(
        "--output", "-o", default="-", metavar="PATH", help="output file (default stdout)"
    )
    parser.add_argument(
        "--invalid-rate",
        type=argtypes.rate,
        default=0.0,
        metavar="R",
        help="share of lines followed by an invalid line (0..1, default 0)",
    )
    parser.add_argument(
        "--voids",
        type=argtypes.rate,
        nargs="?",
        const=DEFAULT_VOID_RATE,
        default=0.0,
        metavar="R",
        help="share of courses with a void, correction, rebill or duplicate "
        f"(0..1; {DEFAULT_VOID_RATE} if given without a value)",
    )
    parser.add_argument(
        "--start",
        type=argtypes.day(date(1900, 1, 1), date(2999, 12, 31)),
        default=DEFAULT_START,
        metavar="YYYY-MM-DD",
        help=f"first course start (default {DEFAULT_START})",
    )
    parser.add_argument(
        "--span-days",
        type=argtypes.integer(1, 36_500),
        default=DEFAULT_SPAN_DAYS,
        metavar="D",
        help=f"course starts spread over D days (default {DEFAULT_SPAN_DAYS})",
    )
    parser.add_argument(
        "--max-lines",
        type=argtypes.integer(1),
        default=None,
        metavar="N",
        help="stop after N messages",
    )
    parser.add_argument(
        "--format",
        choices=("claims", "lines"),
        default="claims",
        help="claim messages (SPEC 1.1, the default: professional claims weekly, "
        "institutional claims monthly, each sent days after its period) or one line "
        "message per claim line, in the same order",
    )
    parser.add_argument("--quiet", action="store_true", help="no summary on stderr")


def run(args: argparse.Namespace) -> int:
    synth = Synth(
        args.patients,
        args.fractions,
        args.violation_rate,
        args.seed,
        start=args.start,
        span_days=args.span_days,
        void_rate=args.voids,
    )
    try:
        out = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")  # noqa: SIM115
    except OSError as exc:
        print(f"stream-app generate: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        claims = args.format == "claims"
        write_lines(out, generate_lines(synth, args.invalid_rate, args.max_lines, claims=claims))
        out.flush()
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    if not args.quiet:
        print(synth.stats.render(), file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    """`generate` on its own parser; a leading `--` (an old spelling) is dropped."""
    if argv[:1] == ["--"]:
        argv = argv[1:]
    parser = argparse.ArgumentParser(prog="stream-app generate", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))
