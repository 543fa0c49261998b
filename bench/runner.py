"""Run the measured client in its own process and collect what it cost.

CPU time comes from the kernel's accounting of that one child (`os.wait4`), so it is the
client's own and includes the interpreter and imports. Peak memory is the child's own VmHWM,
which it reports itself: the kernel's ru_maxrss of a child also carries the parent's resident
size from before exec (the harness holds the emulator), so it is used only as a fallback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.child import READY_LINE, RESULT_PREFIX

ROOT = Path(__file__).resolve().parent.parent


class ChildFailed(RuntimeError):
    """A measured child exited badly; the message carries the tail of its stderr."""


@dataclass
class ChildRun:
    """One finished child: its own figures and the kernel's."""

    result: dict[str, Any]
    returncode: int
    wall_s: float  # from start to exit, as the harness saw it
    cpu_s: float  # user + system of the child (kernel accounting)
    peak_rss_mb: float  # the child's VmHWM (ru_maxrss only when it reported none)


def child_env(connection: Mapping[str, str]) -> dict[str, str]:
    """The environment of a measured child: ours plus the emulator's connection variables."""
    env = dict(os.environ)
    for key in ("AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_FEDERATED_TOKEN_FILE", "AUTHPOLICY_CLOUD"):
        env.pop(key, None)
    env.update(connection)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("NO_COLOR", "1")
    return env


class Child:
    """A started child process running one job (or a command line)."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], *, job: dict[str, Any] | None):
        self._job_file: str | None = None
        if job is not None:
            fd, self._job_file = tempfile.mkstemp(prefix="bench-job-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(job, handle)
            argv = [sys.executable, "-m", "bench.child", self._job_file]
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in finish()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )

    def wait_ready(self) -> None:
        """Block until the child printed BENCH-READY."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip() == READY_LINE:
                return
        self.finish()  # the child ended without getting ready: raises with its stderr
        raise ChildFailed("the child ended before it was ready")

    def go(self) -> None:
        """Let a ready child start its measured part."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self) -> ChildRun:
        """Wait for the child; its result line, exit status and the kernel's accounting."""
        assert self.proc.stdout is not None
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        result: dict[str, Any] = {}
        for line in self.proc.stdout:
            if line.startswith(RESULT_PREFIX):
                result = json.loads(line[len(RESULT_PREFIX) :])
        _, status, usage = os.wait4(self.proc.pid, 0)
        wall = time.perf_counter() - self.started
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.proc.stdout.close()
        if self._job_file:
            os.unlink(self._job_file)
        self._stderr.seek(0)
        tail = self._stderr.read().decode("utf-8", "replace")[-2000:]
        self._stderr.close()
        run = ChildRun(
            result=result,
            returncode=self.proc.returncode,
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            peak_rss_mb=float(result.get("child_peak_rss_mb") or usage.ru_maxrss / 1024.0),
        )
        if self._job_file and (run.returncode != 0 or not result):
            raise ChildFailed(f"bench child exited {run.returncode}: {tail.strip()}")
        run.result.setdefault("stderr_tail", tail if run.returncode else "")
        return run


def run_job(
    job: dict[str, Any],
    env: Mapping[str, str],
    *,
    on_ready: Callable[[], None] | None = None,
) -> ChildRun:
    """Run one child job; `on_ready` runs between its BENCH-READY and its measured part."""
    child = Child([], env, job=job)
    if on_ready is not None:
        child.wait_ready()
        on_ready()
        child.go()
    return child.finish()


def run_command(argv: Sequence[str], env: Mapping[str, str]) -> ChildRun:
    """Run a command line (e.g. `python -m reconciler apply ...`) and account for it."""
    child = Child(argv, env, job=None)
    return child.finish()
