"""The layer library (cases/layers/): every layer passes three ways in float64 and float32, and a
typical bug planted in each layer's backward makes the run fail with manual as the odd one out."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

import gradcheck_suite.naive_layers
from gradcheck_suite import RunOptions, Trust, check_case, load_case, run

LAYERS = Path(__file__).resolve().parent.parent / "cases" / "layers"
NAMES = sorted(p.stem for p in LAYERS.glob("*.toml"))

# layer -> (text in the case file's backward, the same line with a typical bug)
PROGRAM_BUGS: dict[str, tuple[str, str]] = {
    "affine": ("dx = reshape(dout @ w.T, shape(x))", "dx = reshape(dout @ w, shape(x))"),  # missing transpose
    "relu": ("dx = where(x > 0, dout, 0)", "dx = where(x > 0, 1, 0)"),  # upstream dropped
    "leaky_relu": ("dx = where(x > 0, dout, alpha * dout)", "dx = where(x > 0, dout, 0)"),  # leak dropped
    "sigmoid": ("dx = out * (1 - out) * dout", "dx = out * dout"),  # derivative's (1 - out) dropped
    "tanh": ("dx = (1 - out ** 2) * dout", "dx = (1 - out) * dout"),  # square forgotten
    "softmax_cross_entropy": (  # softmax normalized over the wrong axis
        "sum(exp(shifted), axis=1, keepdims=True)",
        "sum(exp(shifted), axis=0, keepdims=True)",
    ),
    "svm_hinge": ("sum(positive, axis=1, keepdims=True)", "sum(positive, axis=0, keepdims=True)"),  # wrong axis
    "batchnorm": (" - xhat * mean(dxhat * xhat, axis=0)", ""),  # the variance term of dx dropped
    "layernorm": ("mean(dxhat, axis=1, keepdims=True)", "mean(dxhat, axis=0, keepdims=True)"),  # wrong axis
    "dropout": ("dx = dout * mask", "dx = where(u < p, dout, 0)"),  # the 1/p scaling forgotten
    "rnn_step": ("dprev_h = da @ Wh.T", "dprev_h = da @ Wh"),  # missing transpose
    "lstm_step": ("dc = dnext_c + dnext_h", "dc = dnext_h"),  # the cell's own upstream dropped
}
# layer -> (line in gradcheck_suite/naive_layers.py, the same line with a typical bug)
MODULE_BUGS: dict[str, tuple[str, str]] = {
    "conv_naive": (  # `+=` turned into `=`: overlapping windows overwrite each other's gradient
        "dxp[:, :, rows, cols] += np.tensordot(d, w, axes=([1], [0]))",
        "dxp[:, :, rows, cols] = np.tensordot(d, w, axes=([1], [0]))",
    ),
    "max_pool_naive": (  # row and column of the argmax swapped
        "dx[nn, cc, hs + a, ws + k] += dout[nn, cc, i, j]",
        "dx[nn, cc, hs + k, ws + a] += dout[nn, cc, i, j]",
    ),
}


def test_every_layer_has_a_planted_bug() -> None:
    assert len(NAMES) == 14
    assert sorted({**PROGRAM_BUGS, **MODULE_BUGS}) == NAMES


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_layer_library_passes_three_ways(dtype: str) -> None:
    report = run([LAYERS], RunOptions(dtype=dtype))
    assert report.errors == []
    assert {r.case.name: r.verdict for r in report.results} == {n: "pass" for n in NAMES}
    assert all(set(r.sources) == {"manual", "autograd", "numeric"} for r in report.results)
    assert report.exit_code == 0


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"the planted bug's anchor `{old}` must occur exactly once"
    return text.replace(old, new)


@pytest.mark.parametrize("layer", sorted(PROGRAM_BUGS))
def test_planted_bug_in_a_program_backward_fails_with_manual_odd(layer: str, tmp_path: Path) -> None:
    old, new = PROGRAM_BUGS[layer]
    path = tmp_path / f"{layer}.toml"
    path.write_text(_replace_once((LAYERS / f"{layer}.toml").read_text(), old, new))
    result = check_case(load_case(path), RunOptions())
    assert (result.verdict, result.odd_one_out) == ("fail", "manual"), result.reason


@pytest.mark.parametrize("layer", sorted(MODULE_BUGS))
def test_planted_bug_in_a_numpy_callable_fails_with_manual_odd(
    layer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = MODULE_BUGS[layer]
    module = f"buggy_layers_{uuid.uuid4().hex[:8]}"
    source = Path(gradcheck_suite.naive_layers.__file__).read_text()
    (tmp_path / f"{module}.py").write_text(_replace_once(source, old, new))
    monkeypatch.syspath_prepend(str(tmp_path))
    case_text = (LAYERS / f"{layer}.toml").read_text().replace("gradcheck_suite.naive_layers:", f"{module}:")
    path = tmp_path / f"{layer}.toml"
    path.write_text(case_text)
    result = check_case(load_case(path, trust=Trust.from_settings([f"{module}.*"])), RunOptions())
    assert (result.verdict, result.odd_one_out) == ("fail", "manual"), result.reason
