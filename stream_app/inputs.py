"""Reading claim input: files or stdin as raw lines, how invalid lines are
reported, and the garbage collector's pace while a long input is read.
Shared by the commands (`replay`, `publish`, `intake x12`); imports nothing
of the project."""

from __future__ import annotations

import gc
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO, TextIO


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


def looks_like_x12(raw: bytes) -> bool:
    """Whether a line starts an X12 interchange (an ISA segment): an 837 file
    given where JSON lines are wanted."""
    head = raw.lstrip().removeprefix(b"\xef\xbb\xbf")
    return head.startswith(b"ISA") and len(head) > 3 and not head[3:4].isalnum()


class InvalidLines:
    """Reports invalid input lines on `err`, each line starting with `prefix`.

    The first `shown` invalid lines in a row are reported one by one; the rest
    of such a run (a binary file, say) in one line when it ends. When a run
    ends, an X12 837 interchange among its lines (or, for a long run, the mere
    chance of one) is pointed to `x12_hint`, once per input."""

    def __init__(self, err: TextIO, prefix: str, x12_hint: str, shown: int = 20) -> None:
        self.err = err
        self.prefix = prefix
        self.x12_hint = x12_hint
        self.shown = shown
        self.total: Counter[str] = Counter()  # every invalid line, by reason
        self.length = 0  # of the current run
        self.first_hidden = 0
        self.last = 0
        self.hidden: Counter[str] = Counter()
        self.x12_line = 0  # the first line of the run that starts an interchange
        self.hinted = False

    def add(self, number: int, raw: bytes, reason: str, detail: str) -> None:
        self.total[reason] += 1
        self.length += 1
        self.last = number
        if not self.x12_line and looks_like_x12(raw):
            self.x12_line = number
        if self.length <= self.shown:
            self.err.write(f"{self.prefix}: line {number}: invalid ({reason}): {detail}\n")
            return
        if not self.hidden:
            self.first_hidden = number
        self.hidden[reason] += 1

    def end_run(self) -> None:
        """The run of invalid lines, if any, is over: sum up what was not shown."""
        if self.hidden:
            reasons = " ".join(f"{k}={v}" for k, v in sorted(self.hidden.items()))
            self.err.write(
                f"{self.prefix}: lines {self.first_hidden}-{self.last}: this does not look like "
                f"JSON lines: {self.length} invalid lines in a row, the last "
                f"{sum(self.hidden.values())} not shown ({reasons})\n"
            )
        if not self.hinted and self.x12_line:
            self.err.write(
                f"{self.prefix}: line {self.x12_line} starts an X12 interchange (ISA): "
                f"an 837 file? {self.x12_hint}\n"
            )
            self.hinted = True
        elif not self.hinted and self.hidden:
            self.err.write(f"{self.prefix}: an X12 837 file? {self.x12_hint}\n")
            self.hinted = True
        self.hidden.clear()
        self.length = 0
        self.x12_line = 0
