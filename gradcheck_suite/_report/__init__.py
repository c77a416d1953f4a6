"""Renderers of a Report: the terminal table here; machine-readable formats beside it."""

from .terminal import format_value, render_case_detail, render_errors, render_summary, render_table

__all__ = ["format_value", "render_table", "render_case_detail", "render_errors", "render_summary"]
