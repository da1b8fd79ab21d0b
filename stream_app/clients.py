"""`stream-app publish` and `stream-app alerts`: the Kafka client commands
(SPEC 7). Exit 2 on a bad file or setting, 3 when Kafka fails."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    from stream_app.stream.settings import KafkaSettings


def _kafka_settings(command: str) -> KafkaSettings | None:
    from pydantic import ValidationError

    from stream_app.stream.settings import KafkaSettings, describe_errors

    try:
        return KafkaSettings()
    except ValidationError as exc:
        print(f"stream-app {command}: bad settings: {describe_errors(exc)}", file=sys.stderr)
        return None


def run_client(args: argparse.Namespace) -> int:
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
