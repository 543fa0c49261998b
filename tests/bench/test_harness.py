"""Smoke test of the benchmark harness on tiny sizes: it runs end to end and writes a
well-formed document. No timings are asserted (they belong in docs/benchmarks.md)."""

from __future__ import annotations

import json
import re

import pytest

from bench.__main__ import main
from bench.config import tiny_config
from bench.readings import readings
from bench.report import NOT_RUN, render
from bench.suite import BY_SIZE, CASE_NAMES, CASE_TITLES, machine, run_suite
from reconciler.tenant.connect import DEFAULT_READ_CONCURRENCY
from reconciler.tenant.graph import SignInReader

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def results() -> dict:
    return run_suite(tiny_config(), CASE_NAMES, "python -m bench all (tiny)")


def _tables(text: str) -> list[list[str]]:
    """Markdown tables as lists of lines."""
    tables, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def test_every_case_has_figures_and_no_errors(results: dict) -> None:
    assert set(results) == set(CASE_NAMES)
    for name in CASE_NAMES:
        entries = results[name]["sizes"] if name in BY_SIZE else [results[name]]
        for entry in entries:
            assert entry["meta"]["error"] is None, (name, entry["meta"]["error"])
            assert entry["figures"] is not None


def test_counts_come_out_exact(results: dict) -> None:
    cfg = tiny_config()
    noop = results["noop"]["sizes"][0]["figures"]
    for run in noop["runs"]:
        assert run["reads"] == noop["expected_reads"]  # ceil(300/1000) + 2
        assert run["redirects"] == 1  # redirect_to_backend: followed once, then kept
        assert run["requests"] == run["reads"] + run["redirects"]
    drift = results["drift"]["figures"]
    assert drift["drift"] == 8  # 2% of 400
    for run in drift["runs"]:
        assert run["ours"]["writes"] == run["ours"]["state_changes"] == 8
        assert run["checker"]["sample"] == cfg.checker_sample
        assert run["naive"]["sample"] == cfg.naive_sample
    for mode in ("batch", "single"):
        for run in results["throughput"]["figures"]["modes"][mode]:
            assert run["writes"] == cfg.throughput_changes
            assert run["writes_per_change"] == 1.0
    assert results["planner"]["figures"]["rules"] == 20
    evidence = results["evidence"]["figures"]
    assert cfg.evidence_events <= evidence["legacy_events"] <= cfg.evidence_events + 500
    for pair in evidence["pairs"]:
        assert pair["plain"]["graph_requests"] == 0
        # One Graph request per page of 1,000 legacy sign-ins, and at most one more per time
        # slice (each ends on a page of its own); every event counted once.
        slices = SignInReader.SLICES_PER_CURSOR * DEFAULT_READ_CONCURRENCY
        graph = pair["evidence"]["graph_requests"]
        assert evidence["pages_needed"] <= graph <= evidence["pages_needed"] + slices
        assert pair["evidence"]["graph_objects"] == evidence["legacy_events"]


def test_document_is_well_formed(results: dict) -> None:
    text = render(results, machine(), readings(results))
    for name in CASE_NAMES:
        assert f"## {CASE_TITLES[name]}" in text
    assert NOT_RUN not in text
    assert not re.search(r"\bnan\b|n/a", text, re.IGNORECASE)  # every figure was measured
    assert "python -m bench all (tiny)" in text
    tables = _tables(text)
    assert len(tables) >= 7
    for table in tables:
        widths = {line.count("|") for line in table}
        assert len(widths) == 1, table  # every row has the header's number of cells
        assert re.fullmatch(r"\|(---\|)+", table[1])
    assert text.count("**What limits these figures.**") == len(CASE_NAMES)


def test_cli_refuses_a_bad_run_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["capacity", "--runs", "0"]) == 1
    assert "--runs must be at least 1" in capsys.readouterr().err


def test_document_says_not_run_for_cases_without_figures(results: dict) -> None:
    partial = {"drift": results["drift"]}
    text = render(partial, machine(), readings(partial))
    assert f"{NOT_RUN} (run `python -m bench noop`)" in text
    assert f"{NOT_RUN} (run `python -m bench planner`)" in text
    json.dumps(results)  # the raw figures are JSON as they are


def test_partitioned_reads_read_every_user_alike_on_every_cursor_count(results: dict) -> None:
    for size in results["partitioned"]["sizes"]:
        fig = size["figures"]
        for run in fig["runs"]:
            assert run["single"]["partitions"] == 0  # one cursor: no filter
            # the same users (the case fails otherwise) in at most ceil(n/1000) pages a filter
            # (uncapped: under the cap, refused requests are counted too)
            for mode in ("four", "partitioned"):
                assert run[mode]["get_user"] <= -(-fig["users"] // 1000) + run[mode]["partitions"]
