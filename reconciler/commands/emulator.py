"""`authpolicy emulator serve`: run the local Exchange Online emulator in the foreground.

Prints the connection as KEY=VALUE lines (ready for `export` or a .env file), serves until
Ctrl-C, then saves the tenant state atomically and exits 0. The logic lives in
reconciler.emulator; this module only parses arguments and prints.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from reconciler.emulator import Emulator, EmulatorSettings

DEFAULT_STATE_DIR = Path.home() / ".authpolicy" / "emulator"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `authpolicy emulator`."""
    sub = parser.add_subparsers(dest="emulator_command", metavar="COMMAND")
    serve = sub.add_parser("serve", help="serve the emulator in the foreground until Ctrl-C")
    serve.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    serve.add_argument("--users", type=int, default=2000, help="synthetic tenant size")
    serve.add_argument(
        "--tenants",
        type=int,
        default=1,
        metavar="N",
        help="serve N tenants (an MSP's fleet: sizes and drift differ, one app consented in "
        "each); prints AZURE_TENANT_ID_<k> for k = 1..N",
    )
    serve.add_argument("--seed", type=int, default=1, help="synthetic tenant seed")
    serve.add_argument(
        "--state",
        type=Path,
        help="tenant state file: loaded when it exists, saved on exit "
        "(default: STATE_DIR/tenant.json)",
    )
    serve.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"keys, CA, certificates and state (default {DEFAULT_STATE_DIR})",
    )
    serve.add_argument(
        "--fresh", action="store_true", help="ignore an existing state file; generate anew"
    )
    serve.add_argument("--app", default="writer", help="app whose credential is printed")
    serve.add_argument(
        "--env-file",
        type=Path,
        metavar="FILE",
        help="also write the KEY=VALUE connection lines to FILE (owner-only, atomically, once "
        "the emulator listens): source it without racing the start",
    )
    serve.add_argument("--latency-ms", type=float, default=0.0, help="base latency per request")
    serve.add_argument(
        "--latency-per-object-ms", type=float, default=0.0, help="latency per returned object"
    )
    serve.add_argument(
        "--budget", type=int, default=0, help="requests per app per window; 0 = unlimited"
    )
    serve.add_argument("--budget-window", type=float, default=60.0, help="seconds per window")
    serve.add_argument(
        "--max-concurrent", type=int, default=0, help="concurrent requests per tenant; 0 = no cap"
    )
    serve.add_argument(
        "--remove-referenced",
        choices=("reject", "orphan", "clear"),
        default="reject",
        help="removing a policy still in use: reject | orphan the links | clear them",
    )
    serve.add_argument(
        "--cursor-expiry", type=float, default=1800.0, help="nextLink lifetime in seconds"
    )
    serve.add_argument(
        "--control", action="store_true", help="enable /_emulator/{stats,state,reset,faults}"
    )
    serve.add_argument(
        "--cloud",
        choices=("commercial", "gcc-high", "dod", "china"),
        default="commercial",
        help="the Microsoft cloud whose token audiences and scopes the emulator issues and accepts",
    )
    serve.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any emulator setting (docs/emulator.md); VALUE is JSON or a bare string; repeatable",
    )


def _write_env_file(path: Path, lines: list[str]) -> None:
    """KEY=VALUE lines, owner-only (it holds the app's secret), replaced in one rename: a
    reader sees no file, or all of it."""
    import tempfile

    directory = path.expanduser().resolve().parent
    fd, temporary = tempfile.mkstemp(prefix=".authpolicy-env-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:  # mkstemp made it 0600
            handle.write("\n".join(lines) + "\n")
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def parse_set(items: list[str]) -> dict[str, Any]:
    """`--set NAME=VALUE` pairs as settings; VALUE is JSON, or else a bare string."""
    known = {f.name for f in dataclasses.fields(EmulatorSettings)}
    out: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"--set {item!r}: expected NAME=VALUE")
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"--set {name}: unknown setting{hint}; see docs/emulator.md")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        if isinstance(value, list):
            value = tuple(value) if name != "one_shot" else value
        out[name] = value
    return out


def _loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1")


def run(args: argparse.Namespace) -> int:
    """Dispatch `authpolicy emulator <command>`."""
    if getattr(args, "emulator_command", None) != "serve":
        print("usage: authpolicy emulator serve [options]  (see --help)", file=sys.stderr)
        return 1
    if not _loopback(args.host):
        print("error: the emulator only listens on loopback (127.0.0.1)", file=sys.stderr)
        return 1
    state_dir: Path = args.state_dir.expanduser()
    from reconciler.apply.lock import file_lock

    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        print(f"error: cannot create the state folder {state_dir}: {exc.strerror}", file=sys.stderr)
        return 1
    # One emulator per state folder: two would save over each other's tenant.
    with file_lock(
        state_dir / "serve.lock",
        "emulator lock",
        lambda pid: (
            f"another `authpolicy emulator serve` (pid {pid}) uses {state_dir}; stop "
            "it, or give this one its own --state-dir"
        ),
    ):
        return _serve(args, state_dir)


def _serve(args: argparse.Namespace, state_dir: Path) -> int:
    state_file: Path = (args.state or state_dir / "tenant.json").expanduser()
    if args.fresh and state_file.exists():
        state_file.unlink()
    try:
        settings = EmulatorSettings(
            users=args.users,
            seed=args.seed,
            state_dir=state_dir,
            state_file=state_file,
            host="127.0.0.1" if args.host == "localhost" else args.host,
            port=args.port,
            control_api=args.control,
            latency_base_ms=args.latency_ms,
            latency_per_object_ms=args.latency_per_object_ms,
            throttle_budget=args.budget,
            throttle_window_seconds=args.budget_window,
            max_concurrent_per_tenant=args.max_concurrent,
            remove_referenced=args.remove_referenced,
            cursor_expiry_seconds=args.cursor_expiry,
            cloud=args.cloud,
            tenants=args.tenants,
        )
        settings = dataclasses.replace(settings, **parse_set(args.settings))
        settings.validate()
        emulator = Emulator(settings)
        emulator.start()
    except (ValueError, OSError) as exc:
        print(f"error: cannot start the emulator: {exc}", file=sys.stderr)
        return 1
    try:
        env = emulator.connection_env(app=args.app)
    except ValueError as exc:
        emulator.stop()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    keys: list[str] = [
        key
        for key in (
            "AZURE_TENANT_ID",
            "AZURE_CLIENT_ID",
            "AZURE_CLIENT_SECRET",
            "AUTHPOLICY_ENDPOINT",
            "AUTHPOLICY_CA_BUNDLE",
            "AUTHPOLICY_TRUSTED_HOSTS",
            "AUTHPOLICY_CLOUD",
        )
        if key in env
    ]
    keys += sorted((k for k in env if k.startswith("AZURE_TENANT_ID_")), key=lambda k: int(k[16:]))
    lines = [f"{key}={env[key]}" for key in keys]

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # Ctrl-C and SIGTERM stop it, also when started from a shell that ignores SIGINT for
    # background jobs (the disposition a child inherits; apply installs its own handler too).
    # Installed before the connection lines are printed: whoever reads them may signal at once.
    previous = signal.signal(signal.SIGTERM, _terminate)
    previous_int = signal.signal(signal.SIGINT, _terminate)
    try:
        print("\n".join(lines))
        if args.env_file is not None:
            try:
                _write_env_file(args.env_file, lines)
            except OSError as exc:
                print(f"error: cannot write {args.env_file}: {exc.strerror}", file=sys.stderr)
                return 1
        print(
            f"# tenant {emulator.tenant_domain}; state file {emulator.state_path}; Ctrl-C to stop"
        )
        sys.stdout.flush()
        emulator.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        emulator.stop()
    print(f"# state saved to {emulator.state_path}", file=sys.stderr)
    return 0
