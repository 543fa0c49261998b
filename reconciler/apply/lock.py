"""One apply per tenant per machine: a lock file keyed by the tenant, held for the whole run.

Two applies against one tenant would both plan from the same read and write over each other
(and each verify the other's changes). The second refuses at once with one line naming the
first; CI examples also use one concurrency group per tenant, across machines.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from reconciler.errors import AuthPolicyError


def lock_directory() -> Path:
    """$XDG_RUNTIME_DIR/authpolicy, else ~/.authpolicy/locks (created 0700)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "authpolicy" if runtime else Path.home() / ".authpolicy" / "locks"
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    return base


@contextlib.contextmanager
def tenant_lock(tenant: str, directory: Path | None = None) -> Iterator[Path]:
    """Hold the apply lock of `tenant` (as configured, case-insensitive) or refuse."""
    digest = hashlib.sha256(tenant.strip().casefold().encode("utf-8")).hexdigest()[:16]
    path = (directory or lock_directory()) / f"apply-{digest}.lock"
    with file_lock(
        path,
        "apply lock",
        lambda holder: (
            f"another apply against tenant {tenant} is running on this machine (pid "
            f"{holder}, lock {path}); wait for it to finish, then plan again"
        ),
    ):
        yield path


@contextlib.contextmanager
def file_lock(path: Path, what: str, busy: Callable[[str], str]) -> Iterator[Path]:
    """Hold an exclusive lock on `path` (it names the holder's pid) or refuse with busy(pid)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:  # a symlink planted there, a directory, no permission
        raise AuthPolicyError(
            f"cannot open the {what} {path}: {exc.strerror}; it must be a regular file of "
            "this user (remove whatever is there)"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "another process"
            raise AuthPolicyError(busy(holder)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        yield path
    finally:
        os.close(fd)  # closing releases the lock, also when the process is killed
