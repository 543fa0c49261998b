"""Files authpolicy writes: never through a symlink, never over a device or a FIFO, and the
private ones (plans, audit logs) readable by their owner only."""

from __future__ import annotations

import os
import stat

from reconciler.errors import AuthPolicyError


def refuse_unless_regular_or_absent(path: str, what: str) -> None:
    """A one-line error when `path` exists and is not a regular file (a symlink included):
    `plan --out /dev/full` must not replace a device node, a link must not redirect a write."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise AuthPolicyError(f"cannot write the {what} to {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
        raise AuthPolicyError(
            f"refusing to write the {what} to {path}: it is {kind}; name a regular file"
        )


def open_private_append(path: str, what: str) -> int:
    """An fd to append to `path`, created 0600. Refused with the fix when it is a link, not a
    regular file, someone else's, or readable by others (an audit log names users)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise AuthPolicyError(
            f"cannot open the {what} {path}: {exc.strerror} (it must be a regular file, not a link)"
        ) from None
    info = os.fstat(fd)
    problem = ""
    if not stat.S_ISREG(info.st_mode):
        problem = "it is not a regular file; name one"
    elif info.st_uid != os.geteuid():
        problem = f"it belongs to user id {info.st_uid}, not to this user; use a file of your own"
    elif info.st_mode & 0o077:
        problem = (
            f"its permissions are {stat.S_IMODE(info.st_mode):04o}, readable by others; run "
            f"`chmod 600 {path}`"
        )
    if problem:
        os.close(fd)
        raise AuthPolicyError(f"refusing to use the {what} {path}: {problem}")
    return fd
