"""report.json: a run as data, in a versioned schema (``report.schema.json`` in the package).

Version 4. Top level: ``schema`` (always ``"gradcheck-suite/report"``), ``version``, ``created``
(UTC, ISO 8601), ``environment``, ``options``, ``timings``, ``summary`` (counts per verdict),
``cases``, ``errors`` and ``baseline`` (null, or the comparison ``--baseline`` made).
Each case: ``case``, ``file``, ``device``, ``dtype``, ``verdict``, ``odd_one_out``, ``reason``,
``seconds``, ``gradient_scale``, ``expect_failures``, ``samples`` and ``inputs``; each input:
its ``pairs`` (``max_abs``, ``max_rel``, ``ratio`` to the tolerance, the ``worst`` element)
and ``worst``, the element of the pair furthest outside its tolerance with every source's
value there. JSON has no infinity or NaN, so a non-finite number is written as the string
``"inf"``, ``"-inf"`` or ``"nan"``.

A new field that old readers can ignore keeps the version; renaming or removing one, or
changing a field's meaning, bumps it.

Version 2 (issue 11) added check kinds: each case entry has ``kind`` (``"order1"`` for
first-order gradients; ``"order2"``, ``"fwd-over-rev"``, ``"forward"``, ``"batched"``,
``"undefined"``, ``"dtypes"``, ``"noncontiguous"``), ``check`` (what a kind compared,
``"hessian 4x4"``; empty for first order), and ``notes`` (how the sources ran). One case may now
have several entries, one per kind, so a case's name across reports and baselines is
``case[device-dtype]`` for first order and ``case[device-dtype-kind]`` for the others; an
input's ``name`` is an output's for forward mode, and its values have a leading axis (the
directions, upstreams or variants tried). Options gained ``order`` and ``checks``. Version 1
reports read as version 2 with every entry of kind ``order1``.

Version 3 (issue 14) added ``diagnostics``, on a failing case only: ``blame`` (the line of a
backward program that makes its gradients wrong, with each ``d<name>``'s comparison as
``intermediates``, or null), ``blame_note`` (why there is none) and ``hints``
(docs/diagnostics.md). A version 2 report is a version 3 report without diagnostics.

Version 4 (issue 12): ``dtype`` may be ``bfloat16`` or ``float16``; each case has ``settings``
(dtype, k, repeat, nondet_tol, tf32 as resolved) and each input ``low_precision`` (null, or
the manual source's and the reference's errors side by side); a pair may be a source with
itself (``manual-manual``: its run-to-run spread under ``--repeat``); ``options.device`` may be a
comma list, with ``devices`` (each case's gradients compared across devices) and
``unavailable_devices`` (device -> why) at the top level (required, so a version 3 report
does not validate as version 4).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from .._compare import InputResult, gradient_scale
from .._device_compare import DeviceComparison
from .._engine import CaseResult, Report
from .._errors import CaseError
from .._lowprecision import LowPrecisionErrors

__all__ = [
    "FIRST_ORDER",
    "SCHEMA_ID",
    "SCHEMA_VERSION",
    "case_key",
    "display_path",
    "to_dict",
    "dumps",
    "environment",
    "load_schema",
    "number",
]

SCHEMA_ID = "gradcheck-suite/report"
SCHEMA_VERSION = 4
FIRST_ORDER = "order1"

Number = float | str


def number(x: float) -> Number:
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def to_float(x: Number) -> float:
    """The inverse of :func:`number`."""
    return float(x)  # float("inf") and float("nan") parse the strings number() writes


def case_key(entry: dict[str, Any]) -> str:
    """How a case is named across reports and baselines; also its JUnit test name."""
    kind = entry.get("kind") or FIRST_ORDER
    suffix = "" if kind == FIRST_ORDER else f"-{kind}"
    return f"{entry['case']}[{entry['device']}-{entry['dtype']}{suffix}]"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        out = None
    if out is not None and out.returncode == 0 and out.stdout.strip():
        return out.stdout.strip()
    # A CI checkout without .git (a source tarball, some container builds) still knows its commit.
    return os.environ.get("GITHUB_SHA") or None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _device_name(device: str) -> str:
    if "," in device:  # --device cpu,cuda
        return "; ".join(f"{d}: {_device_name(d)}" for d in device.split(","))
    if device.startswith("cuda") and torch.cuda.is_available():
        return str(torch.cuda.get_device_name(torch.device(device)))
    return _cpu_name()


def environment(device: str = "cpu") -> dict[str, Any]:
    return {
        "package": __version__,
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": device,
        "device_name": _device_name(device),
        "git_commit": _git_commit(),
    }


def _value_at(g: np.ndarray, index: tuple[int, ...]) -> Number:
    return number(float(np.asarray(g)[index]))


def _input(i: InputResult) -> dict[str, Any]:
    pairs = [
        {
            "pair": p.name,
            "a": p.a,
            "b": p.b,
            "max_abs": number(p.max_abs),
            "max_rel": number(p.max_rel),
            "ratio": number(p.ratio),
            "worst": list(p.worst),
            "disagree": p.disagree,
            "undecided": p.undecided,
            "rule": p.rule,
            "unit": "direction" if i.projections and "numeric" in (p.a, p.b) else "element",
        }
        for p in i.pairs
    ]
    worst: dict[str, Any] | None = None
    if i.pairs:
        # The element most outside its tolerance, over every pair, is the one a reader should
        # look at first: for a failure it is the element the failure message names.
        p = max(i.pairs, key=lambda q: (q.ratio, q.max_abs))
        if i.projections and "numeric" in (p.a, p.b):
            # a projection pair's worst is a direction: the values are the projections on it
            (k,) = p.worst
            err = i.projection_error
            worst = {
                "pair": p.name,
                "direction": k,
                "values": {s: number(float(v[k])) for s, v in i.projections.items()},
                "numeric_error": number(float(err[k])) if err is not None else None,
            }
        else:
            worst = {
                "pair": p.name,
                "index": list(p.worst),
                "values": {s: _value_at(g, p.worst) for s, g in i.grads.items()},
                "numeric_error": _value_at(i.numeric_error, p.worst) if i.numeric_error is not None else None,
            }
    # the largest estimate of what the numeric source compared: its checked elements (NaN
    # marks those a sample left out) or, in projection mode, its directional derivatives
    numeric_error = None
    compared = i.projection_error if i.projections else i.numeric_error
    if compared is not None:
        finite = np.asarray(compared)[np.isfinite(compared)]
        numeric_error = number(float(finite.max())) if finite.size else None
    return {
        "name": i.name,
        "shape": list(i.shape),
        "verdict": i.verdict,
        "odd_one_out": i.odd_one_out,
        "reason": i.reason,
        "numeric_error": numeric_error,
        "pairs": pairs,
        "worst": worst,
        "referee": _referee(i),
        "overflow": dict(i.overflow),
        "low_precision": _low_precision(i),
    }


def _low_precision(i: InputResult) -> dict[str, Any] | None:
    e: LowPrecisionErrors | None = getattr(i, "low_precision", None)
    if e is None:
        return None

    def opt(x: float | None) -> Number | None:
        return None if x is None else number(x)

    return {
        "dtype": e.dtype,
        "k": e.k,
        "unit_roundoff": e.unit_roundoff,
        "manual": opt(e.manual),
        "reference": number(e.reference),
        "manual_norm": opt(e.manual_norm),
        "reference_norm": number(e.reference_norm),
        "element_ratio": opt(e.element_ratio),
        "norm_ratio": opt(e.norm_ratio),
        "manual_float64": opt(e.manual_float64),
        "reference_runs": e.reference_runs,
        "undecided": e.undecided,
    }


def _settings(r: CaseResult) -> dict[str, Any] | None:
    s = r.settings
    if s is None:
        return None
    return {"dtype": s.dtype, "k": s.k, "repeat": s.repeat, "nondet_tol": s.nondet_tol, "tf32": s.tf32}


def _devices(d: DeviceComparison) -> dict[str, Any]:
    return {
        "case": d.case,
        "dtype": d.dtype,
        "devices": list(d.devices),
        "verdict": d.verdict,
        "odd_device": d.odd_device,
        "rows": [
            {
                "input": row.input,
                "source": row.source,
                "device": row.device,
                "against": row.against,
                "max_abs": number(row.max_abs),
                "max_rel": number(row.max_rel),
                "ratio": number(row.ratio),
                "status": row.status,
                "odd_device": row.odd_device,
                "note": row.note,
            }
            for row in d.rows
        ],
    }


def _referee(i: InputResult) -> dict[str, Any] | None:
    """What the high-precision referee decided on the disputed elements, where it was asked."""
    ref = i.referee
    if ref is None:
        return None
    return {
        "digits": ref.digits,
        "elements": [list(e) for e in ref.elements],
        "wrong": {s: [list(e) for e in where] for s, where in ref.wrong.items()},
        "truth": [number(float(v)) for v in ref.truth],
        "sampled_out": ref.sampled,
    }


def _case(r: CaseResult) -> dict[str, Any]:
    samples = None
    if r.samples is not None:
        samples = {
            "points": r.samples.points,
            "counts": dict(r.samples.counts),
            "worst": r.samples.worst,
            # each point's verdict and largest difference over tolerance (point 0: the case's own)
            "verdicts": list(r.samples.verdicts),
            "ratios": [number(x) for x in r.samples.ratios],
        }
    entry = {
        "case": r.case.name,
        "file": display_path(r.case.file),
        "device": r.device,
        "dtype": r.dtype,
        "verdict": r.verdict,
        "odd_one_out": r.odd_one_out,
        "reason": r.reason,
        "seconds": r.seconds,
        # The baseline comparison needs the case's scale to tell rounding noise from drift.
        "gradient_scale": number(gradient_scale(list(r.sources.values()))) if r.sources else 0.0,
        "expect_failures": list(r.expect_failures),
        "samples": samples,
        "mode": r.mode,
        "kind": r.kind or FIRST_ORDER,
        "check": r.check_label,
        "notes": list(r.notes),
        "settings": _settings(r),
        "inputs": [_input(i) for i in r.inputs],
        **({"diagnostics": r.diagnostics.to_dict()} if r.diagnostics is not None else {}),
        **({"budget": r.budget.to_dict()} if r.budget is not None else {}),
    }
    if r.test_id is not None:
        entry["nodeid"] = r.test_id  # the pytest test that checked it: how junit.xml names it
    return entry


def _summary(report: Report) -> dict[str, Any]:
    summary: dict[str, Any] = dict(report.counts())
    points = report.point_counts()
    if points is not None:
        summary["points"] = points  # the sweeps' points, counted as the terminal counts them
    return summary


def _error(e: CaseError) -> dict[str, Any]:
    entry = {
        "file": display_path(e.file) if e.file is not None else None,
        "line": e.line,
        "case": e.case,
        "key": e.key,
        "message": e.message,
        "text": str(e),
        # set for an error of one device x dtype item (the pytest plugin's), else the run's
        "device": e.device,
        "dtype": e.dtype,
    }
    nodeid = getattr(e, "nodeid", None)
    if isinstance(nodeid, str):
        entry["nodeid"] = nodeid
    return entry


def display_path(path: Path) -> str:
    """A case file as reports name it: relative to the current directory when under it, so
    that junit.xml's classnames and baselines do not depend on where the checkout lies."""
    p = Path(path)
    if p.is_absolute():
        try:
            return p.relative_to(Path.cwd()).as_posix()
        except ValueError:
            pass
    return p.as_posix()


def to_dict(
    report: Report, baseline: dict[str, Any] | None = None, env: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The report as plain data; ``baseline`` is a comparison's ``to_dict()`` when one was made."""
    o = report.options
    return {
        "schema": SCHEMA_ID,
        "version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "environment": env if env is not None else environment(o.device),
        "options": {
            "device": o.device,
            "dtype": o.dtype,
            "numeric": o.numeric,
            "samples": o.samples,
            "max_memory": o.max_memory,
            "mode": o.mode,
            "elements": o.elements,
            "directions": o.directions,
            "order": o.order,
            "checks": list(o.checks),
            "k": o.k,
            "repeat": o.repeat,
            "nondet_tol": o.nondet_tol,
            "tf32": o.tf32,
        },
        "timings": {
            "total_seconds": report.seconds,
            "cases_seconds": sum(r.seconds for r in report.results),
        },
        "summary": _summary(report),
        "cases": [_case(r) for r in report.results],
        "errors": [_error(e) for e in report.errors],
        "devices": [_devices(d) for d in report.devices],
        "unavailable_devices": dict(report.unavailable),
        "baseline": baseline,
    }


def dumps(data: dict[str, Any]) -> str:
    # allow_nan=False: a stray inf that number() missed fails here, not in a reader's parser.
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def load_schema() -> dict[str, Any]:
    text = resources.files("gradcheck_suite").joinpath("report.schema.json").read_text(encoding="utf-8")
    result: dict[str, Any] = json.loads(text)
    return result
