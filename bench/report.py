"""docs/benchmarks.md from the figures of `bench.suite` (medians of the runs; per-run ratios)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from bench.suite import BY_SIZE, CASE_NAMES, CASE_TITLES
from reconciler.apply.verify import USER_SAMPLE
from reconciler.tenant.connect import DEFAULT_READ_CONCURRENCY
from reconciler.tenant.graph import SignInReader


def reads_bound(users: int) -> int:
    """Case 2's read bound, ceil(users/1000) + c: c = Get-AuthenticationPolicy and
    Get-OrganizationConfig for the plan and again for the verification, plus the
    verification's sample of changed users (a constant: no more than USER_SAMPLE)."""
    return math.ceil(users / 1000) + 4 + USER_SAMPLE


NOT_RUN = "not run"


def med(values: Sequence[float]) -> float:
    """Median, NaN when empty."""
    return statistics.median(values) if values else float("nan")


def _num(value: float, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _int(value: float) -> str:
    return f"{round(value):,}"


def _spread(values: Sequence[float], digits: int = 2) -> str:
    """'median (min-max)' of the runs."""
    if not values:
        return "n/a"
    if len(values) == 1:
        return _num(values[0], digits)
    return f"{_num(med(values), digits)} ({_num(min(values), digits)}-{_num(max(values), digits)})"


def _col(runs: Sequence[dict[str, Any]], *path: str) -> list[float]:
    out = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value[key]
        out.append(float(value))
    return out


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _verdict(ok: bool) -> str:
    return "met" if ok else "**NOT met**"


def _produced_by(meta: dict[str, Any]) -> str:
    load = meta.get("load_before") or [float("nan")] * 3
    after = meta.get("load_after") or [float("nan")] * 3
    runs = meta.get("runs")
    return (
        f"_Measured {meta.get('started')} by `{meta.get('command')}`"
        + (f" at commit {meta['commit']}" if meta.get("commit") else "")
        + f" ({runs} run(s); "
        f"load average {load[0]:.2f} before, {after[0]:.2f} after; "
        f"{meta.get('seconds', 0):.0f} s)._"
    )


# --------------------------------------------------------------------------- sections


def _noop(entry: dict[str, Any]) -> list[str]:
    sizes = [s for s in entry["sizes"] if s.get("figures")]
    out: list[str] = []
    rows = []
    by_users: dict[int, dict[str, float]] = {}
    for size in sizes:
        fig = size["figures"]
        runs = fig["runs"]
        medians = {
            "wall": med(_col(runs, "wall_s")),
            "cpu": med(_col(runs, "cpu_s")),
            "rss": med(_col(runs, "peak_rss_mb")),
            "base": med(_col(runs, "base_rss_mb")),
        }
        by_users[fig["users"]] = medians
        requests = _col(runs, "requests")
        redirects = [r.get("redirects", 0) for r in runs]
        rows.append(
            [
                _int(fig["users"]),
                f"{_int(med(requests))} (bound {fig['expected_reads']}"
                + (f" + {_int(med(redirects))} redirect" if med(redirects) else "")
                + ")",
                _spread(_col(runs, "wall_s")),
                _spread(_col(runs, "cpu_s")),
                _spread(_col(runs, "peak_rss_mb"), 0),
                _spread(_col(runs, "read_wall_s")),
                _spread(_col(runs, "read_cpu_s")),
                _spread(_col(runs, "plan_cpu_s"), 3),
                _spread(_col(runs, "process_wall_s")),
            ]
        )
    out += _table(
        [
            "users",
            "requests",
            "wall s",
            "client CPU s",
            "peak RSS MB",
            "read wall s",
            "read CPU s",
            "plan CPU s",
            "process wall s (incl. start-up)",
        ],
        rows,
    )
    out.append("")
    out.append(
        "Requests are the emulator's count of admin API calls (Get-AuthenticationPolicy, "
        "Get-OrganizationConfig, the Get-User pages); the bound is ceil(users/1000) + 2. "
        "Wall and CPU time run from loading policies.yaml to the rendered plan, in the client's "
        "own process; the last column adds interpreter start-up and imports. Peak RSS is that "
        "process's own high-water mark (VmHWM; interpreter and imports included, about "
        f"{_num(med([m['base'] for m in by_users.values()]), 0)} MB before any work)."
    )
    if 10_000 in by_users and 100_000 in by_users:
        small, big = by_users[10_000], by_users[100_000]
        growth = [
            ("wall time", big["wall"] / small["wall"]),
            ("client CPU", big["cpu"] / small["cpu"]),
            (
                "memory above start-up",
                (big["rss"] - big["base"]) / max(small["rss"] - small["base"], 1e-9),
            ),
        ]
        text = ", ".join(f"{name} x{value:.1f}" for name, value in growth)
        linear = all(value <= 10.5 for _, value in growth)
        out += [
            "",
            f"Growth from 10,000 to 100,000 users (10x the users): {text} - "
            f"{'linear or better' if linear else '**worse than linear**'}.",
        ]
    return out


def _snapshot(entry: dict[str, Any]) -> list[str]:
    sizes = [s for s in entry["sizes"] if s.get("figures")]
    if not sizes:
        return [NOT_RUN]
    fig = sizes[-1]["figures"]
    runs = fig["runs"]
    reads = med(_col(runs, "reads"))
    rss = med(_col(runs, "peak_rss_mb"))
    out = _table(
        ["users", "requests", "read wall s", "read CPU s", "peak RSS MB", "targets"],
        [
            [
                _int(fig["users"]),
                f"{_int(reads)} (ceil(users/1000) + 2 = {fig['expected_reads']})",
                _spread(_col(runs, "read_wall_s")),
                _spread(_col(runs, "read_cpu_s")),
                _spread(_col(runs, "peak_rss_mb"), 0),
                f"requests {_verdict(reads <= fig['expected_reads'])}; "
                f"memory < 400 MB {_verdict(rss < 400)}",
            ]
        ],
    )
    return [
        *out,
        "",
        "The same runs as case 1 at the largest size (no groups in the rules); the peak RSS is "
        "the whole plan process, an upper bound for the read alone.",
    ]


def _drift(entry: dict[str, Any]) -> list[str]:
    fig = entry["figures"]
    runs = fig["runs"]
    ours = [r["ours"] for r in runs]
    naive = [r["naive"] for r in runs]
    checker = [r["checker"] for r in runs]
    naive_ratio = _col(runs, "naive_over_ours")
    checker_ratio = _col(runs, "checker_over_ours")
    rows = [
        [
            "authpolicy plan + apply (measured)",
            _int(med(_col(ours, "requests"))),
            _int(med(_col(ours, "reads"))),
            _int(med(_col(ours, "writes"))),
            _spread(_col(ours, "wall_s"), 1),
            "1",
        ],
        [
            "naive loop (projected from measured rate)",
            _int(med(_col(naive, "requests"))),
            _int(med(_col(naive, "reads"))),
            _int(med(_col(naive, "writes"))),
            _spread(_col(naive, "projected_wall_s"), 0),
            _spread(naive_ratio, 1),
        ],
        [
            "per-user checker (projected from measured rate)",
            _int(med(_col(checker, "requests"))),
            _int(med(_col(checker, "reads"))),
            _int(med(_col(checker, "writes"))),
            _spread(_col(checker, "projected_wall_s"), 0),
            _spread(checker_ratio, 1),
        ],
    ]
    users, drift = fig["users"], fig["drift"]
    writes = med(_col(ours, "writes"))
    reads = med(_col(ours, "reads"))
    pages = med(_col(ours, "get_user_pages"))
    verify_users = med([o.get("verify_user_reads", 0) for o in ours])
    naive_per_call = med([n["sample_wall_s"] / n["sample"] for n in naive])
    checker_per_user = med([c["sample_wall_s"] / c["sample"] for c in checker])
    out = [
        f"{_int(users)} users, {_int(fig['managed'])} of them user mailboxes (the managed "
        f"users), {_int(drift)} mailboxes drifted ({_int(drift / 2)} lost their direct policy, "
        f'{_int(drift - drift / 2)} moved to "SMTP relay devices").',
        "",
        *_table(
            [
                "",
                "HTTP requests",
                "reads",
                "writes (Set-User)",
                "wall s",
                "baseline / ours (per run)",
            ],
            rows,
        ),
        "",
        *_ours_phases(ours),
        "Targets:",
        f"- writes equal to the drift ({_int(drift)}): {_int(writes)} - {_verdict(writes == drift)}"
        f" (emulator-counted Set-User calls that ran; "
        f"{_int(med(_col(ours, 'batches')) - math.ceil(verify_users / 10))} $batch requests "
        "carried them).",
        f"- reads at most ceil(users/1000) + a constant ({_int(math.ceil(users / 1000))} + c): "
        f"{_int(reads)} reads in all: the plan read ({_int(pages)} Get-User pages, "
        "Get-AuthenticationPolicy, Get-OrganizationConfig) and, after the writes, the "
        "verification (Get-AuthenticationPolicy, Get-OrganizationConfig, and Get-User for an "
        f"even sample of {_int(verify_users)} of the changed users, 10 per $batch; "
        "apply/verify.py), so c = "
        f"{_int(reads - pages)}, the same at any tenant size and drift - "
        f"{_verdict(reads <= reads_bound(users))}.",
        f"- wall time at least 20x lower than the naive loop: x{_num(med(naive_ratio), 1)} - "
        f"{_verdict(med(naive_ratio) >= 20)}.",
        f"- wall time at least 50x lower than the per-user checker: x{_num(med(checker_ratio), 1)}"
        f" - {_verdict(med(checker_ratio) >= 50)}.",
        "",
        "How each row was measured, in every run (ratios are per run, then the median):",
        f"- ours: `{' '.join(_short_command(fig['command']))}` run for real at full size in its "
        "own process (wall from process start to exit, so interpreter start-up, the plan read, "
        "the writes and the verification are all in it), against the drifted tenant; the "
        "run is checked to leave no mailbox off policy.",
        f"- naive loop (bench/child.py `job_naive`): the Get-Recipient read of all "
        f"{_int(med(_col(naive, 'mailboxes')))} mailboxes is run in full "
        f"({_num(med(_col(naive, 'read_wall_s')), 1)} s); then Set-User -AuthenticationPolicy "
        f"-STSRefreshTokensValidFrom, one request at a time, for the first "
        f"{_int(med(_col(naive, 'sample')))} mailboxes ({_num(naive_per_call * 1000, 1)} ms per "
        "call). Projected wall = read + mailboxes x measured time per call.",
        f"- per-user checker (`job_checker`): Get-User then Set-User where different, for the "
        f"first {_int(med(_col(checker, 'sample')))} managed users of the configuration with the "
        f"same 1% drift spread at random ({_num(checker_per_user * 1000, 1)} ms per user, "
        f"{_num(med(_col(checker, 'sample_sets')), 0)} Set-User in the sample). Projected wall = "
        "managed users x measured time per user.",
        "- Requests and writes of the baselines at full size are counted from their algorithm "
        "(the naive loop: ceil(mailboxes/1000) pages + one Set-User per mailbox; the checker: one "
        "Get-User per managed user + one Set-User per drifted one); on the samples the emulator "
        "counted exactly that.",
    ]
    return out


def _ours_phases(ours: Sequence[dict[str, Any]]) -> list[str]:
    timed = [o for o in ours if "writes_s" in o]
    if not timed:
        return []
    return [
        "Where our time goes (median, split at the first and last audit-log record of each "
        f"run): {_num(med(_col(timed, 'before_writes_s')), 1)} s before the first write "
        "(interpreter start-up, loading, the plan read, rendering the plan), "
        f"{_num(med(_col(timed, 'writes_s')), 1)} s of writes, "
        f"{_num(med(_col(timed, 'after_writes_s')), 1)} s after the last write (the "
        "verification: policies, default and a sample of the changed users; the summary).",
        "",
    ]


def _short_command(command: Sequence[str]) -> list[str]:
    out = []
    for part in command:
        if part.endswith("python") or "/python3" in part or part.endswith("/python"):
            out.append("python")
        elif "/tmp/" in part:
            out.append("<tmp>/" + part.rsplit("/", 1)[-1])
        elif "/bench/" in part:
            out.append("bench/" + part.split("/bench/", 1)[1])
        else:
            out.append(part)
    return out


def _throughput(entry: dict[str, Any]) -> list[str]:
    fig = entry["figures"]
    rate = fig["budget_per_window"] / fig["window_s"]
    rows = []
    verdicts = []
    for mode, label in (("batch", "with $batch (10 per request)"), ("single", "without $batch")):
        runs = fig["modes"].get(mode) or []
        if not runs:
            rows.append([label, NOT_RUN, "", "", "", "", "", ""])
            continue
        utilisation = med(_col(runs, "utilisation"))
        per_change = med(_col(runs, "writes_per_change"))
        verdicts.append(
            f"{label}: utilisation {_num(utilisation, 3)} {_verdict(utilisation >= 0.9)}, "
            f"writes per change {_num(per_change, 3)} {_verdict(abs(per_change - 1) < 1e-9)}"
        )
        rows.append(
            [
                label,
                _spread(_col(runs, "elapsed_s"), 1),
                _spread(_col(runs, "changes_per_s"), 0),
                _int(med(_col(runs, "http_requests"))),
                _int(med(_col(runs, "charged"))),
                _spread(_col(runs, "utilisation"), 3),
                _num(per_change, 3),
                _int(med(_col(runs, "throttled"))),
            ]
        )
    ceilings = fig.get("ceilings") or {}
    for mode, label in (
        ("batch", "with $batch, no budget"),
        ("single", "without $batch, no budget"),
    ):
        ceiling = ceilings.get(mode)
        if ceiling:
            rows.append(
                [
                    label + " (1 run)",
                    _num(ceiling["elapsed_s"], 1),
                    _num(ceiling["changes_per_s"], 0),
                    _int(ceiling["http_requests"]),
                    f"{_int(ceiling['charged'])} ({_num(ceiling['units_per_s'], 0)}/s)",
                    "-",
                    _num(ceiling["writes_per_change"], 3),
                    _int(ceiling["throttled"]),
                ]
            )
    runs = fig.get("runs")
    runs_note = (
        f" {runs} budgeted runs per mode (fewer than 5 because each takes over a minute at this "
        "budget; the spread is shown)."
        if runs is not None and runs < 5
        else ""
    )
    ceiling_note = ""
    if ceilings.get("single") and ceilings.get("batch"):
        single, batch = ceilings["single"], ceilings["batch"]
        ceiling_note = (
            " The rows without a budget show the client's own ceiling on this machine: "
            f"{_num(single['units_per_s'], 0)} requests/s without $batch "
            f"({_num(1000 * single['cpu_s'] / fig['changes'], 2)} ms of client CPU per change: "
            "one HTTPS request each, through requests, under one GIL), "
            f"{_num(batch['units_per_s'], 0)} budget units/s with $batch "
            f"({_num(1000 * batch['cpu_s'] / fig['changes'], 2)} ms per change). A budget above "
            "the first figure would measure the client, not the budget."
        )
    return [
        f"{_int(fig['changes'])} user changes (a {_int(fig['users'])}-user tenant), applied by "
        f"`execute_plan` (max concurrency 16) in its own process; the emulator allows "
        f"{fig['budget_per_window']} requests per {fig['window_s']:g} s window per app "
        f"({_num(rate, 0)} requests/s) and answers 429 with Retry-After beyond it. The budget is "
        "switched on after the plan read, so only the apply phase is measured." + runs_note,
        "",
        *_table(
            [
                "mode",
                "apply wall s",
                "changes/s",
                "HTTP requests",
                "budget units charged",
                "achieved / budget",
                "writes per change",
                "429 answers",
            ],
            rows,
        ),
        "",
        "The emulator charges its budget per InvokeCommand, and a $batch costs one unit plus one "
        "per member (a 10-member batch = 11 units), so batching does not buy more writes per "
        "second from this budget (at most budget x 10/11 changes/s), it buys fewer HTTP round "
        "trips. Achieved / budget = units charged / apply wall time / budget rate; writes per "
        "change = Set-User calls that ran (emulator count) / changes; 429 answers are rejected "
        "attempts (they cost no budget and change nothing)." + ceiling_note,
        "",
        *[f"- {v}" for v in verdicts],
    ]


def _capacity(entry: dict[str, Any]) -> list[str]:
    fig = entry["figures"]
    rows = []
    best: dict[str, float] = {}
    for cmdlet, by_clients in fig["rates"].items():
        for clients, rates in sorted(by_clients.items(), key=lambda kv: int(kv[0])):
            rows.append([cmdlet, str(clients), _spread(rates, 0)])
            best[cmdlet] = max(best.get(cmdlet, 0.0), med(rates))
    verdict = ", ".join(
        f"{cmdlet} {_int(value)}/s {_verdict(value >= 1000)}" for cmdlet, value in best.items()
    )
    return [
        *_table(["cmdlet", "client processes (1 keep-alive connection each)", "requests/s"], rows),
        "",
        f"No latency model here (the emulator's own cost). Each client is a separate process "
        f"with one keep-alive TLS connection and a minimal http.client loop, running "
        f"{fig['seconds']:g} s after a warm-up; requests/s = emulator-counted 200 answers / "
        "elapsed. Set-User writes the same policy again (a state no-op, the full write path). "
        f"Target >= 1,000/s: {verdict}.",
    ]


def _planner(entry: dict[str, Any]) -> list[str]:
    fig = entry["figures"]
    runs = fig["runs"]
    cpu = med(_col(runs, "cpu_s"))
    traced = fig["plan_traced_peak_mb"]
    return [
        *_table(
            [
                "users",
                "rules",
                "changes planned",
                "plan CPU s",
                "plan wall s",
                "planner peak (tracemalloc) MB",
                "process peak RSS MB",
                "target",
            ],
            [
                [
                    _int(fig["users"]),
                    str(fig["rules"]),
                    _int(fig["changes"]),
                    _spread(_col(runs, "cpu_s")),
                    _spread(_col(runs, "wall_s")),
                    _num(traced, 0),
                    _num(fig["process_peak_rss_mb"], 0),
                    f"< 2 s {_verdict(cpu < 2)}, < 300 MB {_verdict(traced < 300)}",
                ]
            ],
        ),
        "",
        "`make_plan(desired, snapshot)` alone (bench/policies/twenty_rules.yaml: every match "
        "key, nested group expansion, `except`, unmatched: clear), repeated over one snapshot "
        "read once from the emulator in the same process. The memory figure is the peak of "
        "Python allocations during one planning call (tracemalloc, in a separate untimed call); "
        "the process peak RSS (its high-water mark over the read and the timed calls, taken before "
        "the tracemalloc call) adds the interpreter and the snapshot.",
    ]


def _figures(results: dict[str, Any], name: str) -> Any:
    entry = results.get(name) or {}
    return entry.get("figures")


def _sized(results: dict[str, Any], name: str) -> list[Any]:
    """The figures of a case measured at several sizes, smallest first."""
    return [s["figures"] for s in (results.get(name) or {}).get("sizes", []) if s["figures"]]


def _summary(results: dict[str, Any]) -> list[str]:
    """One row per target of issues 3-6 and 9: the figure and whether it was met."""
    rows: list[list[str]] = []
    sizes = [s["figures"] for s in (results.get("noop") or {}).get("sizes", []) if s["figures"]]
    for fig in sizes:
        # The cmdlet requests are the target; redirect_to_backend's 307 (once per run) is told
        # apart, not hidden: it is a request the real service may or may not send.
        reads = med(_col(fig["runs"], "reads"))
        redirects = med([r.get("redirects", 0) for r in fig["runs"]])
        rows.append(
            [
                f"1: no-op plan at {_int(fig['users'])} users, requests <= ceil(users/1000) + 2",
                _int(reads) + (f" (+ {_int(redirects)} redirect)" if redirects else ""),
                _verdict(reads <= fig["expected_reads"]),
            ]
        )
    big = {f["users"]: f for f in sizes}
    if 10_000 in big and 100_000 in big:
        small, large = big[10_000]["runs"], big[100_000]["runs"]
        cpu = med(_col(large, "cpu_s")) / med(_col(small, "cpu_s"))
        wall = med(_col(large, "wall_s")) / med(_col(small, "wall_s"))
        rows.append(
            [
                "1: growth 10k -> 100k users linear or better (<= x10)",
                f"wall x{wall:.1f}, CPU x{cpu:.1f}",
                _verdict(cpu <= 10.5 and wall <= 10.5),
            ]
        )
    if sizes:
        largest = sizes[-1]
        rss = med(_col(largest["runs"], "peak_rss_mb"))
        rows.append(
            [
                f"issue 4: snapshot read of {_int(largest['users'])} users, peak memory < 400 MB",
                f"{_num(rss, 0)} MB (whole plan process)",
                _verdict(rss < 400),
            ]
        )
    drift = _figures(results, "drift")
    if drift:
        ours = [r["ours"] for r in drift["runs"]]
        writes = med(_col(ours, "writes"))
        reads = med(_col(ours, "reads"))
        pages = med(_col(ours, "get_user_pages"))
        verify_users = med([o.get("verify_user_reads", 0) for o in ours])
        naive = med(_col(drift["runs"], "naive_over_ours"))
        checker = med(_col(drift["runs"], "checker_over_ours"))
        rows += [
            [
                f"2: writes = drift ({_int(drift['drift'])})",
                _int(writes),
                _verdict(writes == drift["drift"]),
            ],
            [
                f"2: reads <= ceil(users/1000) + c ({_int(math.ceil(drift['users'] / 1000))} + c)",
                f"{_int(reads)} (c = {_int(reads - pages)}: policies and default twice, "
                f"{_int(verify_users)} users verified)",
                _verdict(reads <= reads_bound(drift["users"])),
            ],
            [
                "2: wall >= 20x lower than the naive loop",
                f"x{_num(naive, 1)}",
                _verdict(naive >= 20),
            ],
            [
                "2: wall >= 50x lower than the per-user checker",
                f"x{_num(checker, 1)}",
                _verdict(checker >= 50),
            ],
        ]
    throughput = _figures(results, "throughput")
    if throughput:
        for mode, label in (("batch", "with $batch"), ("single", "without $batch")):
            runs = throughput["modes"].get(mode) or []
            if runs:
                utilisation = med(_col(runs, "utilisation"))
                per_change = med(_col(runs, "writes_per_change"))
                rows.append(
                    [
                        f"3 / issue 6: {_int(throughput['changes'])} changes {label}: achieved / "
                        "budget >= 0.9, writes per change 1.0",
                        f"{_num(utilisation, 3)}, {_num(per_change, 3)}",
                        _verdict(utilisation >= 0.9 and abs(per_change - 1) < 1e-9),
                    ]
                )
    capacity = _figures(results, "capacity")
    if capacity:
        for cmdlet, by_clients in capacity["rates"].items():
            low = min(med(rates) for rates in by_clients.values())
            rows.append(
                [
                    f"4 / issue 3: emulator {cmdlet} >= 1,000/s over keep-alive (1 and "
                    f"{max(int(c) for c in by_clients)} clients)",
                    f"{_int(low)}/s at least",
                    _verdict(low >= 1000),
                ]
            )
    planner = _figures(results, "planner")
    if planner:
        cpu = med(_col(planner["runs"], "cpu_s"))
        traced = planner["plan_traced_peak_mb"]
        rows.append(
            [
                f"issue 5: plan {_int(planner['users'])} users x {planner['rules']} rules in < 2 s "
                "CPU and < 300 MB",
                f"{_num(cpu, 2)} s, {_num(traced, 0)} MB",
                _verdict(cpu < 2 and traced < 300),
            ]
        )
    smtp = _figures(results, "smtp")
    if smtp:
        rows += _smtp_summary(smtp)
    evidence = _figures(results, "evidence")
    if evidence:
        rows += _evidence_summary(evidence)
    fleet = _figures(results, "fleet")
    if fleet:
        runs = fleet["runs"]
        c = fleet["concurrency"]
        eff = med([r["efficiency"] for r in runs])
        speed = med([r["speedup"] for r in runs])
        peak = max(r["fleet"]["peak_rss_mb"] for r in runs)
        rows += [
            [
                f"issue 16: {fleet['tenants']} tenants x {_int(fleet['users'])} users at C = {c}: "
                "overlap efficiency >= 0.8",
                _num(eff, 2),
                _verdict(eff >= 0.8),
            ],
            [
                f"issue 16: the same, fleet >= 0.8 x C = {_num(0.8 * c, 1)} times faster than "
                "one tenant after another",
                f"x{_num(speed, 2)}",
                _verdict(speed >= 0.8 * c),
            ],
            [
                "issue 16: the same, peak memory (stated)",
                f"{_num(peak, 0)} MB at C = {c}",
                "stated",
            ],
        ]
    for parted in _sized(results, "partitioned"):
        runs = parted["runs"]
        at = f"{_int(parted['users'])} users"
        ratio = med([r["ratio_partitioned"] for r in runs])
        capped = med([r["ratio_partitioned_cap4"] for r in runs])
        cpu = med([r["cpu_ratio"] for r in runs])
        # Per run: the requests against ceil(users/1000) + that run's partitions + 4.
        base = -(-parted["users"] // 1000) + 4
        over = max(r["partitioned"]["requests"] - r["partitioned"]["partitions"] for r in runs)
        worst = max(
            runs, key=lambda r: r["partitioned"]["requests"] - r["partitioned"]["partitions"]
        )
        rows += [
            [
                f"issue 18: no-op plan at {at} on {parted['concurrency']} partitioned cursors: "
                "wall <= 0.30 x one cursor",
                f"x{_num(ratio, 2)}",
                _verdict(ratio <= 0.30),
            ],
            [
                f"issue 18: {at}, requests <= ceil(users/1000) + partitions + 4",
                f"{_int(worst['partitioned']['requests'])} with "
                f"{_int(worst['partitioned']['partitions'])} partitions "
                f"(limit {_int(base + worst['partitioned']['partitions'])})",
                _verdict(over <= base),
            ],
            [
                f"issue 18: {at}, client CPU <= 1.1 x one cursor",
                f"x{_num(cpu, 2)}",
                _verdict(cpu <= 1.1),
            ],
            [
                f"issue 18: {at}, the emulator serving 4 requests at once: >= 2.5 x faster",
                f"x{_num(1 / capped, 2)}",
                _verdict(1 / capped >= 2.5),
            ],
        ]
        if parted["users"] >= 300_000:
            peak = max(r[m]["peak_rss_mb"] for r in runs for m in ("four", "partitioned"))
            rows.append(
                [
                    f"issue 18: {at}, partitioned, peak memory < 400 MB",
                    f"{_num(peak, 0)} MB",
                    _verdict(peak < 400),
                ]
            )
    conversion = _figures(results, "conversion")
    if conversion:
        ratio = med([r["ratio"] for r in conversion["runs"]])
        rows.append(
            [
                "issue 18: user conversion cut, the same users (slots / constructor)",
                f"x{_num(ratio)}",
                _verdict(ratio < 1),
            ]
        )
    startup = _figures(results, "startup")
    if startup:
        bare = med(startup["walls"]["python -c pass"])
        limit = max(0.15, 4 * bare)
        quick = {k: med(v) for k, v in startup["walls"].items() if k != "python -c pass"}
        rows.append(
            [
                "issue 18: --help, --version, validate within max(0.15 s, 4x python -c pass)",
                ", ".join(f"{k.split()[-1]} {_num(v, 3)} s" for k, v in quick.items())
                + f" (limit {_num(limit, 3)} s)",
                _verdict(all(v <= limit for v in quick.values())),
            ]
        )
    if not rows:
        return []
    return ["## Summary of targets", "", *_table(["target (case)", "measured", ""], rows), ""]


def _smtp_met(fig: dict[str, Any]) -> dict[str, bool]:
    pairs = fig["pairs"]
    plain = med([p["plain"]["requests"] for p in pairs])
    smtp = med([p["smtp"]["requests"] for p in pairs])
    return {
        "requests": smtp <= 2 * plain + 2,
        **{
            key: med([p[f"ratio_{key}"] for p in pairs]) < 2
            for key in ("wall_s", "cpu_s", "peak_rss_mb")
        },
    }


def _smtp_summary(fig: dict[str, Any]) -> list[list[str]]:
    pairs = fig["pairs"]
    plain = med([p["plain"]["requests"] for p in pairs])
    smtp = med([p["smtp"]["requests"] for p in pairs])
    met = _smtp_met(fig)
    ratios = ", ".join(
        f"{label} x{_num(med([p[f'ratio_{key}'] for p in pairs]), 2)}"
        for key, label in (("wall_s", "wall"), ("cpu_s", "CPU"), ("peak_rss_mb", "memory"))
    )
    return [
        [
            f"issue 14: no-op plan at {_int(fig['users'])} users with mailboxes managed: "
            "requests <= 2 x without + 2",
            f"{_int(smtp)} vs {_int(plain)}",
            _verdict(met["requests"]),
        ],
        [
            "issue 14: the same, wall, CPU and memory < 2x without (side by side)",
            ratios,
            _verdict(met["wall_s"] and met["cpu_s"] and met["peak_rss_mb"]),
        ],
    ]


def _evidence_summary(fig: dict[str, Any]) -> list[list[str]]:
    pairs = fig["pairs"]
    graph = max(p["evidence"]["graph_requests"] for p in pairs)
    # Read in time slices since issue 18 (each ends on a page of its own): pages + slices.
    slices = SignInReader.SLICES_PER_CURSOR * DEFAULT_READ_CONCURRENCY
    extra_rss = med([p["evidence"]["peak_rss_mb"] - p["plain"]["peak_rss_mb"] for p in pairs])
    wall = med([p["ratio_wall_s"] for p in pairs])
    return [
        [
            f"issue 15: evidence of {_int(fig['legacy_events'])} legacy sign-ins at "
            f"{_int(fig['users'])} users: Graph requests <= pages + 1, in {slices} time slices "
            f"<= pages + {slices}",
            f"{_int(graph)} (pages {_int(fig['pages_needed'])})",
            _verdict(graph <= fig["pages_needed"] + slices),
        ],
        [
            "issue 15: the same, memory it adds < 50 MB (peak RSS, with - without)",
            f"{_num(extra_rss, 1)} MB",
            _verdict(extra_rss < 50),
        ],
        [
            "issue 15: wall it adds to the no-op plan (aim < 20% once reads are partitioned)",
            f"x{_num(wall, 2)}",
            "stated" if wall >= 1.2 else _verdict(True),
        ],
    ]


def _evidence(entry: dict[str, Any]) -> list[str]:
    fig = entry["figures"]
    pairs = fig["pairs"]
    rows = []
    for mode, label in (
        ("plain", "without evidence (mailboxes.yaml)"),
        ("evidence", "with evidence (mailboxes_evidence.yaml)"),
    ):
        runs = [p[mode] for p in pairs]
        rows.append(
            [
                label,
                _int(med(_col(runs, "requests"))),
                _int(med(_col(runs, "graph_requests"))),
                _spread(_col(runs, "wall_s")),
                _spread(_col(runs, "read_wall_s")),
                _spread(_col(runs, "cpu_s")),
                _spread(_col(runs, "peak_rss_mb"), 0),
            ]
        )
    rows.append(
        [
            "ratio with / without (per run, median)",
            "",
            "",
            _num(med([p["ratio_wall_s"] for p in pairs]), 2),
            "",
            _num(med([p["ratio_cpu_s"] for p in pairs]), 2),
            _num(med([p["ratio_peak_rss_mb"] for p in pairs]), 2),
        ]
    )
    return [
        *_table(
            [
                "no-op plan",
                "requests",
                "Graph requests",
                "wall s",
                "read wall s",
                "CPU s",
                "peak RSS MB",
            ],
            rows,
        ),
        "",
        f"{_int(fig['users'])} users, converged; the sign-in log holds "
        f"{_int(fig['legacy_events'])} legacy sign-ins in the 30-day window (served in "
        f"{_int(fig['pages_needed'])} pages of 1,000, each taking {_num(fig['graph_page_ms'], 0)} "
        "ms like an Exchange page of 1,000 objects). The two plans alternate in one run, each "
        "in a process of its own; ratios are per pair, then the median.",
    ]


def _fleet(entry: dict[str, Any]) -> list[str]:
    fig = entry["figures"]
    runs = fig["runs"]
    rows = [
        [
            label,
            _spread([r[mode]["wall_s"] for r in runs]),
            _spread([r[mode]["cpu_s"] for r in runs]),
            _spread([r[mode]["peak_rss_mb"] for r in runs], 0),
        ]
        for mode, label in (
            ("sequential", "one tenant after another (--tenant-concurrency 1)"),
            ("fleet", f"{fig['concurrency']} at a time (the default)"),
        )
    ]
    rows.append(
        [
            "speed-up; overlap efficiency (speed-up / C), per run, median",
            f"x{_num(med([r['speedup'] for r in runs]), 2)}",
            _num(med([r["efficiency"] for r in runs]), 2),
            "",
        ]
    )
    return [
        *_table(["plan --tenants", "wall s", "CPU s", "peak RSS MB"], rows),
        "",
        f"{fig['tenants']} emulated tenants of {_int(fig['users'])} users each "
        "(`authpolicy emulator serve --tenants N`, a process of its own), every tenant planned "
        f"against bench/policies/mailboxes.yaml. Latency model: {_num(fig['page_ms'], 0)} ms per "
        f"page of 1,000 users, {_num(fig['request_ms'], 0)} ms per other request. The two modes "
        "alternate in one run; ratios are per run, then the median.",
    ]


PROJECTED_PAGE_S = (1.0, 2.0)


def _partitioned(entry: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for size in entry["sizes"]:
        fig = size["figures"]
        if not fig:
            continue
        out += [f"### {_int(fig['users'])} users", "", *_partitioned_size(fig), ""]
    out += ["### Projection to the real service (computed, NOT measured)", ""]
    out += _projection(entry)
    return out


def _partitioned_size(fig: dict[str, Any]) -> list[str]:
    runs = fig["runs"]
    labels = (
        ("single", "one cursor (--read-concurrency 1)"),
        ("four", "4 partitioned cursors (--read-concurrency 4)"),
        ("partitioned", f"{fig['concurrency']} partitioned cursors (the default)"),
        ("partitioned_cap4", f"{fig['concurrency']} cursors, the emulator serving 4 at once"),
    )
    rows = [
        [
            label,
            _int(med([r[mode]["requests"] for r in runs])),
            _int(med([r[mode]["partitions"] for r in runs])),
            _spread([r[mode]["wall_s"] for r in runs]),
            _spread([r[mode]["read_wall_s"] for r in runs]),
            _spread([r[mode]["cpu_s"] for r in runs]),
            _spread([r[mode]["peak_rss_mb"] for r in runs], 0),
            "1" if mode == "single" else _spread([r[f"ratio_{mode}"] for r in runs]),
        ]
        for mode, label in labels
    ]
    return [
        *_table(
            [
                "no-op plan",
                "requests",
                "filters",
                "wall s",
                "read wall s",
                "CPU s",
                "peak RSS MB",
                "wall / one cursor",
            ],
            rows,
        ),
        "",
        f"{_int(fig['users'])} users, converged; the four modes in turn in each run, each plan "
        "in a process of its own, the same fingerprint each time. Filters: the filters issued "
        "(the unfiltered probe counted, and the partitions split again while reading).",
    ]


def _projection(entry: dict[str, Any]) -> list[str]:
    """Expected no-op plan wall against a service answering a page in T seconds, for 1, 4 and
    8 cursors, from each size's measured read wall in page-latencies."""
    rows = []
    modes = (("single", 1), ("four", 4), ("partitioned", 8))
    for size in entry["sizes"]:
        fig = size["figures"]
        if not fig:
            continue
        page_s = fig["page_ms"] / 1000
        for mode, cursors in modes:
            if mode == "partitioned" and fig["concurrency"] != 8:
                continue
            serial = med([r[mode]["read_wall_s"] for r in fig["runs"]]) / page_s
            rest = med([r[mode]["wall_s"] - r[mode]["read_wall_s"] for r in fig["runs"]])
            rows.append(
                [
                    _int(fig["users"]),
                    str(cursors),
                    _num(serial, 1),
                    *(_num(serial * t + rest, 0) for t in PROJECTED_PAGE_S),
                ]
            )
    return [
        *_table(
            [
                "users",
                "cursors",
                "pages in series (measured)",
                *(f"projected wall s at {t:g} s per page" for t in PROJECTED_PAGE_S),
            ],
            rows,
        ),
        "",
        "A projection, not a measurement: pages in series = the measured read wall / the "
        "emulator's page latency (medians); projected wall = pages in series x T + the rest of "
        "the plan as measured. It assumes the service answers several cursors of one app at "
        "once as fast as one (no concurrency limit is documented for the REST admin API, "
        "round2-facts.md §3) and counts the client's own per-page work as latency, so it leans "
        "high.",
    ]


def _conversion(entry: dict[str, Any]) -> list[str]:
    fig = entry["figures"]
    users = fig["users"]
    runs = fig["runs"]
    rows = []
    for name, label, ratio in (
        ("constructor", "TenantUser(...), the conversion before 55a6784", "1"),
        (
            "slots",
            "its slots' descriptors (snapshot.user_from_json)",
            _spread([r["ratio"] for r in runs], 2),
        ),
    ):
        values = [r[f"{name}_s"] for r in runs]
        per_user = [v / users * 1e6 for v in values]
        rows.append([label, _spread(values, 3), _spread(per_user, 2), ratio])
    return [
        *_table(
            ["conversion", "wall s", "us per user (= ms per 1,000-user page)", "x constructor"],
            rows,
        ),
        "",
        f"{users:,} Get-User objects as the wire gave them (one unfiltered read, all "
        f"{fig['attributes']} match attributes selected), converted both ways in each run in "
        "the harness process, alternating which goes first, the collector paused as during a "
        "read; the two lists of users are checked equal every run; ratios per run, then the "
        "median.",
    ]


def _startup(entry: dict[str, Any]) -> list[str]:
    fig = entry["figures"]
    walls = fig["walls"]
    bare = med(walls["python -c pass"])
    rows = [
        [f"`{name}`", _spread(values, 3), _num(med(values) / bare, 1)]
        for name, values in walls.items()
    ]
    return [
        *_table(["command", "wall s", "x bare interpreter"], rows),
        "",
        f"{fig['rounds']} rounds, the four commands interleaved, each a fresh process "
        "(`python -m reconciler ...`, what the `authpolicy` script runs). `validate` reads and "
        "checks the repository's policies.yaml.",
    ]


def _smtp(entry: dict[str, Any]) -> list[str]:
    fig = entry["figures"]
    pairs = fig["pairs"]
    rows = []
    for mode, label in (
        ("plain", "policies only (mailboxes.yaml)"),
        ("smtp", "with SMTP AUTH (mailboxes_smtp.yaml)"),
    ):
        runs = [p[mode] for p in pairs]
        by_cmdlet: dict[str, list[float]] = {}
        for run in runs:
            for cmdlet, count in run["by_cmdlet"].items():
                by_cmdlet.setdefault(cmdlet, []).append(count)
        cmdlets = ", ".join(
            f"{cmdlet} {_int(med(counts))}" for cmdlet, counts in sorted(by_cmdlet.items())
        )
        rows.append(
            [
                label,
                _int(med(_col(runs, "requests"))),
                cmdlets,
                _spread(_col(runs, "wall_s")),
                _spread(_col(runs, "cpu_s")),
                _spread(_col(runs, "peak_rss_mb"), 0),
            ]
        )
    ratio_row = [
        "ratio with / without (per run, median)",
        _num(med([p["ratio_requests"] for p in pairs]), 2),
        "",
        _num(med([p["ratio_wall_s"] for p in pairs]), 2),
        _num(med([p["ratio_cpu_s"] for p in pairs]), 2),
        _num(med([p["ratio_peak_rss_mb"] for p in pairs]), 2),
    ]
    return [
        *_table(
            ["no-op plan", "requests", "by cmdlet", "wall s", "CPU s", "peak RSS MB"],
            [*rows, ratio_row],
        ),
        "",
        f"{_int(fig['users'])} users, converged for both files (SMTP AUTH off org-wide, set "
        "explicitly; every mailbox following it). The two plans alternate in one run "
        "(without, with, without, with, ...), each in a process of its own; ratios are taken "
        "per pair, then the median. Managing SMTP AUTH adds Get-TransportConfig (1 request) and "
        "the Get-CASMailbox pages ($select of 4 properties), and the join by "
        "ExternalDirectoryObjectId.",
    ]


SECTIONS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "capacity": _capacity,
    "noop": _noop,
    "drift": _drift,
    "throughput": _throughput,
    "planner": _planner,
    "smtp": _smtp,
    "evidence": _evidence,
    "fleet": _fleet,
    "partitioned": _partitioned,
    "conversion": _conversion,
    "startup": _startup,
}


def _section(name: str, entry: dict[str, Any] | None) -> list[str]:
    out = [f"## {CASE_TITLES[name]}", ""]
    if entry is None:
        return [*out, f"{NOT_RUN} (run `python -m bench {name}`)."]
    meta = entry.get("meta", {})
    figures = entry.get("figures") if name not in BY_SIZE else entry.get("sizes")
    if not figures:
        return [*out, f"{NOT_RUN}: {meta.get('error') or 'no figures'}.", "", _produced_by(meta)]
    out += [_produced_by(meta), ""]
    out += SECTIONS[name](entry)
    if name == "noop":
        out += ["", "### Snapshot read at the largest size (issue 4)", "", *_snapshot(entry)]
    errors = [s["meta"].get("error") for s in entry.get("sizes", []) if s["meta"].get("error")]
    if errors:
        out += ["", f"Failed sizes: {'; '.join(errors)}"]
    return out


def render(results: dict[str, Any], machine: dict[str, Any], readings: dict[str, str]) -> str:
    """The whole docs/benchmarks.md."""
    latency = next(
        (
            (e.get("meta") or {}).get("latency")
            for e in results.values()
            if isinstance(e, dict) and e.get("meta")
        ),
        None,
    )
    lines = [
        "# Benchmarks",
        "",
        "Performance here means: how few calls we make to a throttled service, how close we run "
        "to the service's budget, and how little the client itself costs. Everything below was "
        "measured on this machine against the project's Exchange Online emulator "
        "(reconciler/emulator) over real HTTPS, by `python -m bench all` (`make bench`); each "
        "section says the exact command and when it ran. Tables give the median of the runs "
        "and, in parentheses, the lowest and highest run. Ratios are computed per run, from "
        "figures measured in that same run, then the median is taken.",
        "",
        *_summary(results),
        "## Machine",
        "",
        *_table(
            ["", ""],
            [
                ["CPU", f"{machine['cpu_model']}, `nproc` = {machine['nproc']}"],
                ["memory", machine["memory"]],
                ["Python", machine["python"]],
                ["OS", machine["platform"]],
                ["commit", machine["commit"]],
            ],
        ),
        "",
        "The machine is shared: other work ran at times during the measurements (see the load "
        "average in each section), which shows up as spread between runs.",
        "",
        "## Method",
        "",
        "- The emulator runs in the harness process; every measured client runs in a process "
        "of its own (bench/child.py; case 2 runs `python -m reconciler apply` in it), so its CPU "
        "time (the kernel's accounting of that process) and peak memory are the client's alone. "
        "Peak memory is the process's own high-water mark (VmHWM): ru_maxrss is not used, "
        "because Linux carries the parent's resident size at fork into a child's ru_maxrss and "
        "the parent here holds the emulator.",
        "- Requests are counted by the emulator (its statistics, by cmdlet), not by the client.",
        f"- Latency model (emulator settings, NOT measurements of Microsoft): "
        f"{latency or 'see bench/config.py'}. Exchange Online answers a Set-User in roughly "
        "100-300 ms and a 1,000-object Get-User page in roughly 1-2 s; the model is a tenth of "
        "the mid-points, keeping their proportion (a page costs 7.5 Set-Users), so absolute "
        "times are about ten times shorter than against the real service while ratios between "
        "approaches that differ in calls carry over. The emulator charges one latency per HTTP "
        "request, so a $batch of 10 Set-User costs what one Set-User costs; the real service "
        "may well take longer for a batch. Case 4 and the planner run without latency.",
        "- Set-up (building the tenant, converging it, injecting drift) edits the emulator's "
        "state directly and is not measured.",
        "- Tenants: the emulator's synthetic Contoso (seed 7). Desired state: "
        'bench/policies/mailboxes.yaml (every user mailbox holds "Block Basic Auth" - the end '
        "state of the naive loop) for cases 1-3, bench/policies/twenty_rules.yaml for the "
        "planner.",
        "",
    ]
    for name in (
        "noop",
        "drift",
        "throughput",
        "capacity",
        "planner",
        "smtp",
        "evidence",
        "fleet",
        "partitioned",
        "conversion",
        "startup",
    ):
        lines += _section(name, results.get(name))
        reading = readings.get(name)
        if reading and results.get(name):
            lines += ["", "**What limits these figures.** " + reading]
        lines.append("")
    lines += [
        "## Reproduce",
        "",
        "```",
        "make bench                     # = .venv/bin/python -m bench all  (about 20 minutes)",
        ".venv/bin/python -m bench drift --runs 5   # one case; the others keep their figures",
        ".venv/bin/python -m bench all --quick --runs 1 --out /tmp/quick.md  # small sizes",
        "```",
        "",
        "Raw per-run figures of the run that wrote this file: bench/results/latest.json.",
        "",
    ]
    assert set(SECTIONS) == set(CASE_NAMES)
    return "\n".join(lines)
