"""Text from a case file, made safe to print on one line of a terminal or a CI log.

A case file's keys, names, descriptions and paths reach the terminal inside error messages and
listings. Printed raw, a newline in a key could start a line that GitHub Actions reads as a
workflow command (``::error ...``, ``::add-mask::``, the older ``##[...]``), and a control
character could rewrite the terminal. :func:`printable` escapes every control and line-break
character, a leading ``::`` and every ``##[``, so whatever a file holds prints as one inert line.
"""

from __future__ import annotations

import re

__all__ = ["printable"]

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators (str.splitlines
# breaks on those too, and so may a log viewer).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_COMMAND_START = re.compile(r"^(\s*):")


def _escape(m: re.Match[str]) -> str:
    c = m.group(0)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    if c in named:
        return named[c]
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def printable(text: object) -> str:
    """``text`` as one printable line that no CI log reads as a command."""
    s = _CONTROL.sub(_escape, str(text))
    # A workflow command is `::name ...::` at the start of a line (leading blanks are skipped):
    # escaping the first colon keeps the text readable and inert.
    s = _COMMAND_START.sub(lambda m: m.group(1) + "\\x3a", s, count=1)
    return s.replace("##[", "#\\x23[")
