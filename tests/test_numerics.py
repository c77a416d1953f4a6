"""The judging rules of issue 3: error-bounded verdicts, attribution, kinks, sweeps."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from gradcheck_suite import RunOptions, check_case, load_case
from gradcheck_suite._compare import attribute, judge_input
from gradcheck_suite._sources import Gradients
from gradcheck_suite._sources.numeric import NumericSettings, numeric_gradients
from gradcheck_suite._sources.numeric.steps import initial_steps

from .conftest import CASES, DATA

SEEDS = ["product", "sum_times", "sigmoid_neuron", "compound_sigmoid", "matmul"]


def scale_manual(text: str, factor: str) -> str:
    """Append `d<input> = d<input> * factor` for every input to the backward program."""
    head, _, tail = text.partition("[backward]")
    prog_start = tail.index('"""') + 3
    prog_end = tail.index('"""', prog_start)
    inputs = re.findall(r"^(\w+) = ", text.split("[inputs]")[1].split("[")[0], re.M)
    extra = "".join(f"d{n} = d{n} * {factor}\n" for n in inputs)
    return head + "[backward]" + tail[:prog_end] + extra + tail[prog_end:]


@pytest.mark.parametrize("name", SEEDS)
def test_a_gradient_one_part_in_a_million_off_fails_in_float64(name: str, seed_copy) -> None:
    case = load_case(seed_copy(name, lambda t: scale_manual(t, "(1 + 1e-6)")))
    result = check_case(case, RunOptions(dtype="float64"))
    assert result.verdict == "fail"
    assert result.odd_one_out == "manual"


@pytest.mark.parametrize("name", SEEDS)
def test_a_gradient_one_part_in_a_thousand_off_fails_in_float32(name: str, seed_copy) -> None:
    case = load_case(seed_copy(name, lambda t: scale_manual(t, "(1 + 1e-3)")))
    result = check_case(case, RunOptions(dtype="float32"))
    assert result.verdict == "fail"
    assert result.odd_one_out == "manual"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", SEEDS)
def test_correct_gradients_never_fail_across_a_sweep(name: str, dtype: str) -> None:
    # 1,000 points per case and dtype run in benchmarks/numerics.py; 60 keep CI quick.
    result = check_case(load_case(CASES / f"{name}.toml"), RunOptions(dtype=dtype, samples=60))
    assert result.samples is not None
    assert result.samples.counts["fail"] == 0
    assert result.samples.counts["inconclusive"] == 0
    assert result.verdict == "pass"
    assert result.reason == "61 of 61 points pass, 0 fail, 0 inconclusive; all sources agree"


@pytest.mark.parametrize("method", ["central", "richardson", "complex-step"])
def test_each_method_bounds_its_own_error(method: str) -> None:
    case = load_case(CASES / "compound_sigmoid.toml")
    exact = {"x": 2.0595697955721652, "y": 1.5922327514838093}  # the analytic gradient
    g = numeric_gradients(case, case.inputs, NumericSettings(method=method))
    assert g.method == method
    assert g.error is not None
    for k, v in exact.items():
        true_error = abs(float(g.values[k]) - v)
        assert true_error <= float(g.error[k])
        # and the bound is informative. Richardson's bounds the fourth-order r1b, not the
        # sixth-order value it returns (see _differences), hence 1e-8 where the value itself is good to 1e-12.
        assert float(g.error[k]) < {"central": 1e-8, "richardson": 1e-8, "complex-step": 1e-13}[method]


def test_auto_takes_the_complex_step_for_analytic_programs_and_richardson_otherwise() -> None:
    smooth = load_case(CASES / "compound_sigmoid.toml")
    kinked = load_case(DATA / "kink_relu.toml")
    assert numeric_gradients(smooth, smooth.inputs, NumericSettings()).method == "complex-step"
    assert numeric_gradients(kinked, kinked.inputs, NumericSettings()).method == "richardson"


def test_complex_step_refuses_a_program_with_kinks() -> None:
    kinked = load_case(DATA / "kink_relu.toml")
    with pytest.raises(Exception, match="complex step needs an analytic forward program"):
        numeric_gradients(kinked, kinked.inputs, NumericSettings(method="complex-step"))


def test_an_input_on_a_kink_is_inconclusive_not_fail(cli) -> None:
    code, out, _ = cli("run", str(DATA / "kink_relu.toml"), "-v")
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("kink_relu"))
    assert "inconclusive (kink)" in row
    assert "kink: the perturbation crosses a point with no derivative at element(s) []" in out
    # y is smooth, and all three sources agree on it
    assert re.search(r"^\s+y\s.*pass$", out, re.M)


@pytest.mark.parametrize("x", [1e-9, -3e-6, 1e-15])
def test_a_point_near_a_kink_is_decided(x: float) -> None:
    # relu's kink at 0 lies within the first step of a point 1e-9 away only where steps are
    # relative to max(|x|, 1); here the step is relative to the input's own scale, and the
    # ladder shrinks below the distance to the kink wherever it is within reach
    case = load_case(DATA / "kink_relu.toml")
    point = {"x": np.array(x), "y": np.array(0.5)}
    g = numeric_gradients(case, point, NumericSettings())
    assert g.kinks is not None and not g.kinks["x"] and not g.kinks["y"]
    exact = 2.5 if x > 0 else 0.5  # 2 [x > 0] + y
    assert g.error is not None and abs(float(g.values["x"]) - exact) <= float(g.error["x"]) < 1e-9


def test_a_point_on_a_kink_is_a_kink() -> None:
    case = load_case(DATA / "kink_relu.toml")
    g = numeric_gradients(case, {"x": np.array(0.0), "y": np.array(0.5)}, NumericSettings())
    assert g.kinks is not None and bool(g.kinks["x"]) and not bool(g.kinks["y"])


def test_away_from_the_kink_the_case_passes() -> None:
    case = load_case(DATA / "kink_relu.toml")
    for x in (0.3, -0.3):
        result = check_case(case, RunOptions())
        point = {"x": np.array(x), "y": np.array(0.5)}
        g = numeric_gradients(case, point, NumericSettings())
        assert g.kinks is not None and not g.kinks["x"].any()
    assert result.verdict == "inconclusive"  # the case file's own point sits on the kink


def _grads(source: str, x: float, err: float | None = None) -> Gradients:
    e = None if err is None else {"x": np.array(err)}
    k = None if err is None else {"x": np.array(False)}
    return Gradients(source, {"x": np.array(x)}, "float64", error=e, kinks=k, method="test")


@pytest.mark.parametrize(
    "manual, autograd, numeric, verdict, odd",
    [
        (1.0, 1.0, 1.0, "pass", None),
        (1.1, 1.0, 1.0, "fail", "manual"),
        (1.0, 1.1, 1.0, "fail", "autograd"),
        (1.0, 1.0, 1.1, "fail", "numeric"),
        (1.0, 1.1, 1.2, "fail", None),
    ],
)
def test_three_way_attribution(manual: float, autograd: float, numeric: float, verdict: str, odd: str | None) -> None:
    srcs = [_grads("manual", manual), _grads("autograd", autograd), _grads("numeric", numeric, 1e-12)]
    r = judge_input("x", srcs, "float64", 1.0)
    assert (r.verdict, r.odd_one_out) == (verdict, odd)


def test_a_numeric_estimate_too_coarse_to_separate_two_analytic_sources_names_no_one() -> None:
    # manual and autograd disagree beyond rounding, numeric agrees with both within its error
    srcs = [_grads("manual", 1.0), _grads("autograd", 1.0 + 1e-9), _grads("numeric", 1.0, 1e-6)]
    r = judge_input("x", srcs, "float64", 1.0)
    assert r.verdict == "fail" and r.odd_one_out is None
    assert "no single one" in r.reason


def test_without_a_manual_source_a_disagreement_names_no_one() -> None:
    r = judge_input("x", [_grads("autograd", 1.0), _grads("numeric", 2.0, 1e-12)], "float64", 1.0)
    assert r.verdict == "fail" and r.odd_one_out is None
    assert "a third source would tell" in r.reason


def test_an_unusable_numeric_estimate_is_inconclusive_when_nothing_else_decides() -> None:
    r = judge_input("x", [_grads("autograd", 1.0), _grads("numeric", 1.0, 10.0)], "float64", 1.0)
    assert r.verdict == "inconclusive"
    assert "too large to decide" in r.reason


def test_attribute_needs_the_other_pair_to_agree() -> None:
    pair = lambda a, b: frozenset({a, b})  # noqa: E731
    present = ["manual", "autograd", "numeric"]
    assert attribute({pair("manual", "autograd"), pair("manual", "numeric")}, present) == "manual"
    assert attribute({pair("manual", "autograd")}, present) is None
    assert attribute({pair("manual", "autograd"), pair("manual", "numeric")}, ["manual", "autograd"]) is None


def test_float32_imprecision_of_a_correct_formula_is_reported_not_failed(tmp_path: Path) -> None:
    # (1 - f) * f loses most of its digits in float32 once f rounds near 1 (dot = 12 here):
    # the formula is right, so the verdict passes and the precision loss is reported.
    case = load_case(CASES / "sigmoid_neuron.toml")
    point = {"w": np.array([2.0, 2.0, 2.0]), "x": np.array([2.0, 2.0, 2.0])}
    text = (CASES / "sigmoid_neuron.toml").read_text()
    text = re.sub(r"w = \[.*\]", "w = [2.0, 2.0, 2.0]", text)
    text = re.sub(r"x = \[-1.0.*\]", "x = [2.0, 2.0, 2.0]", text)
    text = text.split("[expect]")[0]
    path = tmp_path / "neuron.toml"
    path.write_text(text)
    case = load_case(path)
    assert dict(case.inputs)["w"].tolist() == point["w"].tolist()
    result = check_case(case, RunOptions(dtype="float32"))
    assert result.verdict == "pass"
    assert result.inputs[0].precision["manual"] > 1e-3
    assert result.inputs[0].precision["autograd"] < 1e-5


@pytest.mark.parametrize("fraction", [0.02, 0.2, 0.3, 4 / 9, 9 / 19, 0.6, 0.9, 0.99])
@pytest.mark.parametrize("side", [1.0, -1.0])
def test_a_kink_at_any_distance_within_the_first_step_is_stepped_past(fraction: float, side: float) -> None:
    # x[0] is put near relu's kink, within its first step h (relative to its input's scale,
    # which the second element, 1, sets). A kink at any distance in
    # (0, h] breaks the smooth model of the first ladder (at 4h/9 and 9h/19 one window alone
    # goes blind; the other does not), and the ladders below it decide the slope exactly.
    text = """
name = "relu2"
output = "f"
[inputs]
x = [0.0, 1.0]
y = 0.5
[forward]
program = "f = sum(2 * maximum(0, x) + x * y)"
[backward]
program = """
    text += '"""\ndx = where(x > 0, 2 * df, 0) + y * df\ndy = sum(x) * df\n"""\n'
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "k.toml"
        path.write_text(text)
        case = load_case(path)
    # the first step of x[0]: relative to its input's scale (the rms of [~0, 1])
    h = float(initial_steps(np.array([[0.0, 1.0]]), np.array([0]), "richardson")[0, 0])
    point = {"x": np.array([side * fraction * h, 1.0]), "y": np.array(0.5)}
    assert float(initial_steps(point["x"][None, :], np.array([0]), "richardson")[0, 0]) == h
    g = numeric_gradients(case, point, NumericSettings())
    assert g.kinks is not None and not g.kinks["x"].any()
    exact = 2.5 if side > 0 else 0.5
    # a kink at 0.02 h takes the ladders down to steps near 1e-6, where phi's rounding noise
    # (about 1e-15) over the step is about 1e-9: informative, and honest
    assert g.error is not None and abs(float(g.values["x"][0]) - exact) <= float(g.error["x"][0]) < 1e-8


def test_smooth_callables_are_not_mistaken_for_kinks() -> None:
    # a callable gets Richardson with kink detection; its curvature must not read as a kink,
    # in full mode or along the long directions of projection mode
    import torch

    from gradcheck_suite import check

    x = torch.linspace(-1.5, 2.0, 48, dtype=torch.float64).reshape(8, 6)

    def fn(x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ x.T).sum()

    def backward(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        s = 1 - torch.tanh(x @ x.T) ** 2
        return g * (s + s.T) @ x

    for mode in ("full", "projection"):
        result = check(fn, {"x": x}, backward=backward, mode=mode)
        assert result.verdict == "pass", result.explain()
        wrong = check(fn, {"x": x}, backward=lambda g, x: backward(g, x) * 1.01, mode=mode)
        assert (wrong.verdict, wrong.odd_one_out) == ("fail", "manual")
