"""Run the selected cases, one emulator per tenant size, and keep every figure.

Cases sharing a tenant size share one emulator (a 100,000-user tenant takes seconds to build);
each case sets the emulator up for itself (converged state, latency model on or off).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

from bench import cases
from bench.config import BenchConfig
from bench.runner import ROOT
from bench.tenants import running_emulator
from reconciler.emulator import Emulator

log = logging.getLogger("bench")

CASE_NAMES = (
    "capacity",
    "noop",
    "drift",
    "throughput",
    "planner",
    "smtp",
    "evidence",
    "fleet",
    "partitioned",
    "conversion",
    "startup",
)
CASE_TITLES = {
    "capacity": "Case 4 - emulator capacity (issue 3)",
    "noop": "Case 1 - no-op plan, and the snapshot read (issue 4)",
    "drift": "Case 2 - 1% drift: plan + apply against two baselines",
    "throughput": "Case 3 - user changes against a request budget (issue 6)",
    "planner": "Planner - the whole tenant against 20 rules (issue 5)",
    "smtp": "SMTP AUTH managed - the no-op plan with and without mailboxes (issue 14)",
    "evidence": "Evidence - the no-op plan with and without the Entra sign-in log (issue 15)",
    "fleet": "Fleet - 50 tenants planned one after another and concurrently (issue 16)",
    "partitioned": "Partitioned reads - the no-op plan on one cursor and on several (issue 18)",
    "conversion": "User conversion - the slots path against the constructor it replaced (issue 18)",
    "startup": "Start-up - --version, --help and validate against a bare interpreter (issue 18)",
}

Step = tuple[str, Callable[[Emulator], Any]]

# Cases measured at several tenant sizes: their results are {"sizes": [entry, ...]}.
BY_SIZE = ("noop", "partitioned")


def _steps(cfg: BenchConfig, selected: Sequence[str]) -> dict[int, list[Step]]:
    """tenant size -> the (case, run) steps that use a tenant of that size, in run order."""
    by_size: dict[int, list[Step]] = {}

    def add(size: int, name: str, fn: Callable[[Emulator], Any]) -> None:
        by_size.setdefault(size, []).append((name, fn))

    if "capacity" in selected:
        add(min(cfg.noop_sizes), "capacity", lambda emu: cases.capacity(emu, cfg))
    if "noop" in selected:
        for size in cfg.noop_sizes:
            add(size, "noop", lambda emu, size=size: cases.noop_plan(emu, cfg, size))  # type: ignore[misc]
    if "drift" in selected:
        add(cfg.drift_users, "drift", lambda emu: cases.drift(emu, cfg))
    if "throughput" in selected:
        add(cfg.throughput_users, "throughput", lambda emu: cases.throughput(emu, cfg))
    if "planner" in selected:
        add(cfg.planner_users, "planner", lambda emu: cases.planner(emu, cfg))
    if "smtp" in selected:
        add(cfg.smtp_users, "smtp", lambda emu: cases.smtp_noop(emu, cfg))
    if "evidence" in selected:  # starts an emulator of its own (a sign-in log made at start)
        add(min(cfg.noop_sizes), "evidence", lambda emu: cases.evidence_noop(cfg))
    if "fleet" in selected:  # its emulator runs as a process of its own
        add(min(cfg.noop_sizes), "fleet", lambda emu: cases.fleet(cfg))
    if "partitioned" in selected:
        for size in cfg.partition_users:
            add(size, "partitioned", lambda emu: cases.partitioned(emu, cfg))
    if "conversion" in selected:
        add(max(cfg.noop_sizes), "conversion", lambda emu: cases.conversion(emu, cfg))
    if "startup" in selected:
        add(min(cfg.noop_sizes), "startup", lambda emu: cases.startup(cfg))
    return by_size


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = "unknown"
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                    break
    except (OSError, ValueError):
        pass
    commit = _git("rev-parse", "--short", "HEAD")
    return {
        "cpu_model": model,
        "nproc": os.cpu_count(),
        "memory": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit or "unknown",
    }


def _git(*args: str) -> str:
    """`git ARGS` in the repository, stripped; empty when git is missing or fails."""
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        return ""


def _commit() -> str:
    """The checked-out commit, with "+ uncommitted changes" when tracked files differ from it."""
    head = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return f"{head} + uncommitted changes" if dirty else head


def run_suite(cfg: BenchConfig, selected: Sequence[str], command: str) -> dict[str, Any]:
    """Run the selected cases; returns {case: {..., "meta": {...}}} (noop: a list by size)."""
    results: dict[str, Any] = {}
    commit = _commit()
    for size, steps in sorted(_steps(cfg, selected).items()):
        log.info("starting an emulator with %d users", size)
        with running_emulator(size, cfg.latency) as emu:
            for name, fn in steps:
                started = dt.datetime.now(dt.UTC)
                load_before = os.getloadavg()
                try:
                    figures = fn(emu)
                    error = None
                except (cases.BenchCheckFailed, RuntimeError, OSError, ValueError) as exc:
                    log.error("%s failed: %s", name, exc)
                    figures, error = None, f"{type(exc).__name__}: {exc}"
                meta = {
                    "command": command,
                    "commit": commit,
                    "started": started.strftime("%Y-%m-%d %H:%M UTC"),
                    "seconds": (dt.datetime.now(dt.UTC) - started).total_seconds(),
                    "runs": cfg.runs,
                    "quick": cfg.quick,
                    "latency": cfg.latency.describe(),
                    "load_before": load_before,
                    "load_after": os.getloadavg(),
                    "error": error,
                }
                entry = {"figures": figures, "meta": meta}
                if name in BY_SIZE:
                    results.setdefault(name, {"sizes": []})["sizes"].append(entry)
                else:
                    results[name] = entry
    for name in BY_SIZE:
        if name in results:
            results[name]["meta"] = results[name]["sizes"][-1]["meta"]
    return results
