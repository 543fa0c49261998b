"""The measured client: one job per process, so its CPU time and peak memory are its own.

`python -m bench.child JOB.json` reads a job, runs it against the emulator named by the
AUTHPOLICY_* / AZURE_* environment, and prints one line `BENCH-RESULT {json}` on stdout.
Jobs that need the harness to set the emulator up between their preparation and the measured
part print `BENCH-READY` and wait for a line on stdin.

Jobs: plan (the `authpolicy plan` path, timed per phase), planner (make_plan alone, repeated,
then once under tracemalloc), apply (execute_plan after a handshake), naive and checker (the two
baselines of case 2), load (raw keep-alive requests for the emulator's capacity).
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import resource
import ssl
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

RESULT_PREFIX = "BENCH-RESULT "
READY_LINE = "BENCH-READY"


def _rss_mb() -> float:
    """Peak resident set size of this process so far (VmHWM), in MiB.

    Not ru_maxrss: Linux carries the high-water mark of the memory map replaced by exec into
    ru_maxrss, so a child forked from the harness (which holds a 100,000-user emulator) would
    report the harness's size. VmHWM belongs to this process's own memory map.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb() -> float:
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024.0 * 1024.0)
    except (OSError, ValueError, IndexError):
        return float("nan")


class Clock:
    """Wall and CPU time since start (or since the last `lap`)."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def lap(self) -> dict[str, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        out = {"wall_s": wall - self.wall, "cpu_s": cpu - self.cpu}
        self.wall, self.cpu = wall, cpu
        return out


def _wait_for_go() -> None:
    print(READY_LINE, flush=True)
    sys.stdin.readline()


def _tenant(use_batch: bool = True) -> Any:
    from reconciler.tenant.connect import add_connection_arguments, open_tenant

    parser = argparse.ArgumentParser()
    add_connection_arguments(parser)
    return open_tenant(parser.parse_args([]), os.environ, use_batch=use_batch)


# --------------------------------------------------------------------------- jobs


def job_plan(job: dict[str, Any]) -> dict[str, Any]:
    """What `authpolicy plan -c FILE` does (load, connect, read, plan, render), per phase."""
    from reconciler.desired import load_desired_state
    from reconciler.plan import make_plan, snapshot_needs
    from reconciler.render import render_plan

    base_rss = _current_rss_mb()
    total, clock = Clock(), Clock()
    desired = load_desired_state(job["config"])
    tenant = _tenant()
    load = clock.lap()
    snapshot = tenant.read_snapshot(snapshot_needs(desired))
    read = clock.lap()
    plan = make_plan(desired, snapshot)
    planned = clock.lap()
    text = render_plan(plan, "text")
    rendered = clock.lap()
    return {
        "users": len(snapshot.users),
        "changes": len(plan.changes),
        "fingerprint": plan.fingerprint,
        "sign_in_events": snapshot.sign_ins.events if snapshot.sign_ins is not None else 0,
        "sign_in_status": snapshot.sign_ins.status if snapshot.sign_ins is not None else None,
        "rendered_chars": len(text),
        "partitions": tenant.client.stats.partitions,
        "load": load,
        "read": read,
        "plan": planned,
        "render": rendered,
        "total": total.lap(),
        "base_rss_mb": base_rss,
        "peak_rss_mb": _rss_mb(),
    }


def job_planner(job: dict[str, Any]) -> dict[str, Any]:
    """make_plan over one snapshot, `runs` times (CPU, wall), then once under tracemalloc."""
    from reconciler.desired import load_desired_state
    from reconciler.plan import make_plan, snapshot_needs

    desired = load_desired_state(job["config"])
    clock = Clock()
    snapshot = _tenant().read_snapshot(snapshot_needs(desired))
    read = clock.lap()
    rss_after_read = _current_rss_mb()
    times: list[dict[str, float]] = []
    changes = 0
    for _ in range(int(job["runs"])):
        gc.collect()
        clock.lap()
        plan = make_plan(desired, snapshot)
        times.append({**clock.lap(), **_planner_parts(desired, snapshot, clock)})
        changes = len(plan.changes)
        del plan
    gc.collect()
    peak_before_trace = _rss_mb()  # tracemalloc's own bookkeeping must not count
    tracemalloc.start()
    make_plan(desired, snapshot)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "users": len(snapshot.users),
        "rules": len(desired.assignments.rules),
        "changes": changes,
        "read": read,
        "runs": times,
        "plan_traced_peak_mb": traced_peak / (1024.0 * 1024.0),
        "rss_after_read_mb": rss_after_read,
        "peak_rss_mb": peak_before_trace,
    }


def _planner_parts(desired: Any, snapshot: Any, clock: Clock) -> dict[str, float]:
    """CPU of the planner's big parts, as make_plan runs them (collector paused, columns
    shared), and of a whole plan with the collector running throughout (what the pause
    saves)."""
    from reconciler.plan.columns import user_columns
    from reconciler.plan.fingerprint import input_digests, user_fields
    from reconciler.plan.planner import _collector_paused, _make_plan, utc_today
    from reconciler.plan.rules import UserIndex, evaluate_rules

    parts: dict[str, float] = {}
    gc.collect()
    with _collector_paused():
        clock.lap()
        columns = user_columns(snapshot.users, user_fields(desired))
        parts["columns_cpu_s"] = clock.lap()["cpu_s"]
        index = UserIndex(snapshot.users, snapshot.groups, columns)
        evaluate_rules(desired.assignments.rules, index)
        parts["rules_cpu_s"] = clock.lap()["cpu_s"]
        input_digests(desired, snapshot, columns)
        parts["fingerprint_cpu_s"] = clock.lap()["cpu_s"]
    gc.collect()
    clock.lap()
    _make_plan(desired, snapshot, utc_today())
    parts["collector_on_cpu_s"] = clock.lap()["cpu_s"]
    return parts


def job_apply(job: dict[str, Any]) -> dict[str, Any]:
    """Read and plan (not measured), handshake, then execute_plan (measured)."""
    from reconciler.apply import execute_plan
    from reconciler.desired import load_desired_state
    from reconciler.plan import make_plan, snapshot_needs

    desired = load_desired_state(job["config"])
    tenant = _tenant(use_batch=bool(job["batch"]))
    plan = make_plan(desired, tenant.read_snapshot(snapshot_needs(desired)))
    _wait_for_go()
    clock = Clock()
    report = execute_plan(
        plan,
        tenant,
        revoke_sessions=desired.assignments.revoke_sessions,
        max_concurrency=int(job.get("max_concurrency", 16)),
    )
    measured = clock.lap()
    return {
        "changes": len(plan.changes),
        "counts": dict(report.counts),
        "retries": report.retries,
        "execute": measured,
        "client_stats": tenant.client.stats.as_dict(),
        "peak_rss_mb": _rss_mb(),
    }


def job_naive(job: dict[str, Any]) -> dict[str, Any]:
    """The admins' loop: Get-Recipient -RecipientTypeDetails UserMailbox -ResultSize Unlimited |
    Set-User -AuthenticationPolicy X -STSRefreshTokensValidFrom now, one request per mailbox,
    sequentially. The read runs in full; Set-User for the first `sample` mailboxes."""
    from reconciler.tenant.exo.tenant import sts_timestamp

    client = _tenant().client
    clock = Clock()
    mailboxes: list[str] = []
    for page in client.iter_pages(
        "Get-Recipient",
        {"RecipientTypeDetails": "UserMailbox", "ResultSize": "Unlimited"},
        select=["Identity", "Guid"],
    ):
        mailboxes.extend(str(row.get("Guid") or row.get("Identity")) for row in page)
    read = clock.lap()
    stamp = sts_timestamp()
    sample = mailboxes[: int(job["sample"])]
    for identity in sample:
        client.invoke_write(
            "Set-User",
            {
                "Identity": identity,
                "AuthenticationPolicy": job["policy"],
                "STSRefreshTokensValidFrom": stamp,
                "Confirm": False,
            },
        )
    writes = clock.lap()
    return {"mailboxes": len(mailboxes), "sample": len(sample), "read": read, "writes": writes}


def job_checker(job: dict[str, Any]) -> dict[str, Any]:
    """Microsoft365DSC-style per-user resource: for each managed user (listed in the
    configuration), Get-User, then Set-User only when the policy differs."""
    from reconciler.model import SnapshotNeeds
    from reconciler.tenant.exo.snapshot import policy_keys, policy_name_from_reference

    tenant = _tenant()
    client = tenant.client
    with open(job["users_file"], encoding="utf-8") as handle:
        users = json.load(handle)[: int(job["sample"])]
    wanted = str(job["policy"])
    keys = policy_keys(tenant.read_snapshot(SnapshotNeeds(users=False)).policies)
    clock = Clock()
    sets = 0
    for upn in users:
        rows = client.invoke("Get-User", {"Identity": upn}, select=["AuthenticationPolicy"])
        # The reference may come as a name, a DN, a GUID or an object: one reading of it.
        current = (
            policy_name_from_reference(rows[0].get("AuthenticationPolicy"), keys) if rows else None
        )
        if (current or "").casefold() != wanted.casefold():
            client.invoke_write(
                "Set-User", {"Identity": upn, "AuthenticationPolicy": wanted, "Confirm": False}
            )
            sets += 1
    return {"checked": len(users), "sets": sets, "elapsed": clock.lap()}


def job_load(job: dict[str, Any]) -> dict[str, Any]:
    """A lean keep-alive client (http.client, one connection): as many requests as it can in
    `seconds`, so the emulator, not a heavy client, is what gets measured."""
    # The backend host the emulator redirects to (the last of AUTHPOLICY_TRUSTED_HOSTS): this
    # lean client measures the server, so it goes straight there instead of paying a 307.
    backend = os.environ.get("AUTHPOLICY_TRUSTED_HOSTS", "").split(",")[-1]
    endpoint = urlsplit(f"https://{backend}" if backend else os.environ["AUTHPOLICY_ENDPOINT"])
    context = ssl.create_default_context(cafile=os.environ["AUTHPOLICY_CA_BUNDLE"])
    conn = http.client.HTTPSConnection(
        endpoint.hostname or "127.0.0.1", endpoint.port, context=context
    )
    path = f"/adminapi/beta/{os.environ['AZURE_TENANT_ID']}/InvokeCommand"
    headers = {
        "Authorization": f"Bearer {job['token']}",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    identities: list[str] = job["identities"]
    bodies = []
    for identity in identities:
        parameters: dict[str, Any] = {"Identity": identity}
        if job["cmdlet"] == "Set-User":
            parameters.update({"AuthenticationPolicy": job["policy"], "Confirm": False})
        body = {"CmdletInput": {"CmdletName": job["cmdlet"], "Parameters": parameters}}
        bodies.append(json.dumps(body).encode())
    select = "?$select=Name,AuthenticationPolicy" if job["cmdlet"] == "Get-User" else ""

    def one(index: int) -> int:
        conn.request("POST", path + select, bodies[index % len(bodies)], headers)
        answer = conn.getresponse()
        answer.read()
        return answer.status

    for index in range(20):  # TLS handshake and warm-up, before the clock starts
        one(index)
    _wait_for_go()
    clock = Clock()
    deadline = time.perf_counter() + float(job["seconds"])
    count = failures = 0
    while time.perf_counter() < deadline:
        if one(count) != 200:
            failures += 1
        count += 1
    return {"requests": count, "failures": failures, "elapsed": clock.lap()}


def job_cli(job: dict[str, Any]) -> dict[str, Any]:
    """`python -m reconciler ARGS` in this process (exactly that module's code), so that its
    peak memory can be read from inside; its output goes to this process's stdout."""
    import runpy

    clock = Clock()
    saved = sys.argv
    sys.argv = ["authpolicy", *job["argv"]]
    try:
        runpy.run_module("reconciler", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    sys.stdout.flush()
    return {"exit_code": code, "run": clock.lap()}


JOBS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "cli": job_cli,
    "plan": job_plan,
    "planner": job_planner,
    "apply": job_apply,
    "naive": job_naive,
    "checker": job_checker,
    "load": job_load,
}


def main(argv: list[str] | None = None) -> int:
    """Run the job file given as the only argument; the result goes to stdout as JSON."""
    args = (argv if argv is not None else sys.argv[1:])[:1]
    with open(args[0], encoding="utf-8") as handle:
        job = json.load(handle)
    result = JOBS[job["job"]](job)
    result["child_peak_rss_mb"] = _rss_mb()
    result["child_cpu_s"] = sum(os.times()[:2])
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
