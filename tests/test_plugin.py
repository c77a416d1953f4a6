"""The pytest plugin, run inside pytester: case files as items, the fixture, xdist."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

CASES = Path(__file__).resolve().parent.parent / "cases"
BUNDLED = sorted(p.stem for p in CASES.glob("*.toml"))

INI = """
[tool.pytest.ini_options]
gradcheck_paths = ["cases"]
"""

# compound_sigmoid with the sigmoid-derivative term of dx dropped: a wrong hand-written backward.
DROPPED = "dx += ((1 - sigx) * sigx) * dsigx\n"

# A program error on line 7 of the file.
BAD_PROGRAM = '''name = "bad"
output = "z"
[inputs]
x = 1.0
[forward]
program = """
z = x +* 2
"""
'''

KINK = '''name = "kink"
output = "z"
[inputs]
x = 0.0
[forward]
program = """
z = abs(x)
"""
'''


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project with the five seed cases under cases/ and gradcheck_paths pointing there
    (the layer library is left out: tests/test_layers.py covers it, and it would slow these)."""
    shutil.copytree(CASES, pytester.path / "cases", ignore=shutil.ignore_patterns("layers"))
    pytester.makefile(".toml", pyproject=INI)
    return pytester


def outcomes(result: pytest.RunResult) -> dict[str, str]:
    """node id -> outcome, from the -rA short summary (the same with and without xdist)."""
    found = {}
    for line in result.outlines:
        # SKIPPED [1] test_user.py:14: reason -- a skip names the place, not the node id
        m = re.match(r"^(PASSED|FAILED|ERROR) (\S+)|^(SKIPPED) \[\d+\] ([^:]+:\d+):", line)
        if m:
            found[m.group(2) or m.group(4)] = m.group(1) or m.group(3)
    return found


def break_compound_sigmoid(pytester: pytest.Pytester) -> None:
    path = pytester.path / "cases" / "compound_sigmoid.toml"
    text = path.read_text()
    assert DROPPED in text
    path.write_text(text.replace(DROPPED, ""))


def test_bundled_cases_are_collected_and_pass(project: pytest.Pytester) -> None:
    result = project.runpytest("-v")
    result.assert_outcomes(passed=len(BUNDLED))
    for name in BUNDLED:
        result.stdout.fnmatch_lines([f"cases/{name}.toml::{name}[[]cpu-float64[]] PASSED*"])
    result.stdout.fnmatch_lines([f"gradcheck: {len(BUNDLED)} case(s): {len(BUNDLED)} pass, 0 fail*"])


def test_other_toml_files_are_left_alone(project: pytest.Pytester) -> None:
    # pyproject.toml (rootdir) and a .toml outside gradcheck_paths are not case files.
    (project.path / "config").mkdir()
    (project.path / "config" / "settings.toml").write_text("this is [not a case")
    result = project.runpytest(".")
    result.assert_outcomes(passed=len(BUNDLED))


def test_gradcheck_option_without_the_ini(pytester: pytest.Pytester) -> None:
    shutil.copytree(CASES, pytester.path / "checks", ignore=shutil.ignore_patterns("layers"))
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    assert pytester.runpytest().parseoutcomes() == {"passed": 1}  # nothing says checks/ holds cases
    pytester.runpytest("--gradcheck", "checks").assert_outcomes(passed=len(BUNDLED) + 1)


def test_explicit_test_paths_run_only_those(project: pytest.Pytester) -> None:
    project.makepyfile(test_plain="def test_plain():\n    pass\n")
    project.runpytest("test_plain.py").assert_outcomes(passed=1)


def test_broken_case_fails_with_the_disagreement_table(project: pytest.Pytester) -> None:
    break_compound_sigmoid(project)
    result = project.runpytest()
    result.assert_outcomes(passed=len(BUNDLED) - 1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ gradcheck: compound_sigmoid[[]cpu-float64[]] _*",
            "gradcheck compound_sigmoid (cpu, float64): FAIL: manual is the odd one out",
            "case *input*manual*autograd*numeric*max rel diff*verdict",
            "compound_sigmoid*x*2.0953313433848186*2.0595697955721652*FAIL: manual is the odd one out",
            "*y*1.5922327514838093*pass",
            "compound_sigmoid: FAIL expected dx (line *",
            "compound_sigmoid / x: fail - manual disagrees with the other two",
            "  manual vs autograd: 1 element(s) disagree*",
            "element*manual*autograd*numeric*numeric err",
            "FAILED cases/compound_sigmoid.toml::compound_sigmoid[[]cpu-float64[]]*",
        ]
    )
    # the failure is the table, not a traceback through the plugin
    assert "Traceback" not in result.stdout.str()
    assert "pytest_plugin.py" not in result.stdout.str()


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (BAD_PROGRAM, "cases/bad.toml:7: [[]forward[]]: syntax error*"),
        ('name = "bad"\noutput = "z"\n[inputs\n', "cases/bad.toml:3: TOML syntax error*"),
        (BAD_PROGRAM.replace("x +* 2", "x * q"), "cases/bad.toml:7: [[]forward[]]: name `q` is used before*"),
    ],
)
def test_malformed_case_is_a_collection_error_naming_file_and_line(
    project: pytest.Pytester, text: str, where: str
) -> None:
    (project.path / "cases" / "bad.toml").write_text(text)
    result = project.runpytest()
    result.stdout.fnmatch_lines(
        [
            f"collected {len(BUNDLED)} items / 1 error",
            "*ERROR collecting cases/bad.toml*",
            f"gradcheck: {where}",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    # the other files are still collected, and run past the error when asked to
    result = project.runpytest("--continue-on-collection-errors")
    result.assert_outcomes(passed=len(BUNDLED), errors=1)


def test_case_that_cannot_run_fails_with_the_engine_message(project: pytest.Pytester) -> None:
    (project.path / "cases" / "nan.toml").write_text(KINK.replace('"kink"', '"nan"').replace("abs(x)", "log(x)"))
    result = project.runpytest("-k", "nan")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["gradcheck: cases/nan.toml: case 'nan': [[]forward[]]: the output `z` is NaN or infinite at the input point"]
    )
    assert "Traceback" not in result.stdout.str()


def test_k_selects_by_case_and_dtype(project: pytest.Pytester) -> None:
    result = project.runpytest("-k", "product or sum_times", "-rA")
    assert outcomes(result) == {
        "cases/product.toml::product[cpu-float64]": "PASSED",
        "cases/sum_times.toml::sum_times[cpu-float64]": "PASSED",
    }
    result = project.runpytest("--gradcheck-dtype", "float64,float32", "-k", "matmul and float32", "-rA")
    assert outcomes(result) == {"cases/matmul.toml::matmul[cpu-float32]": "PASSED"}
    # and a node id
    result = project.runpytest("cases/product.toml::product[cpu-float64]", "-rA")
    assert outcomes(result) == {"cases/product.toml::product[cpu-float64]": "PASSED"}


def test_one_item_per_device_and_dtype_with_reportinfo_and_marker(project: pytest.Pytester) -> None:
    items, _ = project.inline_genitems("--gradcheck-dtype=float64,float32")
    names = sorted(i.name for i in items)
    assert names == sorted(f"{n}[cpu-{d}]" for n in BUNDLED for d in ("float64", "float32"))
    item = next(i for i in items if i.name == "product[cpu-float32]")
    path, line, domain = item.reportinfo()
    assert Path(path) == project.path / "cases" / "product.toml"
    assert line == 0  # `name = "product"` is the first line; pytest counts from 0
    assert domain == "gradcheck: product[cpu-float32]"
    assert item.get_closest_marker("gradcheck") is not None
    project.runpytest("-m", "gradcheck").assert_outcomes(passed=len(BUNDLED))
    # the summary names the dtype that ran, not the first one listed
    result = project.runpytest("--gradcheck-dtype=float64,float32", "-k", "matmul and float32")
    result.stdout.fnmatch_lines(["gradcheck: 1 case(s): 1 pass, * (cpu, float32, *"])


def test_options_are_validated(project: pytest.Pytester) -> None:
    result = project.runpytest("--gradcheck-dtype", "float64,int8")  # float16 is a dtype since issue 12
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*invalid choice 'int8'*"])
    result = project.runpytest("--gradcheck-device", "tpu")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown device 'tpu'*"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the items would run")
def test_cuda_items_are_skipped_without_a_gpu(project: pytest.Pytester) -> None:
    result = project.runpytest("--gradcheck-device", "cpu,cuda", "-rs")
    result.assert_outcomes(passed=len(BUNDLED), skipped=len(BUNDLED))
    result.stdout.fnmatch_lines(["SKIPPED [[]*[]] *: no CUDA device is available (torch *)"])


def test_inconclusive_is_a_skip_with_its_reason(project: pytest.Pytester) -> None:
    (project.path / "cases" / "kink.toml").write_text(KINK)
    result = project.runpytest("-rs", "-k", "kink")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] *gradcheck inconclusive: x: kink: the perturbation crosses*"])


USER_TEST = """
import torch

def test_unrelated():
    pass

def cube(x):
    return x ** 3

def test_right_backward(gradcheck):
    result = gradcheck(cube, {"x": torch.tensor([1.0, -2.0])}, backward=lambda g, x: 3 * x ** 2 * g)
    assert result.passed

def test_wrong_backward(gradcheck):
    gradcheck(cube, {"x": torch.tensor([1.0, -2.0])}, backward=lambda g, x: 2 * x ** 2 * g)

def test_kink(gradcheck):
    gradcheck(torch.abs, {"input": [0.0]})
"""


def test_fixture_catches_a_wrong_backward(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TEST)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    pytester.runpytest("-m", "gradcheck").assert_outcomes(passed=1, failed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_wrong_backward _*",
            "gradcheck cube (cpu, float64): FAIL: manual is the odd one out",
            "  x: manual disagrees with the other two",
            "case*input*manual*autograd*numeric*",
            "cube*x*FAIL: manual is the odd one out",
            "cube / x: fail - manual disagrees with the other two",
            "element*manual*autograd*numeric*numeric err",
            "[[]1[]]*8.0*12.0*12.0*",
            "*gradcheck inconclusive: input: kink*",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_fixture_takes_dtype_from_the_options(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_user="""
        def test_dtype(gradcheck):
            assert gradcheck(lambda x: x * x, {"x": [1.5]}).dtype == "float32"
        """
    )
    pytester.runpytest("--gradcheck-dtype", "float32").assert_outcomes(passed=1)


def test_report_dir_gets_the_cli_reports(project: pytest.Pytester) -> None:
    import json
    import xml.etree.ElementTree as ET

    break_compound_sigmoid(project)
    result = project.runpytest("--gradcheck-report-dir", "out")
    result.stdout.fnmatch_lines([f"gradcheck: reports written to {project.path / 'out'}"])
    data = json.loads((project.path / "out" / "report.json").read_text())
    verdicts = {c["case"]: c["verdict"] for c in data["cases"]}
    assert verdicts.pop("compound_sigmoid") == "fail"
    assert set(verdicts.values()) == {"pass"} and len(verdicts) == len(BUNDLED) - 1
    suite = ET.parse(project.path / "out" / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == (str(len(BUNDLED)), "1")
    assert (project.path / "out" / "summary.md").read_text().count("compound_sigmoid") >= 1


REPORT_CONFTEST = """
import json
import pytest
from gradcheck_suite.pytest_plugin import session_report

@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    if hasattr(session.config, "workerinput"):
        return
    report = session_report(session.config)
    verdicts = sorted((r.case.name, r.dtype, r.verdict, r.odd_one_out) for r in report.results)
    with open("report.json", "w") as f:
        json.dump({"counts": report.counts(), "verdicts": verdicts}, f)
"""


def test_xdist_gives_the_same_results(project: pytest.Pytester) -> None:
    break_compound_sigmoid(project)
    project.makeconftest(REPORT_CONFTEST)
    project.makepyfile(test_user=USER_TEST)
    args = ("--gradcheck-dtype", "float64,float32", "-rA", "-p", "no:cacheprovider")
    serial = project.runpytest_subprocess(*args)
    serial_report = json.loads((project.path / "report.json").read_text())
    parallel = project.runpytest_subprocess("-n", "2", *args)
    parallel_report = json.loads((project.path / "report.json").read_text())
    parallel.stdout.fnmatch_lines(["created: 2/2 workers*"])
    expected = {
        **{f"cases/{n}.toml::{n}[cpu-{d}]": "PASSED" for n in BUNDLED for d in ("float64", "float32")},
        "cases/compound_sigmoid.toml::compound_sigmoid[cpu-float64]": "FAILED",
        "cases/compound_sigmoid.toml::compound_sigmoid[cpu-float32]": "FAILED",
        "test_user.py::test_right_backward": "PASSED",
        "test_user.py::test_wrong_backward": "FAILED",
        "test_user.py::test_unrelated": "PASSED",
        "test_user.py:16": "SKIPPED",  # test_kink
    }
    assert outcomes(serial) == expected
    assert outcomes(parallel) == expected
    # the controller's Report holds every worker's results, fixture results included
    assert parallel_report == serial_report
    assert serial_report["counts"] == {"pass": 2 * len(BUNDLED) - 2 + 1, "fail": 3, "inconclusive": 1, "error": 0}


def test_a_result_whose_reference_is_a_torch_function_travels_between_xdist_processes() -> None:
    import pickle

    from gradcheck_suite import RunOptions, check_case, load_case
    from gradcheck_suite.pytest_plugin import _without_functions

    result = check_case(load_case(CASES / "layers" / "max_pool_naive.toml"), RunOptions())
    with pytest.raises(Exception, match="pickle"):
        pickle.dumps(result)  # torch.nn.functional.max_pool2d, its [reference]
    back = pickle.loads(pickle.dumps(_without_functions(result)))
    assert (back.case.name, back.verdict) == ("max_pool_naive", result.verdict)
