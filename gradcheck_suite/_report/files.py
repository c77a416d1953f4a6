"""Writing report files so that a crash or a kill never leaves half a file, or half a set.

One file (a baseline) is written whole to a temporary file in the same folder (same
filesystem, so the rename cannot turn into a copy), flushed to disk, and renamed over the old
one with ``os.replace``, which POSIX and Windows both make atomic.

A set of files (a run's report.json, junit.xml and summary.md) must also never be a mix of two
runs. :func:`write_set` writes the set into a new folder of its own under ``.gradcheck-sets/``,
then renames one symbolic link, ``.gradcheck-sets/current``, to point at it: that rename is
the only step that makes the new set visible, so after a kill at any moment ``current`` names
either the whole old set or the whole new one. The files a reader opens, ``DIR/report.json``
and the others, are links through ``current`` (``report.json -> .gradcheck-sets/current/
report.json``), made once; the set before is kept as ``previous`` for a reader still on it,
and anything older, or left by a killed run, is removed by the next write. Where symbolic
links cannot be made (Windows without the privilege, some network file systems) the set falls
back to the renames of :func:`write_all`, one file at a time.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .._errors import UsageError

__all__ = [
    "SETS",
    "ReportDirError",
    "prepare_dir",
    "atomic_write",
    "ensure_dir",
    "clean_temporaries",
    "write_all",
    "write_set",
]

SETS = ".gradcheck-sets"  # the folder, inside the report folder, that holds each run's set
# a temporary file or link of ours: .<name>.<pid>.<8 hex>.tmp, or a set <pid>-<8 hex>
_TEMPORARY = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$")
_SET = re.compile(r"^(\d+)-[0-9a-f]{8}$")


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
    for folder in {p.parent for p in files}:
        clean_temporaries(folder)
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process, or no way to ask: leave its files alone
        return True
    return True


def clean_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files and links that killed runs left in ``folder`` (those of a
    process still running are left alone: it may be writing them now)."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            m = _TEMPORARY.match(entry.name)
            if m and not _alive(int(m.group(1))):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _fsync_dir(folder: Path) -> None:
    # makes the renames inside ``folder`` durable; not every platform can open a folder
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _link(target: str, path: Path) -> None:
    """Point the symbolic link ``path`` at ``target`` in one step (a new link renamed over it)."""
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    os.symlink(target, tmp)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _target(link: Path) -> str | None:
    try:
        return os.readlink(link)
    except OSError:
        return None


def _clean_sets(sets: Path, keep: set[str]) -> None:
    for entry in os.scandir(sets):
        m = _SET.match(entry.name)
        # another live process may be writing its set now; this one writes one set at a time
        if entry.name in keep or (m and int(m.group(1)) != os.getpid() and _alive(int(m.group(1)))):
            continue
        if m or _TEMPORARY.match(entry.name):
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)


def _symlinks_work(sets: Path) -> bool:
    probe = sets / f".probe.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        os.symlink("current", probe)
    except (OSError, NotImplementedError):
        return False
    os.unlink(probe)
    return True


def write_set(folder: Path, files: Mapping[str, bytes | str]) -> list[Path]:
    """Write ``files`` (name -> content) into ``folder`` as one set: a reader, or a run killed
    at any moment, sees the whole old set or the whole new one. Returns the paths written."""
    paths = [folder / name for name in files]
    sets = folder / SETS
    try:
        sets.mkdir(exist_ok=True)
        linked = _symlinks_work(sets)
    except OSError as exc:
        raise ReportDirError(f"cannot write reports to {folder}: {_reason(exc)}") from None
    if not linked:
        write_all(dict(zip(paths, files.values(), strict=True)))
        return paths
    try:
        _write_linked(folder, sets, files)
    except OSError as exc:
        raise ReportDirError(f"cannot write reports to {folder}: {_reason(exc)}") from None
    return paths


def _write_linked(folder: Path, sets: Path, files: Mapping[str, bytes | str]) -> None:
    current, previous = sets / "current", sets / "previous"
    for link in (current, previous):
        # a copy that followed links (cp -rL, shutil.copytree) made real folders of them:
        # stale sets, which the links about to be made must replace
        if link.exists() and not link.is_symlink():
            shutil.rmtree(link, ignore_errors=True)
    clean_temporaries(folder)
    clean_temporaries(sets)
    _clean_sets(sets, {"current", "previous", *(t for t in (_target(current), _target(previous)) if t)})
    name = f"{os.getpid()}-{secrets.token_hex(4)}"
    new = sets / name
    new.mkdir()
    try:
        for file, data in files.items():
            staged = _temporary(new / file, data.encode("utf-8") if isinstance(data, str) else data)
            os.replace(staged, new / file)
        _fsync_dir(new)
        if _target(current) is None:
            _adopt(folder, sets, files)
        # the visible names point through `current`, which still names the old set here
        for file in files:
            wanted = f"{SETS}/current/{file}"
            if _target(folder / file) != wanted:
                _link(wanted, folder / file)
        old = _target(current)
        if old is not None:
            _link(old, previous)
        _link(name, current)  # the one step that shows the new set
        _fsync_dir(sets)
    except BaseException:
        if _target(current) != name:
            shutil.rmtree(new, ignore_errors=True)
        raise
    _clean_sets(sets, {"current", "previous", name, *(t for t in (_target(previous),) if t)})


def _adopt(folder: Path, sets: Path, files: Mapping[str, bytes | str]) -> None:
    """The first linked write: the plain files an earlier version wrote become the `current`
    set (hard links, so they stay whole and in place), so that no moment shows a mix."""
    plain = [f for f in files if (folder / f).is_file() and not (folder / f).is_symlink()]
    if not plain:
        return
    name = f"{os.getpid()}-{secrets.token_hex(4)}"
    adopted = sets / name
    adopted.mkdir()
    for f in plain:
        try:
            os.link(folder / f, adopted / f)
        except OSError:
            shutil.copy2(folder / f, adopted / f)
    _link(name, sets / "current")
