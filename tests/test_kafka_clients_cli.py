"""`stream-app publish` and `stream-app alerts` without a broker, or with a
bad file or setting: one line on stderr that names the address or the file and
what to check, exit 3 (Kafka) or 2 (file, setting), never a traceback. A
broker that accepts connections but never answers is given up on after
`--timeout` seconds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "sample-claims.jsonl"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_broker() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def run(*args: str, bootstrap: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_APP_")}
    environ.update(KAFKA_BOOTSTRAP_SERVERS=bootstrap, **env)
    return subprocess.run(
        [sys.executable, "-m", "stream_app", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=environ,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


def one_line(done: subprocess.CompletedProcess[str], command: str) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"stream-app {command}: ")
    return lines[0]


@pytest.mark.parametrize(
    "args", [["publish", str(SAMPLE)], ["alerts"], ["alerts", "--idle", "1", "--json"]]
)
def test_no_broker_exits_3_naming_the_address(args: list[str]) -> None:
    address = f"127.0.0.1:{closed_port()}"
    done = run(*args, bootstrap=address)
    assert done.returncode == 3, done.stderr
    line = one_line(done, args[0])
    assert f"cannot reach Kafka at {address}" in line
    assert "KAFKA_BOOTSTRAP_SERVERS" in line
    assert done.stdout == ""


@pytest.mark.parametrize("command", ["publish", "alerts"])
def test_a_broker_that_never_answers_is_given_up_on_after_the_timeout(
    command: str, silent_broker: int
) -> None:
    address = f"127.0.0.1:{silent_broker}"
    args = [command, str(SAMPLE)] if command == "publish" else [command]
    done = run(*args, "--timeout", "1", bootstrap=address)
    assert done.returncode == 3, done.stderr
    line = one_line(done, command)
    assert f"cannot reach Kafka at {address} (no answer within 1s)" in line


def test_publish_of_a_missing_file_exits_2_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    done = run("publish", str(missing), bootstrap=f"127.0.0.1:{closed_port()}")
    assert done.returncode == 2, done.stderr
    line = one_line(done, "publish")
    assert f"cannot read {missing}: No such file or directory" in line


def test_publish_of_a_directory_exits_2(tmp_path: Path) -> None:
    done = run("publish", str(tmp_path), bootstrap=f"127.0.0.1:{closed_port()}")
    assert done.returncode == 2, done.stderr
    assert f"cannot read {tmp_path}" in one_line(done, "publish")


@pytest.mark.parametrize("command", ["publish", "alerts"])
def test_a_bad_setting_exits_2_naming_it(command: str) -> None:
    done = run(
        command,
        bootstrap=f"127.0.0.1:{closed_port()}",
        STREAM_APP_SECURITY_PROTOCOL="TLS-PLEASE",
    )
    assert done.returncode == 2, done.stderr
    line = one_line(done, command)
    assert "bad settings" in line and "STREAM_APP_SECURITY_PROTOCOL" in line


BAD_SERVERS = ["127.0.0.1:abc", "127.0.0.1:99999", "127.0.0.1:0", "", " ", "localhost", "a:1,,b:2"]
X12 = REPO / "examples" / "x12" / "radonc-837p.txt"


@pytest.mark.parametrize("servers", BAD_SERVERS)
@pytest.mark.parametrize(
    "args",
    [
        ["publish", str(SAMPLE)],
        ["alerts"],
        ["intake", "x12", "--publish", str(X12)],
        ["worker"],
    ],
    ids=["publish", "alerts", "intake", "worker"],
)
def test_a_bad_bootstrap_address_exits_2_naming_the_variable(
    args: list[str], servers: str
) -> None:
    """Not a port, out of range or empty: before this, aiokafka's ValueError
    or OverflowError (a traceback), or a look-up of an empty host name."""
    done = run(*args, bootstrap=servers)
    assert done.returncode == 2, done.stderr
    line = one_line(done, "intake x12" if args[0] == "intake" else args[0])
    assert "bad settings: KAFKA_BOOTSTRAP_SERVERS: " in line, line
    assert "host:port" in line


def test_the_worker_names_a_bad_setting_in_one_line() -> None:
    done = run("worker", bootstrap=f"127.0.0.1:{closed_port()}", STREAM_APP_PARTITIONS="0")
    assert done.returncode == 2, done.stderr
    line = one_line(done, "worker")
    assert line == (
        "stream-app worker: bad settings: STREAM_APP_PARTITIONS: "
        "Input should be greater than or equal to 1"
    )


@pytest.mark.parametrize(
    "args, code, line",
    [
        (["publish", str(SAMPLE)], 130, "stream-app publish: interrupted"),
        (["alerts"], 0, "stream-app alerts: 0 alert messages, 0 distinct alerts, 0 open"),
    ],
)
def test_ctrl_c_while_connecting_says_so_in_one_line(args: list[str], code: int, line: str) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_APP_")}
        environ["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{listener.getsockname()[1]}"
        process = subprocess.Popen(
            [sys.executable, "-m", "stream_app", *args],
            cwd=REPO,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            listener.settimeout(120)
            connection, _ = listener.accept()  # the client waits for an answer now
            with connection:
                process.send_signal(signal.SIGINT)
                _, err = process.communicate(timeout=120)
        finally:
            process.kill()
    assert process.returncode == code, err
    assert err.strip().splitlines() == [line]


def test_ctrl_c_ends_the_run_even_when_a_cancellation_is_lost() -> None:
    """Python 3.11's asyncio.wait_for loses a cancellation that lands as the
    awaited call completes (aiokafka's connect): asyncio.run alone then ran on
    until the client's 15 s timeout (a CI failure of the test above)."""
    import asyncio
    import contextlib
    import time

    from stream_app.stream.kafkaio import run_interruptible

    async def loses_the_first_cancellation() -> None:
        asyncio.get_running_loop().call_later(0.1, os.kill, os.getpid(), signal.SIGINT)
        with contextlib.suppress(asyncio.CancelledError):  # lost
            await asyncio.sleep(30)
        await asyncio.sleep(30)

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_interruptible(loses_the_first_cancellation())
    assert time.monotonic() - started < 10


def test_publish_refuses_an_x12_file_before_connecting(tmp_path: Path) -> None:
    """Every claim of it would have gone to the dead-letter topic."""
    done = run("publish", str(X12), bootstrap=f"127.0.0.1:{closed_port()}")
    assert done.returncode == 2, done.stderr
    assert one_line(done, "publish") == (
        f"stream-app publish: {X12} looks like an X12 837 file (it starts with an ISA segment), "
        f"not JSON lines of claim messages: use stream-app intake x12 --publish {X12}"
    )


def test_publish_refuses_an_input_without_a_valid_line_before_connecting(tmp_path: Path) -> None:
    binary = tmp_path / "image.bin"
    binary.write_bytes(bytes(range(256)) * 64 + b"\n" * 30)
    done = run("publish", str(binary), bootstrap=f"127.0.0.1:{closed_port()}")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "cannot reach Kafka" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert all(line.startswith("stream-app publish: ") for line in lines), lines
    assert lines[1].startswith("stream-app publish: line 2: invalid (not_json): not valid UTF-8")
    assert lines[-1] == (
        f"stream-app publish: no valid claim message in {binary} (65 invalid lines): nothing sent"
    )
    assert "an X12 837 file? use stream-app intake x12 --publish" in done.stderr


def test_publish_reports_invalid_lines_and_leaves_them_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The lines the worker would send to the dead-letter topic (the same
    parser), reported as replay reports them; the valid ones go."""
    import io

    from stream_app.clients import _CheckedLines

    valid = SAMPLE.read_bytes().splitlines()[0]
    text = b"\n".join([b"garbage", valid, b"", b'{"kind": "claim_line"}', valid, b"ISA*00*~"])
    lines = _CheckedLines(io.BytesIO(text + b"\n"), "mixed.jsonl")
    assert lines.look_ahead() is None
    assert list(lines) == [valid, valid]
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        "stream-app publish: line 1: invalid (not_json): not valid JSON: "
        "unexpected character, expected a JSON value: line 1 column 1 (char 0)"
    )
    assert err[1].startswith("stream-app publish: line 4: invalid (missing_field): ")
    assert err[2].startswith("stream-app publish: line 6: invalid (not_json)")
    assert err[3] == (
        "stream-app publish: line 6 starts an X12 interchange (ISA): an 837 file? "
        "use stream-app intake x12 --publish mixed.jsonl"
    )
    assert len(err) == 4
    assert lines.invalid.total == {"not_json": 2, "missing_field": 1}
    unchecked = _CheckedLines(io.BytesIO(text), "mixed.jsonl", check=False)
    assert unchecked.look_ahead() is None
    assert len(list(unchecked)) == 5 and capsys.readouterr().err == ""


def test_alerts_text_lines_tell_every_message_apart(capsys: pytest.CaptureFixture[str]) -> None:
    """Three messages of one alert (igrt-per-fraction on P100707 line 1) once
    printed alike: they differ in sequence and evidence, which the line shows."""
    import orjson

    from stream_app.stream.kafkaio import print_alert

    golden = REPO / "examples" / "sample-alerts.jsonl"
    alerts = [orjson.loads(line) for line in golden.read_bytes().splitlines()]
    for alert in alerts:
        print_alert(alert)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(alerts) == len(set(lines))
    same = [line for line in lines if "igrt-per-fraction" in line and "P100707 line 1 " in line]
    assert [line.split(": ", 1)[0].split(" excess=1 ")[1] for line in same] == [
        "#1 evidence I100703:9 77523, P100706:3 77387",
        "#2 evidence I100703:9 77523, I100703:10 77387, P100706:3 77387",
        "#3 evidence I100703:9 77523, I100703:10 77387, P100706:3 77387",
    ]
    many = {**alerts[0], "evidence": [alerts[0] | {"line_number": n} for n in range(5)]}
    print_alert(many)
    assert capsys.readouterr().out.split(": ", 1)[0].endswith(", +2 more")


@pytest.mark.parametrize("bind", ["0.0.0.0", "127.0.0.1"])
def test_the_worker_checks_its_web_port_before_it_creates_topics(bind: str) -> None:
    """Once, the taken port showed as an OSError traceback (exit 1) after the
    topics were created. The broker here is dead: a worker that went on to
    its topics would exit 3, naming Kafka."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = run(
            "worker",
            bootstrap=f"127.0.0.1:{closed_port()}",
            STREAM_APP_WEB_PORT=str(port),
            STREAM_APP_WEB_BIND=bind,
        )
    assert done.returncode == 2, done.stderr
    line = one_line(done, "worker")
    assert line.startswith(f"stream-app worker: cannot listen on {bind}:{port} "), line
    assert "Address already in use" in line and "STREAM_APP_WEB_PORT" in line


def test_the_worker_names_a_web_bind_that_is_no_address() -> None:
    done = run(
        "worker",
        bootstrap=f"127.0.0.1:{closed_port()}",
        STREAM_APP_WEB_BIND="no-such-host.invalid",
    )
    assert done.returncode == 2, done.stderr
    assert "STREAM_APP_WEB_BIND='no-such-host.invalid' is not an address" in one_line(
        done, "worker"
    )


def test_the_worker_writes_no_terminal_codes_when_not_on_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Faust's progress spinner wrote `\\b\\x1b[?25h OK ^` into a log file when
    the worker was ready; off a terminal it is off, and Faust logs "Ready"."""
    import logging

    from stream_app.core.profiles import ProfileBook
    from stream_app.core.rules import load_registry
    from stream_app.stream.settings import WorkerSettings
    from stream_app.stream.worker.app import build_app
    from stream_app.stream.worker.process import make_worker

    settings = WorkerSettings(store="memory://", data_dir=tmp_path)
    profiles = ProfileBook.load_or_default(None, load_registry().ids)
    worker = make_worker(build_app(settings, profiles, direct=True), settings)
    assert worker.spinner is None  # stdout and stderr are captured, not terminals
    with caplog.at_level(logging.INFO):
        worker._on_startup_end_spinner()  # what Faust does once the worker is ready
        worker.on_worker_shutdown()
    out, err = capsys.readouterr()
    assert "\x1b[" not in out + err and "\b" not in out + err
    assert "Ready" in caplog.text


@pytest.mark.parametrize(
    "variable, value, words",
    [
        ("STREAM_APP_WEB_PORT", "0", "greater than or equal to 1"),  # Faust's own refusal, late
        ("STREAM_APP_INPUT_TOPIC", "claim lines", "not a Kafka topic name"),
        ("STREAM_APP_ID", "..", "not a Kafka topic name"),
        ("STREAM_APP_SSL_CAFILE", "/nonexistent/ca.pem", "cannot load the CA file"),
        ("STREAM_APP_DATA_DIR", "/dev/null/data", "cannot create it"),
    ],
)
def test_the_worker_refuses_a_bad_setting_before_it_creates_topics(
    variable: str, value: str, words: str
) -> None:
    """Each once passed the settings and failed with a traceback (or a refusal
    from the broker) only after the topics were created. Here the broker is
    dead: a worker that went on to its topics would exit 3."""
    done = run(
        "worker",
        bootstrap=f"127.0.0.1:{closed_port()}",
        STREAM_APP_SECURITY_PROTOCOL="SSL" if variable == "STREAM_APP_SSL_CAFILE" else "PLAINTEXT",
        **{variable: value},
    )
    assert done.returncode == 2, done.stderr
    line = one_line(done, "worker")
    assert variable in line and words in line, line
