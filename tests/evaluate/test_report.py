"""Reports: the aligned text table and the atomic JSON writer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seqrec.evaluate import format_table, to_json


def test_format_table_content_and_alignment():
    rows = {"Pop": {"HR@10": 0.0162, "NDCG@10": 0.00789}, "SASRec-long": {"HR@10": 0.25, "NDCG@10": 0.123456}}
    lines = format_table(rows).splitlines()
    assert len(lines) == 3
    assert lines[0].split() == ["HR@10", "NDCG@10"]
    assert lines[1].split() == ["Pop", "0.0162", "0.0079"]
    assert lines[2].split() == ["SASRec-long", "0.2500", "0.1235"]
    # columns are aligned: every line ends at the same width, and numbers share their decimal point
    assert len({len(line) for line in lines}) == 1
    assert lines[1].rindex(".") == lines[2].rindex(".")


def test_format_table_chosen_metrics_and_missing_values():
    rows = {"a": {"HR@10": 0.5, "MRR": 0.25}, "b": {"HR@10": 1.0}}
    lines = format_table(rows, metrics=["MRR", "HR@10"]).splitlines()
    assert lines[0].split() == ["MRR", "HR@10"]
    assert lines[1].split() == ["a", "0.2500", "0.5000"]
    assert lines[2].split() == ["b", "-", "1.0000"]
    assert "MRR" in format_table(rows).splitlines()[0]     # default columns: union in first-seen order


def test_to_json_round_trip_and_overwrite(tmp_path):
    path = tmp_path / "runs" / "result.json"
    obj = {"model": "pop", "metrics": {"HR@10": 0.0162, "count": np.int64(6040)}, "ranks": np.arange(3)}
    assert to_json(obj, path) == path
    assert json.loads(path.read_text()) == {"model": "pop", "metrics": {"HR@10": 0.0162, "count": 6040},
                                            "ranks": [0, 1, 2]}
    to_json({"v": 2}, path)
    assert json.loads(path.read_text()) == {"v": 2}
    assert sorted(p.name for p in path.parent.iterdir()) == ["result.json"]   # no temporary file left


def test_to_json_failure_keeps_previous_file(tmp_path):
    path = tmp_path / "result.json"
    to_json({"v": 1}, path)
    with pytest.raises(TypeError):
        to_json({"v": object()}, path)
    assert json.loads(path.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]
