"""``-k`` expressions, as pytest reads them: words joined by ``and``, ``or``, ``not`` and parentheses.

A word matches a case name as ``-k`` always has here: a case-insensitive substring, or, when
the word holds ``*``, ``?`` or ``[``, a glob of the whole name. So ``-k matmul``, ``-k "s*m*s"``,
``-k "matmul or product"`` and ``-k "sig and not neuron"`` all work. The grammar is pytest's::

    expr     := and_expr ("or" and_expr)*
    and_expr := not_expr ("and" not_expr)*
    not_expr := "not" not_expr | "(" expr ")" | word

Written here rather than taken from ``_pytest.mark.expression``: that module is private to
pytest, and its words are substrings only, without the globs this CLI has always accepted.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable

from ._errors import UsageError

__all__ = ["KeywordError", "compile_keyword", "word_matches"]

Matcher = Callable[[str], bool]

_TOKEN = re.compile(r"\s*(?:(\()|(\))|([^\s()]+))")
_OPERATORS = ("and", "or", "not")


class KeywordError(UsageError):
    """A ``-k`` expression that does not parse (exit status 2)."""


def word_matches(name: str, word: str) -> bool:
    """One word of ``-k``: a case-insensitive substring, or a glob when it has * ? or [."""
    if any(c in word for c in "*?["):
        return fnmatch.fnmatch(name, word)
    return word.lower() in name.lower()


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:  # only trailing blanks are left
            break
        out.append(m.group(m.lastindex or 0))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    def fail(self, expected: str) -> KeywordError:
        got = f"{self.tokens[self.pos]!r}" if self.pos < len(self.tokens) else "the end"
        return KeywordError(f"-k {self.text!r}: expected {expected}, found {got}")

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, token: str) -> bool:
        if self.peek() == token:
            self.pos += 1
            return True
        return False

    def expression(self) -> Matcher:
        parts = [self.and_expression()]
        while self.take("or"):
            parts.append(self.and_expression())
        if len(parts) == 1:
            return parts[0]
        return lambda name: any(p(name) for p in parts)

    def and_expression(self) -> Matcher:
        parts = [self.not_expression()]
        while self.take("and"):
            parts.append(self.not_expression())
        if len(parts) == 1:
            return parts[0]
        return lambda name: all(p(name) for p in parts)

    def not_expression(self) -> Matcher:
        if self.take("not"):
            inner = self.not_expression()
            return lambda name: not inner(name)
        if self.take("("):
            inner = self.expression()
            if not self.take(")"):
                raise self.fail("')'")
            return inner
        word = self.peek()
        if word is None or word in _OPERATORS or word == ")":
            raise self.fail("a name")
        self.pos += 1
        return lambda name: word_matches(name, word)

    def parse(self) -> Matcher:
        matcher = self.expression()
        if self.pos < len(self.tokens):
            raise self.fail("'and', 'or' or the end")
        return matcher


@functools.lru_cache(maxsize=64)
def compile_keyword(text: str) -> Matcher:
    """The matcher of a ``-k`` expression; raises :class:`KeywordError` for one that does not parse."""
    if not text.strip():
        raise KeywordError("-k: give a name, a glob or an expression such as 'matmul or product'")
    return _Parser(text).parse()
