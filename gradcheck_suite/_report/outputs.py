"""The report folder: report.json, junit.xml and summary.md from one run, written together."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import json_report, junit, markdown
from .files import write_all

__all__ = ["REPORT_FILES", "write_reports"]

REPORT_FILES = ("report.json", "junit.xml", "summary.md")


def write_reports(folder: Path, data: dict[str, Any], *, step_summary: bool = True) -> list[Path]:
    """Write the three reports of ``data`` (json_report.to_dict) into ``folder``, atomically.

    report.json is renamed into place last: it is the file a baseline is saved from, so when
    it is new the other two are new as well.
    """
    summary = markdown.render(data)
    files: dict[Path, bytes | str] = {
        folder / "summary.md": summary,
        folder / "junit.xml": junit.to_xml(data),
        folder / "report.json": json_report.dumps(data),
    }
    write_all(files)
    if step_summary:
        markdown.append_step_summary(summary)
    return list(files)
