"""The serving soak (`benchmarks/soak_serve.py`) in short: 2,000 requests over 16 connections, about 5%
malformed (bad JSON, wrong types, unknown ids, oversize bodies, clients that disconnect mid-request, slow
clients), then SIGTERM with 48 requests in flight. The long run (100,000 requests) is the benchmark."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "soak_serve.py"


@pytest.fixture(scope="module")
def soak_module():
    spec = importlib.util.spec_from_file_location("soak_serve", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak_serve"] = module                  # its dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("soak_serve", None)


def test_short_soak_has_no_5xx_no_wrong_answer_and_a_graceful_shutdown(soak_module, demo_run, monkeypatch):
    run_dir, cache = demo_run
    monkeypatch.setenv("SEQREC_CACHE", str(cache))
    result = soak_module.soak(run_dir, requests=2000, concurrency=16, malformed=0.05, check_every=10)
    assert result["server_errors_5xx"] == 0 and result["wrong_answers"] == 0, result["failure_examples"]
    assert result["failures"] == 0 and result["malformed_answered_as_expected"], result["failure_examples"]
    assert result["checked_against_python_api"] >= 150
    assert all(count >= 10 for count in result["malformed"].values()), result["malformed"]
    assert result["by_kind"]["disconnect"] == {"sent half, disconnected": result["malformed"]["disconnect"]}
    assert result["by_kind"]["slow"] == {"200": result["malformed"]["slow"]}
    assert sum(result["by_kind"]["valid"].values()) == result["by_kind"]["valid"]["200"]
    shutdown = result["shutdown"]
    assert shutdown["clean"], shutdown
    assert shutdown["answered_200"] == shutdown["checked_right"] == 48 and shutdown["reported_stop"]
    assert result["passed"]
