"""Option definitions shared by the CLI and the pytest plugin, so neither re-implements them."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ._dtypes import DTYPES
from ._engine import RunOptions
from ._settings import DEFAULT_K, validate_k, validate_nondet_tol
from ._sources.numeric import (
    AUTO_FULL_ELEMENTS,
    DEFAULT_DIRECTIONS,
    DEFAULT_ELEMENTS,
    DEFAULT_MAX_MEMORY,
    METHODS,
    MODES,
)

__all__ = ["OPTIONS", "Option", "add_argparse_options", "add_pytest_options", "run_options", "parse_size"]


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


@dataclass(frozen=True)
class Option:
    name: str  # RunOptions field and, unless ``long`` says otherwise, the long name ('-' for '_')
    help: str
    default: Any
    type: Callable[[str], Any] = str
    choices: tuple[str, ...] | None = None
    long: str | None = None
    switch: bool = False  # a flag without a value (store_true)

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
        switch=True,
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


def add_argparse_options(parser: argparse.ArgumentParser, leave_out: tuple[str, ...] = ()) -> None:
    for o in OPTIONS:
        if o.name in leave_out:
            continue
        if o.switch:
            parser.add_argument(f"--{o.flag}", dest=o.name, action="store_true", help=o.help)
            continue
        parser.add_argument(f"--{o.flag}", dest=o.name, default=o.default, type=o.type, choices=o.choices, help=o.help)


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
    for o in OPTIONS:
        many = o.name in lists
        if o.switch:
            group.addoption(f"--{prefix}{o.flag}", dest=f"gradcheck_{o.name}", action="store_true", help=o.help)
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
    chosen = {o.name: values.get(prefix + o.name, o.default) for o in OPTIONS}
    if chosen["dtype"] is None:  # no --dtype: each case's own `dtype`, else float64
        chosen.update(dtype="float64", case_dtype=True)
    return RunOptions(**chosen)
