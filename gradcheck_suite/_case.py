"""Case files: the TOML schema, loading, and validation with file:line errors.

Besides the notebook's keys, a case may have:

* ``[constants]``: values that are not differentiated. An integer or a list of integers stays
  an integer (a class label array, an index; an integer scalar may size shapes and slices),
  a float is cast to the check's dtype like an input (batch norm's ``eps``, a dropout mask),
  ``{ random = "integers", low = 0, high = 3, shape = [4] }`` draws integers, and a table
  without ``random`` is a parameter dict passed to callables (cs231n's ``conv_param``).
* ``output = ["out", "cache_mean"]``: several outputs; ``upstream`` is then a table with an
  upstream gradient per output (missing ones are ones). A scalar output is a loss: its
  upstream defaults to 1.
* ``[forward]``, ``[backward]`` and ``[reference]`` given as ``callable = "pkg.module:fn"``
  instead of ``program``: see :mod:`gradcheck_suite._case_callables` for the protocol. The
  name must be allowed (:mod:`gradcheck_suite._trust`) and is imported only by
  :meth:`Case.resolved`, when the case is checked.

Loading is bounded (:mod:`gradcheck_suite._limits`): only regular files up to
``--max-file-size`` are read, a drawn array's size is checked before it is drawn, and any
failure, however odd the file, is a :class:`CaseError` naming the file.

``dtype``, ``k``, ``repeat`` and ``nondet_tol`` say how the case is checked when the run does
not say (:mod:`gradcheck_suite._settings`).
"""

from __future__ import annotations

import math
import re
import tomllib
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from ._case_callables import Backward, Constant, Forward, make_call
from ._dtypes import DTYPES, round_to
from ._errors import CaseError, LimitError
from ._limits import DEFAULT_LIMITS, FileRefused, Limits, check_elements, read_text
from ._program import Program, parse_program
from ._settings import CaseSettings, validate_k, validate_nondet_tol
from ._trust import Trust

__all__ = ["Case", "Expected", "Sweep", "load_case", "load_cases"]

_TOP_KEYS = {
    "name",
    "description",
    "output",
    "upstream",
    "inputs",
    "constants",
    "forward",
    "backward",
    "reference",
    "expect",
    "sweep",
    "dtype",
    "k",
    "repeat",
    "nondet_tol",
    "module",
    "order",
    "checks",
    "backward2",
}
_MODULE_KEYS = {"callable", "kwargs", "seed", "args"}
_PROGRAM_KEYS = {"program"}
_CALL_KEYS = {"callable", "args", "kwargs", "array", "returns"}
_DRAW_KEYS = {"random", "shape", "seed", "mean", "std", "low", "high"}


@dataclass(frozen=True)
class Expected:
    """A value printed somewhere (the notebook), with the precision it was printed to."""

    value: np.ndarray
    tolerance: np.ndarray  # absolute, per element
    line: int | None

    def mismatch(self, actual: Any) -> str | None:
        actual = np.asarray(actual, dtype=np.float64)
        if actual.shape != self.value.shape:
            return f"shape {actual.shape} != expected {self.value.shape}"
        bad = np.abs(actual - self.value) > self.tolerance
        if not bad.any():
            return None
        i = tuple(int(k) for k in np.argwhere(bad)[0])
        at = f" at {list(i)}" if i else ""
        return f"{float(actual[i])!r} != {float(self.value[i])!r}{at} (tolerance {float(self.tolerance[i]):.3g})"


@dataclass(frozen=True)
class Sweep:
    """Random sample points in a box domain per input; ``samples = 0`` sweeps only on --samples."""

    samples: int
    domain: Mapping[str, tuple[float, float]]
    seed: int = 0


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    file: Path
    line: int | None
    output: str  # the first of ``outputs``
    inputs: Mapping[str, np.ndarray]  # float64 values of the input point; all differentiated
    forward: Forward
    backward: Backward | None = None
    upstream: np.ndarray | None = None  # of ``output``
    expect: Mapping[str, Expected] = field(default_factory=dict)
    sweep: Sweep | None = None
    outputs: tuple[str, ...] = ()
    upstreams: Mapping[str, np.ndarray | None] = field(default_factory=dict)
    constants: Mapping[str, Constant] = field(default_factory=dict)  # never differentiated
    reference: Forward | None = None  # what autograd differentiates when the forward is not torch
    settings: CaseSettings = field(default_factory=CaseSettings)  # dtype, k, repeat, nondet_tol
    order: int = 1  # `order = 2`: also check second order
    # [backward2]: a hand-written Hessian-vector product: given v<input>, assigns hv<input>
    backward2: Program | None = None
    checks: tuple[str, ...] = ()  # `checks = [...]`: further check kinds (gradcheck_suite._kinds)

    @property
    def autograd_forward(self) -> Forward | None:
        """What the autograd source differentiates: the forward itself when torch can, else the
        reference; None when there is neither (the case is then checked two ways)."""
        if self.forward.torch_differentiable:
            return self.forward
        return self.reference

    @property
    def notes(self) -> list[str]:
        """What the report should say about how this case is checked."""
        if self.autograd_forward is not None:
            return []
        call = self.forward.call
        why = "not torch"
        if call is not None and call.is_function:
            why = "an autograd.Function"
        elif call is not None and call.own_backward:
            why = "built on custom autograd.Functions"
        elif call is not None and not call.autograd:
            why = "not for autograd"
        return [f"checked two ways: the forward `{self.forward.label}` is {why} and the case has no [reference]"]

    def at_dtype(self, dtype: str) -> Case:
        """This case with its float constants and upstream gradients rounded to ``dtype``, as
        the inputs are: every source then differentiates the same function (a kernel receives
        its upstream in its dtype; the float64 truth of a bfloat16 check must see the same)."""
        consts = {k: round_to(v, dtype) if _is_float_array(v) else v for k, v in self.constants.items()}
        ups = {k: None if v is None else round_to(v, dtype) for k, v in self.upstreams.items()}
        forward = self.forward.with_constants(consts)
        return replace(
            self,
            upstream=ups.get(self.output),
            upstreams=ups,
            constants=consts,
            forward=forward,
            backward=self.backward.with_constants(consts, forward) if self.backward else None,
            reference=self.reference.with_constants(consts) if self.reference else None,
        )

    def error(self, message: str, *, line: int | None = None, key: str | None = None) -> CaseError:
        return CaseError(message, file=self.file, line=line, key=key, case=self.name)

    def resolved(self) -> Case:
        """This case with its callables imported: the only step that runs a case file's
        Python code, taken when the case is checked (never on load, list or collection).

        An autograd.Function forward brings its own backward and needs no [backward]; a
        [reference] must take torch tensors. Both are known only once imported.
        """
        forward = self.forward.resolved()
        reference = self.reference.resolved() if self.reference is not None else None
        if reference is not None and reference.call is not None and reference.call.array != "torch":
            raise reference.call.error('is not a torch function: set `array = "torch"` in [reference]')
        backward = self.backward
        declared = backward is not None and (backward.program is not None or backward.call is not None)
        if forward.call is not None and forward.call.brings_backward:
            if backward is not None and declared:
                line = backward.call.line if backward.call else backward.statements[0].line
                raise self.error(
                    "a torch.autograd.Function brings its own backward: remove [backward]", line=line, key="backward"
                )
            backward = Backward(None, None, tuple(self.inputs), self.outputs, forward, self.constants)
        elif backward is not None:
            backward = backward.resolved(forward)
        return replace(self, forward=forward, backward=backward, reference=reference)


def _is_float_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind == "f"


_HEADER_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.- ")


def _header(raw: str) -> str | None:
    """The table a ``[name]`` line opens (spaces dropped), else None.

    Scanned by hand in one pass: the regular expression it replaces backtracked cubically on
    a bracket followed by thousands of spaces (19 s for 4,000)."""
    text = raw.strip()
    if not text.startswith("["):
        return None
    end = text.find("]")
    if end < 0:
        return None
    rest = text[end + 1 :].lstrip()
    if rest and not rest.startswith("#"):
        return None
    name = text[1:end].strip()
    if not name or not _HEADER_CHARS.issuperset(name):
        return None
    return name.replace(" ", "")


class _Lines:
    """Where each key of a TOML file was written: tomllib keeps no positions."""

    _key = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")

    def __init__(self, text: str) -> None:
        self.text_lines = text.splitlines()
        self.where: dict[tuple[str, str], int] = {}
        self.tables: dict[str, int] = {}
        table = ""
        in_multiline = False
        for n, raw in enumerate(self.text_lines, start=1):
            if in_multiline:
                if raw.count('"""') % 2 == 1 or raw.count("'''") % 2 == 1:
                    in_multiline = False
                continue
            if (header := _header(raw)) is not None:
                table = header
                self.tables.setdefault(table, n)
                continue
            if m := self._key.match(raw):
                self.where.setdefault((table, m.group(1)), n)
                rest = raw.split("=", 1)[1]
                if rest.count('"""') % 2 == 1 or rest.count("'''") % 2 == 1:
                    in_multiline = True

    def line(self, table: str, key: str | None = None) -> int | None:
        if key is None:
            return self.tables.get(table)
        return self.where.get((table, key), self.tables.get(table))

    def program_start(self, table: str, key: str = "program") -> int:
        """Line of a multi-line string's first line: TOML drops a newline right after the quotes."""
        n = self.where.get((table, key))
        if n is None:
            return self.tables.get(table, 1)
        rest = self.text_lines[n - 1].split("=", 1)[1].strip()
        if rest in ('"""', "'''"):
            return n + 1
        return n


def _files(path: Path) -> list[Path]:
    """The case files a path names: the file itself, or a folder's ``*.toml`` files."""
    if path.is_dir():
        # a folder's own files first, then each subfolder's, by name: the order `ls -R` shows,
        # so the table's folder headings each come once
        found = sorted((q for q in path.rglob("*.toml") if q.is_file()), key=lambda q: (q.parent.parts, q.name))
        if not found:  # a mistyped folder in CI must not pass as "0 cases"
            raise CaseError("no case files (*.toml) in this folder", file=path)
        return found
    if path.exists():
        return [path]
    raise CaseError("no such file or folder", file=path)


def load_cases(
    paths: list[Path], *, limits: Limits = DEFAULT_LIMITS, trust: Trust | None = None
) -> Iterator[Case | CaseError]:
    """Every case under ``paths``, or the error that kept a path or file from loading."""
    trust = Trust.from_settings() if trust is None else trust
    for p in paths:
        try:
            files = _files(p)
        except CaseError as exc:
            yield exc
            continue
        except OSError as exc:  # a folder that cannot be listed
            yield CaseError(f"cannot read: {exc.strerror or type(exc).__name__}", file=p)
            continue
        for f in files:
            try:
                yield load_case(f, limits=limits, trust=trust)
            except CaseError as exc:
                yield exc


def load_case(path: Path | str, *, limits: Limits = DEFAULT_LIMITS, trust: Trust | None = None) -> Case:
    """Read one case file; every failure, however odd the file, is a CaseError naming it.

    ``trust`` decides which callables the file may name (None: the defaults and the
    pyproject.toml found from the current directory up, as the CLI takes them); nothing is
    imported here (see :meth:`Case.resolved`)."""
    path = Path(path)
    trust = Trust.from_settings() if trust is None else trust
    try:
        return _load(path, limits, trust)
    except CaseError:
        raise
    except (RecursionError, MemoryError) as exc:
        what = f"cannot load: {type(exc).__name__} (nested or sized past what a case file holds)"
        raise CaseError(what, file=path) from None
    except Exception as exc:  # noqa: BLE001 - a value the checks missed must not stop the others
        raise CaseError(f"cannot load: {type(exc).__name__}: {exc}", file=path) from None


def _load(path: Path, limits: Limits, trust: Trust) -> Case:
    try:
        text = read_text(path, limits.max_file_size)
    except FileRefused as exc:
        raise LimitError(f"cannot read: {exc}", file=path) from None
    except OSError as exc:
        raise CaseError(f"cannot read: {exc.strerror or type(exc).__name__}", file=path) from None
    except UnicodeDecodeError as exc:
        raise CaseError(f"cannot read: not UTF-8 text ({exc.reason} at byte {exc.start})", file=path) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        msg = getattr(exc, "msg", str(exc))
        if line is None and (m := re.search(r"line (\d+)", str(exc))):
            line = int(m.group(1))
        raise CaseError(f"TOML syntax error: {msg}", file=path, line=line) from None
    except RecursionError:
        raise CaseError("TOML nested too deeply to read", file=path) from None
    return _build(path, data, _Lines(text), limits, trust)


class _Reader:
    """One case file being read: the parsed TOML, its lines, and what earlier sections found.

    Each ``_read_*`` function below reads one part of the file into these fields; ``_SECTIONS``
    runs them in order, so a later section can rely on an earlier one (the backward on the
    forward's names, ``[expect]`` on both).
    """

    def __init__(
        self,
        path: Path,
        data: dict[str, Any],
        lines: _Lines,
        limits: Limits = DEFAULT_LIMITS,
        trust: Trust | None = None,
    ) -> None:
        self.path, self.data, self.lines = path, data, lines
        self.limits, self.trust = limits, trust
        # a `name` that is no string (a TOML date, a number) names no case: errors use the file's stem
        name = data.get("name", path.stem)
        self.name: str = name if isinstance(name, str) else path.stem
        self.outputs: tuple[str, ...] = ()
        self.inputs: dict[str, np.ndarray] = {}
        self.constants: dict[str, Constant] = {}
        self.forward: Forward | None = None
        self.reference: Forward | None = None
        self.upstreams: dict[str, np.ndarray | None] = {}
        self.backward: Backward | None = None
        self.expect: dict[str, Expected] = {}
        self.sweep: Sweep | None = None
        self.description = ""
        self.settings = CaseSettings()
        self.order = 1
        self.checks: tuple[str, ...] = ()
        self.backward2: Program | None = None

    def err(self, message: str, table: str = "", key: str | None = None) -> CaseError:
        label = f"{table}.{key}" if table and key else (table or key)
        return CaseError(message, file=self.path, line=self.lines.line(table, key), key=label, case=self.name)

    @property
    def program_names(self) -> list[str]:
        # parameter dicts are for callables; a program sees arrays and numbers only
        return [*self.inputs, *(k for k, v in self.constants.items() if not isinstance(v, dict))]

    @property
    def integers(self) -> list[str]:
        return [k for k, v in self.constants.items() if isinstance(v, int)]

    @property
    def all_names(self) -> list[str]:
        return [*self.inputs, *self.constants]

    def call(self, table: str, role: str, default_args: list[str], names: list[str]) -> Any:
        return make_call(
            self.data[table],
            role=role,
            default_args=default_args,
            names=names,
            case=self.name,
            file=self.path,
            line=self.lines.line(table, "callable"),
            err=lambda m, k: self.err(m, table, k),
            trust=self.trust,
        )

    def section(self, table: str) -> dict[str, Any] | str:
        """A [forward], [backward] or [reference] section, checked to hold a program or a callable."""
        value = self.data[table]
        if isinstance(value, dict):
            extra = set(value) - (_PROGRAM_KEYS | _CALL_KEYS)
            if extra:
                allowed = ", ".join(sorted(_PROGRAM_KEYS | _CALL_KEYS))
                first = sorted(extra)[0]
                raise self.err(f"unknown key `{first}` in [{table}] (allowed: {allowed})", table, first)
            if ("program" in value) == ("callable" in value):
                raise self.err(f'[{table}] needs either `program` or `callable` ("package.module:function")', table)
            if "program" in value and set(value) - _PROGRAM_KEYS:
                first = sorted(set(value) - _PROGRAM_KEYS)[0]
                raise self.err(f"[{table}] with a `program` takes no other keys", table, first)
        return value

    def program(self, key: str, known: list[str], integers: list[str]) -> Program:
        return _program(
            self.path, self.data, key, self.lines, known=known, err=self.err, integers=integers, limits=self.limits
        )

    def case(self) -> Case:
        assert self.forward is not None
        return Case(
            name=self.name,
            description=self.description,
            file=self.path,
            line=self.lines.line("", "name"),
            output=self.outputs[0],
            inputs=self.inputs,
            forward=self.forward,
            backward=self.backward,
            upstream=self.upstreams[self.outputs[0]],
            expect=self.expect,
            sweep=self.sweep,
            outputs=self.outputs,
            upstreams=self.upstreams,
            constants=self.constants,
            reference=self.reference,
            settings=self.settings,
            order=self.order,
            checks=self.checks,
            backward2=self.backward2,
        )


def _read_top(r: _Reader) -> None:
    """The name, unknown top-level keys, and the keys every case needs."""
    data, name = r.data, r.name
    given = data.get("name", name)  # r.name is the file's stem when the name is no string
    if not isinstance(given, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", given):
        if "name" not in data:
            raise r.err(
                f"the file name `{r.path.stem}` is no case name: add `name = ...` (letters, digits, '_', '.', '-')"
            )
        raise r.err("`name` must be letters, digits, '_', '.' or '-'", "", "name")
    for key in data:
        if key not in _TOP_KEYS:
            raise r.err(f"unknown key `{key}` (allowed: {', '.join(sorted(_TOP_KEYS))})", "", key)
    if "module" in data and "forward" in data:
        raise r.err("a case has either [forward] or [module] (a module is its own forward)", "module")
    for required in ("output", "inputs", "forward"):
        if required == "forward" and "module" in data:
            continue
        if required not in data:
            raise CaseError(f"missing required key `{required}`", file=r.path, key=required, case=name)


def _read_output(r: _Reader) -> None:
    raw = r.data["output"]
    if isinstance(raw, str):
        r.outputs = (raw,)
    elif isinstance(raw, list) and raw and all(isinstance(o, str) for o in raw) and len(set(raw)) == len(raw):
        r.outputs = tuple(raw)
    else:
        raise r.err("`output` must be the name of a forward variable or a list of distinct names", "", "output")


def _read_inputs(r: _Reader) -> None:
    raw = r.data["inputs"]
    if not isinstance(raw, dict) or not raw:
        raise r.err("`[inputs]` must be a table with at least one input", "inputs")
    for iname, spec in raw.items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", iname):
            raise r.err(f"input name `{iname}` is not a plain identifier", "inputs", iname)
        r.inputs[iname] = _value(spec, iname, lambda m, k=iname: r.err(m, "inputs", k), r.limits)


def _read_constants(r: _Reader) -> None:
    raw = r.data.get("constants", {})
    if not isinstance(raw, dict):
        raise r.err("`[constants]` must be a table", "constants")
    for cname, spec in raw.items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", cname):
            raise r.err(f"constant name `{cname}` is not a plain identifier", "constants", cname)
        if cname in r.inputs:
            raise r.err(f"`{cname}` is both an input and a constant", "constants", cname)
        r.constants[cname] = _constant(spec, cname, lambda m, k=cname: r.err(m, "constants", k), r.limits)


def _read_checks(r: _Reader) -> None:
    """``order = 2`` and ``checks = [...]``: the check kinds this case always gets."""
    order = r.data.get("order", 1)
    if isinstance(order, bool) or order not in (1, 2):
        raise r.err("`order` must be 1 or 2", "", "order")
    checks = r.data.get("checks", [])
    if not isinstance(checks, list) or not all(isinstance(c, str) for c in checks):
        raise r.err("`checks` must be a list of check names", "", "checks")
    r.order = order
    if not checks:
        return
    from ._kinds import parse_checks  # the kinds build on the engine, which builds on cases

    try:
        r.checks = parse_checks(checks)
    except ValueError as exc:
        raise r.err(f"`checks`: {exc}", "", "checks") from None


def _module_factory(r: _Reader, table: str) -> Any:
    """Import a module factory, call it (under its `seed`), and return the module."""
    spec = r.data[table]
    if not isinstance(spec, dict) or "callable" not in spec:
        raise r.err(f'[{table}] needs `callable = "package.module:factory"`, a function returning an nn.Module', table)
    extra = set(spec) - _MODULE_KEYS
    if extra:
        first = sorted(extra)[0]
        raise r.err(f"unknown key `{first}` in [{table}] (allowed: {', '.join(sorted(_MODULE_KEYS))})", table, first)
    call = r.call(table, table, [], r.all_names) if "args" not in spec or table == "module" else None
    if call is None:
        raise r.err(f"[{table}] takes no `args`: the module's inputs are those of [module]", table, "args")
    seed = spec.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise r.err("`seed` must be an integer", table, "seed")
    import torch

    # A module's parameters are the case's inputs, so the factory runs when the file loads (after
    # the allow-list admitted it): unlike other callables, not only when the case is checked.
    call = call.resolved()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = call.fn(**call.kwargs)
    except Exception as exc:  # noqa: BLE001 - the user's factory
        raise r.err(f"the factory `{call.target}` raised {type(exc).__name__}: {exc}", table, "callable") from None
    if not isinstance(module, torch.nn.Module):
        raise r.err(
            f"the factory `{call.target}` returned a {type(module).__name__}, not an nn.Module", table, "callable"
        )
    return module


def _read_module(r: _Reader) -> None:
    """[module]: a factory returning an nn.Module; its parameters join the inputs."""
    if "module" not in r.data:
        return
    import torch

    from ._modules import module_case  # modules build on cases

    module = _module_factory(r, "module")
    reference = None
    if "reference" in r.data:
        if not isinstance(r.data["reference"], dict) or "callable" not in r.data["reference"]:
            raise r.err("a module's [reference] is a module too: `callable` names its factory", "reference")
        reference = _module_factory(r, "reference")
    args = r.data["module"].get("args", [*r.inputs, *r.constants])
    unknown = [a for a in args if a not in r.all_names] if isinstance(args, list) else [args]
    if unknown:
        raise r.err(f"`args` must name inputs and constants; `{unknown[0]}` is neither", "module", "args")
    values = {n: torch.tensor(np.asarray(r.inputs[n] if n in r.inputs else r.constants[n])) for n in args}
    try:
        case = module_case(
            module,
            values,
            reference=reference,
            name=r.name,
            file=r.path,
            line=r.lines.line("module", "callable"),
            target=r.data["module"]["callable"],
            outputs=r.outputs,
            upstreams={o: None for o in r.outputs},
            positional=True,
        )
    except CaseError as exc:
        raise r.err(exc.message, "module") from None
    r.inputs, r.constants = dict(case.inputs), dict(case.constants)
    r.forward, r.reference, r.backward = case.forward, case.reference, case.backward


def _read_forward(r: _Reader) -> None:
    if r.forward is not None:  # a [module]
        return
    fsec = r.section("forward")
    if isinstance(fsec, dict) and "callable" in fsec:
        r.forward = Forward(None, r.call("forward", "forward", r.all_names, r.all_names), r.outputs, r.constants)
        return
    fprog = r.program("forward", r.program_names, r.integers)
    r.forward = Forward(fprog, None, r.outputs, r.constants)
    for o in r.outputs:
        if o not in fprog.assigned:
            raise r.err(f"the forward program never assigns the output `{o}`", "", "output")


def _read_reference(r: _Reader) -> None:
    if "reference" not in r.data or "module" in r.data:  # a module's reference is a module: read with it
        return
    rsec = r.section("reference")
    if isinstance(rsec, dict) and "callable" in rsec:
        rcall = r.call("reference", "reference", r.all_names, r.all_names)
        if rcall.array == "numpy":
            raise r.err('a reference must be a torch function (set `array = "torch"`)', "reference", "array")
        r.reference = Forward(None, rcall, r.outputs, r.constants)
        return
    rprog = r.program("reference", r.program_names, r.integers)
    for o in r.outputs:
        if o not in rprog.assigned:
            raise r.err(f"the reference program never assigns the output `{o}`", "reference", "program")
    r.reference = Forward(rprog, None, r.outputs, r.constants)


def _read_upstream(r: _Reader) -> None:
    r.upstreams = {o: None for o in r.outputs}
    if "upstream" not in r.data:
        return
    raw = r.data["upstream"]
    if len(r.outputs) == 1:
        r.upstreams[r.outputs[0]] = _value(raw, "upstream", lambda m: r.err(m, "", "upstream"), r.limits)
        return
    if not isinstance(raw, dict) or "random" in raw:
        raise r.err("with several outputs, `upstream` is a table with one entry per output", "", "upstream")
    for uname, spec in raw.items():
        if uname not in r.outputs:
            raise r.err(f"upstream names `{uname}`, which is not an output", "upstream", uname)
        r.upstreams[uname] = _value(spec, uname, lambda m, k=uname: r.err(m, "upstream", k), r.limits)


def _read_backward(r: _Reader) -> None:
    forward = r.forward
    assert forward is not None
    douts = [f"d{o}" for o in r.outputs]
    inputs = tuple(r.inputs)
    # An autograd.Function forward brings its own backward, known only on import (Case.resolved);
    # a module built on custom autograd.Functions is known to bring one now ([module] built it).
    if forward.call is not None and forward.call.own_backward:
        if "backward" in r.data:
            raise r.err("a module built on autograd.Functions brings its own backward: remove [backward]", "backward")
        r.backward = Backward(None, None, inputs, r.outputs, forward, r.constants)
        return
    if "backward" not in r.data:
        return
    bsec = r.section("backward")
    if isinstance(bsec, dict) and "callable" in bsec:
        bcall = r.call("backward", "backward", [], [*r.all_names, *forward.assigned, *douts])
        if forward.call is not None and forward.call.returns == "cache" and bcall.args:
            raise r.err(
                "a backward of a forward that returns a cache is called as (dout, cache): drop `args`",
                "backward",
                "args",
            )
        r.backward = Backward(None, bcall, inputs, r.outputs, forward, r.constants)
        return
    known = [*r.program_names, *forward.assigned, *douts]
    # static integers of the forward (N = size(x, 0)) stay static in the backward
    static = [*r.integers, *(forward.program.integers if forward.program else ())]
    bprog = r.program("backward", known, static)
    missing = [n for n in inputs if f"d{n}" not in bprog.assigned]
    if missing:
        names = ", ".join(f"`d{n}`" for n in missing)
        raise r.err(
            f"the backward program leaves input(s) {', '.join(missing)} without a gradient: assign {names}",
            "backward",
            "program",
        )
    r.backward = Backward(bprog, None, inputs, r.outputs, forward, r.constants)


def _read_backward2(r: _Reader) -> None:
    """[backward2]: the derivative of every d<input> along a direction v (one v<input> per
    input), assigned to hv<input>: a hand-written Hessian-vector product, the manual source of
    the second-order check."""
    if "backward2" not in r.data:
        return
    backward = r.backward
    if backward is None or backward.program is None:
        raise r.err("[backward2] differentiates a [backward] program: the case needs one", "backward2")
    assert r.forward is not None
    directions = [f"v{n}" for n in r.inputs]
    clash = [d for d in directions if d in set(r.program_names) | set(r.forward.assigned) | set(backward.assigned)]
    if clash:
        raise r.err(f"[backward2] names its directions v<input>, and `{clash[0]}` is taken", "backward2")
    known = [*r.program_names, *r.forward.assigned, *(f"d{o}" for o in r.outputs), *backward.assigned, *directions]
    static = [*r.integers, *(r.forward.program.integers if r.forward.program else ())]
    prog = r.program("backward2", known, static)
    missing = [n for n in r.inputs if f"hv{n}" not in prog.assigned]
    if missing:
        names = ", ".join(f"`hv{n}`" for n in missing)
        raise r.err(f"the [backward2] program must assign {names} (H v for each input)", "backward2", "program")
    r.backward2 = prog


def _read_expect(r: _Reader) -> None:
    raw = r.data.get("expect", {})
    if not isinstance(raw, dict):
        raise r.err("`[expect]` must be a table", "expect")
    assert r.forward is not None
    known = set(r.inputs) | set(r.forward.assigned) | set(r.backward.assigned if r.backward else [])
    known |= {f"d{n}" for n in r.inputs} | {k for k, v in r.constants.items() if not isinstance(v, dict)}
    for ename, spec in raw.items():
        if ename not in known:
            raise r.err(f"`{ename}` is neither an input, a program variable nor an input's gradient", "expect", ename)
        r.expect[ename] = _expected(spec, r.lines.line("expect", ename), lambda m, k=ename: r.err(m, "expect", k))


def _read_sweep(r: _Reader) -> None:
    if "sweep" in r.data:
        r.sweep = _sweep(r.data["sweep"], r.inputs, lambda m, k=None: r.err(m, "sweep", k), r.limits)


def _read_description(r: _Reader) -> None:
    description = r.data.get("description", "")
    if not isinstance(description, str):
        raise r.err("`description` must be a string", "", "description")
    r.description = description


def _read_settings(r: _Reader) -> None:
    """``dtype``, ``k``, ``repeat``, ``nondet_tol``: how the case is checked unless the run says."""
    data = r.data
    dtype = data.get("dtype")
    if dtype is not None and dtype not in DTYPES:
        raise r.err(f"`dtype` must be one of {', '.join(DTYPES)}, not {dtype!r}", "", "dtype")
    k = data.get("k")
    if k is not None and (problem := validate_k(k)):
        raise r.err(problem, "", "k")
    repeat = data.get("repeat")
    if repeat is not None and (isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1):
        raise r.err(
            f"`repeat` must be a whole number >= 1 (runs of the analytic sources), not {repeat!r}", "", "repeat"
        )
    tol = data.get("nondet_tol")
    if tol is not None and (problem := validate_nondet_tol(tol)):
        raise r.err(problem, "", "nondet_tol")
    r.settings = CaseSettings(
        dtype=dtype,
        k=None if k is None else float(k),
        repeat=repeat,
        nondet_tol=None if tol is None else float(tol),
    )


# The order matters: each reader may use what the readers before it found.
_SECTIONS = (
    _read_top,
    _read_output,
    _read_inputs,
    _read_constants,
    _read_checks,
    _read_module,
    _read_forward,
    _read_reference,
    _read_upstream,
    _read_backward,
    _read_backward2,
    _read_expect,
    _read_sweep,
    _read_description,
    _read_settings,
)


def _build(path: Path, data: dict[str, Any], lines: _Lines, limits: Limits, trust: Trust) -> Case:
    reader = _Reader(path, data, lines, limits, trust)
    for read in _SECTIONS:
        read(reader)
    return reader.case()


def _program(
    path: Path,
    data: dict[str, Any],
    key: str,
    lines: _Lines,
    *,
    known: list[str],
    err: Any,
    integers: tuple[str, ...] | list[str] = (),
    limits: Limits = DEFAULT_LIMITS,
) -> Program:
    section = data[key]
    if isinstance(section, str):
        source, start = section, lines.program_start("", key)
    elif isinstance(section, dict):
        extra = set(section) - _PROGRAM_KEYS
        if extra:
            raise err(f"unknown key `{sorted(extra)[0]}` in [{key}] (allowed: program)", key, sorted(extra)[0])
        if "program" not in section or not isinstance(section["program"], str):
            raise err(f"[{key}] needs `program`, a string of statements", key)
        source, start = section["program"], lines.program_start(key)
    else:
        raise err(f"`{key}` must be a table with `program`", "", key)
    return parse_program(source, key=key, known=known, file=path, first_line=start, integers=integers, limits=limits)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # TOML's true is no number


def _value(spec: Any, name: str, err: Any, limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    if isinstance(spec, dict):
        return _draw(spec, name, err, limits=limits)
    if isinstance(spec, bool) or not isinstance(spec, (int, float, list)):
        raise err(f"`{name}` must be a number, a nested list of numbers or a `random = ...` table")
    try:
        value = np.asarray(spec, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        raise err(f"`{name}` is not a rectangular nested list of numbers") from None
    if value.dtype == object or value.size == 0:
        raise err(f"`{name}` is not a rectangular nested list of numbers")
    if any(isinstance(x, bool) for x in _flat(spec)):
        raise err(f"`{name}` is not a rectangular nested list of numbers (true/false are no numbers)")
    if (too_big := check_elements(value.shape, limits)) is not None:
        raise err(f"`{name}`: {too_big}")
    if not np.all(np.isfinite(value)):
        raise err(f"`{name}` is NaN or infinite at the input point")
    return value


def _flat(spec: Any) -> Iterator[Any]:
    """The scalars of a nested list, without recursion (a file may nest deeply)."""
    stack = [spec]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        else:
            yield item


def _constant(spec: Any, name: str, err: Any, limits: Limits = DEFAULT_LIMITS) -> Constant:
    """A [constants] entry: integers stay integers, floats are float64, a plain table is a dict."""
    if isinstance(spec, dict) and "random" not in spec:
        for k, v in spec.items():
            if not isinstance(v, (int, float, str, bool, list)):
                raise err(f"parameter `{name}.{k}` must be a number, a string, a boolean or a list")
        return dict(spec)
    if isinstance(spec, dict):
        if spec.get("random") == "integers":
            return _draw(spec, name, err, integers=True, limits=limits)
        return _value(spec, name, err, limits)
    if _is_int(spec):
        if abs(spec) > limits.max_integer:
            raise err(f"`{name}` = {spec} is past --max-integer {limits.max_integer}")
        return spec
    if isinstance(spec, list):
        try:
            ints = np.asarray(spec)
        except (ValueError, OverflowError):
            raise err(f"`{name}` is not a rectangular nested list of numbers") from None
        if ints.dtype.kind in "iu" and ints.size:
            if (too_big := check_elements(ints.shape, limits)) is not None:
                raise err(f"`{name}`: {too_big}")
            return ints.astype(np.int64)
    return _value(spec, name, err, limits)


def _draw(
    spec: dict[str, Any], name: str, err: Any, integers: bool = False, limits: Limits = DEFAULT_LIMITS
) -> np.ndarray:
    extra = set(spec) - _DRAW_KEYS
    if extra:
        raise err(f"unknown key `{sorted(extra)[0]}` in a drawn input (allowed: {', '.join(sorted(_DRAW_KEYS))})")
    kind = spec.get("random")
    shape = spec.get("shape", [])
    if not isinstance(shape, list) or not all(_is_int(s) and s > 0 for s in shape):
        raise err("`shape` must be a list of positive integers")
    # checked before anything is drawn: a file may ask for far more than the machine holds
    if (too_big := check_elements(shape, limits)) is not None:
        raise err(f"`{name}`: {too_big}")
    # A stable default seed per name keeps two drawn inputs from being the same numbers.
    seed = spec.get("seed", zlib.crc32(name.encode()))
    if not _is_int(seed) or not 0 <= seed < 1 << 64:
        raise err("`seed` must be an integer from 0 to 2**64 - 1")
    # PCG64 through default_rng gives the same numbers on every platform; the draw happens
    # in float64 on the CPU and is then cast, so every device and dtype sees the same point.
    rng = np.random.default_rng(seed)
    for key in ("mean", "std", "low", "high"):
        if key in spec and (isinstance(spec[key], bool) or not isinstance(spec[key], (int, float))):
            raise err(f"`{key}` must be a number, not {spec[key]!r}")
        if key in spec and not math.isfinite(spec[key]):
            raise err(f"`{key}` must be a finite number, not {spec[key]!r}")
    if kind == "normal":
        if not spec.get("std", 1.0) > 0:
            raise err("`std` must be positive")
        return np.asarray(rng.normal(spec.get("mean", 0.0), spec.get("std", 1.0), size=shape), dtype=np.float64)
    if kind == "integers" and integers:
        low, high = spec.get("low", 0), spec.get("high")
        if not isinstance(low, int) or not isinstance(high, int) or not _is_int(low) or not _is_int(high):
            raise err("integers need integer `low` < `high` (high is excluded)")
        if not low < high:
            raise err("integers need integer `low` < `high` (high is excluded)")
        if max(abs(low), abs(high)) > min(limits.max_integer, 1 << 62):
            raise err(f"integers `low` and `high` must be within --max-integer {limits.max_integer}")
        return rng.integers(low, high, size=shape).astype(np.int64)
    if kind == "uniform":
        low, high = spec.get("low", -1.0), spec.get("high", 1.0)
        if not low < high:
            raise err("`low` must be below `high`")
        return np.asarray(rng.uniform(low, high, size=shape), dtype=np.float64)
    kinds = '"normal", "uniform" or "integers"' if integers else '"normal" or "uniform"'
    raise err(f"`random` must be {kinds}, not {kind!r}" + ("" if integers else " (integers only in [constants])"))


def _literal_tolerance(v: float) -> float:
    """Half a unit in the last printed place, never below 4 ulps (an integer is exact to 4 ulps)."""
    ulps = 4 * math.ulp(v)
    if isinstance(v, int):
        return ulps
    exponent = Decimal(repr(v)).as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0.5 * 10.0**exponent, ulps)


def _expected(spec: Any, line: int | None, err: Any) -> Expected:
    decimals = None
    if isinstance(spec, dict):
        if set(spec) - {"value", "decimals"} or "value" not in spec:
            raise err("an expected value is a number, a list, or `{ value = ..., decimals = N }`")
        decimals = spec.get("decimals")
        if decimals is not None and (isinstance(decimals, bool) or not isinstance(decimals, int) or decimals < 0):
            raise err("`decimals` must be a whole number of decimal places")
        spec = spec["value"]
    try:
        value = np.asarray(spec, dtype=np.float64)
        flat = np.asarray(spec, dtype=object).reshape(-1)
    except (ValueError, TypeError):
        raise err("expected value is not a number or a rectangular nested list") from None
    if any(isinstance(x, bool) for x in flat):
        raise err("expected value is not a number or a rectangular nested list")
    if decimals is not None:
        tol = np.maximum(0.5 * 10.0 ** (-decimals), 4 * np.spacing(np.abs(value)))
    else:
        tol = np.array([_literal_tolerance(x) for x in flat], dtype=np.float64).reshape(value.shape)
    return Expected(value=value, tolerance=tol, line=line)


def _sweep(spec: Any, inputs: Mapping[str, np.ndarray], err: Any, limits: Limits = DEFAULT_LIMITS) -> Sweep:
    if not isinstance(spec, dict):
        raise err("`[sweep]` must be a table with `samples` and `domain`")
    extra = set(spec) - {"samples", "domain", "seed"}
    if extra:
        raise err(f"unknown key `{sorted(extra)[0]}` (allowed: samples, domain, seed)", sorted(extra)[0])
    samples = spec.get("samples", 0)
    if not _is_int(samples) or samples < 0:
        raise err("`samples` must be a positive integer", "samples")
    if samples > limits.max_samples:
        raise err(f"`samples` = {samples} is over --max-samples {limits.max_samples}", "samples")
    domain: dict[str, tuple[float, float]] = {}
    raw = spec.get("domain", {})
    if not isinstance(raw, dict):
        raise err("`domain` must be a table `{ input = [low, high], ... }`", "domain")
    for name, bounds in raw.items():
        if name not in inputs:
            raise err(f"domain names `{name}`, which is not an input", "domain")
        numbers = isinstance(bounds, list) and len(bounds) == 2
        numbers = numbers and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
        if not (numbers and bounds[0] < bounds[1] and all(math.isfinite(b) for b in bounds)):
            raise err(f"domain of `{name}` must be [low, high], two numbers with low < high", "domain")
        domain[name] = (float(bounds[0]), float(bounds[1]))
    seed = spec.get("seed", 0)
    if not _is_int(seed) or not 0 <= seed < 1 << 64:
        raise err("`seed` must be an integer from 0 to 2**64 - 1", "seed")
    return Sweep(samples=samples, domain=domain, seed=seed)
