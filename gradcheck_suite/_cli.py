"""`gradcheck`: a thin command line over the engine."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._case import Case, load_cases
from ._devices import device_names
from ._dtypes import to_float64
from ._engine import Report, RunOptions, check_case, check_settings, ensure_device, run, select
from ._errors import CaseError, GradcheckError
from ._options import add_argparse_options, run_options
from ._report import (
    baseline,
    format_value,
    json_report,
    render_case_detail,
    render_errors,
    render_summary,
    render_table,
)
from ._report.files import prepare_dir
from ._report.outputs import write_reports
from ._sources.manual import manual_backend, upstream_gradients

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gradcheck", description="Cross-check gradients three ways.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="check cases and report every disagreement")
    r.add_argument(
        "paths", nargs="*", type=Path, default=[Path("cases")], help="case files or folders (default cases/)"
    )
    r.add_argument("-k", dest="pattern", help="only cases whose name contains PATTERN (or matches a glob)")
    r.add_argument("-v", "--verbose", action="store_true", help="per-element table of each failure")
    add_argparse_options(r)
    _add_report_options(r)

    bl = sub.add_parser("baseline", help="store a run as the baseline later runs compare with")
    bl_sub = bl.add_subparsers(dest="baseline_command", required=True)
    save = bl_sub.add_parser("save", help="run the cases and store the report as a baseline")
    save.add_argument(
        "file",
        nargs="?",
        type=Path,
        default=Path("reports/baseline.json"),
        help="where to store it (default reports/baseline.json)",
    )
    save.add_argument(
        "--cases",
        dest="paths",
        nargs="+",
        type=Path,
        default=[Path("cases")],
        help="case files or folders (default cases/)",
    )
    save.add_argument("-k", dest="pattern", help="only cases whose name contains PATTERN (or matches a glob)")
    add_argparse_options(save)

    ls = sub.add_parser("list", help="list the cases")
    ls.add_argument("paths", nargs="*", type=Path, default=[Path("cases")])
    ls.add_argument("-k", dest="pattern")

    sh = sub.add_parser("show", help="print each step's value and each gradient of one case")
    sh.add_argument("case", help="the case's name")
    sh.add_argument("paths", nargs="*", type=Path, default=[Path("cases")])
    add_argparse_options(sh, leave_out=("samples",))  # show prints the case's own point
    return p


def _growth_factor(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not x > 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError("must be above 1 (a factor the difference may grow by)")
    return x


def _add_report_options(r: argparse.ArgumentParser) -> None:
    g = r.add_argument_group("reports and baselines")
    g.add_argument(
        "--report-dir",
        type=Path,
        default=Path("reports"),
        metavar="DIR",
        help="write report.json, junit.xml and summary.md here (default reports/)",
    )
    g.add_argument("--no-reports", action="store_true", help="write no report files")
    g.add_argument("--baseline", type=Path, metavar="FILE", help="fail on regressions against this stored report")
    g.add_argument(
        "--max-growth",
        type=_growth_factor,
        default=baseline.DEFAULT_MAX_GROWTH,
        metavar="X",
        help=f"with --baseline: the factor a difference may grow by (default {baseline.DEFAULT_MAX_GROWTH:g})",
    )


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)  # exits 2 on a usage error, as argparse does
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "list":
            return _list(args)
        if args.command == "baseline":
            return _baseline_save(args)
        return _show(args)
    except GradcheckError as exc:
        print(f"gradcheck: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    # Both are checked before any case runs, so a bad path costs one line, not a whole run.
    folder = None if args.no_reports else prepare_dir(args.report_dir)
    stored = baseline.load(args.baseline) if args.baseline is not None else None
    options = run_options(vars(args))
    report = run(args.paths, options, args.pattern)
    if args.pattern and not report.results and not report.errors:
        # a -k that selects nothing is a typo more often than an intent, as pytest holds too
        print(
            f"gradcheck: error: no case under {', '.join(map(str, args.paths))} matches -k {args.pattern!r}",
            file=sys.stderr,
        )
        return 2
    if report.results:
        print(render_table(report))
    if args.verbose:
        for r in report.results:
            if r.verdict != "pass":
                print(render_case_detail(r))
    if report.errors:
        print(render_errors(report), file=sys.stderr)
    print(render_summary(report))
    status = report.exit_code
    data = json_report.to_dict(report)
    if stored is not None:
        comparison = baseline.compare(
            data,
            stored,
            max_growth=args.max_growth,
            file=str(args.baseline),
            in_scope=baseline.scope(
                args.paths, args.pattern, options.device, _dtypes_ran(options, report), _kinds_made(options, data)
            ),
        )
        data["baseline"] = comparison.to_dict()
        print("\n".join(comparison.lines()))
        if not comparison.passed:
            status = max(status, 1)
    if folder is not None:
        write_reports(folder, data)
    return status


def _dtypes_ran(options: RunOptions, report: Report) -> str:
    """The run's dtype, and the cases' own where they chose (a case file's `dtype`)."""
    ran = dict.fromkeys([options.dtype, *(r.dtype for r in report.results)] if options.case_dtype else [options.dtype])
    return ",".join(ran)


def _kinds_made(options: RunOptions, data: dict[str, Any]) -> set[str]:
    """The check kinds a run made or asked for: a baseline's other kinds are out of its scope."""
    asked = {"order1", *options.checks, *(["order2"] if options.order >= 2 else [])}
    return asked | {str(c.get("kind", "order1")) for c in data["cases"]}


def _baseline_save(args: argparse.Namespace) -> int:
    report = run(args.paths, run_options(vars(args)), args.pattern)
    if report.results:
        print(render_table(report))
    if report.errors:
        # A baseline without the cases that failed to load would report them as new later
        # and never as missing: refuse rather than store a partial one.
        print(render_errors(report), file=sys.stderr)
        print(f"gradcheck: error: baseline not saved: {len(report.errors)} case file(s) failed", file=sys.stderr)
        return 2
    baseline.save(json_report.to_dict(report), args.file)
    failing = sum(r.verdict == "fail" for r in report.results)
    note = f"; {failing} failing case(s) stored as failing" if failing else ""
    print(f"saved baseline {args.file}: {len(report.results)} case(s){note}")
    return 0


def _list(args: argparse.Namespace) -> int:
    status = 0
    for item in select(load_cases(args.paths), args.pattern):
        if isinstance(item, CaseError):
            print(f"error: {item}", file=sys.stderr)
            status = 2
            continue
        shapes = ", ".join(f"{k}{list(v.shape) if v.ndim else ''}" for k, v in item.inputs.items())
        sources = "+".join(
            s
            for s, present in (
                ("manual", item.backward is not None),
                ("autograd", item.autograd_forward is not None),
                ("numeric", True),
            )
            if present
        )
        print(f"{item.name:24} {item.file}  ({shapes}; {sources})  {item.description}")
    return status


def _find(name: str, paths: list[Path]) -> Case:
    errors = []
    for item in load_cases(paths):
        if isinstance(item, CaseError):
            errors.append(item)
        elif item.name == name:
            return item
    hint = f" ({len(errors)} case file(s) failed to load)" if errors else ""
    raise CaseError(f"no case named {name!r} under {', '.join(map(str, paths))}{hint}")


def _show(args: argparse.Namespace) -> int:
    case = _find(args.case, args.paths)
    options = run_options(vars(args))
    # show prints one run: the first device of a list, the case's own dtype unless told
    options = replace(options, device=device_names(options.device)[0])
    ensure_device(options.device)
    dtype = check_settings(case, options).dtype
    options = replace(options, dtype=dtype, case_dtype=False)
    case = case.at_dtype(dtype)
    print(f"{case.name}: {case.description}  ({case.file})")
    be = manual_backend(dtype, options.device, programs=case.backward is not None and case.backward.program is not None)
    env = {k: be.asarray(v) for k, v in case.inputs.items()}
    for k, v in env.items():
        print(f"  input  {k} = {_show_value(v)}")
    trace: list = []
    values = case.forward.run(env, be, trace)
    print("forward:")
    for s, v in trace:
        print(f"  {s.line:4d}  {s.text:40}  # {_show_value(v)}")
    if case.backward is not None:
        trace = []
        case.backward.run({**values, **upstream_gradients(case, values, be)}, be, trace)
        print("backward:")
        for s, v in trace:
            print(f"  {s.line:4d}  {s.text:40}  # {_show_value(v)}")
    result = check_case(case, options)
    print("gradients:")
    for i in result.inputs:
        for src, g in i.grads.items():
            print(f"  d{i.name} {src:9} {_show_value(g)}")
        print(f"  d{i.name} verdict   {i.verdict}: {i.reason}")
    if result.expect_failures:
        print("expected values:\n  " + "\n  ".join(result.expect_failures))
    return 1 if result.verdict == "fail" else 0


def _show_value(v: object) -> str:
    a = to_float64(v) if isinstance(v, torch.Tensor) else np.asarray(v)
    if a.ndim == 0:
        return format_value(a, str(a.dtype) if a.dtype == np.float32 else "float64")
    with np.printoptions(precision=6, suppress=True, threshold=20, linewidth=120):
        return f"shape {list(a.shape)} " + " ".join(str(a).split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
