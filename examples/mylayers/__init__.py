"""A tiny package of user layers that examples/cases/ checks with gradcheck-suite."""
