"""`gradcheck`: a thin command line over the engine.

Only the standard library and the option definitions load at start, so ``--help`` and
``--version`` answer at once; each command imports the engine (and torch) when it runs.
Like pytest and git, it exits quietly when its output pipe closes (``gradcheck list | head``)
and on Ctrl-C, and it fits its tables to the terminal and colours verdicts there
(:mod:`._console`).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from ._console import Paint, colour_enabled, terminal_width
from ._defaults import DEFAULT_MAX_GROWTH
from ._errors import GradcheckError
from ._options import LIMIT_OPTIONS, TRUST_OPTIONS, add_argparse_options, run_options
from ._text import printable

if TYPE_CHECKING:
    from ._case import Case
    from ._engine import Report, RunOptions

__all__ = ["main", "EXIT_INTERRUPTED", "EXIT_BROKEN_PIPE"]

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a program stopped by Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what git and other programs killed by SIGPIPE report

EPILOG = """\
examples:
  gradcheck run                              check every case under cases/
  gradcheck run cases/matmul.toml -v         one file; -v adds the per-element table of a failure
  gradcheck run -k "matmul or product"       cases whose name matches, as pytest's -k
  gradcheck run --dtype float32 --samples 20 float32, at 20 random points of each case's domain
  gradcheck show compound_sigmoid            each step's value and each source's gradient
  gradcheck show matmul --html matmul.html   the same drawn as a circuit, in one HTML file
  gradcheck baseline save                    store this run as reports/baseline.json
  gradcheck mutate --min-score 100%          plant bugs in each backward: does its case catch them?
  gradcheck run --baseline reports/baseline.json   fail on a regression against it

exit status:
  0    every case passed (or was inconclusive: a kink, or a numeric estimate too rough to decide)
  1    the sources disagree on some case, or a regression against --baseline
  2    a usage error, a case file that cannot be loaded or run, a baseline that matches no case,
       or --device cuda without a CUDA device
  130  interrupted (Ctrl-C)

Case-file callables ("package.module:function") are imported from the current directory
as well as from the installed packages, as pytest finds a project's own modules.
Tables fit the terminal's width (COLUMNS sets one for a pipe); colour follows NO_COLOR,
FORCE_COLOR and --color.
"""

K_HELP = (
    "only cases whose name matches: a word matches as a case-insensitive substring, or as a glob"
    " when it has * ? or [; words combine with and, or, not and parentheses, as pytest's -k"
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gradcheck",
        description="Cross-check gradients three ways: your hand-written backward, torch autograd\n"
        "and finite differences; report every disagreement and which source is the odd one out.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"gradcheck-suite {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--color",
        choices=("auto", "yes", "no"),
        default="auto",
        help="colour the verdicts: auto (on a terminal, honouring NO_COLOR and FORCE_COLOR), yes or no",
    )

    r = sub.add_parser(
        "run",
        parents=[common],
        help="check cases and report every disagreement",
        description="Check every case under PATHS and report every disagreement.\nRows come in the"
        " case files' order (a folder's own files by name, then its subfolders),\nunder each folder's"
        " name when there are several.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument(
        "paths", nargs="*", type=Path, default=[Path("cases")], help="case files or folders (default cases/)"
    )
    r.add_argument("-k", dest="pattern", metavar="EXPRESSION", help=K_HELP)
    r.add_argument("-v", "--verbose", action="store_true", help="per-element table of each failure")
    add_argparse_options(r)
    _add_report_options(r)

    bl = sub.add_parser("baseline", help="store a run as the baseline later runs compare with")
    bl_sub = bl.add_subparsers(dest="baseline_command", required=True, metavar="COMMAND")
    save = bl_sub.add_parser(
        "save",
        parents=[common],
        help="run the cases and store the report as a baseline",
        description="Run the cases and store the report as a baseline. Saving again when no\n"
        "gradient changed leaves the file byte for byte as it was.",
    )
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
    save.add_argument("-k", dest="pattern", metavar="EXPRESSION", help=K_HELP)
    add_argparse_options(save)

    mu = sub.add_parser(
        "mutate",
        parents=[common],
        help="mutation adequacy: can each case catch a bug planted in its backward?",
        description="Plant one bug at a time in each case's backward (program or Python source) and\n"
        "run the normal check: report each case's score and every mutant it lets through.\n"
        "Exit status 1 with --min-score when a case scores below it (docs/diagnostics.md).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mu.add_argument(
        "paths", nargs="*", type=Path, default=[Path("cases")], help="case files or folders (default cases/)"
    )
    mu.add_argument("-k", dest="pattern", metavar="EXPRESSION", help=K_HELP)
    mu.add_argument("-v", "--verbose", action="store_true", help="list every mutant, not only the survivors")
    mu.add_argument(
        "--min-score",
        type=_score,
        metavar="S",
        help="exit 1 when a case scores below S (0.9 or 90%%), or fails unmutated",
    )
    add_argparse_options(mu)

    ls = sub.add_parser("list", parents=[common], help="list the cases: inputs, sources, description")
    ls.add_argument("paths", nargs="*", type=Path, default=[Path("cases")], help="case files or folders")
    ls.add_argument("-k", dest="pattern", metavar="EXPRESSION", help=K_HELP)
    add_argparse_options(ls, options=TRUST_OPTIONS + LIMIT_OPTIONS)  # loading imports nothing, but checks

    sh = sub.add_parser(
        "show",
        parents=[common],
        help="print each step's value and each gradient of one case",
        description="Print each forward and backward step of one case with its value, as the\n"
        "notebook's cells do, then each source's gradient; --html draws it as a circuit.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sh.add_argument("case", help="the case's name")
    sh.add_argument("paths", nargs="*", type=Path, default=[Path("cases")], help="case files or folders")
    sh.add_argument("--html", type=Path, metavar="FILE", help="also write the case's report.html page to FILE")
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


def _score(text: str) -> float:
    percent = text.strip().endswith("%")
    try:
        x = float(text.strip().rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a score: {text!r} (try 0.9 or 90%)") from None
    x = x / 100 if percent else x
    if not 0 <= x <= 1:  # also refuses nan
        raise argparse.ArgumentTypeError("a score is a fraction from 0 to 1, or a percentage like 90%")
    return x


def _add_report_options(r: argparse.ArgumentParser) -> None:
    g = r.add_argument_group("reports and baselines")
    g.add_argument(
        "--report-dir",
        type=Path,
        default=Path("reports"),
        metavar="DIR",
        help="write report.json, junit.xml, summary.md and report.html here (default reports/);"
        " a run that finds no case file writes none",
    )
    g.add_argument("--no-reports", action="store_true", help="write no report files")
    g.add_argument("--baseline", type=Path, metavar="FILE", help="fail on regressions against this stored report")
    g.add_argument(
        "--max-growth",
        type=_growth_factor,
        default=DEFAULT_MAX_GROWTH,
        metavar="X",
        help=f"with --baseline: the factor a difference may grow by (default {DEFAULT_MAX_GROWTH:g})",
    )


class _Screen:
    """Where a command prints: stdout's width and colour, stderr's colour."""

    def __init__(self, choice: str = "auto") -> None:
        self.width = terminal_width(sys.stdout)
        self.paint = Paint(colour_enabled(sys.stdout, choice))
        self.err_paint = Paint(colour_enabled(sys.stderr, choice))

    @staticmethod
    def out(text: str) -> None:
        print(text)

    def error(self, text: str) -> None:
        print(f"{self.err_paint('gradcheck: error', 'error')}: {text}", file=sys.stderr)


def _project_importable() -> None:
    """Case-file callables from the current directory, as ``python -m`` and pytest find them;
    the ``gradcheck`` script alone would put only its own folder on sys.path."""
    here = os.getcwd()
    if not any(p in ("", ".", here) for p in sys.path):
        sys.path.insert(0, here)


def main(argv: list[str] | None = None) -> int:
    try:
        status = _main(argv)
        sys.stdout.flush()  # a closed pipe raises here, inside the handler, not at exit
        return status
    except KeyboardInterrupt:
        print("\ngradcheck: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Whoever read our output stopped reading (`| head`): nothing left to say. Point stdout
        # at /dev/null so the interpreter's own flush at exit cannot raise a second time.
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is no file (captured in a test)
        pass


def _main(argv: list[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)  # exits 2 on a usage error, as argparse does
    screen = _Screen(getattr(args, "color", "auto"))
    _project_importable()
    commands = {"run": _run, "list": _list, "baseline": _baseline_save, "show": _show, "mutate": _mutate}
    try:
        return commands[args.command](args, screen)
    except GradcheckError as exc:
        screen.error(str(exc))
        return 2
    except (KeyboardInterrupt, SystemExit, BrokenPipeError):
        raise  # main() ends these quietly, as pytest and git do
    except BaseException as exc:  # noqa: BLE001 - no input may end in a traceback (docs/limits.md)
        if os.environ.get("GRADCHECK_DEBUG"):  # a developer chasing the bug wants the traceback
            raise
        print(f"gradcheck: internal error: {printable(f'{type(exc).__name__}: {exc}')}", file=sys.stderr)
        return 2


def _something_to_report(report: Report) -> bool:
    """A run that found no case file (a folder without cases, a mistyped path) has nothing a
    report would add to its one-line error, and leaves no report folder behind."""
    return bool(report.results) or any(e.file is not None and e.file.is_file() for e in report.errors)


def _run(args: argparse.Namespace, screen: _Screen) -> int:
    from ._engine import run
    from ._report import baseline, json_report, render_case_detail, render_errors, render_summary, render_table
    from ._report.files import prepare_dir
    from ._report.layout import wrap
    from ._report.outputs import write_reports

    # torch's import leaves about a million objects for the cyclic collector to walk at each
    # full collection (about 0.09 s a time, most of a five-case run's own cost); they live as
    # long as the process, so they are moved out of its reach.
    gc.freeze()
    # Both are checked before any case runs, so a bad path costs one line, not a whole run.
    options = run_options(vars(args))
    folder = None if args.no_reports else prepare_dir(args.report_dir)
    stored = baseline.load(args.baseline, options.limits.max_file_size) if args.baseline is not None else None
    report = run(args.paths, options, args.pattern)
    if args.pattern and not report.results and not report.errors:
        # a -k that selects nothing is a typo more often than an intent, as pytest holds too
        screen.error(f"no case under {', '.join(map(str, args.paths))} matches -k {args.pattern!r}")
        return 2
    if report.results:
        screen.out(render_table(report, screen.width, screen.paint))
    if args.verbose:
        for r in report.results:
            if r.verdict != "pass":
                screen.out(render_case_detail(r, screen.width, screen.paint))
    if report.errors:
        print(render_errors(report, screen.width, screen.err_paint), file=sys.stderr)
    screen.out("\n".join(wrap(render_summary(report, screen.paint), screen.width, "    ", first="")))
    status = report.exit_code
    data = json_report.to_dict(report)
    if stored is not None:
        comparison = baseline.compare(
            data,
            stored,
            max_growth=args.max_growth,
            file=str(args.baseline),
            in_scope=baseline.scope(
                args.paths,
                args.pattern,
                options.device,
                _dtypes_ran(options, report),
                names=_names(report),
                kinds=_kinds_made(options, data),
            ),
        )
        data["baseline"] = comparison.to_dict()
        screen.out(
            "\n".join(line for text in comparison.lines() for line in wrap(text, screen.width, "      ", first=""))
        )
        if not comparison.compared and report.results:
            screen.error(baseline.matches_nothing(stored, str(args.baseline), data))
            status = 2
        elif not comparison.passed:
            status = max(status, 1)
    if folder is not None and _something_to_report(report):
        write_reports(folder, data, report=report)
    return status


def _dtypes_ran(options: RunOptions, report: Report) -> str:
    """The run's dtype, and the cases' own where they chose (a case file's `dtype`)."""
    ran = dict.fromkeys([options.dtype, *(r.dtype for r in report.results)] if options.case_dtype else [options.dtype])
    return ",".join(ran)


def _kinds_made(options: RunOptions, data: dict[str, Any]) -> set[str]:
    """The check kinds a run made or asked for: a baseline's other kinds are out of its scope."""
    asked = {"order1", *options.checks, *(["order2"] if options.order >= 2 else [])}
    return asked | {str(c.get("kind", "order1")) for c in data["cases"]}


def _names(report: Report) -> set[str]:
    return {r.case.name for r in report.results} | {e.case for e in report.errors if e.case}


def _baseline_save(args: argparse.Namespace, screen: _Screen) -> int:
    from ._engine import run
    from ._report import baseline, json_report, render_errors, render_table

    report = run(args.paths, run_options(vars(args)), args.pattern)
    if report.results:
        screen.out(render_table(report, screen.width, screen.paint))
    if report.errors:
        # A baseline without the cases that failed to load would report them as new later
        # and never as missing: refuse rather than store a partial one.
        print(render_errors(report, screen.width, screen.err_paint), file=sys.stderr)
        screen.error(f"baseline not saved: {len(report.errors)} case file(s) failed")
        return 2
    changed = baseline.save(json_report.to_dict(report), args.file)
    failing = sum(r.verdict == "fail" for r in report.results)
    note = f"; {failing} failing case(s) stored as failing" if failing else ""
    if changed:
        screen.out(f"saved baseline {args.file}: {len(report.results)} case(s){note}")
    else:
        screen.out(f"baseline {args.file} unchanged: {len(report.results)} case(s), the same gradients{note}")
    return 0


def _mutate(args: argparse.Namespace, screen: _Screen) -> int:
    from ._mutate import mutate
    from ._report.mutation import render_mutation

    run = mutate(args.paths, run_options(vars(args)), args.pattern)
    if args.pattern and not run.cases and not run.errors:
        screen.error(f"no case under {', '.join(map(str, args.paths))} matches -k {args.pattern!r}")
        return 2
    screen.out(render_mutation(run, verbose=args.verbose, minimum=args.min_score, width=screen.width))
    if run.errors:
        print("\n".join(f"error: {e}" for e in run.errors), file=sys.stderr)
        return 2
    return 1 if args.min_score is not None and run.below(args.min_score) else 0


def _list(args: argparse.Namespace, screen: _Screen) -> int:
    from ._case import load_cases
    from ._engine import select
    from ._errors import CaseError
    from ._report.listing import render_list

    status = 0
    cases: list[Case] = []
    options = run_options(vars(args))
    for item in select(load_cases(args.paths, limits=options.limits, trust=options.trust()), args.pattern):
        if isinstance(item, CaseError):
            screen.error(str(item))
            status = 2
        else:
            cases.append(item)
    if cases:
        screen.out(render_list(cases, screen.width, screen.paint))
    return status


def _find(name: str, paths: list[Path], options: RunOptions) -> Case:
    """The case named ``name`` under ``paths``: finding it imports nothing."""
    from ._case import load_cases
    from ._errors import CaseError

    errors = []
    for item in load_cases(paths, limits=options.limits, trust=options.trust()):
        if isinstance(item, CaseError):
            errors.append(item)
        elif item.name == name:
            return item
    hint = f" ({len(errors)} case file(s) failed to load)" if errors else ""
    raise CaseError(f"no case named {name!r} under {', '.join(map(str, paths))}{hint}")


def _show(args: argparse.Namespace, screen: _Screen) -> int:

    from ._devices import device_names
    from ._engine import Report, check_case, check_settings, ensure_device
    from ._guard import deadline, prepare
    from ._report.show import render_show

    options = run_options(vars(args))
    case = _find(args.case, args.paths, options)
    # show prints one run: the first device of a list, in the case's own dtype unless told
    options = replace(options, device=device_names(options.device)[0])
    ensure_device(options.device)
    with deadline(options.limits.timeout, case):
        case = prepare(case, options.limits)
    options = replace(options, dtype=check_settings(case, options).dtype, case_dtype=False)
    result = check_case(case, options)
    screen.out(render_show(case.at_dtype(options.dtype), result, options.dtype, screen.width, screen.paint))
    if args.html is not None:
        from ._report import html, json_report
        from ._report.files import atomic_write

        report = Report([result], [], options, result.seconds)
        atomic_write(args.html, html.render(json_report.to_dict(report), html.views(report)))
        screen.out(f"wrote {args.html}")
    return 1 if result.verdict == "fail" else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
