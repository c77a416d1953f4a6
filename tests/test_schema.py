"""The package's own reader of report.schema.json agrees with jsonschema (a test dependency
only) on real reports and on thousands of broken ones."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gradcheck_suite._report import json_report, schema

from .conftest import CASES

ODD_VALUES: list[Any] = [None, True, False, 0, -7, 1, 1.0, 1.5, "x", "inf", "nan", "", [], {}, [1], {"a": 1}, "::x"]


def _paths(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [at]
    if isinstance(node, dict):
        for k, v in node.items():
            found += _paths(v, (*at, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _paths(v, (*at, i))
    return found


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for part in path[:-1]:
        doc = doc[part]
    doc[path[-1]] = value


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from gradcheck_suite._cli import main

    out = tmp_path_factory.mktemp("reports")
    main(
        [
            "run",
            str(CASES / "product.toml"),
            str(CASES / "layers" / "relu.toml"),
            "--samples",
            "2",
            "--report-dir",
            str(out),
        ]
    )
    data: dict[str, Any] = json.loads((out / "report.json").read_text())
    return data


def test_the_reader_agrees_with_jsonschema_on_mutated_reports(report: dict[str, Any]) -> None:
    full = json_report.load_schema()
    validator = jsonschema.Draft202012Validator(full)
    assert schema.problem(report) is None and validator.is_valid(report)
    rng = random.Random(13)
    paths = [p for p in _paths(report) if p]
    disagreements = []
    for _ in range(1000):
        doc = copy.deepcopy(report)
        for _ in range(rng.randrange(1, 3)):
            path = rng.choice(paths)
            try:
                if rng.random() < 0.15 and isinstance(path[-1], str):
                    parent = doc
                    for part in path[:-1]:
                        parent = parent[part]
                    del parent[path[-1]]
                else:
                    _set(doc, path, rng.choice(ODD_VALUES))
            except (KeyError, IndexError, TypeError):
                continue
        ours = schema.problem(doc) is None
        theirs = validator.is_valid(doc)
        if ours != theirs:
            disagreements.append((ours, theirs, json.dumps(doc)[:300]))
    assert disagreements == []


def test_an_unknown_keyword_is_refused_rather_than_ignored() -> None:
    with pytest.raises(schema.SchemaError):
        schema.problem(1, {"maximum": 3})


def test_json_schema_equality_rules() -> None:
    assert schema.problem(True, {"const": 1}) is not None
    assert schema.problem(1.0, {"const": 1}) is None
    assert schema.problem(1.0, {"type": "integer"}) is None
    assert schema.problem(True, {"type": "integer"}) is not None


def test_the_stored_baseline_is_a_valid_report() -> None:
    stored = json.loads((Path(__file__).resolve().parent.parent / "reports" / "baseline.json").read_text())
    assert schema.problem(stored) is None
