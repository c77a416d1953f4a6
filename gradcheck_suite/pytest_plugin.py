"""The pytest plugin (entry point ``pytest11: gradcheck``): case files as tests, and a fixture.

Case files. Every ``*.toml`` file under the paths of the ``gradcheck_paths`` ini option or of
``--gradcheck PATH`` is collected as one test file, in the manner of the pytest docs'
"specifying tests in YAML files" example: one item per case x device x dtype, named
``<case>[<device>-<dtype>]`` (``product[cpu-float64]``), so ``-k`` and node ids select them.
Each further check kind asked for (``--gradcheck-order 2``, ``--gradcheck-checks``, or the case
file's ``order``/``checks``) that applies to the case is one more item,
``<case>[<device>-<dtype>-<kind>]`` (``product[cpu-float64-order2]``).
Other ``.toml`` files (``pyproject.toml``) are never touched. When pytest was started without
explicit test paths (it used ``testpaths`` or the current directory) the ``gradcheck_paths``
are added to what it collects; ``--gradcheck PATH`` is always added.

Verdicts: pass passes; fail fails with the CLI's table, the per-element disagreement table and
the odd one out (no traceback of the plugin); inconclusive is a **skip** carrying the reason
(a kink, a numeric estimate too rough to decide). A skip, not an xfail: xfail says "known to
be wrong", while an inconclusive check has no evidence either way, and a skip's reason is
listed by ``-rs``. A case file that does not load is a collection error naming its file and
line; the other files are still collected. CUDA items are skipped where no GPU is present.

The ``gradcheck`` fixture is :func:`gradcheck_suite.check` for a user's own tests, failing
the test with the same tables.

At session end the checked cases are gathered into a :class:`Report` (from every xdist worker
too), kept on the config (:func:`session_report`) and written as report.json, junit.xml and
summary.md (the CLI's writers) when ``--gradcheck-report-dir`` is given.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

import pytest
import torch

from ._case import Case, load_case
from ._check import CheckResult, GradientCheckFailed, check, check_module
from ._devices import get_device
from ._engine import CaseResult, Report, RunOptions, check_case
from ._errors import CaseError, GradcheckError, UsageError
from ._options import add_pytest_options, run_options
from ._report import json_report
from ._report.files import prepare_dir
from ._report.outputs import write_reports
from ._report.terminal import render_summary
from ._trust import Trust

__all__ = [
    "CaseFile",
    "CaseItem",
    "gradcheck",
    "session_report",
    "pytest_addoption",
    "pytest_configure",
    "pytest_collect_file",
    "pytest_collection_modifyitems",
    "pytest_sessionfinish",
    "pytest_runtest_makereport",
    "pytest_terminal_summary",
]

_WORKER_KEY = "gradcheck_results"  # in xdist's workeroutput


@dataclass
class _State:
    roots: list[Path]
    base: RunOptions
    devices: tuple[str, ...]
    dtypes: tuple[str | None, ...]  # None: each case's own `dtype`, else float64
    report_dir: Path | None
    trust: Trust = field(default_factory=Trust)  # which callables case files may name (docs/trust.md)
    report_problem: str | None = None  # why the reports could not be written at session end
    results: list[CaseResult] = field(default_factory=list)
    errors: list[CaseError] = field(default_factory=list)
    unsent: int = 0  # results an xdist worker could not send to the controller
    report: Report | None = None
    # node id -> what went wrong, for tests pytest reports as errors (a fixture's setup or
    # teardown raised): their checks count as errors, not passes
    errored: dict[str, str] = field(default_factory=dict)
    checks: dict[str, int] = field(default_factory=dict)  # node id -> checks the fixture made in it


_STATE = pytest.StashKey[_State]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradcheck", "gradient checks (gradcheck-suite)")
    group.addoption(
        "--gradcheck",
        action="append",
        dest="gradcheck_paths",
        default=[],
        metavar="PATHS",
        help="collect the case files (*.toml) under PATHS (comma-separated; repeatable) as tests",
    )
    # The same definitions as the CLI's --device, --dtype, ... (prefixed gradcheck-).
    add_pytest_options(group, lists=("device", "dtype"))
    group.addoption(
        "--gradcheck-report-dir",
        dest="gradcheck_report_dir",
        default=None,
        metavar="DIR",
        help="write the gradcheck reports of this session into DIR",
    )
    parser.addini(
        "gradcheck_paths", type="paths", default=[], help="case files or folders collected as gradient checks"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gradcheck: a gradient check (a case file's item, or a test using the fixture)")
    here = config.invocation_params.dir
    explicit = [(here / p).resolve() for arg in config.option.gradcheck_paths for p in arg.split(",") if p.strip()]
    from_ini = [Path(p).resolve() for p in config.getini("gradcheck_paths")]
    devices = tuple(config.option.gradcheck_device)
    for d in devices:
        try:
            get_device(d)
        except UsageError as exc:
            raise pytest.UsageError(f"--gradcheck-device: {exc}") from None
    dtypes = tuple(config.option.gradcheck_dtype)
    values = {**vars(config.option), "gradcheck_device": devices[0], "gradcheck_dtype": dtypes[0]}
    report_dir = (here / config.option.gradcheck_report_dir) if config.option.gradcheck_report_dir else None
    base = run_options(values, prefix="gradcheck_")
    try:
        # the allow-list is read once, from where pytest was started, before any file is collected
        trust = Trust.from_settings(base.allow_callable, base.data_only, start=here)
        if report_dir is not None and not hasattr(config, "workerinput"):  # only the controller writes
            prepare_dir(report_dir)  # an unwritable folder stops the session now, not at its end
    except GradcheckError as exc:
        raise pytest.UsageError(f"gradcheck: {exc}") from None
    config.stash[_STATE] = _State(
        roots=explicit + from_ini,
        base=base,
        devices=devices,
        dtypes=dtypes,
        report_dir=report_dir,
        trust=trust,
    )
    # pytest walks only its test paths; case folders outside them would never reach
    # pytest_collect_file. Explicit --gradcheck paths always join; the ini's only when the
    # user named no test paths, so `pytest tests/test_x.py` runs just that file.
    wanted = explicit + (from_ini if config.args_source != pytest.Config.ArgsSource.ARGS else [])
    existing = [(here / a.split("::")[0]).resolve() for a in config.args]
    for root in wanted:
        if not any(root == e or e in root.parents for e in existing):
            config.args.append(str(root))
            existing.append(root)


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests using the fixture are gradient checks too, so `-m gradcheck` selects them.
    for item in items:
        if "gradcheck" in getattr(item, "fixturenames", ()):
            item.add_marker("gradcheck")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> CaseFile | None:
    if file_path.suffix != ".toml":
        return None
    state = parent.config.stash.get(_STATE, None)
    if state is None:
        return None
    p = file_path.resolve()
    if any(p == r or r in p.parents for r in state.roots):
        return CaseFile.from_parent(parent, path=file_path)
    return None


class CaseFile(pytest.File):
    """One case file: its case, once per device and dtype."""

    def collect(self) -> Iterator[CaseItem]:
        state = self.config.stash[_STATE]
        try:
            case = load_case(self.path, limits=state.base.limits, trust=state.trust)  # imports nothing
        except CaseError as exc:
            # Name the file as pytest does (relative to rootdir): file:line: what is wrong.
            exc.file = Path(self.nodeid.split("::")[0])
            state.errors.append(exc)
            raise self.CollectError(f"gradcheck: {exc}") from None
        for device in state.devices:
            for asked in state.dtypes:
                dtype = asked or case.settings.dtype or "float64"
                options = replace(state.base, device=device, dtype=dtype, case_dtype=False)
                yield CaseItem.from_parent(self, name=f"{case.name}[{device}-{dtype}]", case=case, options=options)
                for kind in _kinds(case, options):
                    name = f"{case.name}[{device}-{dtype}-{kind}]"
                    yield CaseItem.from_parent(self, name=name, case=case, options=options, kind=kind)


def _kinds(case: Case, options: RunOptions) -> list[str]:
    """The check kinds asked for (each one more item). Whether one applies depends on the
    case's callables, which collection never imports: a kind that does not apply skips."""
    if options.order < 2 and not options.checks and case.order < 2 and not case.checks:
        return []
    from ._kinds import requested  # the kinds load torch.func: only when asked for

    return list(requested(case, options))


def _skip(reason: str) -> NoReturn:
    """Skip, reported at the test's own place (the case file, the user's test) rather than at
    this module's line: pytest does the same for skips raised inside fixtures."""
    exc = pytest.skip.Exception(reason)
    exc._use_item_location = True  # read by pytest's report; a plain attribute, harmless if not
    raise exc


def _cuda_missing(device: str) -> str | None:
    """Why ``device`` cannot run here (no GPU), or None: its items are skipped with it."""
    return get_device(device).missing()


class CaseItem(pytest.Item):
    """A case checked on one device in one dtype."""

    def __init__(self, *, case: Case, options: RunOptions, kind: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.options = options
        self.kind = kind  # "" for first-order gradients, else a check kind
        self.add_marker("gradcheck")
        missing = _cuda_missing(options.device)
        if missing:
            self.add_marker(pytest.mark.skip(reason=missing))

    def runtest(self) -> None:
        state = self.config.stash[_STATE]
        try:
            if self.kind:
                from ._kinds import applicable, check_kind

                resolved = self.case.resolved()
                why = applicable(resolved, self.kind, self.options)
                if why is not None:
                    _skip(f"{self.kind} does not apply: {why}")
                result = check_kind(resolved, self.options, self.kind)
            else:
                result = check_case(self.case, self.options)
        except CaseError as exc:
            # A case that loads but cannot be run (NaN at its point, an upstream of the wrong
            # shape, a refused callable, a limit) fails with the engine's located message.
            if exc.file == self.path:
                exc.file = Path(self.nodeid.split("::")[0])
            exc.device, exc.dtype = self.options.device, self.options.dtype
            state.errors.append(exc)
            raise
        # named as pytest names the test, with the file relative to the rootdir as in node ids
        state.results.append(
            replace(result, test_id=self.nodeid, case=replace(result.case, file=Path(self.nodeid.split("::")[0])))
        )
        if result.verdict == "fail":
            raise GradientCheckFailed(result)
        if result.verdict == "inconclusive":
            _skip(f"gradcheck inconclusive: {result.reason}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, GradientCheckFailed):
            return str(excinfo.value)
        if isinstance(excinfo.value, CaseError):
            return f"gradcheck: {excinfo.value}"
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        # pytest counts lines from 0 here.
        # The item name, not just the case: two dtypes of one case must not share a header.
        return self.path, (self.case.line - 1 if self.case.line else None), f"gradcheck: {self.name}"


@pytest.fixture
def gradcheck(request: pytest.FixtureRequest) -> Callable[..., CheckResult]:
    """``gradcheck(fn, inputs, *, backward=None, reference=None, upstream=None, **options)``:
    run :func:`gradcheck_suite.check` (:func:`gradcheck_suite.check_module` when ``fn`` is an
    ``nn.Module``) and fail the test with the disagreement tables unless all sources agree, in
    every check kind asked for; an inconclusive check skips the test with its reason. Device,
    dtype and numeric method default to the first ``--gradcheck-device``/``--gradcheck-dtype``
    value and ``--gradcheck-numeric`` (likewise max-memory, mode, elements, directions, order
    and checks). Returns the :class:`CheckResult` of a pass."""
    state = request.config.stash[_STATE]
    defaults: dict[str, Any] = {
        "device": state.base.device,
        "dtype": state.base.dtype,
        "numeric": state.base.numeric,
        "max_memory": state.base.max_memory,
        "mode": state.base.mode,
        "elements": state.base.elements,
        "directions": state.base.directions,
        "order": state.base.order,
        "checks": state.base.checks,
        "tf32": state.base.tf32,
    }
    for key in ("k", "repeat", "nondet_tol"):  # unset: check()'s own defaults
        if getattr(state.base, key) is not None:
            defaults[key] = getattr(state.base, key)

    def run(fn: Any, inputs: Any, **kwargs: Any) -> CheckResult:
        options = {**defaults, **kwargs}
        missing = _cuda_missing(str(options["device"]))
        if missing:
            _skip(missing)
        test_id = _check_id(state, request.node.nodeid)
        try:
            if isinstance(fn, torch.nn.Module):
                result = check_module(fn, inputs, **options)
            else:
                result = check(fn, inputs, **options)
        except CaseError as exc:
            state.errors.append(_test_error(exc, test_id))
            raise
        state.results.append(_as_test(result.first(), test_id))
        state.results.extend(_as_test(k, test_id) for k in result.kinds)
        if result.verdict == "fail":
            pytest.fail(result.explain(), pytrace=False)
        if result.verdict == "inconclusive":
            _skip(f"gradcheck inconclusive: {result.reason}")
        return result

    return run


def _check_id(state: _State, nodeid: str) -> str:
    """The test's node id names its check; a test making several adds #2, #3 to the later ones."""
    n = state.checks.get(nodeid, 0) + 1
    state.checks[nodeid] = n
    return nodeid if n == 1 else f"{nodeid} #{n}"


def _as_test(result: CaseResult, test_id: str) -> CaseResult:
    """A fixture check as the session's reports name it: by its test, not by the function it
    checked (three tests of one function are three entries), in the test's file."""
    file = Path(test_id.split("::")[0])
    return replace(result, test_id=test_id, case=replace(result.case, name=test_id, file=file))


def _test_error(exc: CaseError, test_id: str, message: str | None = None) -> CaseError:
    error = CaseError(message or str(exc), file=Path(test_id.split("::")[0]), case=test_id)
    error.nodeid = test_id  # type: ignore[attr-defined]  # read by report.json's writer
    return error


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Remember the tests pytest reports as errors (a fixture failed around the test), in the
    process that ran them: their checks are counted as errors at the session's end."""
    outcome: Any = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "teardown"):
        state = item.config.stash.get(_STATE, None)
        if state is not None:
            crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
            lines = str(report.longreprtext or "").strip().splitlines()
            what = getattr(crash, "message", None) or (lines[-1] if lines else "")
            state.errored.setdefault(item.nodeid, f"the test errored in {report.when}: {what}")


def _fold_errors(state: _State) -> None:
    """A check whose test errored counts as an error, as pytest counts the test."""
    if not state.errored:
        return
    kept = []
    for r in state.results:
        nodeid = (r.test_id or "").split(" #")[0]
        if nodeid in state.errored:
            state.errors.append(_test_error(CaseError(""), r.test_id or nodeid, state.errored[nodeid]))
        else:
            kept.append(r)
    state.results = kept


def session_report(config: pytest.Config) -> Report | None:
    """The session's Report (every checked case and case-file error), once the session ended."""
    state = config.stash.get(_STATE, None)
    return state.report if state is not None else None


@dataclass(frozen=True)
class _Detached:
    """What stays of a Python callable in a result sent between processes: its name and place."""

    label: str
    file: Path | None
    line: int | None


def _without_functions(result: CaseResult) -> CaseResult:
    """``result`` with its case's callables (a lambda, a local function, torch's max_pool2d:
    not picklable) replaced by their names, so an xdist worker can still send the result."""
    case = result.case

    def detach(program: Any) -> Any:
        if program is None:
            return None
        return _Detached(getattr(program, "label", "?"), getattr(program, "file", None), getattr(program, "line", None))

    detached = replace(
        case, forward=detach(case.forward), backward=detach(case.backward), reference=detach(case.reference)
    )
    return replace(result, case=detached)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    state = config.stash.get(_STATE, None)
    if state is None:
        return
    _fold_errors(state)
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        # An xdist worker: send what it checked to the controller, which builds the Report.
        # Pickled per result, so one result holding an unpicklable user function is left out
        # alone (and counted) rather than losing the rest.
        sent = []
        for r in state.results:
            try:
                sent.append(pickle.dumps(r))
            except Exception:  # noqa: BLE001 - any pickling failure means "try without the functions"
                try:
                    sent.append(pickle.dumps(_without_functions(r)))
                except Exception:  # noqa: BLE001 - then it cannot be sent at all
                    state.unsent += 1
        workeroutput[_WORKER_KEY] = {
            "results": sent,
            "errors": [pickle.dumps(e) for e in state.errors],
            "unsent": state.unsent,
        }
        return
    # A file that failed to load on every worker arrives once per worker; an error of one item
    # (a case on one device and dtype) is its own, even when another item's reads the same.
    errors = list({(str(e), e.device, e.dtype): e for e in state.errors}.values())
    # Time spent checking, as the CLI reports it; the session's own time includes all else.
    state.report = Report(state.results, errors, state.base, sum(r.seconds for r in state.results))
    if state.report_dir is not None:
        try:
            write_reports(state.report_dir, json_report.to_dict(state.report), report=state.report)
        except GradcheckError as exc:  # the folder went away or filled up during the session
            state.report_problem = str(exc)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist (controller): a worker finished; take the results it checked."""
    state = node.config.stash.get(_STATE, None)
    sent = getattr(node, "workeroutput", {}).get(_WORKER_KEY)
    if state is None or not sent:
        return
    # These bytes come from this session's own worker processes, which pickled them above.
    state.results.extend(pickle.loads(b) for b in sent["results"])
    state.errors.extend(pickle.loads(b) for b in sent["errors"])
    state.unsent += int(sent["unsent"])


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is None or state.report is None or not (state.report.results or state.report.errors):
        return
    line = "gradcheck: " + render_summary(state.report)
    if state.unsent:
        line += f" ({state.unsent} result(s) could not be gathered from xdist workers)"
    terminalreporter.write_line(line)
    if state.report_problem is not None:
        terminalreporter.write_line(f"gradcheck: error: {state.report_problem}", red=True)
    elif state.report_dir is not None:
        terminalreporter.write_line(f"gradcheck: reports written to {state.report_dir}")
