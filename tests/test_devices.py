"""Devices as sources: `--device cpu,cuda`, with a fake second device where there is no GPU.

The fake device is registered as a CUDA device is described (gradcheck_suite._devices): its
tensors live on the CPU, but every source takes the path a CUDA device takes (torch tensors on
the device for the manual source too, its context entered around the analytic sources). Its
context plants a device-only bug in a kernel, as a CUDA-only bug in a custom kernel would be.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import torch

from gradcheck_suite import check
from gradcheck_suite._devices import Device, register_device, unregister_device
from gradcheck_suite._report import json_report

from .conftest import CASES

KERNEL = """\
import torch

PLANTED = False
SEEN = []


def backward(dout, x):
    SEEN.append((type(x).__name__, str(getattr(x, "dtype", ""))))
    g = 3 * x**2 * dout
    return g * 1.01 if PLANTED else g  # a bug only where PLANTED: on one device
"""

ALLOW = ("--allow-callable", "devkernel.*")  # case files run only allowed callables (docs/trust.md)

CASE = """\
name = "cube"
output = "out"
upstream = { random = "normal", shape = [3, 4], seed = 2 }

[inputs]
x = { random = "normal", shape = [3, 4], seed = 1 }

[forward]
program = "out = x ** 3"

[backward]
callable = "devkernel:backward"
args = ["dout", "x"]
array = "torch"
"""


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    (tmp_path / "devkernel.py").write_text(KERNEL)
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "cube.toml").write_text(CASE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    module = importlib.import_module("devkernel")
    module.SEEN.clear()
    yield module
    import sys

    sys.modules.pop("devkernel", None)


def _fake(name: str, module: ModuleType | None, missing: str | None = None) -> Device:
    @contextmanager
    def planted() -> Iterator[None]:
        if module is not None:
            module.PLANTED = True
        try:
            yield
        finally:
            if module is not None:
                module.PLANTED = False

    return Device(name, "cpu", missing=lambda: missing, context=planted)


@pytest.fixture
def fake_device() -> Iterator[None]:
    yield
    for name in ("fakegpu", "quietgpu", "offline"):
        unregister_device(name)


def test_a_device_only_bug_names_the_odd_device(kernel: ModuleType, fake_device: None, tmp_path: Path, cli) -> None:
    register_device(_fake("fakegpu", kernel))
    code, out, _ = cli(
        "run", str(tmp_path / "cases"), *ALLOW, "--device", "cpu,fakegpu", "--report-dir", str(tmp_path / "r")
    )
    assert code == 1, out
    assert "manual    fakegpu vs cpu" in out and "DIFFER: fakegpu is the odd device" in out
    assert "cube (cpu)" in out and "cube (fakegpu)" in out  # the main table names each row's device
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    jsonschema.validate(data, json_report.load_schema())
    by_device = {c["device"]: c for c in data["cases"]}
    assert by_device["cpu"]["verdict"] == "pass"
    assert (by_device["fakegpu"]["verdict"], by_device["fakegpu"]["odd_one_out"]) == ("fail", "manual")
    (devices,) = data["devices"]
    assert (devices["verdict"], devices["odd_device"], devices["devices"]) == ("fail", "fakegpu", ["cpu", "fakegpu"])
    rows = {r["source"]: r for r in devices["rows"]}
    assert rows["manual"]["status"] == "differ" and rows["autograd"]["status"] == "agree"
    # the fake took the torch path a CUDA device takes: torch tensors for the manual source
    assert ("Tensor", "torch.float64") in kernel.SEEN


def test_devices_that_agree(kernel: ModuleType, fake_device: None, tmp_path: Path, cli) -> None:
    register_device(_fake("quietgpu", None))
    for dtype in ("float64", "float32", "bfloat16"):
        code, out, _ = cli(
            "run", str(tmp_path / "cases"), *ALLOW, "--device", "cpu,quietgpu", "--dtype", dtype, "--no-reports"
        )
        assert code == 0, out
        assert "quietgpu vs cpu" in out and "DIFFER" not in out
        assert "2 case(s): 2 pass" in out and "0 differ across devices" in out


def test_an_unavailable_device_is_reported_and_the_others_run(fake_device: None, cli) -> None:
    register_device(_fake("offline", None, missing="switched off for the test"))
    code, out, _ = cli("run", str(CASES / "product.toml"), "--device", "cpu,offline", "--no-reports")
    assert code == 0, out
    assert "device offline: unavailable, not checked: switched off for the test" in out
    assert "(cpu; offline unavailable," in out
    code, _, err = cli("run", str(CASES / "product.toml"), "--device", "offline", "--no-reports")
    assert code == 2 and "--device offline: switched off for the test" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu(cli, tmp_path: Path) -> None:
    code, out, _ = cli("run", str(CASES / "product.toml"), "--device", "cpu,cuda", "--report-dir", str(tmp_path))
    assert code == 0 and "device cuda: unavailable, not checked: no CUDA device is available" in out
    data = json.loads((tmp_path / "report.json").read_text())
    assert list(data["unavailable_devices"]) == ["cuda"] and data["devices"] == []
    code, _, err = cli("run", str(CASES / "product.toml"), "--device", "cuda", "--no-reports")
    assert code == 2 and "no CUDA device is available" in err


def test_unknown_device_names_the_known_ones(cli) -> None:
    code, _, err = cli("run", "--device", "cpu,tpu", "--no-reports")
    assert code == 2 and "unknown device 'tpu': use cpu, cuda, cuda:N" in err


def test_check_runs_on_a_registered_device(fake_device: None) -> None:
    seen: list[torch.device] = []

    def backward(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        seen.append(x.device)
        return g * torch.cos(x)

    register_device(_fake("quietgpu", None))
    r = check(torch.sin, {"x": torch.linspace(-1, 1, 5)}, backward=backward, device="quietgpu")
    assert r.verdict == "pass" and r.device == "quietgpu" and r.sources["manual"].device == "quietgpu"
    assert seen and all(d.type == "cpu" for d in seen)


def test_plugin_skips_an_unavailable_device_with_its_reason(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        textwrap.dedent(
            """
            from gradcheck_suite._devices import Device, register_device
            register_device(Device("offline", "cpu", missing=lambda: "switched off for the test"))
            register_device(Device("quietgpu", "cpu"))
            """
        )
    )
    (pytester.path / "cases").mkdir()
    (pytester.path / "cases" / "product.toml").write_text((CASES / "product.toml").read_text())
    result = pytester.runpytest("--gradcheck", "cases", "--gradcheck-device", "cpu,offline,quietgpu", "-rs", "-v")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*product?offline-float64? SKIPPED*", "SKIPPED * switched off for the test"])


def test_a_device_list_is_compared_with_a_baseline_of_one_device(fake_device: None, tmp_path: Path, cli) -> None:
    register_device(_fake("quietgpu", None))
    product = str(CASES / "product.toml")
    assert cli("baseline", "save", str(tmp_path / "base.json"), "--cases", product)[0] == 0
    base, reports = str(tmp_path / "base.json"), str(tmp_path / "r")
    code, out, _ = cli("run", product, "--device", "cpu,quietgpu", "--baseline", base, "--report-dir", reports)
    assert code == 0, out
    assert "1 case(s) compared, no regression" in out and "product[quietgpu-float64]" in out


class WrongShapeGradient(torch.autograd.Function):
    """A backward whose gradient torch's engine refuses (as it refuses one on another device)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return torch.cat([2 * x * g, g[:1]])  # one element too many


@pytest.mark.parametrize("device", ["cpu", "quietgpu"])
def test_a_gradient_torch_refuses_fails_the_manual_source(fake_device: None, device: str) -> None:
    """On CUDA a Function's backward returning its gradient on the CPU is refused by torch's
    engine the same way (benchmarks/gpu_check.sh): a fail naming manual, not a broken case."""
    register_device(_fake("quietgpu", None))
    r = check(WrongShapeGradient, {"x": [1.0, 2.0, 3.0]}, reference=lambda x: x * x, device=device)
    assert (r.verdict, r.odd_one_out) == ("fail", "manual"), r.explain()
    assert any("backward returned a gradient torch refuses" in n and "invalid gradient" in n for n in r.notes)
    assert "torch refuses" in r.explain()
