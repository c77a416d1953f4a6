"""Devices as sources: one case's gradients on every device of ``--device cpu,cuda``, compared.

Each device's own check already judges its manual and autograd gradients against the numeric
source. This adds the comparison across devices: the manual and the autograd gradient on each
device against the same source on the reference device (the CPU where it ran, else the first),
element by element, within the sum of the two sides' tolerances:

* float64 and float32: each side's rounding bound, as the three-way check bounds an analytic
  source (:func:`gradcheck_suite._compare.analytic_bound`);
* bfloat16, float16 and TF32: each side's low-precision tolerance around its float64 truth
  (``k max(rho, u) (|t| + s) + u |t|``, :mod:`gradcheck_suite._lowprecision`).

Where a source differs, the odd device is the one whose own check of that input failed while
the other's passed (a CUDA-only bug in a kernel, a CPU-only one); failing that, the one whose
gradient lies further from the numeric source, relative to the gradient scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ._compare import analytic_bound, gradient_scale
from ._lowprecision import manual_tolerance
from ._sources import Gradients

if TYPE_CHECKING:
    from ._engine import CaseResult

__all__ = ["DeviceComparison", "DeviceRow", "compare_devices", "reference_device"]


@dataclass
class DeviceRow:
    input: str
    source: str  # manual or autograd
    device: str
    against: str  # the reference device
    max_abs: float
    max_rel: float
    ratio: float  # the largest difference over its tolerance: above 1 means they differ
    status: str  # "agree", "differ" or "not compared"
    odd_device: str | None = None
    note: str = ""


@dataclass
class DeviceComparison:
    case: str
    dtype: str
    devices: list[str]
    rows: list[DeviceRow] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "fail" if any(r.status == "differ" for r in self.rows) else "pass"

    @property
    def odd_device(self) -> str | None:
        odd = {r.odd_device for r in self.rows if r.status == "differ"}
        return odd.pop() if len(odd) == 1 else None


def reference_device(devices: list[str]) -> str:
    return "cpu" if "cpu" in devices else devices[0]


def _tolerance(r: CaseResult, g: Gradients, name: str) -> np.ndarray:
    """What the device's own check allows ``g`` on input ``name``, per element."""
    settings = r.settings
    if settings is not None and settings.low_precision:
        auto = r.sources.get("autograd")
        if auto is not None and auto.reference is not None:
            return manual_tolerance(name, auto, g, settings)
    bound, _ = analytic_bound(g, name, g.values[name], gradient_scale(list(r.sources.values())))
    if g.allowance is not None:
        bound = bound + g.allowance[name]
    return bound


def _same_point(a: CaseResult, b: CaseResult) -> bool:
    return a.point.keys() == b.point.keys() and all(np.array_equal(a.point[k], b.point[k]) for k in a.point)


def _distance_to_numeric(r: CaseResult, source: str, name: str) -> float | None:
    numeric = r.sources.get("numeric")
    g = r.sources.get(source)
    if numeric is None or g is None:
        return None
    n = numeric.values[name]
    finite = np.isfinite(n)
    if not finite.any():
        return None
    scale = max(gradient_scale(list(r.sources.values())), float(np.finfo(np.float64).tiny))
    return float(np.max(np.abs(g.values[name][finite] - n[finite]) / (np.abs(n[finite]) + scale)))


def _odd(ref: CaseResult, other: CaseResult, source: str, name: str) -> str | None:
    def failed(r: CaseResult) -> bool:
        return any(i.name == name and i.verdict == "fail" for i in r.inputs)

    if failed(ref) != failed(other):
        return other.device if failed(other) else ref.device
    d_ref, d_other = _distance_to_numeric(ref, source, name), _distance_to_numeric(other, source, name)
    if d_ref is None or d_other is None or d_ref == d_other:
        return None
    return other.device if d_other > d_ref else ref.device


def compare_devices(results: list[CaseResult]) -> DeviceComparison:
    """One case's results on several devices (same dtype), compared with the reference device."""
    devices = [r.device for r in results]
    ref = next(r for r in results if r.device == reference_device(devices))
    out = DeviceComparison(ref.case.name, ref.dtype, devices)
    for other in results:
        if other is ref:
            continue
        same = _same_point(ref, other)
        for name in ref.point:
            for source in ("manual", "autograd"):
                a, b = ref.sources.get(source), other.sources.get(source)
                if a is None or b is None:
                    continue
                if not same:
                    # a sweep shows each device's worst point: here they are different points
                    odd = _odd(ref, other, source, name)
                    note = "the sweep's worst points differ between the devices"
                    status = "differ" if odd else "not compared"
                    out.rows.append(DeviceRow(name, source, other.device, ref.device, 0.0, 0.0, 0.0, status, odd, note))
                    continue
                ga, gb = a.values[name], b.values[name]
                diff = np.abs(gb - ga)
                diff = np.where(np.isnan(ga) & np.isnan(gb), 0.0, diff)
                diff = np.where(np.isnan(diff), np.inf, diff)
                tol = _tolerance(ref, a, name) + _tolerance(other, b, name)
                with np.errstate(invalid="ignore", divide="ignore"):
                    ratio = np.where(diff == 0, 0.0, diff / np.where(tol > 0, tol, np.finfo(float).tiny))
                    rel = np.where(diff == 0, 0.0, diff / np.maximum(np.abs(ga), np.abs(gb)))
                worst = float(np.max(ratio)) if ratio.size else 0.0
                status = "differ" if worst > 1.0 else "agree"
                odd = _odd(ref, other, source, name) if status == "differ" else None
                out.rows.append(
                    DeviceRow(
                        name,
                        source,
                        other.device,
                        ref.device,
                        float(np.max(diff)) if diff.size else 0.0,
                        float(np.nanmax(np.where(np.isnan(rel), np.inf, rel))) if rel.size else 0.0,
                        worst,
                        status,
                        odd,
                    )
                )
    return out
