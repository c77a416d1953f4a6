"""Default settings and the names of choices, importable without torch or numpy.

The command line's ``--help`` shows them; keeping them here lets it answer without importing
torch (more than a second), while the modules that act on them re-export them unchanged.
"""

from __future__ import annotations

__all__ = [
    "AUTO_FULL_ELEMENTS",
    "DEFAULT_DIRECTIONS",
    "DEFAULT_ELEMENTS",
    "DEFAULT_MAX_GROWTH",
    "DEFAULT_MAX_MEMORY",
    "METHODS",
    "MODES",
]

# "exact": the 50-digit referee differentiates every element (programs only; slow)
METHODS = ("auto", "central", "richardson", "complex-step", "exact")
MODES = ("auto", "full", "sample", "projection")
DEFAULT_MAX_MEMORY = 1 << 30  # bytes for one batch of perturbed evaluations
DEFAULT_ELEMENTS = 16
DEFAULT_DIRECTIONS = 4
# `--mode auto` checks every element while the inputs of a case hold at most this many
# elements together, and projects above. A full check costs one forward pass per element
# (six with Richardson); at 2^14 elements a 128x128 matmul-sized program still takes
# seconds on two cores, and beyond it the cost grows with the square of the size.
AUTO_FULL_ELEMENTS = 1 << 14

# Differences are deterministic on one machine (growth exactly 1); across machines the
# rounding of a few operations may move them by small factors above the floor. An order of
# magnitude is far above that noise and far below what a real drift gives (a gradient off by
# 1% moves a rounding-level difference by about 1e11).
DEFAULT_MAX_GROWTH = 10.0
