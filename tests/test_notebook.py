"""Every number the source notebook (shared/seed) prints, checked against each source.

The values are written here, not read from the case files' [expect] tables, so that a case
file edited by mistake fails these tests.
"""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck_suite import RunOptions, check_case, load_case
from gradcheck_suite._sources.autograd import autograd_gradients
from gradcheck_suite._sources.manual import run_programs
from gradcheck_suite._sources.numeric import NumericSettings, numeric_gradients

from .conftest import CASES


def case(name: str):
    return load_case(CASES / f"{name}.toml")


def printed(value: float, digits: int):
    """Matches a number printed with `digits` decimals."""
    return pytest.approx(value, abs=0.5 * 10.0**-digits)


def exact_repr(value: float) -> str:
    return repr(float(value))


def all_sources(name: str, dtype: str = "float64"):
    c = case(name)
    manual = run_programs(c, c.inputs, dtype)
    auto = autograd_gradients(c, c.inputs, dtype, "cpu").values
    num = numeric_gradients(c, c.inputs, NumericSettings()).values
    return manual, auto, num


def test_product_prints_minus_12_minus_3_and_4() -> None:
    manual, auto, num = all_sources("product", "float32")  # the notebook's torch.Tensor is float32
    assert float(manual["z"]) == -12
    for grads in ({"x": manual["dx"], "y": manual["dy"]}, auto, num):
        assert float(grads["x"]) == -3
        assert float(grads["y"]) == 4


def test_sum_times_prints_minus_12_minus_4_minus_4_and_3() -> None:
    manual, auto, num = all_sources("sum_times", "float32")
    assert float(manual["q"]) == 3
    assert float(manual["f"]) == -12
    for grads in ({"x": manual["dx"], "y": manual["dy"], "z": manual["dz"]}, auto, num):
        assert [float(grads[k]) for k in "xyz"] == [-4, -4, 3]


def test_sigmoid_neuron_manual_cell_to_every_printed_digit() -> None:
    manual, _, _ = all_sources("sigmoid_neuron")
    assert float(manual["dot"]) == 1  # In[14] prints 1
    assert exact_repr(manual["ddot"]) == "0.19661193324148185"
    assert [exact_repr(v) for v in manual["dx"][:2]] == ["0.3932238664829637", "-0.5898357997244456"]
    assert [exact_repr(v) for v in manual["dw"]] == [
        "-0.19661193324148185",
        "-0.3932238664829637",
        "0.19661193324148185",
    ]


def test_sigmoid_neuron_torch_cell_w_grad_and_x_grad() -> None:
    _, auto, num = all_sources("sigmoid_neuron", "float32")
    for grads in (auto, num):
        assert list(grads["w"]) == [printed(-0.1966, 4), printed(-0.3932, 4), printed(0.1966, 4)]
        assert list(grads["x"]) == [printed(0.3932, 4), printed(-0.5898, 4), printed(-0.5898, 4)]


def test_compound_sigmoid_manual_cells() -> None:
    manual, _, _ = all_sources("compound_sigmoid")
    assert exact_repr(manual["f"]) == "1.5456448841066441"
    assert exact_repr(manual["dy"]) == "1.5922327514838093"
    assert float(manual["dx"]) == printed(2.0596, 4)


def test_compound_sigmoid_torch_cells() -> None:
    manual, auto, num = all_sources("compound_sigmoid", "float32")
    # In[28]-[34]: torch prints the intermediates to 4 significant digits
    assert float(manual["sigy"]) == pytest.approx(1.7986e-2, abs=0.5e-6)
    assert float(manual["num"]) == printed(3.0180, 4)
    assert float(manual["sigx"]) == printed(0.9526, 4)
    assert float(manual["xpysqr"]) == 1
    assert float(manual["den"]) == printed(1.9526, 4)
    assert float(manual["f"]) == printed(1.5456, 4)
    for grads in (auto, num):  # In[36], In[37]
        assert float(grads["y"]) == printed(1.5922, 4)
        assert float(grads["x"]) == printed(2.0596, 4)


def test_matmul_gradients_are_dD_X_T_and_W_T_dD() -> None:
    c = case("matmul")
    W, X, dD = c.inputs["W"], c.inputs["X"], c.upstream
    assert W.shape == (5, 10) and X.shape == (10, 3) and dD is not None and dD.shape == (5, 3)
    manual, auto, num = all_sources("matmul")
    np.testing.assert_allclose(manual["dW"], dD @ X.T, rtol=0, atol=1e-15)
    np.testing.assert_allclose(manual["dX"], W.T @ dD, rtol=0, atol=1e-15)
    for grads in (auto, num):
        np.testing.assert_allclose(grads["W"], dD @ X.T, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(grads["X"], W.T @ dD, rtol=1e-13, atol=1e-14)


def test_matmul_draws_are_the_same_everywhere() -> None:
    # PCG64 with a fixed seed: these are the first numbers numpy's default_rng(0) draws.
    W = case("matmul").inputs["W"]
    assert W[0, 0] == pytest.approx(0.12573022, abs=1e-8)
    assert W[0, 1] == pytest.approx(-0.13210486, abs=1e-8)


@pytest.mark.parametrize("name", ["product", "sum_times", "sigmoid_neuron", "compound_sigmoid", "matmul"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_seed_case_passes_three_ways(name: str, dtype: str) -> None:
    result = check_case(case(name), RunOptions(dtype=dtype))
    assert result.verdict == "pass", result.reason
    assert set(result.sources) == {"manual", "autograd", "numeric"}
    assert not result.expect_failures
