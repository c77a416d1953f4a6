"""Constants, several outputs, and callables (forward/backward/reference) in case files."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

from gradcheck_suite import CaseError, RunOptions, Trust, check_case, load_case, run
from gradcheck_suite._cli import main

# A cs231n pair, a plain numpy backward of named inputs, a torch forward, and custom
# autograd.Functions (right and wrong) that the cases below name as callables.
LAYERS = """
import numpy as np
import torch

def affine_forward(x, w, b):
    return x @ w + b, (x, w, b)

def affine_backward(dout, cache):
    x, w, b = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)

def affine_backward_two(dout, cache):
    x, w, b = cache
    return dout @ w.T, x.T @ dout

def affine_backward_bad_shape(dout, cache):
    x, w, b = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=1)

def affine_backward_no_transpose(dout, cache):
    x, w, b = cache
    return dout @ w, x.T @ dout, dout.sum(axis=0)

def scale(x, k):
    return k * x ** 2

def scale_grad(dout, x, k):
    return {"dx": 2 * k * x * dout}

def torch_cube(x):
    return x ** 3

def cube_grad(dout, x):
    return 3 * x ** 2 * dout

def broken(x, w, b):
    raise ValueError("shapes do not line up")

class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g

class BadSquare(Square):
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return x * g  # the factor 2 dropped

def square_reference(x):
    return x * x


def square_in_place(x):
    x **= 2  # writes into its argument
    return x.sum()


def square_in_place_grad(dout, x):
    return 2 * x * dout
"""

AFFINE_INPUTS = """
[inputs]
x = { random = "normal", shape = [3, 4], seed = 1 }
w = { random = "normal", shape = [4, 4], seed = 2 }
b = { random = "normal", shape = [4], seed = 3 }
"""


@pytest.fixture
def layers(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh importable module holding LAYERS; its unique name keeps sys.modules apart.

    Run from a folder whose pyproject.toml allows it, as a user's project would."""
    name = f"layers_{uuid.uuid4().hex[:8]}"
    pkg = tmp_path / "pkgs"
    pkg.mkdir()
    (pkg / f"{name}.py").write_text(LAYERS)
    monkeypatch.syspath_prepend(str(pkg))
    project = tmp_path_factory.mktemp("project")  # outside tmp_path, where the tests put case files
    (project / "pyproject.toml").write_text(f'[tool.gradcheck]\ncallables = ["{name}.*", "no_such_module_xyz.*"]\n')
    monkeypatch.chdir(project)
    return name


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(f'name = "{name}"\n' + textwrap.dedent(text))
    return path


def _affine(folder: Path, name: str, module: str, backward: str, reference: str = "") -> Path:
    return _write(
        folder,
        name,
        f"""
        output = "out"
        upstream = {{ random = "normal", shape = [3, 4], seed = 4 }}
        {AFFINE_INPUTS}
        [forward]
        callable = "{module}:affine_forward"
        returns = "cache"

        [backward]
        callable = "{module}:{backward}"
        {reference}
        """,
    )


AFFINE_REFERENCE = """
[reference]
program = "out = x @ w + b"
"""


def test_cs231n_pair_with_a_program_reference_is_checked_three_ways(tmp_path: Path, layers: str) -> None:
    case = load_case(_affine(tmp_path, "affine", layers, "affine_backward", AFFINE_REFERENCE))
    result = check_case(case, RunOptions())
    assert result.verdict == "pass", result.reason
    assert set(result.sources) == {"manual", "autograd", "numeric"}
    assert result.sources["manual"].method == f"{layers}:affine_backward"


def test_a_bug_in_a_numpy_backward_makes_manual_the_odd_one_out(tmp_path: Path, layers: str) -> None:
    case = load_case(_affine(tmp_path, "affine", layers, "affine_backward_no_transpose", AFFINE_REFERENCE))
    result = check_case(case, RunOptions())
    assert (result.verdict, result.odd_one_out) == ("fail", "manual")
    assert [i.name for i in result.inputs if i.verdict == "fail"] == ["x"]


def test_numpy_forward_without_reference_is_checked_two_ways_and_says_so(
    tmp_path: Path, layers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _affine(tmp_path, "affine", layers, "affine_backward")
    assert main(["run", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "checked two ways" in out and f"`{layers}:affine_forward` is not torch" in out
    result = check_case(load_case(tmp_path / "affine.toml"), RunOptions())
    assert set(result.sources) == {"manual", "numeric"}


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "no_such_module_xyz:affine_backward",
            "cannot import forward callable `no_such_module_xyz:affine_forward`: ModuleNotFoundError",
        ),
        ("{m}:missing", "cannot import backward callable `{m}:missing`: AttributeError"),
        ("{m}:affine_backward_two", "backward callable `{m}:affine_backward_two`: returned 2 gradients, expected 3"),
        ("{m}:affine_backward_bad_shape", "backward `{m}:affine_backward_bad_shape` returned db of shape (3,)"),
    ],
)
def test_callable_errors_name_case_and_target_exit_2_and_others_still_run(
    tmp_path: Path, layers: str, capsys: pytest.CaptureFixture[str], target: str, message: str
) -> None:
    module, _, function = target.format(m=layers).partition(":")
    _affine(tmp_path, "a_broken", module, function, AFFINE_REFERENCE)
    _affine(tmp_path, "b_good", layers, "affine_backward", AFFINE_REFERENCE)
    assert main(["run", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    error = next(line for line in captured.err.splitlines() if "a_broken" in line)
    assert "case 'a_broken'" in error and message.format(m=layers) in error
    assert "b_good" in captured.out and "1 pass" in captured.out and "1 error" in captured.out


def test_a_callable_that_raises_is_reported_against_the_case(tmp_path: Path, layers: str) -> None:
    path = _write(
        tmp_path,
        "broken",
        f"""
        output = "out"
        {AFFINE_INPUTS}
        [forward]
        callable = "{layers}:broken"
        """,
    )
    report = run([path], RunOptions())
    assert report.exit_code == 2
    assert f"forward callable `{layers}:broken`: raised ValueError: shapes do not line up" in str(report.errors[0])


def test_plain_numpy_functions_with_constants_and_literal_kwargs(tmp_path: Path, layers: str) -> None:
    # forward scale(x, k) with k a constant; backward called as (dout, x, k), returning a dict
    path = _write(
        tmp_path,
        "scale",
        f"""
        output = "out"
        [inputs]
        x = [1.0, -2.0, 0.5]
        [constants]
        k = 3.0
        [forward]
        callable = "{layers}:scale"
        [backward]
        callable = "{layers}:scale_grad"
        [reference]
        program = "out = k * x ** 2"
        """,
    )
    result = check_case(load_case(path), RunOptions())
    assert result.verdict == "pass", result.reason
    np.testing.assert_allclose(result.inputs[0].grads["manual"], [6.0, -12.0, 3.0])


def test_torch_forward_is_differentiated_by_autograd_directly(tmp_path: Path, layers: str) -> None:
    path = _write(
        tmp_path,
        "cube",
        f"""
        output = "out"
        [inputs]
        x = [1.0, -2.0, 0.5]
        [forward]
        callable = "{layers}:torch_cube"
        array = "torch"
        [backward]
        callable = "{layers}:cube_grad"
        args = ["dout", "x"]
        """,
    )
    result = check_case(load_case(path), RunOptions(dtype="float32"))
    assert result.verdict == "pass", result.reason
    assert set(result.sources) == {"manual", "autograd", "numeric"}


@pytest.mark.parametrize(("function", "verdict", "odd"), [("Square", "pass", None), ("BadSquare", "fail", "manual")])
def test_autograd_function_backward_is_the_manual_source(
    tmp_path: Path, layers: str, function: str, verdict: str, odd: str | None
) -> None:
    path = _write(
        tmp_path,
        "square",
        f"""
        output = "out"
        [inputs]
        x = {{ random = "normal", shape = [2, 3], seed = 5 }}
        [forward]
        callable = "{layers}:{function}"
        [reference]
        callable = "{layers}:square_reference"
        array = "torch"
        """,
    )
    result = check_case(load_case(path), RunOptions())
    assert (result.verdict, result.odd_one_out) == (verdict, odd)
    assert result.sources["manual"].method == f"{layers}:{function}.backward"


def test_autograd_function_with_a_backward_section_is_rejected(tmp_path: Path, layers: str) -> None:
    path = _write(
        tmp_path,
        "square",
        f"""
        output = "out"
        [inputs]
        x = [1.0]
        [forward]
        callable = "{layers}:Square"
        [backward]
        program = "dx = 2 * x * dout"
        """,
    )
    case = load_case(path)  # loading imports nothing, so it cannot know Square is a Function yet
    with pytest.raises(CaseError, match="brings its own backward") as caught:
        check_case(case, RunOptions())
    assert caught.value.line == 9 and caught.value.key == "backward"  # the backward program's line


def test_constants_integer_labels_stay_integers_and_floats_follow_the_dtype(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "ce",
        """
        output = "loss"
        [inputs]
        s = { random = "normal", shape = [3, 4], seed = 1 }
        [constants]
        y = [0, 3, 1]
        t = 0.1
        labels = { random = "integers", low = 0, high = 4, shape = [3], seed = 2 }
        params = { stride = 2 }
        [forward]
        program = '''
        N = size(s, 0)
        loss = sum(logsumexp(s / t, axis=1) - s[arange(N), y] / t + s[arange(N), labels]) / N
        '''
        [backward]
        program = '''
        p = exp(s / t - logsumexp(s / t, axis=1, keepdims=True))
        ds = ((p - one_hot(y, 4)) / t + one_hot(labels, 4)) * (dloss / N)
        '''
        """,
    )
    case = load_case(path)
    assert case.constants["y"].dtype == np.int64 and case.constants["labels"].dtype == np.int64
    assert case.constants["params"] == {"stride": 2}
    assert list(case.inputs) == ["s"]  # constants are never differentiated
    # the float constant is rounded like the inputs in a float32 check
    assert float(case.at_dtype("float32").constants["t"]) == float(np.float32(0.1))
    for dtype in ("float64", "float32"):
        result = check_case(case, RunOptions(dtype=dtype))
        assert result.verdict == "pass", (dtype, result.reason)


def test_several_outputs_each_with_its_own_upstream(tmp_path: Path) -> None:
    text = """
        output = ["p", "q"]
        [upstream]
        p = [1.0, 2.0]
        q = [-3.0, 0.5]
        [inputs]
        x = [0.3, -1.2]
        y = [2.0, 0.7]
        [forward]
        program = '''
        p = x * y
        q = exp(x) + y
        '''
        [backward]
        program = '''
        dx = y * dp + exp(x) * dq
        dy = x * dp + dq
        '''
        """
    good = check_case(load_case(_write(tmp_path, "two", text)), RunOptions())
    assert good.verdict == "pass", good.reason
    np.testing.assert_allclose(good.inputs[1].grads["numeric"], [0.3 * 1.0 - 3.0, -1.2 * 2.0 + 0.5], rtol=1e-12)
    # a backward that forgets the second output's upstream
    bad = check_case(load_case(_write(tmp_path, "two", text.replace("dy = x * dp + dq", "dy = x * dp"))), RunOptions())
    assert (bad.verdict, bad.odd_one_out) == ("fail", "manual")


@pytest.mark.parametrize(
    ("fragment", "message"),
    [
        ('output = ["p", "q"]\nupstream = [1.0]', "`upstream` is a table with one entry per output"),
        ('output = ["p", "p"]', "list of distinct names"),
        ('output = "p"\n[constants]\nx = 1', "`x` is both an input and a constant"),
        ('output = "p"\n[constants]\nz = { random = "integers", low = 3, high = 1 }', "integer `low` < `high`"),
        (
            'output = "p"\n[reference]\ncallable = "torch.nn.functional.relu"\narray = "numpy"',
            "a reference must be a torch function",
        ),
    ],
)
def test_case_file_validation(tmp_path: Path, fragment: str, message: str) -> None:
    path = _write(tmp_path, "bad", fragment + '\n[inputs]\nx = [1.0]\n[forward]\nprogram = "p = x\\nq = x"\n')
    with pytest.raises(CaseError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_case(path)


def test_list_shows_the_sources_a_case_is_checked_with(
    tmp_path: Path, layers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _affine(tmp_path, "a_two_way", layers, "affine_backward")
    _affine(tmp_path, "b_three_way", layers, "affine_backward", AFFINE_REFERENCE)
    assert main(["list", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    # a table: header, rule, then a row per case with its sources
    assert any("manual+numeric" in line and line.startswith("a_two_way") for line in lines)
    assert any("manual+autograd+numeric" in line and line.startswith("b_three_way") for line in lines)


def test_a_callable_writing_into_its_argument_does_not_move_the_point(tmp_path: Path, layers: str) -> None:
    path = _write(
        tmp_path,
        "in_place",
        f"""
        output = "L"
        [inputs]
        x = [1.5, 2.0, 3.0]
        [forward]
        callable = "{layers}:square_in_place"
        [backward]
        callable = "{layers}:square_in_place_grad"
        """,
    )
    result = check_case(load_case(path), RunOptions())
    assert result.verdict == "pass", result.reason
    np.testing.assert_allclose(result.inputs[0].grads["manual"], [3.0, 4.0, 6.0])
    np.testing.assert_allclose(result.point["x"], [1.5, 2.0, 3.0])


def test_a_torch_forward_with_a_program_backward_runs_in_float64(tmp_path: Path) -> None:
    # the long double rerun that measures a program's rounding would run torch.tanh too
    path = _write(
        tmp_path,
        "torch_tanh",
        """
        output = "out"
        [inputs]
        x = [0.3, -1.2, 2.0]
        [forward]
        callable = "torch.tanh"
        [backward]
        program = "dx = (1 - out * out) * dout"
        """,
    )
    for dtype in ("float64", "float32"):
        result = check_case(load_case(path, trust=Trust.from_settings(["torch.tanh"])), RunOptions(dtype=dtype))
        assert result.verdict == "pass", result.reason
