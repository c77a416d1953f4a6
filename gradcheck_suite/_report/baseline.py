"""Baselines: a stored report.json, and comparing a run with it.

A run regresses against its baseline when a case that passed there now fails, when a case that
passed there is missing, or when the largest absolute difference of a pair of sources on an
input grew by more than ``max_growth`` times. New cases and removed cases are listed.

Growth is measured against a floor, never against the stored difference alone: two sources
that agree to the last bit store a difference of 0.0, and a rounding change of 1e-16 (another
CPU, another BLAS) would otherwise be an infinite growth. The floor is the rounding the
comparison itself treats as noise, ``ROUNDING * eps(dtype) * S`` with S the case's gradient
scale, and for a pair with the numeric source also the numeric error estimate (finite
differences are only known to that accuracy). So ``growth = new / max(old, floor)``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._compare import ROUNDING
from .._defaults import DEFAULT_MAX_GROWTH
from .._dtypes import DTYPES, unit_roundoff
from .._engine import name_matches
from .._errors import UsageError
from .._limits import DEFAULT_LIMITS, FileRefused, read_text
from .._text import printable
from . import schema
from .files import atomic_write
from .json_report import FIRST_ORDER, SCHEMA_ID, SCHEMA_VERSION, case_key, dumps, number, to_float

__all__ = [
    "DEFAULT_MAX_GROWTH",
    "BaselineError",
    "Regression",
    "Comparison",
    "load",
    "save",
    "compare",
    "scope",
    "matches_nothing",
    "case_key",
    "growth_floor",
]


class BaselineError(UsageError):
    """The baseline file is missing or is not a gradcheck-suite report (exit status 2)."""


@dataclass(frozen=True)
class Regression:
    kind: str  # now_fails | missing | growth
    case: str
    device: str
    dtype: str
    input: str | None
    pair: str | None
    growth: float | None
    message: str


@dataclass
class Comparison:
    file: str
    max_growth: float
    regressions: list[Regression] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    compared: list[str] = field(default_factory=list)  # keys of the cases in both

    @property
    def passed(self) -> bool:
        return not self.regressions

    def to_dict(self) -> dict[str, Any]:
        regressions = []
        for r in self.regressions:
            d = asdict(r)
            d["growth"] = number(r.growth) if r.growth is not None else None
            regressions.append(d)
        return {
            "file": self.file,
            "max_growth": self.max_growth,
            "passed": self.passed,
            "compared": list(self.compared),
            "regressions": regressions,
            "new": list(self.new),
            "removed": list(self.removed),
        }

    def lines(self) -> list[str]:
        """What the terminal shows: one line per regression, then new and removed cases."""
        head = f"baseline {self.file}: {len(self.compared)} case(s) compared, "
        if self.passed:
            out = [head + f"no regression (max growth {self.max_growth:g}x)"]
        else:
            out = [head + f"{len(self.regressions)} regression(s)"]
            out += [f"  REGRESSION {r.message}" for r in self.regressions]
        if self.new:
            out.append("  new (not in the baseline): " + ", ".join(self.new))
        if self.removed:
            out.append("  removed (in the baseline, not run): " + ", ".join(self.removed))
        return out


_CASE_KEYS = ("case", "device", "dtype", "verdict")


def _problem(data: Any) -> str | None:
    """The first thing that keeps ``data`` from being a baseline this version can read."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_ID:
        return f'not a gradcheck-suite report (no "schema": "{SCHEMA_ID}")'
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version not in READABLE_VERSIONS:
        return f"report version {version!r}; this gradcheck-suite reads version {SCHEMA_VERSION}"
    cases = data.get("cases")
    if not isinstance(cases, list):
        return '"cases" is not a list'
    for n, c in enumerate(cases):
        if not isinstance(c, dict) or not all(isinstance(c.get(k), str) for k in _CASE_KEYS):
            return f"cases[{n}] lacks case, device, dtype or verdict"
        if not isinstance(c.get("inputs"), list):
            return f"cases[{n}] ({c['case']}) has no inputs list"
        for i in c["inputs"]:
            if not isinstance(i, dict) or not isinstance(i.get("name"), str) or not isinstance(i.get("pairs"), list):
                return f"cases[{n}] ({c['case']}) has an input without name or pairs"
            for p in i["pairs"]:
                if not isinstance(p, dict) or not isinstance(p.get("pair"), str) or "max_abs" not in p:
                    return f"cases[{n}] ({c['case']}) input {i['name']} has a pair without pair or max_abs"
    return None


def load(path: Path, max_bytes: int = DEFAULT_LIMITS.max_file_size) -> dict[str, Any]:
    """Read a baseline, or raise BaselineError with one line saying what is wrong with it.

    Only a regular file of at most ``max_bytes`` is read, and it must be a report of this
    version by report.schema.json, so nothing in it (a string where a number belongs, arrays
    nested 100,000 deep, version 0 or true) can reach the comparison."""
    try:
        text = read_text(path, max_bytes)
    except FileNotFoundError:
        hint = f"write one with `gradcheck baseline save {path}`"
        raise BaselineError(f"baseline {path} does not exist ({hint})") from None
    except FileRefused as exc:
        raise BaselineError(f"cannot read baseline {path}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise BaselineError(f"cannot read baseline {path}: {reason}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(f"{path} is not a baseline: not JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise BaselineError(f"{path} is not a baseline: nested too deeply") from None
    problem = _problem(data) or schema.problem(_upgraded(data))
    if problem:
        raise BaselineError(f"{path} is not a baseline: {printable(problem)}")
    result: dict[str, Any] = _upgraded(data)
    return result


# Version 1 had no check kinds: every case was first order. Version 2 only added fields.
READABLE_VERSIONS = (1, SCHEMA_VERSION)


def _upgraded(data: dict[str, Any]) -> dict[str, Any]:
    """A version-1 report as version 2 reads it (its cases first order), else ``data`` itself."""
    if data.get("version") != 1:
        return data
    cases = [
        {"kind": "order1", "check": "", "notes": [], **c} if isinstance(c, dict) else c for c in data.get("cases", [])
    ]
    return {**data, "version": SCHEMA_VERSION, "cases": cases}


# What changes from one run to the next although no gradient did (the time, the commit, the
# machine): when a new save differs from the stored baseline only there, the stored file is
# kept byte for byte.
_VOLATILE = ("created", "timings", "environment")
_VOLATILE_CASE = ("seconds",)


def _stable(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without what changes on every run, its cases in a fixed order."""
    out = {k: v for k, v in data.items() if k not in _VOLATILE}
    cases = out.get("cases")
    if isinstance(cases, list) and all(isinstance(c, dict) for c in cases):
        # in any order: the order of the files is not a gradient (and baselines match by name)
        stable = [{k: v for k, v in c.items() if k not in _VOLATILE_CASE} for c in cases]
        out["cases"] = sorted(stable, key=lambda c: json.dumps(c, sort_keys=True))
    return out


def save(data: dict[str, Any], path: Path) -> bool:
    """Store a report as a baseline (the same schema: any report.json is a baseline).

    Returns False, leaving the file untouched, when the stored baseline differs from ``data``
    in its times, commit and machine: re-saving unchanged gradients must not change a committed file.
    """
    stored = dict(data)
    stored["baseline"] = None  # a baseline's own comparison would only confuse the next one
    text = dumps(stored)
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        old = None
    # compared through JSON text, as a later load would see both
    if isinstance(old, dict) and _stable(old) == _stable(json.loads(text)):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text)
    return True


def scope(
    paths: Iterable[Path],
    pattern: str | None,
    device: str,
    dtype: str,
    names: Iterable[str] = (),
    kinds: Iterable[str] | None = None,
) -> Callable[[dict[str, Any]], bool]:
    """Which baseline cases a run covers: same device and dtype, matching -k, of a check kind
    the run made (``kinds``), and either a case of the same name ran (the cases may have moved:
    a baseline matches by name) or its file is under the run's paths (so a deleted case file is
    reported as missing).

    A run of one file or one -k pattern must not report every other case as missing.
    ``device`` and ``dtype`` may be comma lists (``--device cpu,cuda``; the dtypes that ran).
    """
    roots = [Path(p).resolve() for p in paths]
    devices, dtypes = set(device.split(",")), set(dtype.split(","))
    made = None if kinds is None else set(kinds)
    ran = set(names)

    def covered(entry: dict[str, Any]) -> bool:
        if entry.get("device") not in devices or entry.get("dtype") not in dtypes:
            return False
        if made is not None and entry.get("kind", FIRST_ORDER) not in made:
            return False
        if not name_matches(str(entry.get("case", "")), pattern):
            return False
        if entry.get("case") in ran:
            return True
        file = entry.get("file")
        if not isinstance(file, str):
            return False
        f = Path(file).resolve()
        return any(f == r or r in f.parents for r in roots)

    return covered


def matches_nothing(baseline: dict[str, Any], file: str, current: dict[str, Any]) -> str:
    """The error for a baseline none of whose cases this run has: comparing nothing would pass
    whatever the gradients are (cases renamed, another --device or --dtype, the wrong file)."""
    stored = sorted({case_key(c) for c in baseline["cases"]})
    ran = sorted({case_key(c) for c in current["cases"]})

    def some(keys: list[str]) -> str:
        return ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "") if keys else "none"

    return (
        f"baseline {file} matches none of this run's cases: it holds {some(stored)}; this run checked"
        f" {some(ran)} (cases are matched by name, device and dtype)"
    )


def growth_floor(dtype: str, scale: float, numeric_error: float | None) -> float:
    """The difference below which a change is rounding or finite-difference noise."""
    # bfloat16 too (numpy has none: its eps would otherwise fall back to float64's, and a
    # bfloat16 run's rounding on another CPU would read as growth)
    eps = 2 * unit_roundoff(dtype) if dtype in DTYPES else float(np.finfo(np.float64).eps)
    floor = ROUNDING * eps * (scale if math.isfinite(scale) else 0.0)
    if numeric_error is not None and math.isfinite(numeric_error):
        floor = max(floor, numeric_error)
    # A case whose gradients are all exactly zero still needs a nonzero denominator.
    return max(floor, float(np.finfo(np.float64).tiny))


def _f(x: Any) -> float:
    if x is None:
        return math.nan
    return to_float(x)


def _growth(new: float, old: float, floor: float) -> float:
    if math.isnan(new) or math.isinf(new):
        return 1.0 if (math.isnan(old) or math.isinf(old)) else math.inf
    return new / max(old if math.isfinite(old) else 0.0, floor)


def _input_growth(
    old_case: dict[str, Any], new_case: dict[str, Any], max_growth: float
) -> Iterable[tuple[str, str, float, float, float]]:
    """(input, pair, growth, old, new) for each pair that grew by more than ``max_growth``."""
    scale = max(_f(old_case.get("gradient_scale", 0.0)), _f(new_case.get("gradient_scale", 0.0)))
    scale = scale if math.isfinite(scale) else 0.0
    old_inputs = {i["name"]: i for i in old_case["inputs"]}
    # numeric pairs of a full check compare elements, of a projection directions: across a
    # change of mode only the manual-autograd pairs (always elementwise) measure the same thing
    same_mode = old_case.get("mode", "full") == new_case.get("mode", "full")
    for inp in new_case["inputs"]:
        old = old_inputs.get(inp["name"])
        if old is None:
            continue
        old_pairs = {p["pair"]: p for p in old["pairs"]}
        for p in inp["pairs"]:
            q = old_pairs.get(p["pair"])
            if q is None:
                continue
            err = None
            if "numeric" in p["pair"].split("-") and not same_mode:
                continue
            if "numeric" in p["pair"].split("-"):
                errs = [_f(x.get("numeric_error")) for x in (old, inp)]
                finite = [e for e in errs if math.isfinite(e)]
                err = max(finite) if finite else None
            floor = growth_floor(str(new_case["dtype"]), scale, err)
            before, after = _f(q["max_abs"]), _f(p["max_abs"])
            g = _growth(after, before, floor)
            if g > max_growth:
                yield inp["name"], p["pair"], g, before, after


def compare(
    current: dict[str, Any],
    baseline: dict[str, Any],
    *,
    max_growth: float = DEFAULT_MAX_GROWTH,
    file: str = "baseline",
    in_scope: Callable[[dict[str, Any]], bool] | None = None,
) -> Comparison:
    """Compare ``current`` (a report's to_dict()) with a loaded baseline."""
    result = Comparison(file=file, max_growth=max_growth)
    old = {case_key(c): c for c in baseline["cases"] if in_scope is None or in_scope(c)}
    new = {case_key(c): c for c in current["cases"]}
    failed_to_load = {e.get("case") for e in current.get("errors", [])} | {
        e.get("file") for e in current.get("errors", [])
    }
    for key, before in old.items():
        after = new.get(key)
        where = dict(case=before["case"], device=before["device"], dtype=before["dtype"])
        if after is None:
            result.removed.append(key)
            if before["verdict"] == "pass":
                why = " (its case file failed to load)" if {before["case"], before.get("file")} & failed_to_load else ""
                result.regressions.append(
                    Regression(
                        "missing",
                        **where,
                        input=None,
                        pair=None,
                        growth=None,
                        message=f"{key}: passed in the baseline, missing from this run{why}",
                    )
                )
            continue
        result.compared.append(key)
        if before["verdict"] == "pass" and after["verdict"] == "fail":
            result.regressions.append(
                Regression(
                    "now_fails",
                    **where,
                    input=None,
                    pair=None,
                    growth=None,
                    message=f"{key}: passed in the baseline, now fails: {after.get('reason', '')}",
                )
            )
        for name, pair, g, a, b in _input_growth(before, after, max_growth):
            growth = "inf" if math.isinf(g) else f"{g:.3g}x"
            result.regressions.append(
                Regression(
                    "growth",
                    **where,
                    input=name,
                    pair=pair,
                    growth=g,
                    message=(
                        f"{key} input {name}: {pair} difference grew {growth}"
                        f" ({a:.3g} -> {b:.3g}; allowed {max_growth:g}x)"
                    ),
                )
            )
    result.new = sorted(k for k in new if k not in old)
    return result
