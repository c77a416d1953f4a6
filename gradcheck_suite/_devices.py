"""Devices the sources run on: the CPU, CUDA devices, and any a test registers.

A :class:`Device` says where tensors go (``torch``), whether the hand-written source may run
on numpy there (only the CPU, in float64 and float32: numpy has no bfloat16 and no GPU), why
it cannot run right now (no CUDA), and a context entered around every run of the manual and
autograd sources on it. Everything else (placing inputs, running programs and callables on
torch, synchronising, converting results) is the same code for every device, so a fake device
registered by a test (:func:`register_device`: tensors on the CPU, a context that plants a
difference) goes through exactly the path a CUDA device takes.

TF32: a float32 check on CUDA runs its sources with TF32 off (float32 means float32) unless
the run asks for TF32, which switches it on for matmuls and convolutions and judges float32
by the low-precision rule (gradcheck_suite._lowprecision).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field

import torch

from ._errors import UsageError

__all__ = [
    "Device",
    "device_names",
    "get_device",
    "register_device",
    "source_context",
    "unregister_device",
]

_CUDA = re.compile(r"cuda(:\d+)?")


def _no_reason() -> str | None:
    return None


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Device:
    name: str  # as the user writes it: cpu, cuda, cuda:1, or a registered name
    torch: str  # where tensors live
    numpy: bool = False  # the manual source may run on numpy here (float64 and float32)
    missing: Callable[[], str | None] = _no_reason  # why it cannot run now, None when it can
    context: Callable[[], AbstractContextManager[None]] = field(default=nullcontext)
    synchronize: Callable[[], None] = _nothing
    cuda: bool = False  # TF32 settings apply


_REGISTERED: dict[str, Device] = {}


def register_device(device: Device) -> None:
    """Make ``device.name`` usable wherever a device is named (``--device``, ``check()``)."""
    if device.name == "cpu" or _CUDA.fullmatch(device.name):
        raise ValueError(f"{device.name!r} is a built-in device")
    _REGISTERED[device.name] = device


def unregister_device(name: str) -> None:
    _REGISTERED.pop(name, None)


def _cuda_missing(name: str) -> Callable[[], str | None]:
    def missing() -> str | None:
        if not torch.cuda.is_available():
            return f"no CUDA device is available (torch {torch.__version__})"
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            return f"{name}: only {torch.cuda.device_count()} CUDA device(s)"
        return None

    return missing


def _cuda_synchronize(name: str) -> Callable[[], None]:
    def synchronize() -> None:
        torch.cuda.synchronize(torch.device(name))

    return synchronize


_CPU = Device("cpu", "cpu", numpy=True)


def get_device(name: str) -> Device:
    """The device called ``name``; a UsageError for a name that is none."""
    if name == "cpu":
        return _CPU
    if name in _REGISTERED:
        return _REGISTERED[name]
    if _CUDA.fullmatch(name):
        return Device(name, name, missing=_cuda_missing(name), synchronize=_cuda_synchronize(name), cuda=True)
    known = ", ".join(["cpu", "cuda", "cuda:N", *_REGISTERED])
    raise UsageError(f"unknown device {name!r}: use {known}")


def device_names(text: str) -> list[str]:
    """``"cpu,cuda"`` -> ``["cpu", "cuda"]``, each checked to name a device (not to be available)."""
    names = list(dict.fromkeys(n.strip() for n in str(text).split(",") if n.strip()))
    if not names:
        raise UsageError("--device: name at least one device")
    for n in names:
        get_device(n)
    return names


@contextmanager
def _fp32_precision(mode: str) -> Iterator[None]:
    """Matmuls and cuDNN convolutions in float32 as ``mode`` says: "tf32" or "ieee"."""
    matmul = torch.backends.cuda.matmul
    conv = getattr(torch.backends.cudnn, "conv", None)
    if hasattr(matmul, "fp32_precision") and conv is not None and hasattr(conv, "fp32_precision"):
        # torch >= 2.9: the legacy allow_tf32 flags must not be mixed with these
        saved = (matmul.fp32_precision, conv.fp32_precision)
        matmul.fp32_precision, conv.fp32_precision = mode, mode
        try:
            yield
        finally:
            matmul.fp32_precision, conv.fp32_precision = saved
        return
    allow = mode == "tf32"
    legacy = (matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = allow, allow
    try:
        yield
    finally:
        matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = legacy


@contextmanager
def source_context(device: Device, tf32: bool = False) -> Iterator[None]:
    """Entered around each run of the manual and autograd sources on ``device``."""
    with device.context():
        if device.cuda:
            with _fp32_precision("tf32" if tf32 else "ieee"):
                yield
        else:
            yield
