"""The worker's local-state guard for exactly-once (no broker needed)."""

from pathlib import Path

from stream_app.stream.worker.process import (
    CLEAN_SHUTDOWN_MARKER,
    drop_tables_after_crash,
    mark_clean_shutdown,
)


def _tables(tmp_path: Path) -> Path:
    tables = tmp_path / "v1" / "tables"
    (tables / "days-0.db").mkdir(parents=True)
    (tables / "days-0.db" / "000004.log").write_bytes(b"x")
    return tables


def test_tables_left_by_a_crash_are_dropped(tmp_path: Path) -> None:
    tables = _tables(tmp_path)
    assert drop_tables_after_crash(tables)
    assert not tables.exists()


def test_tables_after_a_clean_shutdown_are_kept_and_the_marker_is_used_up(tmp_path: Path) -> None:
    tables = _tables(tmp_path)
    mark_clean_shutdown(tables)
    assert not drop_tables_after_crash(tables)
    assert (tables / "days-0.db").exists()
    assert not (tables / CLEAN_SHUTDOWN_MARKER).exists()  # a crash from now on is seen
    assert drop_tables_after_crash(tables)


def test_a_first_start_has_nothing_to_drop(tmp_path: Path) -> None:
    assert not drop_tables_after_crash(tmp_path / "v1" / "tables")


def test_faust_routine_backpressure_is_not_logged_but_other_warnings_are() -> None:
    import logging

    from stream_app.stream.worker.process import _not_routine_backpressure

    def record(message: str) -> logging.LogRecord:
        name = "faust.transport.producer"
        return logging.LogRecord(name, logging.WARNING, "", 0, message, (), None)

    assert not _not_routine_backpressure(record("producer buffer full size 101"))
    assert not _not_routine_backpressure(record("producer flush took 0.005"))
    assert _not_routine_backpressure(record("Cannot flush: Producer not Running"))
