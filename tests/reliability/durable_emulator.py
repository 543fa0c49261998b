"""The emulator as a separate process whose tenant survives SIGKILL.

`authpolicy emulator serve` saves its state file only when it stops cleanly, so a SIGKILL would
lose every write since start: unlike Exchange, which never loses a write it acknowledged. This
test-only wrapper runs the same `Emulator` and saves the state file after every admin-API
request that changed the tenant, *before* the answer is written, so a kill at any instant keeps
every acknowledged write (and perhaps a write whose answer never left: the ambiguous case).

The state file also carries `_write_log`: every state-changing write of every life of the
process (the emulator ignores unknown keys when it loads the file), so a test can check "no
write outside the plan" across kills.

    python -m tests.reliability.durable_emulator --state-dir DIR --port N --users N --seed N

prints one JSON line (the writer's connection variables), then serves until SIGTERM/SIGKILL.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from reconciler.emulator import Emulator, EmulatorSettings
from reconciler.emulator.pki import write_atomic

WRITE_LOG_KEY = "_write_log"


def read_write_log(state_file: Path) -> list[dict[str, Any]]:
    """Every state-changing write recorded in a durable emulator's state file."""
    data = json.loads(state_file.read_text(encoding="utf-8"))
    return list(data.get(WRITE_LOG_KEY, []))


def make_durable(emulator: Emulator, state_file: Path) -> None:
    """Save `state_file` (tenant + cumulative write log) after each request that wrote."""
    service = emulator.service
    previous: list[dict[str, Any]] = []
    if state_file.exists():
        previous = read_write_log(state_file)
    lock = threading.Lock()
    persisted = {"count": 0}
    inner = service.admin_request

    def admin_request(*args: Any, **kwargs: Any) -> Any:
        response = inner(*args, **kwargs)
        with lock:
            log = service.stats.write_log
            # The writes logged now are the ones this save covers: each changed the tenant
            # before it was logged, so to_dict (taken after) holds them. Writes logged while
            # the file is written (a $batch can finish during the fsync) are after `count`, and
            # their own request saves again: counting them here would acknowledge them unsaved.
            count = len(log)
            if count != persisted["count"]:
                # Under one lock, after our own write: later saves hold later states, so the
                # file never goes back in time.
                data = service.state.to_dict()
                data[WRITE_LOG_KEY] = previous + [dict(e) for e in log[:count]]
                write_atomic(state_file, json.dumps(data).encode("utf-8"), 0o600)
                persisted["count"] = count
        return response

    service.admin_request = admin_request  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    state_file = args.state_dir / "tenant.json"
    emulator = Emulator(
        EmulatorSettings(
            users=args.users,
            seed=args.seed,
            state_dir=args.state_dir,
            state_file=state_file,
            save_on_exit=False,  # every write is already saved; a stop must not drop the log
            port=args.port,
            latency_base_ms=args.latency_ms,
        )
    )
    emulator.start()
    if not state_file.exists():  # first life: the generated tenant, with an empty write log
        data = emulator.dump_state()
        data[WRITE_LOG_KEY] = []
        write_atomic(state_file, json.dumps(data).encode("utf-8"), 0o600)
    make_durable(emulator, state_file)
    print(json.dumps(emulator.connection_env("writer")), flush=True)

    def _stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        emulator.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
