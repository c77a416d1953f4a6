"""One torch thread for small cases.

torch parallelises an operation over its intra-op threads; on arrays of a few thousand
elements that buys nothing, and on a machine whose cores are busy it costs a great deal: each
parallel region waits until every thread has been scheduled. Measured on the project's shared
2-core machine (load about 3): a 64x64 matmul took 20 to 50 ms with 2 threads and 0.03 ms with
one, the conv2d and backward of the bundled conv_naive case 70 ms against 0.3 ms. A check of a
small case (every input together at most SMALL_CASE elements) therefore runs with one torch
thread and gives the caller's setting back afterwards; larger cases keep it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

__all__ = ["SMALL_CASE", "small_case_threads"]

SMALL_CASE = 4096


@contextmanager
def small_case_threads(inputs: Mapping[str, Any]) -> Iterator[None]:
    """One torch thread inside the block when ``inputs`` hold at most SMALL_CASE elements."""
    size = sum(int(np.size(v)) for v in inputs.values())
    before = torch.get_num_threads()
    if size > SMALL_CASE or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
