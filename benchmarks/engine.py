"""Throughput and memory of the replay path against a JSON baseline.

    .venv/bin/python benchmarks/engine.py                 # 1,000,000 lines
    .venv/bin/python benchmarks/engine.py --reuse         # reuse .cache/bench/
    .venv/bin/python benchmarks/engine.py --lines 200000 --profile

1. Writes a synthetic stream (stream_app.synth.stream; ~100 lines per patient) to
   .cache/bench/, or reuses it with --reuse.
2. Baseline: read each line, orjson.loads it and orjson.dumps it again.
3. Replay, in a fresh subprocess so that peak RSS is its own: the loop of
   stream_app.replay.Replay (same feed, same prune sweep, same emit), timed
   in parts: parse (parse_event), evaluate (Engine.apply and the periodic
   prune), serialize (Replay.emit: encode_alert and the write), then
   close_all at the end.
4. Prints lines/s for each, the ratio to the baseline, the alerts and the
   peak RSS, and checks the targets (>= 100,000 lines/s, < 500 MB).

--profile runs the replay once more under cProfile and prints the hotspots.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream_app.core.engine import Engine  # noqa: E402
from stream_app.core.events import ClaimEvent, Invalid, parse_event  # noqa: E402
from stream_app.core.store import MemoryStore  # noqa: E402
from stream_app.inputs import read_lines, relaxed_gc  # noqa: E402
from stream_app.replay import Replay  # noqa: E402
from stream_app.synth import stream as synth  # noqa: E402
from stream_app.synth.claims import as_claims  # noqa: E402

CACHE = ROOT / ".cache" / "bench"
TARGET_LINES_PER_SECOND = 100_000
TARGET_CLAIM_LINES_PER_SECOND = 150_000
TARGET_RSS_MB = 500
FIXED_TIME = "2026-01-01T00:00:00Z"
LINES_PER_PATIENT = 90  # at --fractions 42, before --max-lines trims the tail


@dataclass
class Measured:
    lines: int
    events: int
    invalid: int
    total: float
    parse: float
    evaluate: float
    serialize: float
    close_eval: float
    close_serialize: float
    messages: int
    opened: int
    resolved: int
    open_at_end: int
    pruned: int
    peak_rss_mb: float
    carried: int = 0  # claim lines the messages carry (a line message: 1)


class TimedReplay(Replay):
    """Replay with its feed and emit timed in parts; otherwise the same steps."""

    def __init__(self, engine: Engine, out: BinaryIO) -> None:
        super().__init__(engine, out, io.StringIO(), fixed_time=FIXED_TIME)
        self.t_parse = self.t_evaluate = self.t_serialize = 0.0
        self.carried = 0

    def feed(self, raw: bytes, number: int) -> None:
        clock = time.perf_counter
        t0 = clock()
        event = self.parse(raw, number)
        t1 = clock()
        self.t_parse += t1 - t0
        if event is None:
            return
        self.carried += len(event.lines) if isinstance(event, ClaimEvent) else 1
        transitions = self.evaluate(event)
        t2 = clock()
        self.emit(transitions)
        self.t_evaluate += t2 - t1
        self.t_serialize += clock() - t2


def measure_replay(path: Path) -> Measured:
    with open(os.devnull, "wb") as sink, path.open("rb") as stream:
        replay = TimedReplay(Engine(MemoryStore()), sink)
        started = time.perf_counter()
        lines = 0
        with relaxed_gc():  # as Replay.run does
            for number, raw in enumerate(read_lines(stream), start=1):
                lines = number
                if raw.strip():
                    replay.feed(raw, number)
            t0 = time.perf_counter()
            closing = replay.close()
            t1 = time.perf_counter()
            replay.emit(closing)
            t2 = time.perf_counter()
        total = t2 - started
    summary = replay.summary
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return Measured(
        lines=lines,
        events=summary.events,
        invalid=sum(summary.invalid.values()),
        total=total,
        parse=replay.t_parse,
        evaluate=replay.t_evaluate,
        serialize=replay.t_serialize,
        close_eval=t1 - t0,
        close_serialize=t2 - t1,
        messages=sum(summary.alerts.messages.values()),
        opened=summary.alerts.messages["open"],
        resolved=summary.alerts.messages["resolved"],
        open_at_end=len(summary.alerts.open),
        pruned=replay.engine.pruned_courses,
        peak_rss_mb=peak_kb / 1024,
        carried=replay.carried,
    )


def measure_baseline(path: Path) -> tuple[int, float]:
    loads, dumps = orjson.loads, orjson.dumps
    lines = 0
    started = time.perf_counter()
    with path.open("rb") as stream:
        for raw in read_lines(stream):
            lines += 1
            with contextlib.suppress(orjson.JSONDecodeError):
                dumps(loads(raw))
    return lines, time.perf_counter() - started


def stream_file(lines: int, seed: int, reuse: bool) -> tuple[Path, str]:
    path = CACHE / f"stream-{lines}-seed{seed}.jsonl"
    if reuse and path.exists():
        return path, "reused"
    CACHE.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    generator = synth.Synth(
        -(-lines // LINES_PER_PATIENT),
        fractions=42,
        violation_rate=0.02,
        seed=seed,
        void_rate=0.02,
    )
    partial = path.with_suffix(".partial")
    with partial.open("wb") as out:
        encoded = synth.generate_lines(generator, invalid_rate=0.0005, max_lines=lines)
        synth.write_lines(out, encoded, batch_size=8192)
    partial.replace(path)
    stats = generator.stats
    return path, (
        f"generated in {time.perf_counter() - started:.1f}s: {stats.patients:,} patients, "
        f"{stats.courses:,} courses, {sum(stats.violations.values())} injected violations"
    )


def claims_file(lines_path: Path, reuse: bool) -> Path:
    """The same lines as claim messages (`generate --format claims`): the
    valid line messages of the stream through `synth_claims.as_claims`, so
    professional claims weekly, institutional ones monthly, voids and course
    ends as line messages between them. Invalid lines are left out."""
    path = lines_path.with_name(lines_path.stem + "-claims.jsonl")
    if reuse and path.exists():
        return path

    def docs() -> Iterator[dict[str, Any]]:
        with lines_path.open("rb") as stream:
            for raw in read_lines(stream):
                if not isinstance(parse_event(raw), Invalid):
                    yield orjson.loads(raw)

    partial = path.with_suffix(".partial")
    with partial.open("wb") as out:
        synth.write_lines(out, (orjson.dumps(doc) for doc in as_claims(docs())), batch_size=8192)
    partial.replace(path)
    return path


def _rate(count: int, seconds: float) -> str:
    if seconds < 1e-3:
        return f"{'-':>12}        "
    return f"{count / seconds:>12,.0f} lines/s"


def report(
    path: Path,
    origin: str,
    baseline: tuple[int, float],
    replay: Measured,
    claims: tuple[Path, Measured] | None,
) -> None:
    base_lines, base_seconds = baseline
    base_rate = base_lines / base_seconds
    rate = replay.lines / replay.total
    size_mb = path.stat().st_size / 1e6
    print(
        f"stream     {path.relative_to(ROOT)}: {replay.lines:,} lines, {size_mb:,.0f} MB ({origin})"
    )
    print(
        f"baseline   {'orjson loads + dumps':<26}{base_seconds:8.2f}s "
        f"{_rate(base_lines, base_seconds)}"
    )
    print(
        f"replay     {'whole path':<26}{replay.total:8.2f}s {_rate(replay.lines, replay.total)}"
        f"   = {rate / base_rate:.3f} x baseline ({base_rate / rate:,.1f}x slower)"
    )
    _parts(replay, replay.lines)
    print(
        f"events     {replay.events:,} applied, {replay.invalid:,} invalid lines, "
        f"{replay.pruned:,} courses pruned"
    )
    _alerts(replay)
    print(f"peak RSS   {replay.peak_rss_mb:,.0f} MB (replay subprocess)")
    claim_rate = 0.0
    if claims is not None:
        claims_path, on_claims = claims
        claim_rate = on_claims.carried / on_claims.total
        print(
            f"claims     {claims_path.relative_to(ROOT)}: {on_claims.lines:,} messages carrying "
            f"{on_claims.carried:,} lines, {claims_path.stat().st_size / 1e6:,.0f} MB"
        )
        print(
            f"replay     {'claim messages':<26}{on_claims.total:8.2f}s "
            f"{_rate(on_claims.carried, on_claims.total)}   (lines carried)"
        )
        _parts(on_claims, on_claims.carried)
        _alerts(on_claims)
        print(f"peak RSS   {on_claims.peak_rss_mb:,.0f} MB (claims replay subprocess)")
    ok_rate = rate >= TARGET_LINES_PER_SECOND
    ok_rss = replay.peak_rss_mb < TARGET_RSS_MB
    print(
        f"targets    >= {TARGET_LINES_PER_SECOND:,} lines/s: {'PASS' if ok_rate else 'FAIL'} "
        f"({rate:,.0f});  peak RSS < {TARGET_RSS_MB} MB: {'PASS' if ok_rss else 'FAIL'} "
        f"({replay.peak_rss_mb:,.0f} MB)"
    )
    if claims is not None:
        ok_claims = claim_rate >= TARGET_CLAIM_LINES_PER_SECOND
        print(
            f"           claims >= {TARGET_CLAIM_LINES_PER_SECOND:,} lines/s: "
            f"{'PASS' if ok_claims else 'FAIL'} ({claim_rate:,.0f})"
        )


def _parts(replay: Measured, lines: int) -> None:
    parts = [
        ("parse", "parse_event", replay.parse),
        ("evaluate", "Engine.apply + prune", replay.evaluate),
        ("serialize", "Replay.emit (encode)", replay.serialize),
        ("close_all", "end of input: evaluate", replay.close_eval),
        ("", "end of input: serialize", replay.close_serialize),
    ]
    for name, what, seconds in parts:
        share = 100 * seconds / replay.total
        print(f"  {name:<10}{what:<24}{seconds:8.2f}s {_rate(lines, seconds)}  {share:5.1f}%")
    other = replay.total - sum(seconds for *_, seconds in parts)
    print(f"  {'other':<10}{'reading, loop':<24}{other:8.2f}s")


def _alerts(replay: Measured) -> None:
    print(
        f"alerts     {replay.messages:,} messages (open {replay.opened:,}, resolved "
        f"{replay.resolved:,}); {replay.open_at_end:,} open at the end"
    )


def _measure_in_child(path: Path) -> Measured:
    child = subprocess.run(
        [sys.executable, __file__, "--measure-replay", str(path)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return Measured(**json.loads(child.stdout.strip().splitlines()[-1]))


def profile(path: Path, top: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    measure_replay(path)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--reuse", action="store_true", help="reuse the cached stream in .cache/bench/ if present"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="then profile the replay under cProfile (slow) and print hotspots",
    )
    parser.add_argument("--top", type=int, default=25, help="hotspots to print (--profile)")
    parser.add_argument(
        "--no-claims",
        action="store_true",
        help="skip the replay of the same lines as claim messages",
    )
    parser.add_argument("--measure-replay", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure_replay:  # the child: one measurement, JSON on stdout
        print(json.dumps(asdict(measure_replay(Path(args.measure_replay)))))
        return 0

    path, origin = stream_file(args.lines, args.seed, args.reuse)
    print(f"stream ready ({origin}); baseline ...", file=sys.stderr, flush=True)
    baseline = measure_baseline(path)
    print("replay (subprocess) ...", file=sys.stderr, flush=True)
    replay = _measure_in_child(path)
    claims = None
    if not args.no_claims:
        print("claim messages of the same lines ...", file=sys.stderr, flush=True)
        claims_path = claims_file(path, args.reuse)
        print("replay of the claims (subprocess) ...", file=sys.stderr, flush=True)
        claims = (claims_path, _measure_in_child(claims_path))
    report(path, origin, baseline, replay, claims)
    if args.profile:
        print(f"\ncProfile of the replay path ({args.top} hotspots):", flush=True)
        profile(path, args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
