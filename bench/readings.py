"""The short "what limits these figures" reading of each case, computed from its figures."""

from __future__ import annotations

import math
import re
from typing import Any

from bench.report import _col, med


def _model(meta: dict[str, Any]) -> tuple[float, float]:
    """(base ms, per-object ms) parsed back from the latency description in the meta."""
    text = meta.get("latency") or ""
    found = re.match(r"([\d.]+) ms per request \+ ([\d.]+) ms per object", text)
    if not found:
        return 0.0, 0.0
    return float(found.group(1)), float(found.group(2))


def _noop(entry: dict[str, Any]) -> str | None:
    sizes = [s for s in entry.get("sizes", []) if s.get("figures")]
    if not sizes:
        return None
    size = sizes[-1]
    fig, meta = size["figures"], size["meta"]
    base, per_object = _model(meta)
    users = fig["users"]
    pages = -(-users // 1000)
    floor = (pages * (base + 1000 * per_object) + 2 * base) / 1000.0
    wall = med(_col(fig["runs"], "wall_s"))
    read_cpu = med(_col(fig["runs"], "read_cpu_s"))
    cpu = med(_col(fig["runs"], "cpu_s"))
    return (
        f"At {users:,} users the modelled latency alone is {floor:.1f} s "
        f"({pages} pages one after another, each waiting for the previous one's nextLink); the "
        f"client spends {read_cpu:.1f} s of CPU converting the pages ({cpu:.1f} s in all), "
        f"mostly while no request is in flight, so wall time ({wall:.1f} s) is close to latency "
        "+ client CPU. Pages can't be fetched in parallel (each nextLink comes with the page "
        "before), so the floor is the service's page time; what the client controls is its CPU "
        "per page, which grows linearly with users. Against the real service (pages of 1-2 s) "
        "the same read would be dominated by latency even more."
    )


def _drift(entry: dict[str, Any]) -> str | None:
    fig = entry.get("figures")
    if not fig:
        return None
    base, per_object = _model(entry["meta"])
    ours = [r["ours"] for r in fig["runs"]]
    wall = med(_col(ours, "wall_s"))
    cpu = med(_col(ours, "cpu_s"))
    pages = med(_col(ours, "get_user_pages"))
    floor = pages * (base + 1000 * per_object) / 1000.0
    naive = [r["naive"] for r in fig["runs"]]
    per_call = med([n["sample_wall_s"] / n["sample"] for n in naive]) * 1000
    timed = [o for o in ours if "writes_s" in o]
    writes = f"{med(_col(timed, 'writes_s')):.1f} s" if timed else "a small part of the time"
    return (
        f"Our run is bound by the plan read ({pages:.0f} Get-User pages one after another, "
        f"{floor:.1f} s of modelled latency) plus client CPU ({cpu:.1f} s of {wall:.1f} s, "
        f"start-up included); the {fig['drift']:,} writes go 10 per $batch, up to 16 batches "
        f"in flight, and take {writes}. Both baselines are bound by one round trip per user "
        f"({per_call:.1f} ms per Set-User here, of which {base:g} ms is the model): their time "
        "grows with the tenant, ours with the number of pages and the drift. The ratios "
        "therefore scale with the modelled proportion of a Set-User to a page; with Exchange's "
        "real figures (Set-User 100-300 ms, page 1-2 s) the proportion is about the same. "
        + _verification(timed, wall)
    )


def _verification(timed: list[dict[str, Any]], wall: float) -> str:
    if not timed:
        return ""
    after = med(_col(timed, "after_writes_s"))
    # Get-AuthenticationPolicy, Get-OrganizationConfig, then the sampled users 10 per $batch.
    requests = 2 + math.ceil(med([o.get("verify_user_reads", 0) for o in timed]) / 10)
    return (
        f"The verification after the writes (policies, default and a sample of the changed "
        f"users, in {requests} requests) and the summary take {after:.1f} s of our {wall:.1f} s; "
        "re-reading the whole tenant instead (what apply did before) would add about the plan "
        "read's time again."
    )


def _throughput(entry: dict[str, Any]) -> str | None:
    fig = entry.get("figures")
    if not fig:
        return None
    parts = []
    for mode, runs in fig["modes"].items():
        if runs:
            parts.append(f"{mode}: {med(_col(runs, 'utilisation')):.3f}")
    windows = (
        med([r["elapsed_s"] for runs in fig["modes"].values() for r in runs]) / fig["window_s"]
    )
    return (
        "The budget is the limit by design (below the client's own ceiling, the rows without a "
        "budget), so what is measured is how much of each window the client uses: it must "
        "resume promptly when a window opens (it waits Retry-After plus up to 10% jitter) and "
        "not collapse its concurrency on every 429 (the executor halves its limit once per "
        f"burst of 429s and grows it again by one per clean round). Utilisation "
        f"({', '.join(parts)}) loses the time at each window edge and the ramp-up at the start "
        f"(concurrency starts at 4); a run spans about {windows:.0f} windows, and since a fixed "
        "window admits its whole budget at once, the figure can exceed 1 by up to one window's "
        f"worth (1/{windows:.0f}). Every change costs exactly one Set-User that ran: rejected "
        "(429) attempts are sent again, never duplicated." + _write_rule(fig)
    )


def _write_rule(fig: dict[str, Any]) -> str:
    """The stated rule for $batch versus single writes (issue 18), from this run's figures."""
    batch, single = fig["modes"].get("batch") or [], fig["modes"].get("single") or []
    if not batch or not single:
        return ""
    cpu = med(_col(single, "cpu_s")) / med(_col(batch, "cpu_s"))
    walls = med(_col(batch, "elapsed_s")) / med(_col(single, "elapsed_s"))
    return (
        f" **The rule: $batch (10 writes per request) always.** Under a budget the emulator "
        f"charges per member (and once for the $batch itself), $batch takes x{walls:.2f} the "
        f"wall of single writes, and single writes cost x{cpu:.1f} the client CPU and ten "
        "times the HTTP round trips. What must "
        "be measured on a real tenant, because no source settles it: whether Exchange's "
        "throttling charges a $batch as one request or as its members (if as one, $batch is "
        "also up to ten times the throughput), and how long a member of a $batch takes "
        "against a lone Set-User."
    )


def _capacity(entry: dict[str, Any]) -> str | None:
    fig = entry.get("figures")
    if not fig:
        return None
    gains = []
    for cmdlet, by_clients in fig["rates"].items():
        counts = sorted(by_clients, key=int)
        one, many = med(by_clients[counts[0]]), med(by_clients[counts[-1]])
        gains.append(f"{cmdlet} x{many / one:.1f} from {counts[0]} to {counts[-1]} clients")
    return (
        "The emulator is one Python process: HTTP parsing, token verification and the cmdlet "
        "run under one GIL, while TLS record work and socket waits release it, so a single "
        "client (which waits for each answer before sending the next) leaves the server idle "
        "between requests and several clients overlap those gaps ("
        + ", ".join(gains)
        + "). On this 2-core machine the client processes and the emulator share the cores, "
        "so these figures are a floor for a machine with more cores. Every other case stays "
        "well below them (case 3's budget, the latency model), so the emulator is not what "
        "limits those."
    )


def _planner(entry: dict[str, Any]) -> str | None:
    fig = entry.get("figures")
    if not fig:
        return None
    runs = fig["runs"]
    cpu = med(_col(runs, "cpu_s"))
    text = (
        "Pure client CPU in one thread (no I/O). The users' fields are read in one pass into "
        "columns; rule matching works on per-user byte masks held in big ints (a rule is a "
        "few big-int operations, an equality test on a column of few distinct values one "
        "bytes.translate); the diff works out each (direct policy, rule) pair once and builds "
        "a change only for the users that move; the fingerprint hashes the users column by "
        "column, in id order. The snapshot is read over HTTPS as in real use, so its 100,000 "
        "user objects lie scattered in memory and every pass over them costs about a cache "
        "miss per user, which is why passes are few. The figure grows with users x rules and "
        f"with the number of changes ({fig['changes']:,} here, since the synthetic tenant is "
        "far from this file)."
    )
    if runs and "rules_cpu_s" in runs[0]:
        columns = med([r.get("columns_cpu_s", 0.0) for r in runs])
        rules, digest = med(_col(runs, "rules_cpu_s")), med(_col(runs, "fingerprint_cpu_s"))
        on = med(_col(runs, "collector_on_cpu_s"))
        rest = max(cpu - columns - rules - digest, 0)
        text += (
            f" Of the {cpu:.2f} s: reading the columns {columns:.2f} s, rule matching "
            f"{rules:.2f} s, fingerprint {digest:.2f} s, the rest (diff, sorting, guards, "
            f"warnings) about {rest:.2f} s (parts timed separately in the same runs). make_plan "
            "pauses CPython's cycle collector, which would otherwise walk the whole snapshot "
            f"again and again while the plan allocates: with it running, the same plan takes "
            f"{on:.2f} s (x{on / cpu:.2f})."
        )
    return text


def _smtp(entry: dict[str, Any]) -> str | None:
    fig = entry.get("figures")
    if not fig or not fig.get("pairs"):
        return None
    pairs = fig["pairs"]
    plain = [p["plain"] for p in pairs]
    smtp = [p["smtp"] for p in pairs]
    pages = med([p["smtp"]["by_cmdlet"].get("Get-CASMailbox", 0) for p in pairs])
    extra_cpu = med(_col(smtp, "cpu_s")) - med(_col(plain, "cpu_s"))
    extra_rss = med(_col(smtp, "peak_rss_mb")) - med(_col(plain, "peak_rss_mb"))
    return (
        f"Requests: Get-TransportConfig once and the Get-CASMailbox pages ({pages:,.0f} of them; "
        "the emulator's synthetic tenant has fewer mailboxes than users). Wall time barely "
        "moves because the CAS pages are read on a second cursor beside the Get-User pages "
        "and joined afterwards; against the real service that overlap depends on how it "
        "treats two cursors of one app at once (unverified). The extra CPU "
        f"(about {extra_cpu:.2f} s) is parsing the CAS pages and the join (a new user object "
        "for each mailbox with its setting); the extra memory (about "
        f"{extra_rss:.0f} MB) is the CAS rows held until the join and the joined copy of the "
        "users."
    )


def _evidence(entry: dict[str, Any]) -> str | None:
    fig = entry.get("figures")
    if not fig or not fig.get("pairs"):
        return None
    pairs = fig["pairs"]
    plain = [p["plain"] for p in pairs]
    ev = [p["evidence"] for p in pairs]
    graph_s = fig["pages_needed"] * fig["graph_page_ms"] / 1000
    return (
        f"The sign-in log costs {med(_col(ev, 'graph_requests')):,.0f} Graph requests: one per "
        "page served (the window and the legacy clients are filtered by the server, the pages "
        "are followed by nextLink), plus the last page of each time slice: the window is read "
        "in 16 slices, 8 at a time (2 per cursor of the default --read-concurrency 8; the "
        "emulator set to serve `createdDateTime le`, which its default refuses), because "
        "each nextLink arrives with the page before, as on the Get-User cursor. It is read on "
        "threads of its own beside the Exchange reads, so the wall it adds is what its "
        f"{fig['pages_needed']:,} pages (about {graph_s:.1f} s of page latency on one cursor, "
        f"about {graph_s / 8:.1f} s on 8) take beyond the Exchange read "
        f"({med(_col(plain, 'read_wall_s')):.1f} s). Events are folded into per-user counts "
        "page by page, so memory grows with the users who signed in, not with the events. CPU "
        "is parsing 1,000-event pages "
        f"(about {med(_col(ev, 'cpu_s')) - med(_col(plain, 'cpu_s')):.2f} s). Pages, not users, "
        "set the cost: a tenant whose 400 device accounts each send every 10 minutes (the "
        "emulator's default story at this size) logs about 1.7 million legacy sign-ins in 30 "
        "days, 1,730 pages: by the same model about 260 s of page latency on one cursor, 32 s "
        "on 8 (computed, not measured); a shorter window bounds it further."
    )


def _fleet(entry: dict[str, Any]) -> str | None:
    fig = entry.get("figures")
    if not fig or not fig.get("runs"):
        return None
    runs = fig["runs"]
    per_tenant = med([r["sequential"]["wall_s"] for r in runs]) / fig["tenants"]
    c = fig["concurrency"]
    waves = -(-fig["tenants"] // c)
    best = fig["tenants"] / (waves * c)
    return (
        f"Each tenant's plan is about {per_tenant:.1f} s of waiting on pages and requests, and "
        "almost none of it is this process's CPU (see the CPU column), so the threads overlap "
        f"the waiting. What bounds the efficiency is arithmetic: {fig['tenants']} tenants at "
        f"{c} at a time take {waves} rounds of about {per_tenant:.1f} s, where "
        f"{fig['tenants'] / c:.2f} would be perfect, so {best:.2f} is the most this fleet can "
        "reach at this C; the rest is start-up and the emulator. "
        "Each tenant has its own HTTPS session, token and throttling state, so a throttled "
        "tenant slows only itself. Memory grows with C (the snapshots in flight) and with the "
        "plans kept for the combined output, not with the users of the tenants already planned."
    )


def _partitioned(entry: dict[str, Any]) -> str | None:
    sizes = [s["figures"] for s in entry.get("sizes", []) if s.get("figures")]
    if not sizes:
        return None
    fig = sizes[-1]
    runs = fig["runs"]
    single = med([r["single"]["get_user"] for r in runs])
    parted = med([r["partitioned"]["get_user"] for r in runs])
    filters = med([r["partitioned"]["partitions"] for r in runs])
    rejected = med([r["partitioned_cap4"]["rejected"] for r in runs])
    return (
        "On one cursor each page's nextLink arrives with the page before, so the Get-User pages "
        f"wait one after another ({single:,.0f} of them at {fig['users']:,} users). "
        "Partitioned, the first unfiltered page is the probe: a tenant of one page is read in "
        "that one request; a larger one is split into UPN-prefix filters (each a prefix, or the "
        "rest of one: what starts with it but with none of its longer prefixes, so the filters "
        "are disjoint and cover every name whatever the names are). The emulator pages in name "
        "order by default (user_order=upn: no order is documented), so the probe's names say "
        "nothing about the rest, and the first split is by the common first characters; a "
        "partition whose first page says more pages follow is split again by what that page "
        f"holds while cursors would otherwise idle ({filters:,.0f} filters in all, "
        f"{parted:,.0f} Get-User requests: each filter ends on a page of its own). The probe "
        "and the users of a page whose partition was split again are read twice and kept once "
        "(by Entra object id, before conversion). With the emulator serving at most 4 requests "
        f"at once, the surplus requests are refused ({rejected:,.0f} rejections): each refusal "
        "takes one off the pages the read asks for at once as it arrives (a run of clean pages "
        "adds one back); the refused request gives its slot up while it backs off (0.25-1 s) "
        "and takes one again before it is sent, so no more pages are in flight than the limit "
        "and its wait holds no other page up; the read settles at the cap, near the 4-cursor "
        "row (8 partitions open, 4 pages in flight, can end a little sooner). What is "
        "left on one cursor at the end is the largest partition's tail. The client's CPU is a "
        "few per cent higher partitioned: the extra requests, the probe's and a split "
        "partition's first page parsed twice, and up to 8 threads taking turns on one "
        "interpreter lock. On this 2-core machine the emulator's own CPU (about 2.0-2.5 s per "
        "100,000-user read, measured by timing its request handler's thread CPU in a separate "
        "run) competes for the same cores as the client, which is what keeps 4 cursors short "
        "of 4x and 8 short of 8x. Against the real service the speed-up rests on it serving "
        "several cursors of one app at once (no limit is documented; Exchange's concurrency "
        "error and 429 make the read step down)."
    )


def _conversion(entry: dict[str, Any]) -> str | None:
    if not entry.get("figures"):
        return None
    return (
        "TenantUser is a frozen dataclass: its __init__ sets each of its 14 slots through "
        "object.__setattr__, the largest part of converting a user. The slots path makes the "
        "object with object.__new__ and sets each slot through its descriptor (the same "
        "object: equal, hashed alike, so the plan's bytes cannot move; a hypothesis test in "
        "tests/tenant/exo/test_snapshot.py checks it against the constructor). What is left "
        "per user is reading the fields from the parsed JSON, the policy reference's lookup "
        "and interning the repeated strings."
    )


def _startup(entry: dict[str, Any]) -> str | None:
    if not entry.get("figures"):
        return None
    return (
        "The interpreter itself, site and the editable install's finder come first; then only "
        "the chosen verb's module is imported (cli.build_parser(only=VERB)): --help and "
        "--version import no verb at all; validate imports the loader, YAML and jsonschema "
        "(the schema check), not requests, msal, rich or cryptography, and the Unicode "
        "confusables table only when a name is not ASCII."
    )


def readings(results: dict[str, Any]) -> dict[str, str]:
    """case name -> reading, for the cases that have figures."""
    out: dict[str, str] = {}
    for name, fn in (
        ("noop", _noop),
        ("drift", _drift),
        ("throughput", _throughput),
        ("capacity", _capacity),
        ("planner", _planner),
        ("smtp", _smtp),
        ("evidence", _evidence),
        ("fleet", _fleet),
        ("partitioned", _partitioned),
        ("conversion", _conversion),
        ("startup", _startup),
    ):
        entry = results.get(name)
        if entry:
            text = fn(entry)
            if text:
                out[name] = text
    return out
