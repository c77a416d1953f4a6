"""A progress bar on stderr for runs that last, and nothing at all otherwise.

tqdm is imported only when a bar can show (stderr is a terminal), so a piped or quick run
pays nothing for it; the bar itself appears only after PROGRESS_DELAY seconds. It counts
cases; inside a case, the numeric source reports its evaluations of the forward as each chunk
of them completes (a batch of a program, a few single calls of a callable, a worker's task),
and the bar's postfix shows them with the time the case has left at the rate so far.
"""

from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["PROGRESS_DELAY", "ProgressBar", "eta", "progress_bar"]

PROGRESS_DELAY = 2.0  # seconds a run lasts before its bar shows


def eta(done: int, planned: int, elapsed: float) -> str:
    """The time left at the rate so far, as tqdm writes times ("0:07", "1:02:03"); "?" before
    anything is done. A case may plan fewer evaluations than it makes (elements that the
    first pass hands to the ladders add their own), so "0:00" is the least it says."""
    if done <= 0 or elapsed <= 0:
        return "?"
    left = max(0.0, (planned - done) * elapsed / done)
    minutes, seconds = divmod(int(round(left)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class ProgressBar:
    """Cases done, with the evaluations of the case in progress and its ETA as a postfix."""

    def __init__(self, total: int, enabled: bool, delay: float = PROGRESS_DELAY) -> None:
        self.enabled = enabled
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="case", delay=delay, file=sys.stderr, leave=False, dynamic_ncols=True)
        self._started = False
        self._case_start = time.monotonic()

    def next_case(self, item: object) -> None:
        if self._bar is None:
            return
        if self._started:
            self._bar.update(1)
        self._started = True
        self._case_start = time.monotonic()
        self._bar.set_description_str(str(getattr(item, "name", "error")), refresh=False)

    def evaluations(self, done: int, planned: int) -> None:
        if self._bar is not None:
            left = eta(done, planned, time.monotonic() - self._case_start)
            self._bar.set_postfix_str(f"{done}/{max(done, planned)} evaluations, case ETA {left}", refresh=False)
            # update(0) redraws only past the delay and mininterval; refresh() would not wait
            self._bar.update(0)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def progress_bar(total: int, enabled: bool | None = None, delay: float = PROGRESS_DELAY) -> ProgressBar:
    """``enabled=None`` shows a bar only when stderr is a terminal."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    return ProgressBar(total, enabled, delay)
