"""A progress bar on stderr for runs that last, and nothing at all otherwise.

tqdm is imported only when a bar can show (stderr is a terminal), so a piped or quick run
pays nothing for it; the bar itself appears only after PROGRESS_DELAY seconds.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["PROGRESS_DELAY", "ProgressBar", "progress_bar"]

PROGRESS_DELAY = 2.0  # seconds a run lasts before its bar shows


class ProgressBar:
    """Cases done, with the numeric evaluations of the case in progress as a postfix."""

    def __init__(self, total: int, enabled: bool, delay: float = PROGRESS_DELAY) -> None:
        self.enabled = enabled
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="case", delay=delay, file=sys.stderr, leave=False, dynamic_ncols=True)
        self._started = False

    def next_case(self, item: object) -> None:
        if self._bar is None:
            return
        if self._started:
            self._bar.update(1)
        self._started = True
        self._bar.set_description_str(str(getattr(item, "name", "error")), refresh=False)

    def evaluations(self, done: int, planned: int) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(f"{done}/{planned} evaluations", refresh=False)
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
