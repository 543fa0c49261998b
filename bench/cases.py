"""The benchmark cases. Each takes a running emulator (set up by `bench.suite`) and returns a
plain dict of per-run figures; `bench.report` turns them into tables.

Requests are always counted by the emulator (its stats, by cmdlet), never by the client.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import tenants
from bench.config import (
    BENCH_DIR,
    MAILBOXES_EVIDENCE_YAML,
    MAILBOXES_SMTP_YAML,
    MAILBOXES_YAML,
    NO_LATENCY,
    TWENTY_RULES_YAML,
    BenchConfig,
)
from bench.runner import Child, ChildRun, child_env, run_job
from reconciler.emulator import Emulator

log = logging.getLogger("bench")


class BenchCheckFailed(RuntimeError):
    """A run did not do what it must (e.g. a no-op plan with changes): its figures are void."""


def _env(emu: Emulator) -> dict[str, str]:
    return child_env(emu.connection_env(app="writer"))


def _requests(stats: dict[str, Any]) -> dict[str, int]:
    """cmdlet -> requests answered (any status), from the emulator's stats."""
    return {cmdlet: sum(by_status.values()) for cmdlet, by_status in stats["requests"].items()}


def _reads(stats: dict[str, Any]) -> int:
    return sum(n for cmdlet, n in _requests(stats).items() if cmdlet.lower().startswith("get-"))


def _ok(stats: dict[str, Any], cmdlet: str) -> int:
    return int(stats["requests"].get(cmdlet, {}).get("200", 0))


def _set_latency(emu: Emulator, cfg: BenchConfig, on: bool) -> None:
    emu.set_faults(**(cfg.latency if on else NO_LATENCY).settings())


def median(values: list[float]) -> float:
    """The median (NaN for no values)."""
    return statistics.median(values) if values else float("nan")


# --------------------------------------------------------------------------- case 1 + issue 4


def noop_plan(emu: Emulator, cfg: BenchConfig, users: int) -> dict[str, Any]:
    """Case 1 (and issue 4's snapshot read): plan against a tenant that already matches."""
    tenants.converge_mailboxes(emu)
    _set_latency(emu, cfg, True)
    env = _env(emu)
    runs = []
    for index in range(cfg.runs):
        emu.reset_stats()
        child = run_job({"job": "plan", "config": str(MAILBOXES_YAML)}, env)
        stats = emu.stats()
        result = child.result
        if result["changes"] != 0:
            raise BenchCheckFailed(f"no-op plan at {users} users has {result['changes']} changes")
        runs.append(
            {
                "requests": stats["requests_total"],
                "by_cmdlet": _requests(stats),
                "reads": _reads(stats),
                # redirect_to_backend's one 307, which the client follows once per run.
                "redirects": int(stats["requests"].get("-", {}).get("307", 0)),
                "token_requests": sum(stats["token_requests"].values()),
                "wall_s": result["total"]["wall_s"],
                "process_wall_s": child.wall_s,
                "cpu_s": result["total"]["cpu_s"],
                "process_cpu_s": child.cpu_s,
                "read_wall_s": result["read"]["wall_s"],
                "read_cpu_s": result["read"]["cpu_s"],
                "plan_cpu_s": result["plan"]["cpu_s"],
                "peak_rss_mb": child.peak_rss_mb,
                "base_rss_mb": result["base_rss_mb"],
            }
        )
        log.info(
            "noop %d users run %d: %.2f s, %.2f s CPU, %.0f MB, %d requests",
            users,
            index + 1,
            runs[-1]["wall_s"],
            runs[-1]["cpu_s"],
            runs[-1]["peak_rss_mb"],
            runs[-1]["requests"],
        )
    return {"users": users, "expected_reads": math.ceil(users / 1000) + 2, "runs": runs}


SAMPLE_CONFIG = str(BENCH_DIR.parent / "policies.yaml")
STARTUP_COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "authpolicy --version": [sys.executable, "-m", "reconciler", "--version"],
    "authpolicy --help": [sys.executable, "-m", "reconciler", "--help"],
    "authpolicy validate": [sys.executable, "-m", "reconciler", "validate", "-c", SAMPLE_CONFIG],
}


def startup(cfg: BenchConfig) -> dict[str, Any]:
    """Issue 18 item 3: wall time of the quick verbs beside a bare interpreter, interleaved
    (bare, --version, --help, validate, bare, ...) so the noise falls on all alike."""
    rounds = max(10, cfg.runs * 4)
    walls: dict[str, list[float]] = {name: [] for name in STARTUP_COMMANDS}
    for _ in range(rounds):
        for name, command in STARTUP_COMMANDS.items():
            started = time.perf_counter()
            subprocess.run(command, capture_output=True, check=False)
            walls[name].append(time.perf_counter() - started)
    log.info(
        "startup: %s",
        ", ".join(f"{name} {median(values):.3f} s" for name, values in walls.items()),
    )
    return {"rounds": rounds, "walls": walls}


def smtp_noop(emu: Emulator, cfg: BenchConfig) -> dict[str, Any]:
    """Issue 14: the same no-op plan without and with SMTP AUTH managed, alternating in one run
    (plain, smtp, plain, smtp, ...) so the machine's noise falls on both alike."""
    tenants.converge_mailboxes(emu)
    tenants.converge_smtp(emu)
    _set_latency(emu, cfg, True)
    # Serve Get-CASMailbox -Filter (the emulator's default refuses it, the pessimistic
    # reading: only Get-User's filter is documented), so the mailboxes are read partitioned
    # as the users are; with it refused they would be read on one cursor.
    emu.set_faults(mailbox_filters="supported")
    try:
        return _smtp_pairs(emu, cfg)
    finally:
        emu.set_faults(mailbox_filters="refused")


def _smtp_pairs(emu: Emulator, cfg: BenchConfig) -> dict[str, Any]:
    env = _env(emu)
    users = len(emu.service.state.users)
    pairs = []
    for index in range(cfg.runs):
        pair: dict[str, Any] = {}
        for mode, config in (("plain", MAILBOXES_YAML), ("smtp", MAILBOXES_SMTP_YAML)):
            emu.reset_stats()
            child = run_job({"job": "plan", "config": str(config)}, env)
            stats = emu.stats()
            if child.result["changes"] != 0:
                raise BenchCheckFailed(
                    f"{mode} no-op plan at {users} users has {child.result['changes']} changes"
                )
            pair[mode] = {
                "requests": stats["requests_total"],
                "by_cmdlet": _requests(stats),
                "wall_s": child.result["total"]["wall_s"],
                "cpu_s": child.result["total"]["cpu_s"],
                "peak_rss_mb": child.peak_rss_mb,
            }
        for key in ("requests", "wall_s", "cpu_s", "peak_rss_mb"):
            pair[f"ratio_{key}"] = pair["smtp"][key] / pair["plain"][key]
        pairs.append(pair)
        log.info(
            "smtp noop %d users run %d: %.2f s vs %.2f s, %d vs %d requests",
            users,
            index + 1,
            pair["smtp"]["wall_s"],
            pair["plain"]["wall_s"],
            pair["smtp"]["requests"],
            pair["plain"]["requests"],
        )
    return {"users": users, "pairs": pairs}


def evidence_noop(cfg: BenchConfig) -> dict[str, Any]:
    """Issue 15: the no-op plan without and with sign-in evidence, alternating in one run, on a
    tenant whose sign-in log holds `evidence_events` legacy sign-ins in the window (made while
    the drifted default still allowed IMAP, then the tenant converged: the users have been
    blocked since). Graph pages take as long as an Exchange page of 1,000 objects."""
    page_ms = cfg.latency.base_ms + 1000 * cfg.latency.per_object_ms
    # The synthetic device accounts (1 per 250 users) send every 10 minutes by default: 4,320
    # sign-ins each in 30 days, 1.7 million at 100,000 users. Here they send once a day, and
    # the IMAP users make up the rest of the events asked for.
    scanners = max(3, cfg.evidence_users // 250)
    with tenants.running_emulator(
        cfg.evidence_users,
        cfg.latency,
        sign_in_scanner_minutes=1440,
        sign_in_extra_events=max(0, cfg.evidence_events - 30 * scanners),
        graph_latency_ms=page_ms,
        # Serve `createdDateTime le` (Microsoft documents it; the emulator's default refuses
        # it, the pessimistic reading), so the log is read in time slices as it would be.
        graph_date_upper_bound="supported",
    ) as emu:
        log_events = emu.service.graph.events()  # made now, from the drifted tenant
        legacy = sum(1 for e in log_events if e.client_app not in MODERN_CLIENTS)
        tenants.converge_mailboxes(emu)
        env = _env(emu)
        pairs = []
        for index in range(cfg.runs):
            pair: dict[str, Any] = {}
            for mode, config in (("plain", MAILBOXES_YAML), ("evidence", MAILBOXES_EVIDENCE_YAML)):
                emu.reset_stats()
                child = run_job({"job": "plan", "config": str(config)}, env)
                stats = emu.stats()
                if child.result["changes"] != 0:
                    raise BenchCheckFailed(
                        f"{mode} no-op plan has {child.result['changes']} changes"
                    )
                by_cmdlet = _requests(stats)
                pair[mode] = {
                    "requests": stats["requests_total"],
                    "graph_requests": by_cmdlet.get("graph:signIns", 0),
                    "graph_objects": child.result.get("sign_in_events", 0),
                    "wall_s": child.result["total"]["wall_s"],
                    "read_wall_s": child.result["read"]["wall_s"],
                    "cpu_s": child.result["total"]["cpu_s"],
                    "peak_rss_mb": child.peak_rss_mb,
                }
            for key in ("wall_s", "cpu_s", "peak_rss_mb"):
                pair[f"ratio_{key}"] = pair["evidence"][key] / pair["plain"][key]
            pairs.append(pair)
            log.info(
                "evidence noop run %d: %.2f s vs %.2f s, %d Graph requests",
                index + 1,
                pair["evidence"]["wall_s"],
                pair["plain"]["wall_s"],
                pair["evidence"]["graph_requests"],
            )
        return {
            "users": cfg.evidence_users,
            "legacy_events": legacy,
            "pages_needed": math.ceil(legacy / 1000),
            "graph_page_ms": page_ms,
            "pairs": pairs,
        }


MODERN_CLIENTS = ("Browser", "Mobile Apps and Desktop clients")


# --------------------------------------------------------------------------- issue 18


def partitioned(emu: Emulator, cfg: BenchConfig) -> dict[str, Any]:
    """Issue 18: the no-op plan on one Get-User cursor, on 4 and on `partition_concurrency`
    partitioned cursors, and on as many with the emulator serving at most 4 requests at once,
    in turn in each run."""
    tenants.converge_mailboxes(emu)
    _set_latency(emu, cfg, True)
    base_env = _env(emu)
    users = len(emu.service.state.users)
    c = str(cfg.partition_concurrency)
    modes = (
        ("single", "1", 0),
        ("four", "4", 0),
        ("partitioned", c, 0),
        ("partitioned_cap4", c, 4),
    )
    runs = []
    for index in range(cfg.runs):
        run: dict[str, Any] = {}
        for mode, concurrency, cap in modes:
            emu.set_faults(max_concurrent_per_tenant=cap)
            emu.reset_stats()
            env = {**base_env, "AUTHPOLICY_READ_CONCURRENCY": concurrency}
            child = run_job({"job": "plan", "config": str(MAILBOXES_YAML)}, env)
            stats = emu.stats()
            if child.result["changes"] != 0:
                raise BenchCheckFailed(
                    f"{mode}: the no-op plan has {child.result['changes']} changes"
                )
            if child.result["users"] != users:
                raise BenchCheckFailed(f"{mode}: read {child.result['users']} of {users} users")
            run[mode] = {
                "wall_s": child.result["total"]["wall_s"],
                "read_wall_s": child.result["read"]["wall_s"],
                "cpu_s": child.result["total"]["cpu_s"],
                "read_cpu_s": child.result["read"]["cpu_s"],
                "peak_rss_mb": child.peak_rss_mb,
                "requests": stats["requests_total"],
                "get_user": _requests(stats).get("Get-User", 0),
                "partitions": child.result["partitions"],
                "rejected": stats["concurrency_rejected"],
                "fingerprint": child.result.get("fingerprint"),
            }
        emu.set_faults(max_concurrent_per_tenant=0)
        if len({run[m]["fingerprint"] for m, _, _ in modes}) != 1:
            raise BenchCheckFailed("partitioned plans differ from the single-cursor plan")
        for mode in ("four", "partitioned", "partitioned_cap4"):
            run[f"ratio_{mode}"] = run[mode]["wall_s"] / run["single"]["wall_s"]
        run["cpu_ratio"] = run["partitioned"]["cpu_s"] / run["single"]["cpu_s"]
        runs.append(run)
        log.info(
            "partitioned run %d at %d users: one cursor %.2f s, 4 %.2f s, %s %.2f s, "
            "capped at 4 %.2f s",
            index + 1,
            users,
            run["single"]["wall_s"],
            run["four"]["wall_s"],
            c,
            run["partitioned"]["wall_s"],
            run["partitioned_cap4"]["wall_s"],
        )
    page_ms = cfg.latency.base_ms + 1000 * cfg.latency.per_object_ms
    return {
        "users": users,
        "concurrency": cfg.partition_concurrency,
        "page_ms": page_ms,
        "runs": runs,
    }


# --------------------------------------------------------------------------- issue 16

FLEET_PAGE_MS = 1000.0  # a page of 1,000 users: 200 + 1000 x 0.8 ms
FLEET_REQUEST_MS = 200.0  # every other request (a write, a one-object read)


def fleet(cfg: BenchConfig) -> dict[str, Any]:
    """Issue 16: `plan --tenants` over a fleet, one tenant after another (concurrency 1) and at
    the default concurrency C, alternating in one run; the emulator in its own process."""
    from reconciler.fleet.run import DEFAULT_TENANT_CONCURRENCY

    workdir = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    per_object = (FLEET_PAGE_MS - FLEET_REQUEST_MS) / 1000
    argv = [
        sys.executable, "-m", "reconciler", "emulator", "serve",
        "--tenants", str(cfg.fleet_tenants), "--users", str(cfg.fleet_users),
        "--latency-ms", f"{FLEET_REQUEST_MS:g}", "--latency-per-object-ms", f"{per_object:g}",
        "--state-dir", str(workdir / "emulator"), "--fresh", "--set", "tenant_sizes=equal",
    ]  # fmt: skip
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        env_lines: dict[str, str] = {}
        assert server.stdout is not None
        for line in server.stdout:
            if line.startswith("# tenant"):
                break
            key, _, value = line.strip().partition("=")
            env_lines[key] = value
        if "AUTHPOLICY_ENDPOINT" not in env_lines:
            raise BenchCheckFailed("the emulator did not start")
        base = MAILBOXES_YAML.read_text(encoding="utf-8").replace(
            "tenant: contoso.onmicrosoft.com\n", ""
        )
        (workdir / "base.yaml").write_text(base, encoding="utf-8")
        lines = ["version: 1", "base: base.yaml", "tenants:"]
        for k in range(1, cfg.fleet_tenants + 1):
            lines.append(f"  t{k:03}: {{tenant: {env_lines[f'AZURE_TENANT_ID_{k}']}}}")
        inventory = workdir / "tenants.yaml"
        inventory.write_text("\n".join(lines) + "\n", encoding="utf-8")
        env = child_env(
            {k: v for k, v in env_lines.items() if not k.startswith("AZURE_TENANT_ID_")}
        )
        concurrency = DEFAULT_TENANT_CONCURRENCY
        runs = []
        for index in range(min(cfg.runs, cfg.fleet_max_runs)):
            run: dict[str, Any] = {}
            for mode, c in (("sequential", 1), ("fleet", concurrency)):
                out = workdir / f"out-{mode}-{index}"
                child = run_job(
                    {
                        "job": "cli",
                        "argv": [
                            "plan", "--tenants", str(inventory), "--out-dir", str(out),
                            "--tenant-concurrency", str(c), "--format", "json",
                        ],
                    },
                    env,
                )  # fmt: skip
                combined = json.loads((out / "fleet-plan.json").read_text(encoding="utf-8"))
                errors = [t["error"] for t in combined["tenants"] if t["error"]]
                if errors:
                    raise BenchCheckFailed(f"{mode}: {len(errors)} tenant(s) failed: {errors[0]}")
                run[mode] = {
                    "wall_s": child.result["run"]["wall_s"],
                    "cpu_s": child.cpu_s,
                    "peak_rss_mb": child.peak_rss_mb,
                    "tenants": len(combined["tenants"]),
                }
            run["speedup"] = run["sequential"]["wall_s"] / run["fleet"]["wall_s"]
            run["efficiency"] = run["speedup"] / concurrency
            runs.append(run)
            log.info(
                "fleet run %d: %d tenants one after another %.1f s, %d at a time %.1f s (x%.2f)",
                index + 1,
                cfg.fleet_tenants,
                run["sequential"]["wall_s"],
                concurrency,
                run["fleet"]["wall_s"],
                run["speedup"],
            )
        return {
            "tenants": cfg.fleet_tenants,
            "users": cfg.fleet_users,
            "concurrency": concurrency,
            "page_ms": FLEET_PAGE_MS,
            "request_ms": FLEET_REQUEST_MS,
            "runs": runs,
        }
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- case 2


def drift(emu: Emulator, cfg: BenchConfig) -> dict[str, Any]:
    """Case 2: 1% drift, our plan+apply against the naive loop and a per-user checker."""
    users = len(emu.service.state.users)
    drift_count = max(1, round(users * cfg.drift_fraction))
    tenants.converge_mailboxes(emu)
    _set_latency(emu, cfg, True)
    env = _env(emu)
    managed = [u["UserPrincipalName"] for u in tenants.mailboxes(emu)]
    workdir = Path(tempfile.mkdtemp(prefix="authpolicy-bench-"))
    users_file = workdir / "managed-users.json"
    users_file.write_text(json.dumps(managed), encoding="utf-8")
    command = [
        "python",
        "-m",
        "reconciler",
        "apply",
        "-c",
        str(MAILBOXES_YAML),
        "--auto-approve",
        "--audit-log",
        str(workdir / "audit.jsonl"),
    ]
    runs = []
    for index in range(cfg.runs):
        # Ours: the real CLI, plan + apply + its verification, in one process.
        tenants.inject_drift(emu, drift_count, seed=index)
        emu.reset_stats()
        audit = workdir / f"audit-{index}.jsonl"
        started = time.time()
        # `python -m reconciler apply ...`, run by the child in its own process (runpy), so
        # the child can read its own peak memory.
        ours: ChildRun = run_job({"job": "cli", "argv": [*command[3:-1], str(audit)]}, env)
        ended = time.time()
        stats = emu.stats()
        left = tenants.count_off_policy(emu)
        exit_code = ours.result.get("exit_code")
        if exit_code != 0 or left != 0:
            raise BenchCheckFailed(f"apply exited {exit_code} and left {left} mailboxes off policy")
        ours_figures = {
            "wall_s": ours.wall_s,
            "cpu_s": ours.cpu_s,
            "peak_rss_mb": ours.peak_rss_mb,
            # HTTP requests: the emulator also counts each $batch member under its cmdlet.
            "requests": stats["requests_total"] - sum(stats["batch_members"].values()),
            "reads": _reads(stats),
            # Get-User pages (the plan read) and the verification's per-user Get-User members.
            "get_user_pages": _requests(stats).get("Get-User", 0)
            - stats["batch_members"].get("Get-User", 0),
            "verify_user_reads": stats["batch_members"].get("Get-User", 0),
            "batches": _requests(stats).get("$batch", 0),
            "writes": _ok(stats, "Set-User"),
            "state_changes": stats["writes_changed_state"],
            **_phases(audit, started, ended),
        }
        # The per-user checker, on a sample, with fresh drift spread the same way.
        tenants.inject_drift(emu, drift_count, seed=1000 + index)
        emu.reset_stats()
        checker = run_job(
            {
                "job": "checker",
                "users_file": str(users_file),
                "sample": cfg.checker_sample,
                "policy": tenants.BLOCK,
            },
            env,
        ).result
        checker_stats = emu.stats()
        per_user = checker["elapsed"]["wall_s"] / checker["checked"]
        checker_figures = {
            "sample": checker["checked"],
            "sample_wall_s": checker["elapsed"]["wall_s"],
            "sample_sets": checker["sets"],
            "sample_requests": checker_stats["requests_total"],
            "projected_wall_s": per_user * len(managed),
            "requests": len(managed) + drift_count,
            "reads": len(managed),
            "writes": drift_count,
        }
        # The naive loop: its whole read, and a sample of its Set-User calls.
        emu.reset_stats()
        naive = run_job(
            {"job": "naive", "sample": cfg.naive_sample, "policy": tenants.BLOCK}, env
        ).result
        naive_stats = emu.stats()
        per_write = naive["writes"]["wall_s"] / naive["sample"]
        pages = math.ceil(naive["mailboxes"] / 1000)
        naive_figures = {
            "mailboxes": naive["mailboxes"],
            "read_wall_s": naive["read"]["wall_s"],
            "sample": naive["sample"],
            "sample_wall_s": naive["writes"]["wall_s"],
            "sample_requests": naive_stats["requests_total"],
            "projected_wall_s": naive["read"]["wall_s"] + per_write * naive["mailboxes"],
            "requests": pages + naive["mailboxes"],
            "reads": pages,
            "writes": naive["mailboxes"],
        }
        tenants.converge_mailboxes(emu)
        runs.append(
            {
                "ours": ours_figures,
                "checker": checker_figures,
                "naive": naive_figures,
                "naive_over_ours": naive_figures["projected_wall_s"] / ours.wall_s,
                "checker_over_ours": checker_figures["projected_wall_s"] / ours.wall_s,
            }
        )
        log.info(
            "drift run %d: ours %.1f s (%d writes, %d reads); naive ~%.0f s; checker ~%.0f s",
            index + 1,
            ours.wall_s,
            ours_figures["writes"],
            ours_figures["reads"],
            naive_figures["projected_wall_s"],
            checker_figures["projected_wall_s"],
        )
    shutil.rmtree(workdir, ignore_errors=True)  # audit logs and the user list of these runs
    return {
        "users": users,
        "managed": len(managed),
        "drift": drift_count,
        "expected_reads": math.ceil(users / 1000) + 2,
        "command": command,
        "runs": runs,
    }


def _phases(audit: Path, started: float, ended: float) -> dict[str, float]:
    """Split an apply run's wall time at its first and last audit record: start-up + plan
    read + rendering, the writes, then the verification read and the summary."""
    first = last = None
    for line in audit.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        begin = _epoch(record["ts_start"]) if record.get("ts_start") else None
        end = _epoch(record["ts_end"]) if record.get("ts_end") else None
        if begin is not None:
            first = begin if first is None else min(first, begin)
        if end is not None:
            last = end if last is None else max(last, end)
    if first is None or last is None:
        return {}
    return {
        "before_writes_s": first - started,
        "writes_s": last - first,
        "after_writes_s": ended - last,
    }


def _epoch(stamp: str) -> float:
    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC).timestamp()


# --------------------------------------------------------------------------- case 3 / issue 6


def throughput(emu: Emulator, cfg: BenchConfig) -> dict[str, Any]:
    """Case 3: `throughput_changes` user changes against a fixed-window request budget, with
    and without $batch. The budget is switched on only for the measured execute phase."""
    tenants.converge_mailboxes(emu)
    _set_latency(emu, cfg, True)
    env = _env(emu)
    budget_rate = cfg.budget_per_window / cfg.budget_window_s
    runs = min(cfg.runs, cfg.throughput_max_runs)
    modes: dict[str, list[dict[str, Any]]] = {}
    ceilings: dict[str, dict[str, float]] = {}
    for batch in (True, False):
        mode = "batch" if batch else "single"
        modes[mode] = []
        # One run without any budget first: the client's own ceiling on this machine.
        for index in range(runs + 1):
            budgeted = index > 0
            tenants.inject_drift(emu, cfg.throughput_changes, seed=2000 + index)

            def start(budgeted: bool = budgeted) -> None:
                if budgeted:
                    emu.set_faults(
                        throttle_budget=cfg.budget_per_window,
                        throttle_window_seconds=cfg.budget_window_s,
                    )
                    time.sleep(cfg.budget_window_s + 0.05)  # an old window is over: fresh start
                emu.reset_stats()

            try:
                child = run_job(
                    {"job": "apply", "config": str(MAILBOXES_YAML), "batch": batch},
                    env,
                    on_ready=start,
                )
            finally:
                emu.set_faults(throttle_budget=0)
            stats = emu.stats()
            result = child.result
            left = tenants.count_off_policy(emu)
            if result["counts"].get("applied", 0) != cfg.throughput_changes or left:
                raise BenchCheckFailed(
                    f"throughput ({mode}) applied {result['counts']} and left {left} off policy"
                )
            rejected = int(stats["requests"].get("-", {}).get("429", 0))
            charged = stats["requests_total"] - rejected  # what the budget counted
            elapsed = result["execute"]["wall_s"]
            figures = {
                "elapsed_s": elapsed,
                "cpu_s": result["execute"]["cpu_s"],
                "charged": charged,
                "http_requests": _requests(stats).get("$batch", 0)
                + (0 if batch else _requests(stats).get("Set-User", 0)),
                "throttled": stats["throttled"],
                "writes": _ok(stats, "Set-User"),
                "writes_per_change": _ok(stats, "Set-User") / cfg.throughput_changes,
                "changes_per_s": cfg.throughput_changes / elapsed,
                "units_per_s": charged / elapsed,
                "utilisation": charged / elapsed / budget_rate,
                "retries": result["retries"],
            }
            if not budgeted:
                ceilings[mode] = figures
                log.info(
                    "throughput %s without budget: %.1f s, %.0f units/s, %.2f ms client CPU/change",
                    mode,
                    elapsed,
                    figures["units_per_s"],
                    1000 * figures["cpu_s"] / cfg.throughput_changes,
                )
                continue
            modes[mode].append(figures)
            log.info(
                "throughput %s run %d: %.1f s, utilisation %.3f, %.3f writes/change",
                mode,
                index,
                elapsed,
                figures["utilisation"],
                figures["writes_per_change"],
            )
    return {
        "users": len(emu.service.state.users),
        "changes": cfg.throughput_changes,
        "budget_per_window": cfg.budget_per_window,
        "window_s": cfg.budget_window_s,
        "runs": runs,
        "modes": modes,
        "ceilings": ceilings,
    }


# --------------------------------------------------------------------------- case 4 / issue 3


def capacity(emu: Emulator, cfg: BenchConfig) -> dict[str, Any]:
    """Case 4: requests per second the emulator serves over keep-alive (no latency model),
    Get-User and Set-User separately, 1 client and a few, each client its own process."""
    tenants.converge_mailboxes(emu)
    _set_latency(emu, cfg, False)
    env = _env(emu)
    token = emu.issue_access_token("writer")
    guids = [u["Guid"] for u in tenants.mailboxes(emu)][:500]
    figures: dict[str, dict[int, list[float]]] = {}
    for cmdlet in ("Get-User", "Set-User"):
        figures[cmdlet] = {}
        for clients in cfg.capacity_clients:
            rates: list[float] = []
            for _ in range(cfg.runs):
                job = {
                    "job": "load",
                    "cmdlet": cmdlet,
                    "seconds": cfg.capacity_seconds,
                    "token": token,
                    "policy": tenants.BLOCK,
                }
                children = [
                    Child([], env, job={**job, "identities": guids[i::clients]})
                    for i in range(clients)
                ]
                for child in children:
                    child.wait_ready()
                emu.reset_stats()
                for child in children:
                    child.go()
                results = [child.finish().result for child in children]
                served = _ok(emu.stats(), cmdlet)
                elapsed = max(r["elapsed"]["wall_s"] for r in results)
                if any(r["failures"] for r in results):
                    raise BenchCheckFailed(f"capacity {cmdlet}: some requests failed")
                rates.append(served / elapsed)
            figures[cmdlet][clients] = rates
            log.info("capacity %s x%d: %.0f req/s", cmdlet, clients, median(rates))
    return {"seconds": cfg.capacity_seconds, "rates": figures}


# --------------------------------------------------------------------------- issue 5


def planner(emu: Emulator, cfg: BenchConfig) -> dict[str, Any]:
    """Issue 5: make_plan over the whole tenant against 20 rules (the read is not measured)."""
    _set_latency(emu, cfg, False)
    child = run_job(
        {"job": "planner", "config": str(TWENTY_RULES_YAML), "runs": cfg.runs}, _env(emu)
    )
    result = child.result
    log.info(
        "planner %d users x %d rules: %.2f s CPU, %.0f MB traced",
        result["users"],
        result["rules"],
        median([r["cpu_s"] for r in result["runs"]]),
        result["plan_traced_peak_mb"],
    )
    _set_latency(emu, cfg, True)
    return {**result, "process_peak_rss_mb": result["peak_rss_mb"]}


def _constructor_user(
    obj: dict[str, Any], attributes: tuple[str, ...], policies_by_key: dict[str, str]
) -> Any:
    """The conversion as it was before 55a6784 (TenantUser's frozen __init__, which sets each
    slot through object.__setattr__): the baseline the slots path is measured against."""
    from reconciler.model import TenantUser
    from reconciler.tenant.exo.snapshot import (
        ATTRIBUTE_PROPERTIES,
        UserRow,
        _interned,
        _text,
        policy_name_from_reference,
    )

    user_id = _text(obj, "ExternalDirectoryObjectId")
    if not user_id:
        return None
    user_id = user_id.lower()
    guid = str(obj.get("Guid") or "").lower()
    values: dict[str, Any] = {}
    for attribute in attributes:
        prop = ATTRIBUTE_PROPERTIES.get(attribute)
        if prop:
            values[attribute] = _interned(_text(obj, prop))
    upn = _text(obj, "UserPrincipalName") or ""
    policy = obj.get("AuthenticationPolicy")
    if policy is not None:
        policy = policy_name_from_reference(policy, policies_by_key)
        if policy is not None:
            policy = sys.intern(policy)
    user = TenantUser(
        id=user_id,
        upn=upn,
        identity=_text(obj, "Name") or _text(obj, "Identity") or upn,
        recipient_type=sys.intern(_text(obj, "RecipientTypeDetails") or "User"),
        policy=policy,
        display_name=_text(obj, "DisplayName") or "",
        sts_refresh_tokens_valid_from=_text(obj, "StsRefreshTokensValidFrom"),
        **values,
    )
    return UserRow(user, guid)


def conversion(emu: Emulator, cfg: BenchConfig) -> dict[str, Any]:
    """Issue 18, cheaper user objects: every Get-User object of the tenant (as the wire gave
    it, every match attribute selected) converted by the slots path (snapshot.user_from_json)
    and by the constructor it replaced, alternating in each run, the results checked equal."""
    import gc

    from reconciler.cli import build_parser
    from reconciler.model import SnapshotNeeds
    from reconciler.tenant.connect import open_tenant
    from reconciler.tenant.exo.snapshot import ATTRIBUTE_PROPERTIES, user_from_json, user_select
    from reconciler.tenant.pause_gc import gc_paused

    _set_latency(emu, cfg, False)
    env = {**emu.connection_env(app="writer"), "AUTHPOLICY_READ_CONCURRENCY": "1"}
    tenant = open_tenant(build_parser().parse_args(["report"]), env)
    tenant.read_snapshot(SnapshotNeeds(users=False))  # the policies, to resolve references
    policies_by_key = dict(tenant._policies_by_key)
    attributes = tuple(sorted(ATTRIBUTE_PROPERTIES))
    select = user_select(frozenset(attributes))
    objects = [
        obj
        for page in tenant.client.pages("Get-User", {"ResultSize": "Unlimited"}, select=select)
        for obj in page.value
    ]
    ways = {
        "constructor": lambda obj: _constructor_user(obj, attributes, policies_by_key),
        "slots": lambda obj: user_from_json(obj, attributes, policies_by_key),
    }
    runs = []
    for index in range(cfg.runs):
        run: dict[str, Any] = {}
        made: dict[str, list[Any]] = {}
        order = list(ways) if index % 2 == 0 else list(reversed(ways))
        for name in order:
            convert = ways[name]
            gc.collect()
            with gc_paused():  # as during a snapshot read
                started = time.perf_counter()
                made[name] = [convert(obj) for obj in objects]
                run[f"{name}_s"] = time.perf_counter() - started
        if made["slots"] != made["constructor"]:
            raise BenchCheckFailed("the slots path made other users than the constructor")
        run["ratio"] = run["slots_s"] / run["constructor_s"]
        runs.append(run)
        log.info(
            "conversion run %d: %d users, constructor %.3f s, slots %.3f s",
            index + 1,
            len(objects),
            run["constructor_s"],
            run["slots_s"],
        )
    return {"users": len(objects), "attributes": len(attributes), "runs": runs}
