"""The `stream-app` command line (SPEC 7)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import textwrap
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from stream_app import argtypes
from stream_app.core.codes import RULESET, CodeEntry
from stream_app.sink import commands as sink_commands
from stream_app.synth import generate

if TYPE_CHECKING:
    from stream_app.stream.settings import KafkaSettings

# `--timeout` of publish and alerts: how long they try to reach Kafka (and
# publish waits for a send to be acknowledged) before they exit 3.
KAFKA_TIMEOUT_SECONDS = 15.0


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
    replay.add_argument(
        "--course-idle-days",
        type=argtypes.integer(1),
        default=45,
        metavar="N",
        help="close a course N days of event time after its last line (default 45)",
    )
    replay.add_argument(
        "--retain-days",
        type=argtypes.integer(1),
        default=120,
        metavar="N",
        help="drop closed courses N days behind the stream (default 120)",
    )
    replay.add_argument(
        "--hold-days",
        type=argtypes.integer(0, 3650),
        default=None,
        metavar="N",
        help="hold a violation a later claim could cure up to N days of event time past "
        "its date of service, for every payer (default: each payer profile's, 61; 0: no hold)",
    )
    replay.add_argument(
        "--fixed-time",
        type=argtypes.rfc3339,
        metavar="RFC3339",
        help="use this detected_at on every alert (reproducible output)",
    )
    replay.add_argument("--quiet", action="store_true", help="no progress lines or summary")

    rules = commands.add_parser("rules", help="list the rules")
    rules.add_argument("--json", action="store_true", help="one JSON object per rule")

    commands.add_parser("worker", help="run the Kafka stream processor (settings from env)")

    publish = commands.add_parser("publish", help="send a JSON-lines file to the input topic")
    publish.add_argument("path", nargs="?", default="-", help="JSON-lines file, or - for stdin")
    publish.add_argument(
        "--rate",
        type=argtypes.positive,
        metavar="N",
        help="lines per second (default: as fast as possible)",
    )
    publish.add_argument("--stamp", action="store_true", help="set received_at to the send time")
    publish.add_argument(
        "--send-invalid",
        action="store_true",
        help="send every line as it is, unchecked (to try the dead-letter topic); by default "
        "lines the worker would not take are reported and not sent",
    )
    publish.add_argument(
        "--key",
        choices=("patient_id", "claim_id"),
        default="patient_id",
        help="Kafka key of each message: its patient (SPEC 1, the default) or its claim "
        "(older intake; the worker re-keys such messages)",
    )
    _timeout_argument(publish)

    follow = commands.add_parser("alerts", help="print alerts from the alerts topic")
    follow.add_argument(
        "--idle",
        type=argtypes.positive,
        metavar="S",
        help="stop after this many seconds without alerts (default: follow until Ctrl-C)",
    )
    follow.add_argument("--json", action="store_true", help="print raw JSON lines")
    _timeout_argument(follow)

    intake = commands.add_parser("intake", help="turn payer files into claim messages")
    formats = intake.add_subparsers(dest="format", required=True)
    x12 = formats.add_parser("x12", help="837P/837I interchanges to claim messages (SPEC 10)")
    x12.add_argument("paths", nargs="*", metavar="PATH", help="837 files, or - for stdin")
    x12.add_argument(
        "--publish", action="store_true", help="send to the input topic instead of stdout"
    )
    x12.add_argument("--site-map", metavar="PATH", help="TOML file replacing the site map")
    _timeout_argument(x12)

    generate.add_arguments(
        commands.add_parser(
            "generate",
            help="write a synthetic claim-line stream",
            description=generate.DESCRIPTION,
        )
    )
    sink_commands.add_parsers(commands)  # sink postgres, queue take|close|list (SPEC 11)
    return parser


def _timeout_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=argtypes.positive,
        default=KAFKA_TIMEOUT_SECONDS,
        metavar="S",
        help="give up (exit 3) when Kafka cannot be reached or a send is not "
        f"acknowledged within S seconds (default {KAFKA_TIMEOUT_SECONDS:g})",
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["generate", "--"]:  # the old spelling `generate -- --patients N`
        del argv[1]
    parser = _parser()
    args = _parse(parser, argv)
    try:
        return _dispatch(args)
    except BrokenPipeError:  # output piped into head, say
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:  # Ctrl-C: replay or intake reading stdin, say
        print(f"{_command_parser(parser, args).prog}: interrupted", file=sys.stderr)
        return 130


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """parse_args, except that arguments left over are reported by the command
    they were given to, with its usage (`stream-app replay: error: …`), not
    by the top-level parser."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        _command_parser(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _command_parser(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser:
    """The innermost (sub)parser that `args` went through: `intake x12`'s, say."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if chosen is not None:
                return _command_parser(chosen, args)
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "replay":
        return _replay(args)
    if args.command == "rules":
        return _rules(args)
    if args.command == "worker":
        from stream_app.stream.worker import run_worker

        return run_worker()
    if args.command in ("publish", "alerts"):
        return _kafka_client(args)
    if args.command == "intake":
        return _intake(args)
    if args.command == "generate":
        return generate.run(args)
    if args.command in ("sink", "queue"):
        return sink_commands.run(args)
    return 2


def _replay(args: argparse.Namespace) -> int:
    import io

    from stream_app.core.engine import Engine, EngineSettings
    from stream_app.core.profiles import ProfileBook, ProfileError
    from stream_app.core.rules import load_registry
    from stream_app.core.store import MemoryStore
    from stream_app.inputs import open_input, read_lines
    from stream_app.replay import Replay

    registry = load_registry()
    try:
        profiles = ProfileBook.load_or_default(args.payer_profiles, registry.ids)
    except ProfileError as exc:
        print(f"stream-app replay: {exc}", file=sys.stderr)
        return 2
    try:
        stream = open_input(args.path)
    except OSError as exc:
        print(f"stream-app replay: cannot read {args.path}: {exc.strerror}", file=sys.stderr)
        return 2
    engine = Engine(
        MemoryStore(),
        registry,
        profiles,
        EngineSettings(
            course_idle_days=args.course_idle_days,
            retain_days=args.retain_days,
            hold_days=args.hold_days,
        ),
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
        print(
            f"stream-app replay: cannot read {args.path}: {exc.strerror or exc}", file=sys.stderr
        )
        return 2
    if not args.quiet:
        print(summary.render(), file=sys.stderr)
    return 0


def _intake(args: argparse.Namespace) -> int:
    from stream_app.intake.run import main as intake_main

    return intake_main(
        args.paths, publish=args.publish, site_map=args.site_map, timeout=args.timeout
    )


def _kafka_settings(command: str) -> KafkaSettings | None:
    from pydantic import ValidationError

    from stream_app.stream.settings import KafkaSettings, describe_errors

    try:
        return KafkaSettings()
    except ValidationError as exc:
        print(f"stream-app {command}: bad settings: {describe_errors(exc)}", file=sys.stderr)
        return None


def _kafka_client(args: argparse.Namespace) -> int:
    """publish and alerts: exit 2 on a bad file or setting, 3 when Kafka fails."""

    from stream_app.stream.kafkaio import BrokerError, run_interruptible

    settings = _kafka_settings(args.command)
    if settings is None:
        return 2
    try:
        if args.command == "publish":
            try:
                return _publish(args, settings)
            except KeyboardInterrupt:
                print("stream-app publish: interrupted", file=sys.stderr)
                return 130
        with contextlib.suppress(KeyboardInterrupt):
            run_interruptible(_alerts(args, settings))
        return 0
    except BrokerError as exc:
        print(f"stream-app {args.command}: {exc}", file=sys.stderr)
        return 3


def _publish(args: argparse.Namespace, settings: KafkaSettings) -> int:
    """Send the valid lines (every line with --send-invalid); exit 2, without
    connecting, for an X12 837 file or an input without a valid line; invalid
    lines are reported and left out, as replay reports them."""
    from stream_app.inputs import open_input
    from stream_app.stream.kafkaio import publish, run_interruptible

    try:
        stream = open_input(args.path)
        with stream:
            lines = _CheckedLines(stream, args.path, check=not args.send_invalid)
            refused = lines.look_ahead()
            if refused:
                print(f"stream-app publish: {refused}", file=sys.stderr)
                return 2
            sent = run_interruptible(
                publish(
                    settings,
                    lines,
                    rate=args.rate,
                    stamp=args.stamp,
                    key_by=args.key,
                    timeout=args.timeout,
                )
            )
    except OSError as exc:
        print(
            f"stream-app publish: cannot read {args.path}: {exc.strerror or exc}", file=sys.stderr
        )
        return 2
    invalid = lines.invalid.total
    left_out = ""
    if invalid:
        reasons = " ".join(f"{k}={v}" for k, v in sorted(invalid.items()))
        left_out = f"; {sum(invalid.values())} invalid lines not sent ({reasons})"
    print(
        f"stream-app publish: published {sent} messages to {settings.input_topic}{left_out}",
        file=sys.stderr,
    )
    return 0


class _CheckedLines:
    """The non-blank lines of the input that the worker takes as events (the
    same parser, `parse_event`); the others are reported and left out, as
    replay reports them: the worker would only send them to the dead-letter
    topic. Unchecked (`check=False`), every non-blank line."""

    def __init__(self, stream: BinaryIO, name: str, *, check: bool = True) -> None:
        from stream_app.inputs import InvalidLines, read_lines

        self.check = check
        self.path = name
        self.name = "stdin" if name == "-" else name
        self.lines = enumerate(read_lines(stream), start=1)
        self.invalid = InvalidLines(
            sys.stderr, "stream-app publish", f"use stream-app intake x12 --publish {name}"
        )
        self.first: bytes | None = None

    def look_ahead(self) -> str | None:
        """Read up to the first valid line before anything is sent; why the
        input is refused, if it is: an X12 837 file, or no valid line."""
        from stream_app.inputs import looks_like_x12

        if not self.check:
            return None
        for number, raw in self.lines:
            if not raw.strip():
                continue
            if not self.invalid.total and looks_like_x12(raw):
                return (
                    f"{self.name} looks like an X12 837 file (it starts with an ISA segment), "
                    f"not JSON lines of claim messages: use stream-app intake x12 --publish "
                    f"{self.path}"
                )
            if self._valid(number, raw):
                self.first = raw
                return None
        self.invalid.end_run()
        if self.invalid.total:
            return (
                f"no valid claim message in {self.name} "
                f"({sum(self.invalid.total.values())} invalid lines): nothing sent"
            )
        return None

    def _valid(self, number: int, raw: bytes) -> bool:
        from stream_app.core.events import Invalid, parse_event

        event = parse_event(raw)
        if isinstance(event, Invalid):
            self.invalid.add(number, raw, event.reason, event.detail)
            return False
        if self.invalid.length:
            self.invalid.end_run()
        return True

    def __iter__(self) -> Iterator[bytes]:
        if self.first is not None:
            yield self.first
        for number, raw in self.lines:
            if raw.strip() and (not self.check or self._valid(number, raw)):
                yield raw
        self.invalid.end_run()


async def _alerts(args: argparse.Namespace, settings: KafkaSettings) -> None:
    """Follow the alerts topic; on the way out (idle, Ctrl-C) print the counts."""
    import orjson

    from stream_app.core.alerts import AlertCounts
    from stream_app.stream.kafkaio import BrokerError, follow_alerts, print_alert

    counts = AlertCounts()

    def show(alert: dict[str, Any]) -> None:
        counts.add(str(alert["alert_id"]), str(alert["rule_id"]), str(alert["status"]))
        if args.json:
            sys.stdout.write(orjson.dumps(alert).decode() + "\n")
            sys.stdout.flush()
        else:
            print_alert(alert)

    unreachable = False
    try:
        await follow_alerts(settings, show, idle_seconds=args.idle, timeout=args.timeout)
    except BrokerError:
        unreachable = True
        raise
    finally:
        if not unreachable:
            lines = counts.render()
            print(f"stream-app alerts: {lines[0]}", file=sys.stderr)
            for line in lines[1:]:
                print(line, file=sys.stderr)


def _rules(args: argparse.Namespace) -> int:
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


if __name__ == "__main__":
    raise SystemExit(main())
