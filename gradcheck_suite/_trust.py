"""Which Python callables a case file may name: an allow-list kept outside the case files.

A case file is data. The only way it could run Python code is a ``callable = "pkg.mod:fn"``
section, so a callable is refused unless the person running the check allowed it, through
``[tool.gradcheck] callables = [...]`` in the pyproject.toml found from the current directory
upward, or ``--allow-callable PATTERN`` (docs/trust.md). The name is matched **before anything
is imported**: loading, listing and collecting cases import nothing, and an allowed callable is
imported only when its case is checked (:meth:`Trust.resolve`).

* A pattern is a dotted name (``mylayers.affine_forward``, or ``mylayers:affine_forward``)
  or a glob over dotted names with ``*`` (``mylayers.*``, ``torch.nn.functional.*``).
* Allowed by default: the package's own layers (``gradcheck_suite.naive_layers.*``) and
  ``torch.nn.functional.*``, the references the bundled cases use.
* A wildcard never matches a name with a part starting with ``_``, a name under a module that
  can reach the shell, the file system, the interpreter or a deserialiser (``os``,
  ``subprocess``, ``builtins``, ``importlib``, ``runpy``, ``sys``, ``shutil``, ``pickle``,
  ``ctypes``, ``socket``, ``multiprocessing`` and more: :data:`NEVER_BY_WILDCARD`), nor a
  function that a wildcard-matched module merely re-exports from one of them. Only an exact
  entry allows such a name: a deliberate decision, never a glob's side effect.
* A name resolves by importing its module and taking attributes that are not modules, so an
  allowed module cannot be used as a path to another (``mylayers:os.system``).
* ``--data-only`` refuses every callable, the defaults included.
"""

from __future__ import annotations

import fnmatch
import importlib
import re
import tomllib
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import UsageError
from ._limits import DEFAULT_LIMITS, FileRefused, read_text

__all__ = [
    "DEFAULT_CALLABLES",
    "NEVER_BY_WILDCARD",
    "Trust",
    "TrustError",
    "find_pyproject",
    "split_target",
]

DEFAULT_CALLABLES: tuple[str, ...] = ("gradcheck_suite.naive_layers.*", "torch.nn.functional.*")

# Modules (and everything under them) and single functions that a wildcard never matches:
# each can run a command, write or load files, load native code, open a socket, unpickle, or
# reach the interpreter's own machinery.
NEVER_BY_WILDCARD: frozenset[str] = frozenset(
    {
        *("os", "posix", "nt", "sys", "builtins", "subprocess", "importlib", "runpy", "shutil", "pickle"),
        *("ctypes", "socket", "multiprocessing", "pty", "signal", "code", "codeop", "pdb", "io", "pathlib"),
        *("tempfile", "glob", "threading", "asyncio", "concurrent", "http", "urllib", "ftplib", "smtplib"),
        *("telnetlib", "webbrowser", "zipimport", "pkgutil", "site", "types", "functools", "operator"),
        *("codecs", "fileinput", "zipfile", "tarfile", "shelve", "marshal", "dbm", "sqlite3", "logging"),
        *("gc", "inspect", "dill", "cloudpickle", "joblib", "setuptools", "pip", "distutils"),
        *("numpy.load", "numpy.save", "numpy.savez", "numpy.savez_compressed", "numpy.savetxt", "numpy.loadtxt"),
        *("numpy.genfromtxt", "numpy.fromfile", "numpy.memmap", "numpy.lib", "numpy.ctypeslib", "numpy.f2py"),
        *("numpy.distutils", "numpy.testing", "torch.load", "torch.save", "torch.from_file", "torch.hub"),
        *("torch.package", "torch.serialization", "torch.utils.cpp_extension", "torch.jit", "torch.ops"),
        *("torch.classes", "torch.multiprocessing", "torch.distributed", "torch.compile", "torch.backends"),
    }
)

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_TARGET = re.compile(rf"{_IDENT}(\.{_IDENT})*(:{_IDENT}(\.{_IDENT})*)?")
_PATTERN = re.compile(r"[A-Za-z0-9_.:*]+")
_SETTING = "[tool.gradcheck] callables in pyproject.toml or --allow-callable"


class TrustError(UsageError):
    """A pyproject.toml whose [tool.gradcheck] cannot be read, or a bad pattern (exit status 2)."""


def split_target(target: str) -> tuple[str, str]:
    """``"pkg.mod:fn"`` or ``"pkg.mod.fn"`` -> (module, qualname); ValueError when malformed."""
    if not _TARGET.fullmatch(target):
        raise ValueError('expected "package.module:function" (letters, digits, "_", dots)')
    module, sep, qualname = target.partition(":")
    if not sep:  # "torch.nn.functional.conv2d": the last dotted part is the function
        module, _, qualname = target.rpartition(".")
    if not module or not qualname:
        raise ValueError('expected "package.module:function"')
    return module, qualname


def _dotted(name: str) -> str:
    return name.replace(":", ".")


def _denied_module(dotted: str) -> bool:
    parts = dotted.split(".")
    return any(".".join(parts[:k]) in NEVER_BY_WILDCARD for k in range(1, len(parts) + 1))


def _never(dotted: str) -> bool:
    """A name no wildcard matches: private, or under one of NEVER_BY_WILDCARD."""
    return any(p.startswith("_") for p in dotted.split(".")) or _denied_module(dotted)


@dataclass(frozen=True)
class Trust:
    """The allow-list of one run: ``patterns`` (defaults first) and ``data_only``."""

    patterns: tuple[str, ...] = DEFAULT_CALLABLES
    data_only: bool = False

    def __post_init__(self) -> None:
        for p in self.patterns:
            if not isinstance(p, str) or not _PATTERN.fullmatch(p):
                raise TrustError(f"callable pattern {p!r}: use a dotted name, `module:function`, or a glob with `*`")

    @classmethod
    def from_settings(cls, allow: Iterable[str] = (), data_only: bool = False, start: Path | None = None) -> Trust:
        """The defaults, then pyproject.toml's ``[tool.gradcheck] callables`` (found from
        ``start``, the current directory by default, upward), then ``allow``."""
        found = find_pyproject(Path.cwd() if start is None else start)
        extra = _read_callables(found) if found is not None else ()
        return cls((*DEFAULT_CALLABLES, *extra, *allow), data_only)

    def refusal(self, target: str) -> str | None:
        """Why ``target`` may not run, naming the setting to change; None when it is allowed.

        Decided on the name alone: nothing is imported."""
        try:
            split_target(target)
        except ValueError as exc:
            return f"`{target}` is not a callable name: {exc}"
        if self.data_only:
            return f"callable `{target}` refused: --data-only refuses every callable"
        dotted = _dotted(target)
        if self.exactly(target):
            return None
        globbed = [p for p in self.patterns if "*" in p and fnmatch.fnmatchcase(dotted, _dotted(p))]
        if globbed and not _never(dotted):
            return None
        if _never(dotted):
            return (
                f"callable `{target}` refused: case files run only callables on the allow-list, and no wildcard"
                " matches a private name or one under a module that reaches the shell, files or the interpreter"
                f" (docs/trust.md); list `{target}` exactly in {_SETTING} only if it must run"
            )
        return (
            f"callable `{target}` refused: case files run only callables on the allow-list; add it (or a pattern"
            f' such as "{_dotted(target).split(".")[0]}.*") to {_SETTING} (docs/trust.md)'
        )

    def exactly(self, target: str) -> bool:
        """Whether an exact entry (no wildcard) names ``target``."""
        dotted = _dotted(target)
        return any("*" not in p and _dotted(p) == dotted for p in self.patterns)

    @staticmethod
    def resolve(target: str, exact: bool) -> Any:
        """Import an allowed ``target``; only now does its module's code run.

        Attributes are taken one by one and none may be a module, so an allowed module is no
        path to another; a callable allowed by a wildcard must not be defined under a module
        a wildcard never matches (an allowed package re-exporting ``os.system``).
        Raises ImportError, AttributeError or ValueError (the caller words the error).
        """
        module_name, qualname = split_target(target)
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
            if isinstance(obj, types.ModuleType):
                raise ValueError(f"`{part}` is a module: name the function as `{obj.__name__}:function`")
        home = getattr(obj, "__module__", None) or getattr(type(obj), "__module__", None)
        if not exact and isinstance(home, str) and _denied_module(home):
            raise ValueError(
                f"it is defined in `{home}`, which a wildcard never matches; list `{target}` exactly to allow it"
            )
        return obj


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml in ``start`` or a folder above it."""
    here = start.resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _read_callables(path: Path) -> Sequence[str]:
    try:
        data = tomllib.loads(read_text(path, DEFAULT_LIMITS.max_file_size))
    except (OSError, UnicodeDecodeError, FileRefused) as exc:
        raise TrustError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TrustError(f"{path}: TOML syntax error: {exc}") from None
    except RecursionError:
        raise TrustError(f"{path}: nested too deeply to read") from None
    tool = data.get("tool", {})
    section = tool.get("gradcheck", {}) if isinstance(tool, dict) else {}
    if not isinstance(section, dict):
        raise TrustError(f"{path}: [tool.gradcheck] must be a table")
    unknown = sorted(set(section) - {"callables"})
    if unknown:
        raise TrustError(f"{path}: [tool.gradcheck]: unknown key `{unknown[0]}` (allowed: callables)")
    callables = section.get("callables", [])
    if not isinstance(callables, list) or not all(isinstance(c, str) for c in callables):
        raise TrustError(f"{path}: [tool.gradcheck] callables must be a list of strings")
    for c in callables:
        if not _PATTERN.fullmatch(c):
            raise TrustError(f"{path}: [tool.gradcheck] callables: {c!r} is not a dotted name or a glob")
    return callables
