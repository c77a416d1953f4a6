"""The high-precision referee against closed forms computed independently with mpmath."""

from __future__ import annotations

from pathlib import Path

import mpmath
import numpy as np
import pytest

from gradcheck_suite import CaseError, load_case
from gradcheck_suite._backends import FUNCTIONS, NumpyBackend
from gradcheck_suite._case import Case
from gradcheck_suite._sources.manual import manual_gradients, run_programs
from gradcheck_suite._sources.numeric import NumericSettings, numeric_gradients
from gradcheck_suite._sources.numeric.referee import (
    MpmathBackend,
    referee_available,
    referee_backward,
    referee_gradient,
    referee_kink_distance,
)
from gradcheck_suite._trust import Trust

from .conftest import CASES

mp = mpmath.MPContext()
mp.dps = 80  # closed forms 30 digits finer than the referee


def write_case(tmp_path: Path, forward: str, backward: str, inputs: str, extra: str = "") -> Case:
    path = tmp_path / "c.toml"
    path.write_text(
        f'name = "c"\noutput = "f"\n{extra}\n[inputs]\n{inputs}\n'
        f'[forward]\nprogram = """\n{forward}\n"""\n[backward]\nprogram = """\n{backward}\n"""\n'
    )
    return load_case(path)


def close(referee_value: object, truth: object, rel: float) -> bool:
    return bool(abs(mp.mpf(referee_value) - mp.mpf(truth)) <= rel * abs(mp.mpf(truth)))


def test_every_function_of_the_language_has_an_mpmath_entry() -> None:
    assert set(FUNCTIONS) <= set(MpmathBackend().functions)


def test_tanh_derivative_at_20_where_float64_has_nothing_left(tmp_path: Path) -> None:
    case = write_case(tmp_path, "t = tanh(x)\nf = t", "dx = df * (1 - t * t)", "x = 20.0")
    truth = 1 / mp.cosh(20) ** 2  # 1 - tanh^2, about 1.7e-17
    r = referee_gradient(case, case.inputs)
    # phi is 1 and its slope 1.7e-17: a difference at 50 digits keeps about 33 - 17 digits
    assert abs(mp.mpf(r.exact["x"][()]) - truth) <= r.error["x"] < 1e-16 * float(truth)
    assert not r.kinks["x"]
    # the float64 formula rounds tanh(20) to 1 and returns 0; at 50 digits it is exact
    assert manual_gradients(case, case.inputs, "float64").values["x"] == 0.0
    b = referee_backward(case, case.inputs)
    assert close(b.exact["x"][()], truth, 1e-30)  # 1 - t * t cancels 17 of the 50 digits


def test_expanded_fifth_power_near_one(tmp_path: Path) -> None:
    # (x - 1)^5 written out: near x = 1 the float64 forward is pure rounding noise
    forward = "f = x ** 5 - 5 * x ** 4 + 10 * x ** 3 - 10 * x ** 2 + 5 * x - 1"
    backward = "dx = df * (5 * x ** 4 - 20 * x ** 3 + 30 * x ** 2 - 20 * x + 5)"
    x = 1 + 2.0**-20
    case = write_case(tmp_path, forward, backward, f"x = {x!r}")
    truth = 5 * (mp.mpf(x) - 1) ** 4  # 5 * 2^-80, exactly
    r = referee_gradient(case, case.inputs)
    err = abs(mp.mpf(r.exact["x"][()]) - truth)
    assert err <= r.error["x"]
    assert r.error["x"] < 1e-6 * float(truth)  # 50 digits leave ~9 after the cancellation
    num = numeric_gradients(case, case.inputs, NumericSettings())
    assert abs(num.values["x"] - float(truth)) > 0.5 * float(truth)  # float64 keeps no digit of it


def test_logsumexp_with_logits_near_100(tmp_path: Path) -> None:
    z = [100.0, 100.5, 99.25, 101.0]
    case = write_case(tmp_path, "f = logsumexp(z)", "dz = df * exp(z - f)", f"z = {z}")
    lse = mp.log(sum(mp.exp(mp.mpf(v)) for v in z))
    r = referee_gradient(case, case.inputs)
    b = referee_backward(case, case.inputs)
    for i, v in enumerate(z):
        truth = mp.exp(mp.mpf(v) - lse)
        assert close(r.exact["z"][i], truth, 1e-30)
        assert close(b.exact["z"][i], truth, 1e-45)


def test_matmul_with_an_upstream(tmp_path: Path) -> None:
    extra = 'upstream = { random = "normal", shape = [3, 2], seed = 5 }'
    inputs = 'W = { random = "normal", shape = [3, 4], seed = 1 }\nX = { random = "normal", shape = [4, 2], seed = 2 }'
    case = write_case(tmp_path, "f = W @ X", "dW = df @ X.T\ndX = W.T @ df", inputs, extra)
    U, W, X = (np.asarray(a, dtype=np.float64) for a in (case.upstream, case.inputs["W"], case.inputs["X"]))
    r = referee_gradient(case, case.inputs)
    for i in range(3):
        for k in range(4):
            truth = mp.fsum(mp.mpf(U[i, j]) * mp.mpf(X[k, j]) for j in range(2))
            assert abs(r.exact["W"][i, k] - truth) <= max(r.error["W"][i, k], 1e-45)
            assert r.error["W"][i, k] < 1e-28 * max(1.0, abs(float(truth)))


@pytest.mark.parametrize(
    ("forward", "backward", "x", "kink", "slope"),
    [
        ("f = maximum(0, x)", "dx = where(x > 0, df, 0)", 0.0, True, None),
        ("f = maximum(0, x)", "dx = where(x > 0, df, 0)", -0.005, False, 0.0),
        ("f = maximum(0, x)", "dx = where(x > 0, df, 0)", 1e-300, False, 1.0),
        ("f = abs(x - 0.1)", "dx = df * sign(x - 0.1)", 0.1, True, None),
        # differentiable, only the second derivative jumps: never a kink
        ("f = where(x > 0, x, exp(x) - 1)", "dx = df * where(x > 0, 1, exp(x))", 0.0, False, 1.0),
        ("f = x / (1 + abs(x))", "dx = df / (1 + abs(x)) ** 2", 0.0, False, 1.0),
        ("f = x * abs(x)", "dx = df * 2 * abs(x)", 0.0, False, 0.0),
        # smooth with a vanishing slope: the one-sided values differ by 12 h^3 against a size
        # of 6 h^3, and only a smaller step shows the gap is no jump
        ("f = (x - 1) ** 4", "dx = df * 4 * (x - 1) ** 3", 1.0, False, 0.0),
    ],
)
def test_kinks_are_decided_by_a_step_of_1e_minus_17(
    tmp_path: Path, forward: str, backward: str, x: float, kink: bool, slope: float | None
) -> None:
    case = write_case(tmp_path, forward, backward, f"x = {x!r}")
    r = referee_gradient(case, case.inputs)
    assert bool(r.kinks["x"]) is kink
    if slope is not None:
        assert abs(mp.mpf(r.exact["x"][()]) - slope) <= r.error["x"]
        # far below float64's rounding; at a second-derivative jump the bound is O(h) = 1e-17
        assert r.error["x"] < 1e-16


def test_the_referee_tells_a_lossy_correct_formula_from_a_wrong_one(tmp_path: Path) -> None:
    right = write_case(tmp_path, "t = tanh(x)\nf = sum(t)", "dx = df * (1 - t * t)", "x = [19.5, 25.0, -30.0, 0.3]")
    truth = referee_gradient(right, right.inputs)
    good = referee_backward(right, right.inputs)
    # within the differences' error bars (at x = 25 the slope is 1e-22 of phi's size: the
    # difference keeps 15 digits of it at 50)
    assert np.all(np.abs(good.values["x"] - truth.values["x"]) <= truth.error["x"])
    wrong = write_case(tmp_path, "t = tanh(x)\nf = sum(t)", "dx = df * (1 - t)", "x = [19.5, 25.0, -30.0, 0.3]")
    bad = referee_backward(wrong, wrong.inputs)
    assert np.all(np.abs(bad.values["x"] - truth.values["x"]) > 1e6 * truth.error["x"])


def test_only_the_chosen_elements_are_differentiated(tmp_path: Path) -> None:
    case = write_case(
        tmp_path, "f = sum(x * x * y)", "dx = df * 2 * x * y\ndy = df * x * x", "x = [1.0, 2.0, 3.0]\ny = 0.5"
    )
    r = referee_gradient(case, case.inputs, elements={"x": [2]})
    assert np.isnan(r.values["x"][:2]).all() and r.values["x"][2] == 3.0
    assert np.isnan(r.values["y"]) and r.exact["y"][()] is None


@pytest.mark.parametrize(
    "path", sorted(p for p in (CASES / "layers").glob("*.toml") if "callable" not in p.read_text())
)
def test_layer_programs_agree_with_numpy_and_with_their_backward(path: Path) -> None:
    # every layer program of the library on mpmath: the forward matches numpy's float64 to
    # rounding, and the backward at 50 digits matches the forward's derivative at 50 digits
    case = load_case(path)
    be = MpmathBackend()
    env = {k: be.asarray(v) for k, v in case.inputs.items()}
    exact = case.forward.run(env, be)
    floats = case.forward.run({k: np.asarray(v) for k, v in case.inputs.items()}, NumpyBackend("float64"))
    for o in case.outputs:
        hi = np.vectorize(be.to_float, otypes=[float])(be._obj(exact[o]))
        assert np.allclose(hi, floats[o], rtol=1e-12, atol=1e-12)
    r = referee_gradient(case, case.inputs)
    b = referee_backward(case, case.inputs)
    for name in case.inputs:
        assert not r.kinks[name].any()  # the library's points are away from its kinks
        scale = np.max(np.abs(r.values[name])) + 1e-300
        assert np.max(np.abs(r.values[name] - b.values[name])) <= 1e-25 * scale + np.max(r.error[name])


def test_callables_are_refused_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        'name = "c"\noutput = "out"\n[inputs]\nx = [0.3, -1.2]\n[forward]\ncallable = "torch.tanh"\n'
        '[backward]\nprogram = "dx = (1 - out * out) * dout"\n'
    )
    case = load_case(path, trust=Trust.from_settings(["torch.tanh"]))
    assert referee_available(case) is not None
    with pytest.raises(CaseError, match="the referee needs programs"):
        referee_gradient(case, case.inputs)


def test_inputs_and_literals_are_converted_exactly(tmp_path: Path) -> None:
    case = write_case(tmp_path, "f = 0.1 * x", "dx = 0.1 * df", "x = 0.1")
    b = referee_backward(case, case.inputs)
    assert b.exact["x"][()] == mp.mpf(0.1)  # the double nearest 0.1, not 1/10
    values = run_programs(case, case.inputs)
    assert float(values["f"]) == 0.1 * 0.1


def test_a_domain_error_is_located(tmp_path: Path) -> None:
    case = write_case(tmp_path, "f = log(x)", "dx = df / x", "x = -1.0")
    with pytest.raises(CaseError, match="log of a negative number") as info:
        referee_gradient(case, case.inputs)
    assert info.value.line is not None


def test_too_few_digits_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 20 digits"):
        MpmathBackend(10)


@pytest.mark.parametrize(
    ("forward", "backward", "x", "radius", "distance"),
    [
        ("f = maximum(0, x)", "dx = where(x > 0, df, 0)", -0.005, 0.01, 0.005),
        ("f = maximum(0, x)", "dx = where(x > 0, df, 0)", -0.005, 0.004, None),  # out of reach
        ("f = maximum(0, x)", "dx = where(x > 0, df, 0)", 1e-9, 1e-8, 1e-9),
        ("f = abs(x - 0.5)", "dx = df * sign(x - 0.5)", 0.4995, 0.01, 0.0005),
        # a switch of branch where only the second derivative jumps is no kink
        ("f = where(x > 0, x, exp(x) - 1)", "dx = df * where(x > 0, 1, exp(x))", -0.005, 0.01, None),
        ("f = x * abs(x)", "dx = df * 2 * abs(x)", 3e-4, 0.01, None),
        (
            "f = where(abs(x) <= 1, 0.5 * x * x, abs(x) - 0.5)",
            "dx = df * where(abs(x) <= 1, x, sign(x))",
            0.95,
            0.2,
            None,
        ),
    ],
)
def test_the_distance_to_the_nearest_true_kink(
    tmp_path: Path, forward: str, backward: str, x: float, radius: float, distance: float | None
) -> None:
    case = write_case(tmp_path, forward, backward, f"x = {x!r}")
    found = referee_kink_distance(case, case.inputs, "x", 0, radius)
    if distance is None:
        assert found is None
    else:
        assert found is not None and found == pytest.approx(distance, rel=1e-12)


def test_the_distance_to_a_near_tie_of_max(tmp_path: Path) -> None:
    case = write_case(tmp_path, "f = max(x)", "dx = where(x == f, df, 0)", "x = [1.0008, 1.000800000001, 0.9995]")
    gap = 1.000800000001 - 1.0008
    assert referee_kink_distance(case, case.inputs, "x", 0, 1e-11) == pytest.approx(gap, rel=1e-9)
    # 0.9995 ties the max 1.3e-3 above itself
    assert referee_kink_distance(case, case.inputs, "x", 2, 1e-3) is None
    assert referee_kink_distance(case, case.inputs, "x", 2, 1e-2) == pytest.approx(1.000800000001 - 0.9995)


def test_the_referee_is_asked_only_what_it_can_answer_in_time(tmp_path: Path) -> None:
    """A 64x64 matmul made the referee recompute 266,240 operations per evaluation in mpmath
    about two merely suspicious elements: 12 s for a check that passes, against 2.4 s for
    torch's slow mode. Suspicion is now asked only where it is cheap; a dispute still is."""
    from gradcheck_suite._engine import REFEREE_OPS, _referee
    from gradcheck_suite._sources.numeric.referee import referee_cost

    rng = np.random.default_rng(0)
    big = {"W": rng.normal(size=(40, 40)), "X": rng.normal(size=(40, 40))}
    case = write_case(tmp_path, "f = W @ X", "dW = df @ X.T\ndX = W.T @ df", "W = 0.0\nX = 0.0")
    assert referee_cost(case, big) == 40 * 40 * 40 + 40 * 40  # multiply-adds, then the result
    assert 8 * referee_cost(case, big) > REFEREE_OPS["suspicious"]
    budget = [16]
    decide = _referee(case, big, "W", budget=budget)
    assert decide is not None
    assert decide(np.array([0, 1]), "suspicious") is None and budget == [16]  # not asked, not counted
    answer = decide(np.array([5]), "disputed")
    assert answer is not None and len(answer.truth) == 1
    assert abs(answer.truth[0] - (np.ones((40, 40)) @ big["X"].T).reshape(-1)[5]) < 1e-12
    small = {"W": rng.normal(size=(4, 4)), "X": rng.normal(size=(4, 4))}
    decide = _referee(case, small, "W", budget=budget)
    assert decide is not None and decide(np.array([0, 1]), "suspicious") is not None and budget == [15]


def test_correct_seed_cases_do_not_send_their_last_bits_to_the_referee(monkeypatch: pytest.MonkeyPatch) -> None:
    """A manual matmul one or two units of rounding from autograd and the complex step is not
    "doubtful": asking about it cost every default run mpmath's import and a 50-digit matmul."""
    from gradcheck_suite import RunOptions, _engine, check_case

    asked: list[tuple[str, str, str]] = []
    real = _engine._referee

    def spy(case: Case, point: object, name: str, *rest: object) -> object:
        decide = real(case, point, name, *rest)  # type: ignore[arg-type]
        if decide is None:
            return None

        def asking(flat: np.ndarray, what: str) -> object:
            asked.append((case.name, name, what))
            return decide(flat, what)

        return asking

    monkeypatch.setattr(_engine, "_referee", spy)
    for path in sorted(CASES.glob("*.toml")):
        assert check_case(load_case(path), RunOptions()).verdict == "pass"
    assert asked == []
