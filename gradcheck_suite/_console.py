"""What the terminal allows: its width and colour.

Width: on a terminal, its columns (``shutil.get_terminal_size``, which reads ``COLUMNS``
first); ``COLUMNS`` also sets a width for output that is not a terminal. Output into a pipe or
a file without ``COLUMNS`` has no width to fit: its lines are whole, for grep and CI logs.

Colour, as pytest decides it: ``NO_COLOR`` (any non-empty value, no-color.org) turns it off,
``FORCE_COLOR`` (any non-empty value) on even into a pipe; otherwise colour exactly when the
stream is a terminal that is not ``TERM=dumb``. ``--color yes|no`` overrides both.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import IO

__all__ = ["Paint", "colour_enabled", "terminal_width", "visible_len", "strip_colour"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")

# SGR codes: the verdict colours pytest users know (green pass, red fail, yellow skip)
_STYLES = {
    "pass": "32",
    "fail": "1;31",
    "inconclusive": "33",
    "error": "1;31",
    "bold": "1",
    "dim": "2",
    "heading": "1;36",
}


def _isatty(stream: IO[str] | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (ValueError, OSError):  # a closed or detached stream
        return False


def terminal_width(stream: IO[str] | None) -> int | None:
    """The columns to fit, or None for output with no width (a pipe or file without COLUMNS)."""
    cols = os.environ.get("COLUMNS", "")
    if cols.strip().isdigit() and int(cols) > 0:
        return int(cols)
    if _isatty(stream):
        return shutil.get_terminal_size().columns
    return None


def colour_enabled(stream: IO[str] | None, choice: str = "auto") -> bool:
    if choice in ("yes", "no"):
        return choice == "yes"
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return _isatty(stream) and os.environ.get("TERM") != "dumb"


def strip_colour(text: str) -> str:
    return _ANSI.sub("", text)


def visible_len(text: str) -> int:
    return len(strip_colour(text))


class Paint:
    """Colours text when enabled, and is the identity otherwise."""

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled

    def __call__(self, text: str, style: str) -> str:
        if not self.enabled or not text:
            return text
        return f"\x1b[{_STYLES[style]}m{text}\x1b[0m"

    def verdict(self, text: str) -> str:
        """A verdict cell coloured by its first word: pass, FAIL, inconclusive, error."""
        word = text.strip().split(" ", 1)[0].rstrip(":;,").lower()
        style = {"pass": "pass", "fail": "fail", "inconclusive": "inconclusive", "error": "error"}.get(word)
        return self(text, style) if style else text
