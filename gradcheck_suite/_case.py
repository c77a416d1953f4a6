"""Case files: the TOML schema, loading, and validation with file:line errors."""

from __future__ import annotations

import math
import re
import tomllib
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import CaseError
from ._program import Program, parse_program

__all__ = ["Case", "Expected", "Sweep", "load_case", "find_case_files", "load_cases"]

_TOP_KEYS = {
    "name",
    "description",
    "output",
    "upstream",
    "inputs",
    "forward",
    "backward",
    "expect",
    "sweep",
}
_PROGRAM_KEYS = {"program"}
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
    output: str
    inputs: Mapping[str, np.ndarray]  # float64 values of the input point
    forward: Program
    backward: Program | None = None
    upstream: np.ndarray | None = None
    expect: Mapping[str, Expected] = field(default_factory=dict)
    sweep: Sweep | None = None

    @property
    def id(self) -> str:
        return self.name

    def error(self, message: str, *, line: int | None = None, key: str | None = None) -> CaseError:
        return CaseError(message, file=self.file, line=line, key=key, case=self.name)


class _Lines:
    """Where each key of a TOML file was written: tomllib keeps no positions."""

    _header = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\- ]+?)\s*\]\s*(#.*)?$")
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
            if m := self._header.match(raw):
                table = m.group(1).replace(" ", "")
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


def find_case_files(paths: list[Path]) -> list[Path]:
    """The case files under ``paths`` (files as given, folders searched for ``*.toml``)."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found.extend(sorted(q for q in p.rglob("*.toml") if q.is_file()))
        elif p.exists():
            found.append(p)
        else:
            raise CaseError("no such file or folder", file=p)
    return found


def load_cases(paths: list[Path]) -> Iterator[Case | CaseError]:
    """Every case under ``paths``, or the error that kept a file from loading."""
    for f in find_case_files(paths):
        try:
            yield load_case(f)
        except CaseError as exc:
            yield exc


def load_case(path: Path | str) -> Case:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseError(f"cannot read: {exc}", file=path) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        msg = getattr(exc, "msg", str(exc))
        if line is None and (m := re.search(r"line (\d+)", str(exc))):
            line = int(m.group(1))
        raise CaseError(f"TOML syntax error: {msg}", file=path, line=line) from None
    return _build(path, data, _Lines(text))


def _build(path: Path, data: dict[str, Any], lines: _Lines) -> Case:
    name = data.get("name", path.stem)

    def err(message: str, table: str = "", key: str | None = None) -> CaseError:
        label = f"{table}.{key}" if table and key else (table or key)
        return CaseError(message, file=path, line=lines.line(table, key), key=label, case=name)

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise err("`name` must be letters, digits, '_', '.' or '-'", "", "name")
    for key in data:
        if key not in _TOP_KEYS:
            raise err(f"unknown key `{key}` (allowed: {', '.join(sorted(_TOP_KEYS))})", "", key)
    for required in ("output", "inputs", "forward"):
        if required not in data:
            raise CaseError(f"missing required key `{required}`", file=path, key=required, case=name)
    output = data["output"]
    if not isinstance(output, str):
        raise err("`output` must be the name of a forward variable", "", "output")

    raw_inputs = data["inputs"]
    if not isinstance(raw_inputs, dict) or not raw_inputs:
        raise err("`[inputs]` must be a table with at least one input", "inputs")
    inputs: dict[str, np.ndarray] = {}
    for iname, spec in raw_inputs.items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", iname):
            raise err(f"input name `{iname}` is not a plain identifier", "inputs", iname)
        inputs[iname] = _value(spec, iname, lambda m, k=iname: err(m, "inputs", k))

    forward = _program(path, data, "forward", lines, known=list(inputs), err=err)
    if output not in forward.assigned:
        raise err(f"the forward program never assigns the output `{output}`", "", "output")

    upstream = None
    if "upstream" in data:
        upstream = _value(data["upstream"], "upstream", lambda m: err(m, "", "upstream"))

    backward = None
    if "backward" in data:
        known = [*inputs, *forward.assigned, f"d{output}"]
        backward = _program(path, data, "backward", lines, known=known, err=err)
        missing = [n for n in inputs if f"d{n}" not in backward.assigned]
        if missing:
            names = ", ".join(f"`d{n}`" for n in missing)
            raise err(
                f"the backward program leaves input(s) {', '.join(missing)} without a gradient: assign {names}",
                "backward",
                "program",
            )

    expect: dict[str, Expected] = {}
    raw_expect = data.get("expect", {})
    if not isinstance(raw_expect, dict):
        raise err("`[expect]` must be a table", "expect")
    expectable = set(inputs) | set(forward.assigned) | set(backward.assigned if backward else [])
    expectable |= {f"d{n}" for n in inputs}
    for ename, spec in raw_expect.items():
        if ename not in expectable:
            raise err(f"`{ename}` is neither an input, a program variable nor an input's gradient", "expect", ename)
        expect[ename] = _expected(spec, lines.line("expect", ename), lambda m, k=ename: err(m, "expect", k))

    sweep = None
    if "sweep" in data:
        sweep = _sweep(data["sweep"], inputs, lambda m, k=None: err(m, "sweep", k))

    description = data.get("description", "")
    if not isinstance(description, str):
        raise err("`description` must be a string", "", "description")
    return Case(
        name=name,
        description=description,
        file=path,
        line=lines.line("", "name"),
        output=output,
        inputs=inputs,
        forward=forward,
        backward=backward,
        upstream=upstream,
        expect=expect,
        sweep=sweep,
    )


def _program(path: Path, data: dict[str, Any], key: str, lines: _Lines, *, known: list[str], err: Any) -> Program:
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
    return parse_program(source, key=key, known=known, file=path, first_line=start)


def _value(spec: Any, name: str, err: Any) -> np.ndarray:
    if isinstance(spec, dict):
        return _draw(spec, name, err)
    if isinstance(spec, bool) or not isinstance(spec, (int, float, list)):
        raise err(f"`{name}` must be a number, a nested list of numbers or a `random = ...` table")
    try:
        value = np.asarray(spec, dtype=np.float64)
    except (ValueError, TypeError):
        raise err(f"`{name}` is not a rectangular nested list of numbers") from None
    if value.dtype == object or value.size == 0:
        raise err(f"`{name}` is not a rectangular nested list of numbers")
    if not np.all(np.isfinite(value)):
        raise err(f"`{name}` is NaN or infinite at the input point")
    return value


def _draw(spec: dict[str, Any], name: str, err: Any) -> np.ndarray:
    extra = set(spec) - _DRAW_KEYS
    if extra:
        raise err(f"unknown key `{sorted(extra)[0]}` in a drawn input (allowed: {', '.join(sorted(_DRAW_KEYS))})")
    kind = spec.get("random")
    shape = spec.get("shape", [])
    if not isinstance(shape, list) or not all(isinstance(s, int) and s > 0 for s in shape):
        raise err("`shape` must be a list of positive integers")
    # A stable default seed per name keeps two drawn inputs from being the same numbers.
    seed = spec.get("seed", zlib.crc32(name.encode()))
    if not isinstance(seed, int):
        raise err("`seed` must be an integer")
    # PCG64 through default_rng gives the same numbers on every platform; the draw happens
    # in float64 on the CPU and is then cast, so every device and dtype sees the same point.
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return np.asarray(rng.normal(spec.get("mean", 0.0), spec.get("std", 1.0), size=shape), dtype=np.float64)
    if kind == "uniform":
        low, high = spec.get("low", -1.0), spec.get("high", 1.0)
        if not low < high:
            raise err("`low` must be below `high`")
        return np.asarray(rng.uniform(low, high, size=shape), dtype=np.float64)
    raise err(f'`random` must be "normal" or "uniform", not {kind!r}')


def _literal_tolerance(v: float) -> float:
    """Half a unit in the last printed place, never below 4 ulps (an integer is exact to 4 ulps)."""
    ulps = 4 * math.ulp(v) if v != 0 else 4 * math.ulp(1.0) * 1e-300
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
        spec = spec["value"]
    try:
        value = np.asarray(spec, dtype=np.float64)
        flat = np.asarray(spec, dtype=object).reshape(-1)
    except (ValueError, TypeError):
        raise err("expected value is not a number or a rectangular nested list") from None
    if decimals is not None:
        tol = np.maximum(0.5 * 10.0 ** (-decimals), 4 * np.spacing(np.abs(value)))
    else:
        tol = np.array([_literal_tolerance(x) for x in flat], dtype=np.float64).reshape(value.shape)
    return Expected(value=value, tolerance=tol, line=line)


def _sweep(spec: Any, inputs: Mapping[str, np.ndarray], err: Any) -> Sweep:
    if not isinstance(spec, dict):
        raise err("`[sweep]` must be a table with `samples` and `domain`")
    extra = set(spec) - {"samples", "domain", "seed"}
    if extra:
        raise err(f"unknown key `{sorted(extra)[0]}` (allowed: samples, domain, seed)", sorted(extra)[0])
    samples = spec.get("samples", 0)
    if not isinstance(samples, int) or samples < 0:
        raise err("`samples` must be a positive integer", "samples")
    domain: dict[str, tuple[float, float]] = {}
    for name, bounds in spec.get("domain", {}).items():
        if name not in inputs:
            raise err(f"domain names `{name}`, which is not an input", "domain")
        if not (isinstance(bounds, list) and len(bounds) == 2 and bounds[0] < bounds[1]):
            raise err(f"domain of `{name}` must be [low, high] with low < high", "domain")
        domain[name] = (float(bounds[0]), float(bounds[1]))
    seed = spec.get("seed", 0)
    return Sweep(samples=samples, domain=domain, seed=int(seed))
