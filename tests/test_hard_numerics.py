"""Verdicts where the arithmetic is hard (issue 10): correct gradients of ill-conditioned
functions pass, the misses it lists are caught, and each source is judged by what it can be
wrong about. Every function here failed, or was misjudged, by the verdict rules before."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from gradcheck_suite import CaseError, RunOptions, check, check_case, load_case
from gradcheck_suite._compare import judge_input
from gradcheck_suite._sources import Gradients

POINTS = 100  # random points per sweep (benchmarks/numerics.py runs 1,000)


def _case(tmp_path: Path, text: str) -> Path:
    path = tmp_path / f"c{uuid.uuid4().hex[:6]}.toml"
    path.write_text(textwrap.dedent(text))
    return path


def _sweep(path: Path, dtype: str = "float64") -> dict[str, int]:
    result = check_case(load_case(path), RunOptions(dtype=dtype, samples=POINTS))
    assert result.samples is not None
    return result.samples.counts


TANH = """
    name = "tanh_saturated"
    output = "f"
    [inputs]
    x = { random = "uniform", low = -40.0, high = 40.0, shape = [6], seed = 1 }
    [forward]
    program = '''
    t = tanh(x)
    f = sum(t)
    '''
    [backward]
    program = "dx = df * (1 - t * t)"
    [sweep]
    domain = { x = [-40.0, 40.0] }
"""

TANH_SCALAR = TANH.replace('{ random = "uniform", low = -40.0, high = 40.0, shape = [6], seed = 1 }', "30.0")

POLY5 = """
    name = "poly5_expanded"
    output = "f"
    [inputs]
    x = 1.001
    [forward]
    program = "f = x**5 - 5*x**4 + 10*x**3 - 10*x**2 + 5*x - 1"
    [backward]
    program = "dx = df * (5*x**4 - 20*x**3 + 30*x**2 - 20*x + 5)"
    [sweep]
    domain = { x = [0.99, 1.01] }
"""

VARIANCE = """
    name = "variance_near_1000"
    output = "v"
    [inputs]
    x = { random = "normal", mean = 1000.0, std = 1.0, shape = [8], seed = 3 }
    [forward]
    program = '''
    m = mean(x)
    v = mean(x * x) - m ** 2
    '''
    [backward]
    program = '''
    N = size(x, 0)
    dx = (2 * x * dv - 2 * m * dv) / N
    '''
    [sweep]
    domain = { x = [999.0, 1001.0] }
"""

TINY = """
    name = "tiny_squares"
    output = "f"
    [inputs]
    x = { random = "normal", std = 1e-6, shape = [5], seed = 4 }
    [forward]
    program = "f = sum(x * x)"
    [backward]
    program = "dx = 2 * x * df"
    [sweep]
    domain = { x = [-3e-6, 3e-6] }
"""


@pytest.mark.parametrize(
    "text", [TANH, TANH_SCALAR, POLY5, VARIANCE, TINY], ids=["tanh", "tanh1", "poly5", "var", "tiny"]
)
def test_ill_conditioned_correct_gradients_never_fail(tmp_path: Path, text: str) -> None:
    path = _case(tmp_path, text)
    for dtype in ("float64", "float32"):
        counts = _sweep(path, dtype)
        assert counts["fail"] == 0, (dtype, counts)
        assert counts["inconclusive"] == 0, (dtype, counts)


@pytest.mark.parametrize("scale", [1e-6, 1e-15, 1e15])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_tiny_and_huge_inputs_are_ordinary(scale: float, dtype: str) -> None:
    # a Python callable: differences, with steps relative to each element and its input
    x = torch.tensor(np.random.default_rng(0).normal(0.0, scale, 5))
    result = check(lambda x: (x * x).sum(), {"x": x}, backward=lambda g, x: 2 * x * g, dtype=dtype, samples=30)
    assert result.samples is not None and result.samples.counts["pass"] == 31, result.explain()
    wrong = check(lambda x: (x * x).sum(), {"x": x}, backward=lambda g, x: -2 * x * g, dtype=dtype)
    assert (wrong.verdict, wrong.odd_one_out) == ("fail", "manual")


@pytest.mark.parametrize(
    "forward, backward",
    [
        ("f = sum(where(x > 0, x, exp(x) - 1))", "dx = where(x > 0, df, df * exp(x))"),
        ("f = sum(x / (1 + abs(x)))", "d = 1 + abs(x)\ndx = df / (d * d)"),
        ("f = sum(x * abs(x))", "dx = 2 * abs(x) * df"),
    ],
    ids=["elu", "softsign", "x_abs_x"],
)
def test_a_jump_in_the_second_derivative_is_no_kink_and_no_fail(tmp_path: Path, forward: str, backward: str) -> None:
    text = f"""
        name = "second"
        output = "f"
        [inputs]
        x = [0.0, 1e-3, -0.5]
        [forward]
        program = '''
        {textwrap.indent(forward, "        ").strip()}
        '''
        [backward]
        program = '''
        {textwrap.indent(backward, "        ").strip()}
        '''
    """
    result = check_case(load_case(_case(tmp_path, text)), RunOptions())
    assert result.verdict == "pass", result.reason


def test_relu_just_off_its_kink_is_decided_and_a_wrong_slope_there_fails(tmp_path: Path) -> None:
    text = """
        name = "relu_near"
        output = "f"
        [inputs]
        x = [-0.005, 0.003, 1.0]
        [forward]
        program = "f = sum(maximum(x, 0) ** 2 / 2 + maximum(x, 0))"
        [backward]
        program = "dx = where(x > 0, (x + 1) * df, 0)"
    """
    path = _case(tmp_path, text)
    assert check_case(load_case(path), RunOptions()).verdict == "pass"
    wrong = _case(tmp_path, text.replace("where(x > 0, (x + 1) * df, 0)", "where(x > -0.01, (x + 1) * df, 0)"))
    result = check_case(load_case(wrong), RunOptions())
    assert (result.verdict, result.odd_one_out) == ("fail", "manual")


def _normalise(x: torch.Tensor) -> torch.Tensor:
    xc = x - x.mean()
    return xc / torch.sqrt((xc * xc).mean())


def _normalise_backward(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    xc = x - x.mean()
    std = torch.sqrt((xc * xc).mean())
    y = xc / std
    return (g - g.mean() - y * (g * y).mean()) / std


@pytest.mark.parametrize("factor", [1.0, 2.0, -1.0])
@pytest.mark.parametrize("mean", [0.0, 5.0])
def test_normalisation_with_a_small_variance_is_decided(factor: float, mean: float) -> None:
    # a Python callable gets differences with kink detection: curvature at the scale of the
    # tiny spread (std 1e-3, steps start at the elements' scale) must not read as a kink, so
    # a gradient off by 2x or -1x is caught at the point itself
    x = torch.tensor(np.random.default_rng(8).normal(mean, 1e-3, size=6))
    g = torch.tensor(np.random.default_rng(9).normal(size=6))
    result = check(_normalise, {"x": x}, backward=lambda up, x: factor * _normalise_backward(up, x), upstream=g)
    if factor == 1.0:
        assert result.verdict == "pass", result.explain()
    else:
        assert (result.verdict, result.odd_one_out) == ("fail", "manual"), result.explain()


# --- the misses -------------------------------------------------------------------------


class _RoundSTE(torch.autograd.Function):
    """round() with a straight-through gradient: its backward is hand-written, and not round's."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.round(x)

    @staticmethod
    def setup_context(ctx: object, inputs: object, output: object) -> None:
        pass

    @staticmethod
    def vmap(info: object, in_dims: tuple[int | None], x: torch.Tensor) -> tuple[torch.Tensor, int | None]:
        return _RoundSTE.apply(x), in_dims[0]

    @staticmethod
    def backward(ctx: object, g: torch.Tensor) -> torch.Tensor:
        return g


def _ste_fn(x: torch.Tensor) -> torch.Tensor:
    return (_RoundSTE.apply(x) * x).sum()


def _ste_backward(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # the "hand-written" backward runs autograd through the same Function
    leaf = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(_ste_fn(leaf), leaf, g)
    return grad


def test_autograd_through_the_manual_backward_is_not_an_independent_vote() -> None:
    x = torch.tensor([0.3, 1.2, -2.2], dtype=torch.float64)
    result = check(_ste_fn, {"x": x}, backward=_ste_backward)
    assert result.verdict == "fail"
    assert result.odd_one_out != "numeric"  # manual and autograd are one source here
    assert result.sources["autograd"].depends_on == ["_RoundSTE.backward"]
    reason = result.inputs[0].reason
    assert "_RoundSTE.backward" in reason and "independent" in reason


def test_a_bug_only_in_float32_is_not_taken_for_float32_rounding() -> None:
    def fn(x: torch.Tensor) -> torch.Tensor:
        return (x * x).sum()

    def backward(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        wrong = 1.01 if x.dtype == torch.float32 else 1.0  # a bug in the float32 path only
        return 2 * x * g * wrong

    x = torch.tensor([0.5, -1.5, 2.0])
    assert check(fn, {"x": x}, backward=backward, dtype="float64").verdict == "pass"
    result = check(fn, {"x": x}, backward=backward, dtype="float32")
    assert (result.verdict, result.odd_one_out) == ("fail", "manual"), result.explain()


def test_a_complex_gradient_is_an_error_not_a_pass() -> None:
    def fn(x: torch.Tensor) -> torch.Tensor:
        return (x * x).sum()

    def backward(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return (2 * x * g).to(torch.complex128) + 1j

    with pytest.raises(CaseError, match="complex"):
        check(fn, {"x": torch.tensor([0.5, -1.5])}, backward=backward)


MODULE = """
import numpy as np

def wrong_dropout(x):
    return x * 0.5  # scaled by p instead of 1 / p

def dropout_backward(dout, x):
    return dout * 0.5

def unseeded_dropout(x):
    return x * (np.random.rand(*x.shape) > 0.5)

def unseeded_backward(dout, x):
    return dout
"""


@pytest.fixture
def module(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable module of MODULE, allowed by the pyproject.toml of the folder the test runs in."""
    name = f"hard_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    project = tmp_path_factory.mktemp("project")
    (project / "pyproject.toml").write_text(f'[tool.gradcheck]\ncallables = ["{name}.*"]\n')
    monkeypatch.chdir(project)
    return name


def test_a_forward_that_computes_another_function_than_its_reference_fails_as_such(tmp_path: Path, module: str) -> None:
    text = f"""
        name = "dropout_vs_reference"
        output = "out"
        [inputs]
        x = [1.0, -2.0, 3.0]
        [forward]
        callable = "{module}:wrong_dropout"
        [backward]
        callable = "{module}:dropout_backward"
        [reference]
        program = "out = x * 2"
    """
    result = check_case(load_case(_case(tmp_path, text)), RunOptions())
    assert result.verdict == "fail"
    assert result.odd_one_out is None  # not "autograd is the odd one out"
    assert "compute different functions" in result.reason
    assert "max difference" in result.reason


def test_a_nondeterministic_forward_is_an_error_not_kinks(tmp_path: Path, module: str) -> None:
    text = f"""
        name = "unseeded"
        output = "out"
        [inputs]
        x = {{ random = "normal", shape = [30], seed = 1 }}
        [forward]
        callable = "{module}:unseeded_dropout"
        [backward]
        callable = "{module}:unseeded_backward"
    """
    with pytest.raises(CaseError, match="nondeterministic forward.*unseeded random draw"):
        check_case(load_case(_case(tmp_path, text)), RunOptions())


def test_one_pair_over_its_tolerance_names_the_source_near_its_other_tolerance() -> None:
    # float32, manual-numeric at 1.9x its tolerance, manual-autograd at 0.97x, autograd-numeric
    # at 0.002x: manual is the clear suspect, though no two pairs disagree
    def grads(source: str, value: float, error: float | None = None, dtype: str = "float32") -> Gradients:
        v = {"x": np.array([value])}
        err = {"x": np.array([error])} if error is not None else None
        return Gradients(source, v, dtype, error=err, kinks={"x": np.array([False])} if error else None)

    eps = float(np.finfo(np.float32).eps)
    tol = 64 * eps * 2.0  # ROUNDING eps (|g| + S), g = S = 1
    autograd = grads("autograd", 1.0)
    numeric = grads("numeric", 1.0 + 0.002 * (tol + 4e-9), 1e-9, "float64")
    manual = grads("manual", 1.0 + 0.97 * 2 * tol)
    # manual-numeric: |0.97 * 2 tol - 0.002 (tol + 4e-9)| over (tol + 4e-9): about 1.9
    r = judge_input("x", [manual, autograd, numeric], "float32", 1.0)
    ratios = {p.name: round(p.ratio, 2) for p in r.pairs}
    assert ratios["manual-numeric"] > 1 and ratios["manual-autograd"] < 1 and ratios["autograd-numeric"] < 0.01
    assert (r.verdict, r.odd_one_out) == ("fail", "manual")
    assert "likely odd one out" in r.reason


def test_a_formula_off_by_one_part_in_a_million_is_caught_inside_a_pessimistic_bound(tmp_path: Path) -> None:
    # (x - 1)^5 expanded at x = 1.01: the backward's terms cancel from 80 to 5e-8, so its
    # first-order rounding bound (about 1e-13) is 2x the bug (5e-14), while the rounding it
    # really commits is 4e-15. The referee evaluates the formula exactly and sees the bug.
    text = POLY5.replace("x = 1.001", "x = 1.01").replace("+ 5)", "+ 5) * (1 + 1e-6)")
    result = check_case(load_case(_case(tmp_path, text)), RunOptions())
    assert (result.verdict, result.odd_one_out) == ("fail", "manual"), result.reason
    referee = result.inputs[0].referee
    assert referee is not None and referee.digits == 50 and "manual" in referee.wrong
    assert "its formula, evaluated exactly, is not the derivative" in result.reason


def test_autograd_overflowing_in_float32_is_judged_without_it(tmp_path: Path) -> None:
    # torch's float32 division backward divides by q * q, which underflows to 0 here: autograd
    # is -inf where its float64 rerun is finite. The manual backward avoids it, and passes.
    text = """
        name = "lorentzian_tiny"
        output = "f"
        [inputs]
        x = [1e-16, 1e-15, 1e-14]
        [constants]
        c = 1e-30
        [forward]
        program = '''
        q = x * x + c
        f = sum(x / q)
        '''
        [backward]
        program = "dx = df * ((c - x * x) / q) / q"
    """
    result = check_case(load_case(_case(tmp_path, text)), RunOptions(dtype="float32"))
    assert result.verdict == "pass", result.reason
    assert result.inputs[0].overflow == {"autograd": 3}
    # and a wrong manual gradient there is still manual's fault, not "manual and autograd"'s
    flipped = text.replace(
        'program = "dx = df * ((c - x * x) / q) / q"', 'program = "dx = -(df * ((c - x * x) / q) / q)"'
    )
    wrong = check_case(load_case(_case(tmp_path, flipped)), RunOptions(dtype="float32"))
    assert (wrong.verdict, wrong.odd_one_out) == ("fail", "manual"), wrong.reason


POLY5_AT = """
    name = "poly5_expanded_{x}"
    output = "f"
    [inputs]
    x = {x}
    [forward]
    program = "f = x ** 5 - 5 * x ** 4 + 10 * x ** 3 - 10 * x ** 2 + 5 * x - 1"
    [backward]
    program = "dx = df * (5 * x ** 4 - 20 * x ** 3 + 30 * x ** 2 - 20 * x + 5){bug}"
"""


@pytest.mark.parametrize("x", [0.9952, 0.9953, 0.995325])
def test_a_formula_off_by_1e_6_is_caught_where_the_other_sources_are_too_noisy_to_tell(
    tmp_path: Path, x: float
) -> None:
    """(x - 1)^5 expanded, near x = 1: autograd and numeric cancel as badly as the formula, so
    a manual gradient 1e-6 off (far above its own rounding here: the expanded derivative is
    5 (x - 1)^4, about 1e-9, computed to about 1e-16) sat within their disagreement and passed.
    The referee is now asked where the manual source is further from the others than its own
    measured rounding (cheaply, this program is one statement), and it names the formula."""
    right = check_case(load_case(_case(tmp_path, POLY5_AT.format(x=x, bug=""))), RunOptions())
    assert right.verdict == "pass", right.reason
    wrong = check_case(load_case(_case(tmp_path, POLY5_AT.format(x=x, bug=" * (1 + 1e-6)"))), RunOptions())
    assert (wrong.verdict, wrong.odd_one_out) == ("fail", "manual"), wrong.reason
    assert "referee" in wrong.inputs[0].reason
