"""`python -m bench all | noop | drift | throughput | capacity | planner [--quick] [--runs N]`.

`python -m bench render` writes the document again from the stored figures (no measuring).

Runs the cases against the emulator (latency and throttling model on) and writes
docs/benchmarks.md. Running one case keeps the other cases' figures from the last run
(bench/results/latest.json), so the document always holds the latest figure of every case,
each with the command and time that produced it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from bench.config import BenchConfig
from bench.readings import readings
from bench.report import render
from bench.runner import ROOT
from bench.suite import CASE_NAMES, machine, run_suite

DEFAULT_DOC = ROOT / "docs" / "benchmarks.md"
DEFAULT_RESULTS = ROOT / "bench" / "results" / "latest.json"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "case", choices=("all", *CASE_NAMES, "render"), help="what to measure (render: nothing)"
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (default 5)")
    parser.add_argument(
        "--quick", action="store_true", help="small sizes (minutes -> seconds); not for the doc"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="markdown to write (default docs/benchmarks.md; with --quick: standard output)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        help="raw figures JSON to merge into and write (default bench/results/latest.json; "
        "with --quick: none)",
    )
    return parser


def _load(path: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(results, machine) stored at `path`; empty when there is nothing readable."""
    if path is None or not path.exists():
        return {}, {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}, {}
    if not isinstance(data, dict):
        return {}, {}
    return data.get("results", {}), data.get("machine", {})


def _write_doc(results: dict[str, Any], info: dict[str, Any], out_path: Path | None) -> None:
    text = render(results, info, readings(results))
    if out_path is None:
        sys.stdout.write(text)
    else:
        out_path.write_text(text, encoding="utf-8")
        sys.stderr.write(f"wrote {out_path}\n")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every selected case produced figures, 1 otherwise."""
    args = _parser().parse_args(argv)
    if args.runs < 1:
        sys.stderr.write("error: --runs must be at least 1\n")
        return 1
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("authpolicy.emulator").setLevel(logging.WARNING)
    cfg = BenchConfig.make(quick=args.quick, runs=args.runs)
    selected = CASE_NAMES if args.case in ("all", "render") else (args.case,)
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    results_path = args.results or (None if args.quick else DEFAULT_RESULTS)
    out_path = args.out or (None if args.quick else DEFAULT_DOC)
    results, stored_machine = _load(results_path)
    if args.case == "render":
        if not results:
            sys.stderr.write(f"error: no stored figures in {results_path}\n")
            return 1
        _write_doc(results, stored_machine or machine(), out_path)
        return 0
    fresh = run_suite(cfg, selected, command)
    results.update(fresh)
    info = machine()
    if results_path is not None:
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(
            json.dumps({"machine": info, "results": results}, indent=1) + "\n", encoding="utf-8"
        )
    _write_doc(results, info, out_path)
    failed = [name for name, entry in fresh.items() if _failed(entry)]
    if failed:
        sys.stderr.write(f"error: no figures for {', '.join(failed)} (see the log above)\n")
        return 1
    return 0


def _failed(entry: dict[str, Any]) -> bool:
    if "sizes" in entry:
        return any(s.get("figures") is None for s in entry["sizes"])
    return entry.get("figures") is None


if __name__ == "__main__":
    sys.exit(main())
