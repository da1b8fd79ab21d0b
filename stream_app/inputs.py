"""Reading claim input: files or stdin as raw lines, and the garbage
collector's pace while a long input is read. Shared by the commands
(`replay`, `publish`, `intake x12`); imports nothing of the project."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO


def read_lines(stream: BinaryIO) -> Iterator[bytes]:
    for raw in stream:
        yield raw.rstrip(b"\r\n")


@contextmanager
def relaxed_gc() -> Iterator[None]:
    """Engine state is acyclic, so frequent cyclic collections only cost time."""
    threshold = gc.get_threshold()
    gc.set_threshold(200_000, 50, 1000)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)


def open_input(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    return open(path, "rb")
