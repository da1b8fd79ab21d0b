"""Every numeric and time option of the command line is checked when it is
parsed: a wrong value exits 2 with a line that names the option and says what
it must be; a good one is taken as given."""

from __future__ import annotations

import re
from datetime import date

import pytest

from stream_app import argtypes
from stream_app.cli import _parser

# (command line, what the error must say)
REJECTED = [
    (["replay", "--fixed-time", "notatime"], ["--fixed-time", "RFC 3339"]),
    (["replay", "--fixed-time", "2026-01-01"], ["--fixed-time", "RFC 3339"]),
    (["replay", "--fixed-time", "2026-01-01T00:00:00"], ["--fixed-time", "RFC 3339"]),  # no offset
    (["replay", "--fixed-time", "2026-02-30T00:00:00Z"], ["--fixed-time", "not a valid time"]),
    (["replay", "--fixed-time", "2026-01-01T25:00:00Z"], ["--fixed-time", "not a valid time"]),
    (["replay", "--course-idle-days", "-5"], ["--course-idle-days", ">= 1", "-5"]),
    (["replay", "--course-idle-days", "0"], ["--course-idle-days", ">= 1"]),
    (["replay", "--course-idle-days", "4.5"], ["--course-idle-days", "whole number"]),
    (["replay", "--retain-days", "0"], ["--retain-days", ">= 1"]),
    (["replay", "--retain-days", "many"], ["--retain-days", "whole number"]),
    (["publish", "--rate", "0"], ["--rate", "> 0"]),
    (["publish", "--rate", "-3"], ["--rate", "> 0"]),
    (["publish", "--rate", "nan"], ["--rate", "> 0"]),
    (["publish", "--rate", "fast"], ["--rate", "> 0"]),
    (["publish", "--timeout", "0"], ["--timeout", "> 0"]),
    (["alerts", "--idle", "-1"], ["--idle", "> 0"]),
    (["alerts", "--idle", "inf"], ["--idle", "> 0"]),
    (["alerts", "--timeout", "-1"], ["--timeout", "> 0"]),
    (["generate", "--patients", "-1"], ["--patients", ">= 0"]),
    (["generate", "--patients", "ten"], ["--patients", "whole number"]),
    (["generate", "--fractions", "0"], ["--fractions", "between 1 and 100"]),
    (["generate", "--fractions", "1000"], ["--fractions", "between 1 and 100"]),
    (["generate", "--violation-rate", "1.5"], ["--violation-rate", "between 0 and 1"]),
    (["generate", "--violation-rate", "-0.1"], ["--violation-rate", "between 0 and 1"]),
    (["generate", "--invalid-rate", "2"], ["--invalid-rate", "between 0 and 1"]),
    (["generate", "--voids", "7"], ["--voids", "between 0 and 1"]),
    (["generate", "--seed", "x"], ["--seed", "whole number"]),
    (["generate", "--start", "2025-02-30"], ["--start", "not a calendar date"]),
    (["generate", "--start", "01/02/2025"], ["--start", "YYYY-MM-DD"]),
    (["generate", "--start", "9999-01-01"], ["--start", "between"]),
    (["generate", "--span-days", "0"], ["--span-days", "between 1 and 36500"]),
    (["generate", "--max-lines", "0"], ["--max-lines", ">= 1"]),
]


@pytest.mark.parametrize("argv, words", REJECTED, ids=[" ".join(argv) for argv, _ in REJECTED])
def test_a_bad_value_exits_2_naming_the_option(
    argv: list[str], words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    error = err.strip().splitlines()[-1]
    assert error.startswith(f"stream-app {argv[0]}: error: argument ")
    for word in words:
        assert word in error, error
    assert "Traceback" not in err


ACCEPTED = [
    (["replay", "--fixed-time", "2026-01-01T00:00:00Z"], "fixed_time", "2026-01-01T00:00:00.000Z"),
    (
        ["replay", "--fixed-time", "2024-06-01T00:00:00.000+02:00"],
        "fixed_time",
        "2024-05-31T22:00:00.000Z",
    ),
    (["replay", "--course-idle-days", "1"], "course_idle_days", 1),
    (["replay", "--retain-days", "365"], "retain_days", 365),
    (["publish", "--rate", "2.5"], "rate", 2.5),
    (["publish", "--timeout", "0.5"], "timeout", 0.5),
    (["alerts", "--idle", "15"], "idle", 15.0),
    (["generate", "--patients", "0"], "patients", 0),
    (["generate", "--seed", "-7"], "seed", -7),
    (["generate", "--violation-rate", "1"], "violation_rate", 1.0),
    (["generate", "--voids"], "voids", 0.05),
    (["generate", "--start", "2026-03-02"], "start", date(2026, 3, 2)),
    (["generate", "--fractions", "100"], "fractions", 100),
]


@pytest.mark.parametrize(
    "argv, name, value", ACCEPTED, ids=[" ".join(argv) for argv, _, _ in ACCEPTED]
)
def test_a_good_value_is_taken_as_given(argv: list[str], name: str, value: object) -> None:
    assert getattr(_parser().parse_args(argv), name) == value


def test_defaults_are_unchanged() -> None:
    replay = _parser().parse_args(["replay"])
    assert (replay.course_idle_days, replay.retain_days, replay.fixed_time) == (45, 120, None)
    publish = _parser().parse_args(["publish"])
    assert (publish.path, publish.rate, publish.timeout) == ("-", None, 15.0)
    alerts = _parser().parse_args(["alerts"])
    assert (alerts.idle, alerts.timeout) == (None, 15.0)
    generate = _parser().parse_args(["generate"])
    assert (generate.patients, generate.fractions, generate.violation_rate, generate.seed) == (
        100,
        25,
        0.0,
        0,
    )
    assert (generate.voids, generate.start, generate.span_days) == (0.0, date(2025, 1, 1), 640)


def test_generate_help_lists_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args(["generate", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for option in (
        "--patients",
        "--fractions",
        "--violation-rate",
        "--seed",
        "--output",
        "--invalid-rate",
        "--voids",
        "--start",
        "--span-days",
        "--max-lines",
    ):
        assert option in out


def test_fixed_time_takes_the_one_format_of_detected_at() -> None:
    """UTC with milliseconds, as the worker's and replay's own clock give it."""
    from stream_app.core.alerts import normalise_rfc3339, now_rfc3339

    assert argtypes.rfc3339("2026-01-01t00:00:00z") == "2026-01-01T00:00:00.000Z"
    assert argtypes.rfc3339("2026-01-01T00:00:00.123456Z") == "2026-01-01T00:00:00.123Z"
    assert normalise_rfc3339("2026-01-01T01:00:00+01:00") == "2026-01-01T00:00:00.000Z"
    pattern = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z"
    assert re.fullmatch(pattern, now_rfc3339())
    assert re.fullmatch(pattern, argtypes.rfc3339("2026-03-01T12:34:56+05:30"))


def test_generate_writes_as_the_readme_says_and_takes_the_old_spelling(tmp_path) -> None:
    from stream_app.cli import main

    options = ["--patients", "5", "--seed", "3", "--violation-rate", "0.5", "--quiet"]
    assert main(["generate", *options, "-o", str(tmp_path / "a.jsonl")]) == 0
    assert main(["generate", "--", *options, "-o", str(tmp_path / "b.jsonl")]) == 0
    written = (tmp_path / "a.jsonl").read_bytes()
    assert written and written == (tmp_path / "b.jsonl").read_bytes()


# (command line, the prefix of its error line, what it must say)
LEFT_OVER = [
    (["replay", "a.jsonl", "a.jsonl"], "stream-app replay", "unrecognized arguments: a.jsonl"),
    (["rules", "--bogus"], "stream-app rules", "unrecognized arguments: --bogus"),
    (["publish", "a", "b"], "stream-app publish", "unrecognized arguments: b"),
    (["alerts", "--idle", "1", "x"], "stream-app alerts", "unrecognized arguments: x"),
    (["worker", "--bogus"], "stream-app worker", "unrecognized arguments: --bogus"),
    (["intake", "x12", "--bogus"], "stream-app intake x12", "unrecognized arguments: --bogus"),
    (["generate", "--bogus"], "stream-app generate", "unrecognized arguments: --bogus"),
    (
        ["sink", "postgres", "--bogus"],
        "stream-app sink postgres",
        "unrecognized arguments: --bogus",
    ),
]


@pytest.mark.parametrize(
    "argv, prefix, words", LEFT_OVER, ids=[" ".join(argv) for argv, _, _ in LEFT_OVER]
)
def test_an_argument_left_over_is_reported_by_its_command(
    argv: list[str], prefix: str, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the command's usage, not the top-level one and `stream-app: error:`."""
    from stream_app.cli import main

    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    usage, *_, error = err.strip().splitlines()
    assert usage.startswith(f"usage: {prefix} "), err
    assert error == f"{prefix}: error: {words}", err
