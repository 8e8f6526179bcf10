"""Progress of a long compile or run: nothing for the first seconds, then a bar redrawn
in place on a terminal, or a plain line every few seconds when the output is a file."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, what: str, total: float, unit: str = "", *, after: float = 3.0,
                 every: float = 2.0, stream: TextIO | None = None) -> None:
        self.what, self.total, self.unit = what, max(total, 1), unit
        self.after, self.every = after, every
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.last = self.start
        self.shown = False

    def update(self, done: float) -> None:
        now = time.monotonic()
        if now - self.start < self.after or now - self.last < (
                0.2 if self.stream.isatty() else self.every):
            return
        self.last, self.shown = now, True
        share = min(done / self.total, 1.0)
        text = (f"{self.what}: {100 * share:5.1f}% ({done:,.0f} of {self.total:,.0f}"
                f"{' ' + self.unit if self.unit else ''}), {now - self.start:.0f} s")
        if self.stream.isatty():
            bar = "#" * int(30 * share)
            self.stream.write(f"\r[{bar:<30}] {text}")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.shown and self.stream.isatty():
            self.stream.write("\n")
            self.stream.flush()
