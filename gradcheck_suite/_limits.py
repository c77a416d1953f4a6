"""Resource limits on what a case file can make gradcheck do, each checked before the memory or
time it bounds is spent (docs/limits.md).

A case file is data, so nothing in it may hang a run or take the machine's memory: the sizes
of arrays (drawn inputs before they are drawn, every intermediate from its static shape before
the programs run), the integers and exponents of the program language, the length and nesting
of programs, the sample points and evaluations a check plans, the seconds a case may take, and
the bytes of any file read. Each limit has a command-line flag (and a pytest option) of the
same name, and going over one is a located error that names the flag.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_LIMITS",
    "FileRefused",
    "Limits",
    "check_elements",
    "read_text",
]


@dataclass(frozen=True)
class Limits:
    # One float64 array of 2^24 elements is 128 MiB; the bundled cases' largest holds 2^20.
    max_elements: int = 1 << 24
    # Case files are a few KiB; a baseline holds about 2 KiB per case and input.
    max_file_size: int = 16 << 20
    max_statements: int = 1000  # per program
    max_depth: int = 64  # nesting of one expression (the bundled programs reach 8)
    # Integers of the program language (literals, [constants], static arithmetic): shapes,
    # axes and indices, all far below 2^53, where float64 still counts every integer.
    max_integer: int = 1 << 53
    max_exponent: int = 1024  # |b| in a ** b: float64 overflows at 2^1024 anyway
    max_samples: int = 100_000  # sample points per case
    max_evaluations: int = 100_000_000  # evaluations of the forward the numeric source plans per case
    timeout: float = 600.0  # seconds per case; 0 for no limit


DEFAULT_LIMITS = Limits()


class FileRefused(Exception):
    """A file that is not read: not a regular file, or larger than ``--max-file-size``."""


def read_text(path: Path, max_bytes: int) -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes`` bytes.

    Opened without blocking, so a FIFO named as a case file cannot hang the run on its open;
    then checked to be a regular file (a FIFO, ``/dev/zero`` or a socket is refused) and read
    no further than one byte past the cap (a file that grows while it is read is caught too).
    Raises OSError, UnicodeDecodeError or FileRefused.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileRefused("not a regular file")
        if st.st_size > max_bytes:
            raise FileRefused(f"{st.st_size} bytes, over --max-file-size {max_bytes}")
        chunks: list[bytes] = []
        left = max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:
            raise FileRefused(f"more than --max-file-size {max_bytes} bytes")
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8")


def check_elements(shape: tuple[int, ...] | list[int], limits: Limits) -> str | None:
    """Why an array of ``shape`` is over the limit, or None; computed before it is allocated."""
    n = math.prod(int(s) for s in shape)
    if n > limits.max_elements:
        return f"shape {list(shape)} holds {n} elements, over --max-elements {limits.max_elements}"
    return None
