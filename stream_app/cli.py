"""The `stream-app` command line (SPEC 7)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import textwrap
from collections import Counter
from collections.abc import Sequence

from .codes import RULESET, CodeEntry


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream-app",
        description=f"Streaming IGRT claim-line checker (ruleset {RULESET}).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    replay = commands.add_parser("replay", help="run the rules over a JSON-lines file, no Kafka")
    replay.add_argument("path", nargs="?", default="-", help="JSON-lines file, or - for stdin")
    replay.add_argument(
        "--no-close-at-end", action="store_true", help="leave courses open at the end of the input"
    )
    replay.add_argument("--payer-profiles", metavar="PATH", help="payer-profile TOML file")
    replay.add_argument("--course-idle-days", type=int, default=45, metavar="N")
    replay.add_argument(
        "--retain-days",
        type=int,
        default=120,
        metavar="N",
        help="drop closed courses N days behind the stream (default 120)",
    )
    replay.add_argument(
        "--fixed-time",
        metavar="RFC3339",
        help="use this detected_at on every alert (reproducible output)",
    )
    replay.add_argument("--quiet", action="store_true", help="no progress lines or summary")

    rules = commands.add_parser("rules", help="list the rules")
    rules.add_argument("--json", action="store_true", help="one JSON object per rule")

    commands.add_parser("worker", help="run the Kafka stream processor (settings from env)")

    publish = commands.add_parser("publish", help="send a JSON-lines file to the input topic")
    publish.add_argument("path", nargs="?", default="-")
    publish.add_argument(
        "--rate", type=float, help="lines per second (default: as fast as possible)"
    )
    publish.add_argument("--stamp", action="store_true", help="set received_at to the send time")

    follow = commands.add_parser("alerts", help="print alerts from the alerts topic")
    follow.add_argument("--idle", type=float, help="stop after this many seconds without alerts")
    follow.add_argument("--json", action="store_true", help="print raw JSON lines")

    generate = commands.add_parser("generate", help="write a synthetic claim-line stream")
    generate.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except BrokenPipeError:  # output piped into head, say
        sys.stderr.close()
        return 0


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "replay":
        return _replay(args)
    if args.command == "rules":
        return _rules(args)
    if args.command == "worker":
        from .worker import run_worker

        return run_worker()
    if args.command in ("publish", "alerts"):
        return _kafka_client(args)
    if args.command == "generate":
        from .synth import main as synth_main

        return synth_main(args.args)
    return 2


def _replay(args: argparse.Namespace) -> int:
    import io

    from .engine import Engine, EngineSettings
    from .profiles import ProfileBook, ProfileError
    from .replay import Replay, open_input, read_lines
    from .rules import load_registry
    from .store import MemoryStore

    registry = load_registry()
    try:
        profiles = ProfileBook.load_or_default(args.payer_profiles, registry.ids)
    except ProfileError as exc:
        print(f"stream-app: {exc}", file=sys.stderr)
        return 2
    try:
        stream = open_input(args.path)
    except OSError as exc:
        print(f"stream-app: cannot read {args.path}: {exc.strerror}", file=sys.stderr)
        return 2
    engine = Engine(
        MemoryStore(),
        registry,
        profiles,
        EngineSettings(course_idle_days=args.course_idle_days, retain_days=args.retain_days),
    )
    err = io.StringIO() if args.quiet else sys.stderr
    replay = Replay(
        engine,
        sys.stdout.buffer,
        err,
        close_at_end=not args.no_close_at_end,
        fixed_time=args.fixed_time,
    )
    try:
        with stream:
            summary = replay.run(read_lines(stream))
    except OSError as exc:
        print(f"stream-app: cannot read {args.path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(summary.render(), file=sys.stderr)
    return 0


def _kafka_client(args: argparse.Namespace) -> int:
    import asyncio

    import orjson

    from .kafkaio import follow_alerts, print_alert, publish
    from .replay import open_input, read_lines
    from .settings import WorkerSettings

    settings = WorkerSettings()
    if args.command == "publish":
        with open_input(args.path) as stream:
            sent = asyncio.run(
                publish(settings, read_lines(stream), rate=args.rate, stamp=args.stamp)
            )
        print(f"stream-app: published {sent} lines to {settings.input_topic}", file=sys.stderr)
        return 0

    latest: dict[str, dict[str, object]] = {}

    def show(alert: dict[str, object]) -> None:
        latest[str(alert["alert_id"])] = alert
        if args.json:
            sys.stdout.write(orjson.dumps(alert).decode() + "\n")
            sys.stdout.flush()
        else:
            print_alert(alert)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(follow_alerts(settings, show, idle_seconds=args.idle))
    open_by_rule = Counter(str(a["rule_id"]) for a in latest.values() if a["status"] == "open")
    print(
        f"stream-app: {len(latest)} alerts seen, {sum(open_by_rule.values())} open", file=sys.stderr
    )
    for rule_id, count in sorted(open_by_rule.items()):
        print(f"  {rule_id}: {count}", file=sys.stderr)
    return 0


def _rules(args: argparse.Namespace) -> int:
    import orjson

    from .rules import load_registry

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


if __name__ == "__main__":
    raise SystemExit(main())
