"""The `stream-app` command line (SPEC 7)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from stream_app import argtypes
from stream_app.core.codes import RULESET
from stream_app.sink import commands as sink_commands
from stream_app.synth import generate

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
        from stream_app.rules_listing import run_rules

        return run_rules(args)
    if args.command == "worker":
        from stream_app.stream.worker import run_worker

        return run_worker()
    if args.command in ("publish", "alerts"):
        from stream_app.clients import run_client

        return run_client(args)
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


if __name__ == "__main__":
    raise SystemExit(main())
