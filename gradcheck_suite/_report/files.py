"""Writing report files so that a crash or a kill never leaves half a file behind.

Each file is written whole to a temporary file in the same folder (same filesystem, so the
rename cannot turn into a copy), flushed to disk, and renamed over the old one with
``os.replace``, which POSIX and Windows both make atomic. A set of files is written as all
temporaries first and renamed only then, so a run killed while it writes its reports leaves
every old report in place; only a kill inside the short run of renames can leave some files
from the new run beside others from the old one, and each of them is still whole.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .._errors import UsageError

__all__ = ["ReportDirError", "prepare_dir", "ensure_dir", "atomic_write", "write_all"]


class ReportDirError(UsageError):
    """The report folder cannot be created or written (exit status 2)."""


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def prepare_dir(folder: Path) -> Path:
    """Prove that ``folder`` can be written, before any case runs, without creating it.

    Checking first means a typo or a read-only checkout costs one line, not a full run whose
    results then cannot be kept. A folder that does not exist yet is proved through its nearest
    existing parent and created only when there is a report to write (``ensure_dir``), so a
    run with nothing to report leaves no empty ``reports/`` behind.
    """
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "Not a directory")
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".gradcheck-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ReportDirError(f"cannot write reports to {folder}: {_reason(exc)}") from None
    return folder


def ensure_dir(folder: Path) -> Path:
    """Create ``folder`` (and its parents) for the reports about to be written into it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportDirError(f"cannot write reports to {folder}: {_reason(exc)}") from None
    return folder


def _temporary(path: Path, data: bytes) -> Path:
    # Not mkstemp: its files are 0600, and a report should get the permissions any file the
    # user writes gets (0666 less the umask), as the file it replaces did.
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            # Without fsync a power loss after the rename can leave an empty file under the
            # new name on some filesystems (ext4 with delalloc, XFS).
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return Path(tmp)


def atomic_write(path: Path, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` in one step: readers see the old file or the new one."""
    write_all({path: data})


def write_all(files: Mapping[Path, bytes | str]) -> None:
    """Write every file to a temporary first, then rename them all into place."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            raw = data.encode("utf-8") if isinstance(data, str) else data
            staged.append((_temporary(path, raw), path))
        for tmp, path in staged:
            os.replace(tmp, path)
    except OSError as exc:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        where = next((p.parent for p in files), Path("."))
        raise ReportDirError(f"cannot write reports to {where}: {_reason(exc)}") from None
