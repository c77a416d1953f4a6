"""Option definitions shared by the CLI and the pytest plugin, so neither re-implements them."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

# The defaults come from _defaults, not the engine, so that `gradcheck --help` builds its
# parser without importing torch; RunOptions is imported where options become one.
from ._defaults import AUTO_FULL_ELEMENTS, DEFAULT_DIRECTIONS, DEFAULT_ELEMENTS, DEFAULT_MAX_MEMORY, METHODS, MODES
from ._dtypes import DTYPES
from ._limits import DEFAULT_LIMITS, Limits
from ._settings import DEFAULT_K, validate_k, validate_nondet_tol

if TYPE_CHECKING:
    from ._engine import RunOptions

__all__ = [
    "ALL_OPTIONS",
    "LIMIT_OPTIONS",
    "OPTIONS",
    "Option",
    "TRUST_OPTIONS",
    "add_argparse_options",
    "add_pytest_options",
    "run_options",
    "parse_size",
]


def parse_size(text: str) -> int:
    """'512M', '2G', '1.5GiB' or a plain number of bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)(i?[bB])?\s*", str(text))
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 512M or 2G)")
    power = " KMGT".index(m.group(2).upper() or " ")
    return int(float(m.group(1)) * 1024**power)


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def _k_factor(text: str) -> float:
    try:
        k = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    problem = validate_k(k)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return k


def _tolerance(text: str) -> float:
    try:
        tol = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    problem = validate_nondet_tol(tol)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return tol


def _order(text: str) -> int:
    if str(text).strip() not in ("1", "2"):
        raise argparse.ArgumentTypeError(f"order must be 1 or 2, not {text!r}")
    return int(text)


def _checks(text: str) -> tuple[str, ...]:
    from ._kinds import parse_checks  # the kinds build on the engine, which this module imports

    try:
        return parse_checks([c.strip() for c in str(text).split(",") if c.strip()])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not x >= 0 or x == float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError("must be a number of seconds, 0 for no limit")
    return x


@dataclass(frozen=True)
class Option:
    name: str  # RunOptions field and, unless ``long`` says otherwise, the long name ('-' for '_')
    help: str
    default: Any
    type: Callable[[str], Any] = str
    choices: tuple[str, ...] | None = None
    action: str | None = None  # "append" (repeatable) or "store_true" (a switch)
    metavar: str | None = None
    long: str | None = None  # the long name where it is not the field's

    @property
    def flag(self) -> str:
        return self.long or self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option(
        "device",
        "where the sources run: cpu, cuda, or a comma list (cpu,cuda) to check each case on each and compare them",
        "cpu",
    ),
    Option(
        "dtype",
        "dtype of the manual and autograd sources (default: the case file's `dtype`, else float64);"
        " bfloat16 and float16 are judged by the low-precision rule",
        None,
        choices=DTYPES,
    ),
    Option("numeric", "finite-difference method; auto takes the most accurate that applies", "auto", choices=METHODS),
    Option(
        "samples",
        "also check N random points of each case's domain (its [sweep], else value +- max(|value|, 1))",
        None,
        _positive_int,
    ),
    Option(
        "max_memory",
        f"memory for one batch of perturbed evaluations (default {DEFAULT_MAX_MEMORY >> 20}M)",
        DEFAULT_MAX_MEMORY,
        parse_size,
    ),
    Option(
        "mode",
        "which numeric derivatives to compare: full (every element), sample (--elements random ones),"
        f" projection (--directions random directional derivatives); auto is full up to {AUTO_FULL_ELEMENTS}"
        " input elements per case and projection above",
        "auto",
        choices=MODES,
    ),
    Option(
        "elements",
        f"elements per input that --mode sample checks (default {DEFAULT_ELEMENTS})",
        DEFAULT_ELEMENTS,
        _positive_int,
    ),
    Option(
        "directions",
        f"random directions per input that --mode projection checks (default {DEFAULT_DIRECTIONS})",
        DEFAULT_DIRECTIONS,
        _positive_int,
    ),
    Option(
        "jobs",
        "worker processes that evaluate a Python callable's perturbations (default: every core this process"
        " may use; 1: none)",
        None,
        _positive_int,
        metavar="N",
    ),
    Option(
        "time_budget",
        "seconds one case's check should take: one evaluation is timed, then full, sample or projection"
        " checking (and how many elements or directions) is chosen to fit (docs/speed.md); 0: no budget",
        0.0,
        _seconds,
        metavar="SECONDS",
    ),
    Option(
        "k",
        "low precision: the manual source's error may be K times the reference's own error at the same dtype"
        f" (default: the case file's `k`, else {DEFAULT_K:g})",
        None,
        _k_factor,
        long="k-factor",
    ),
    Option(
        "repeat",
        "run the manual and autograd sources N times at each point and judge their run-to-run spread"
        " (default: the case file's `repeat`, else 1)",
        None,
        _positive_int,
    ),
    Option(
        "nondet_tol",
        "with --repeat: the run-to-run spread allowed, absolute (default: the case file's `nondet_tol`, else 0)",
        None,
        _tolerance,
    ),
    Option(
        "tf32",
        "float32 on CUDA with TF32 matmuls and convolutions, judged by the low-precision rule",
        False,
        action="store_true",
    ),
    Option(
        "order",
        "2: also check second order, Hessian-vector products three ways (what gradgradcheck checks)",
        1,
        _order,
    ),
    Option(
        "checks",
        "further checks, comma-separated: forward (jvp), fwd-over-rev, batched (the backward under vmap),"
        " undefined (None output gradients), dtypes (of the gradients), noncontiguous; or all",
        (),
        _checks,
    ),
)

# Which Python callables case files may name (docs/trust.md).
TRUST_OPTIONS: tuple[Option, ...] = (
    Option(
        "allow_callable",
        "let case files name Python callables matching PATTERN (`mylayers.*`, `pkg.mod:fn`; repeatable), besides"
        " [tool.gradcheck] callables in pyproject.toml and the defaults (docs/trust.md)",
        (),
        action="append",
        metavar="PATTERN",
    ),
    Option("data_only", "refuse every Python callable a case file names, the defaults too", False, action="store_true"),
)

_L = DEFAULT_LIMITS
# The resource limits (docs/limits.md); each is a field of Limits.
LIMIT_OPTIONS: tuple[Option, ...] = (
    Option(
        "max_elements",
        f"elements of any one array: input, constant, intermediate (default {_L.max_elements})",
        _L.max_elements,
        _positive_int,
    ),
    Option(
        "max_file_size",
        f"bytes of a case, baseline or pyproject file read (default {_L.max_file_size >> 20}M)",
        _L.max_file_size,
        parse_size,
    ),
    Option(
        "max_statements",
        f"statements of one program (default {_L.max_statements})",
        _L.max_statements,
        _positive_int,
    ),
    Option("max_depth", f"nesting of one expression (default {_L.max_depth})", _L.max_depth, _positive_int),
    Option(
        "max_integer",
        f"largest integer of the program language (default 2**{_L.max_integer.bit_length() - 1})",
        _L.max_integer,
        _positive_int,
    ),
    Option("max_exponent", f"largest |b| in a ** b (default {_L.max_exponent})", _L.max_exponent, _positive_int),
    Option("max_samples", f"sample points per case (default {_L.max_samples})", _L.max_samples, _positive_int),
    Option(
        "max_evaluations",
        f"evaluations of the forward the numeric source may plan per case (default {_L.max_evaluations})",
        _L.max_evaluations,
        _positive_int,
    ),
    Option("timeout", f"seconds one case may take, 0 for no limit (default {_L.timeout:g})", _L.timeout, _seconds),
)

ALL_OPTIONS: tuple[Option, ...] = OPTIONS + TRUST_OPTIONS + LIMIT_OPTIONS


def _add(add: Callable[..., Any], o: Option, flag: str, dest: str) -> None:
    if o.action == "store_true":
        add(flag, dest=dest, action="store_true", default=False, help=o.help)
    elif o.action == "append":  # argparse appends to a copy of a list default: None, then ()
        add(flag, dest=dest, action="append", default=None, type=o.type, metavar=o.metavar, help=o.help)
    else:
        add(flag, dest=dest, default=o.default, type=o.type, choices=o.choices, metavar=o.metavar, help=o.help)


def add_argparse_options(
    parser: argparse.ArgumentParser, leave_out: tuple[str, ...] = (), options: tuple[Option, ...] = ALL_OPTIONS
) -> None:
    for o in options:
        if o.name in leave_out:
            continue
        _add(parser.add_argument, o, f"--{o.flag}", o.name)


def _list_of(o: Option) -> Callable[[str], tuple[Any, ...]]:
    def parse(text: str) -> tuple[Any, ...]:
        values = tuple(o.type(v.strip()) for v in str(text).split(",") if v.strip())
        if not values:
            raise argparse.ArgumentTypeError(f"--{o.flag}: give at least one value")
        bad = [v for v in values if o.choices is not None and v not in o.choices]
        if bad:
            raise argparse.ArgumentTypeError(f"invalid choice {bad[0]!r} (choose from {', '.join(o.choices or ())})")
        return values

    return parse


def add_pytest_options(group: Any, prefix: str = "gradcheck-", lists: Collection[str] = ()) -> None:
    """Options named in ``lists`` take comma-separated values and hold a tuple (the plugin
    makes one test item per value)."""
    for o in ALL_OPTIONS:
        many = o.name in lists
        if o.action is not None:
            _add(group.addoption, o, f"--{prefix}{o.flag}", f"gradcheck_{o.name}")
            continue
        group.addoption(
            f"--{prefix}{o.flag}",
            dest=f"gradcheck_{o.name}",
            default=(o.default,) if many else o.default,
            type=_list_of(o) if many else o.type,
            choices=None if many else o.choices,
            help=o.help + (" (a comma-separated list: one item per value)" if many else ""),
        )


def run_options(values: Mapping[str, Any], prefix: str = "") -> RunOptions:
    """RunOptions from parsed options (argparse's or pytest's, named ``prefix + name``)."""
    from ._engine import RunOptions

    def get(o: Option) -> Any:
        v = values.get(prefix + o.name, o.default)
        return o.default if v is None and o.action == "append" else v

    limit_names = {f.name for f in fields(Limits)}
    limits = Limits(**{o.name: get(o) for o in LIMIT_OPTIONS if o.name in limit_names})
    trust = {o.name: get(o) for o in TRUST_OPTIONS}
    trust["allow_callable"] = tuple(trust["allow_callable"])
    chosen = {o.name: get(o) for o in OPTIONS}
    if chosen["dtype"] is None:  # no --dtype: each case's own `dtype`, else float64
        chosen.update(dtype="float64", case_dtype=True)
    return RunOptions(**chosen, **trust, limits=limits)
