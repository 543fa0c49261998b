"""Secrets never leave: every verb, as a subprocess with `-v -v` (debug logging), success and
error paths, with a client secret, a certificate password and live tokens in play.

Scanned: stdout, stderr, and every file the run wrote (plan, audit log, export, report). A leak
is the secret or the password (or 8 characters of either end of them), any access token the
emulator issued during the test, any JWT-shaped string, or private key material.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from reconciler.emulator import Emulator, EmulatorSettings
from tests.reliability.harness import run_authpolicy, subprocess_env, write_config
from tests.tenant.exo import certs

pytestmark = pytest.mark.integration

CERT_PASSWORD = "Pfx-Passw0rd-7c1e94d2b8"
WRONG_SECRET = "Wr0ng-Secret-4f2a9c6d1e"
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}")
KEY_MATERIAL = re.compile(r"PRIVATE KEY|BEGIN CERTIFICATE")


class TokenRecorder:
    """Records every access token the emulator's token endpoint hands out."""

    def __init__(self, emu: Emulator) -> None:
        self.tokens: list[str] = []
        identity = emu.service.identity
        inner = identity.token_request

        def token_request(*args: Any, **kwargs: Any) -> Any:
            answer = inner(*args, **kwargs)
            if isinstance(answer, dict) and answer.get("access_token"):
                self.tokens.append(str(answer["access_token"]))
            return answer

        identity.token_request = token_request  # type: ignore[method-assign]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Emulator, TokenRecorder]]:
    settings = EmulatorSettings(
        users=1050, seed=7, state_dir=tmp_path_factory.mktemp("emu"), save_on_exit=False
    )
    # More than 1,000 users: reads take two pages, so a foreign nextLink can be injected.
    with Emulator(settings) as emu:
        recorder = TokenRecorder(emu)
        recorder.tokens.append(emu.issue_access_token("writer"))  # before any run asks for one
        yield emu, recorder


def _pfx_with_password(emu: Emulator, directory: Path) -> Path:
    env = emu.connection_env("writer", credential="certificate")
    raw = Path(env["AZURE_CLIENT_CERTIFICATE_PATH"]).read_bytes()
    key = serialization.load_pem_private_key(raw, None)
    cert = x509.load_pem_x509_certificates(raw)[0]
    return certs.write_pfx(directory / "app.pfx", key, cert, CERT_PASSWORD.encode())  # type: ignore[arg-type]


def _connection(emu: Emulator, case: str, tmp_path: Path) -> dict[str, str]:
    """The connection variables of one case; every case carries a secret *and* a password."""
    if case == "federated":
        env = emu.connection_env("writer", credential="federated")
        env["AZURE_CLIENT_SECRET"] = WRONG_SECRET  # present too, but --credential picks
        env["AZURE_CLIENT_CERTIFICATE_PASSWORD"] = CERT_PASSWORD
        return env
    if case == "certificate":
        env = emu.connection_env("writer", credential="certificate")
        env["AZURE_CLIENT_CERTIFICATE_PATH"] = str(_pfx_with_password(emu, tmp_path))
    elif case == "wrong_certificate_password":
        env = emu.connection_env("writer", credential="certificate")
        env["AZURE_CLIENT_CERTIFICATE_PATH"] = str(_pfx_with_password(emu, tmp_path))
        env["AZURE_CLIENT_CERTIFICATE_PASSWORD"] = WRONG_SECRET
        return env
    else:
        app = {"no_role": "no_role", "no_permission": "no_permission", "reader": "reader"}.get(
            case, "writer"
        )
        env = emu.connection_env(app)
        if case == "wrong_secret":
            env["AZURE_CLIENT_SECRET"] = WRONG_SECRET
        if case == "untrusted_ca":
            other = certs.make_key()
            ca = tmp_path / "other-ca.pem"
            ca.write_bytes(certs.cert_pem(certs.make_cert(other, cn="Other CA", ca=True)))
            env["AUTHPOLICY_CA_BUNDLE"] = str(ca)
    env["AZURE_CLIENT_CERTIFICATE_PASSWORD"] = CERT_PASSWORD
    return env


def _secrets(emu: Emulator, recorder: TokenRecorder) -> list[str]:
    values = [CERT_PASSWORD, WRONG_SECRET, *recorder.tokens]
    federated = emu.state_dir / "identity" / "federated-writer.jwt"
    if federated.exists():
        values.append(federated.read_text(encoding="ascii").strip())
    for app in ("writer", "reader", "no_role", "no_permission"):
        values.append(emu.app(app).secret)
    pieces = []
    for value in values:
        pieces += [value, value[:8], value[-8:]] if len(value) >= 16 else [value]
    return pieces


def _leaks(text: str, secrets: list[str]) -> list[str]:
    found = [f"secret piece {s[:3]}..." for s in secrets if s and s in text]
    found += [f"JWT-shaped {m.group(0)[:12]}..." for m in JWT.finditer(text)]
    found += [f"key material {m.group(0)}" for m in KEY_MATERIAL.finditer(text)]
    return found


# (case, verb argv, expected exit code); FILES in argv are replaced by paths in tmp_path.
RUNS = [
    ("secret", ["validate", "-c", "CONFIG"], 0),
    # The demo runs its own emulator and sets the caller's connection aside: neither the
    # caller's secret nor the demo's own credentials may show.
    ("secret", ["demo", "-c", "CONFIG"], 0),
    ("secret", ["plan", "-c", "CONFIG", "--out", "PLAN", "--format", "json"], 0),
    ("secret", ["plan", "-c", "CONFIG", "--format", "markdown"], 0),
    ("secret", ["drift", "-c", "CONFIG"], 2),
    ("reader", ["report", "--format", "csv"], 0),
    ("secret", ["drift", "-c", "CONFIG", "--format", "sarif"], 2),
    ("reader", ["report", "--baseline", "-c", "CONFIG", "--format", "junit"], 2),
    ("reader", ["export", "--out", "EXPORT"], 0),
    ("certificate", ["plan", "-c", "CONFIG"], 0),
    ("federated", ["plan", "-c", "CONFIG", "--credential", "federated"], 0),
    # A read-only identity: apply is refused change by change.
    ("reader", ["apply", "-c", "CONFIG", "--auto-approve", "--audit-log", "AUDIT2"], 1),
    ("secret", ["apply", "-c", "CONFIG", "--auto-approve", "--audit-log", "AUDIT"], 0),
    ("secret", ["apply", "PLAN", "-c", "CONFIG", "--audit-log", "AUDIT"], 1),  # stale now
    ("wrong_secret", ["plan", "-c", "CONFIG"], 1),
    ("wrong_certificate_password", ["plan", "-c", "CONFIG"], 1),
    ("no_permission", ["drift", "-c", "CONFIG"], 1),
    ("no_role", ["report"], 1),
    ("untrusted_ca", ["plan", "-c", "CONFIG"], 1),
    ("malformed:nul_gzip_403", ["plan", "-c", "CONFIG"], 1),
    ("malformed:foreign_next_link", ["export"], 1),
]


@pytest.mark.parametrize(
    ("case", "argv", "expected"), RUNS, ids=[f"{c}-{a[0]}-{i}" for i, (c, a, _) in enumerate(RUNS)]
)
def test_no_secret_in_output_files_or_errors(
    world: tuple[Emulator, TokenRecorder],
    tmp_path: Path,
    case: str,
    argv: list[str],
    expected: int,
) -> None:
    emu, recorder = world
    shared = tmp_path.parent / "shared"  # the saved plan outlives one case
    shared.mkdir(exist_ok=True)
    files = {
        "CONFIG": write_config(tmp_path),
        "PLAN": shared / "plan.json",
        "AUDIT": tmp_path / "audit.jsonl",
        "AUDIT2": tmp_path / "audit2.jsonl",
        "EXPORT": tmp_path / "exported.yaml",
    }
    args = [str(files[a]) if a in files else a for a in argv]
    fault = case.partition("malformed:")[2]
    if fault:
        # Always-on: the retries see it every time, so the run must give up cleanly.
        emu.set_faults(**{f"{fault}_rate": 1.0})
    writes_before = len(emu.write_log())
    try:
        env = subprocess_env(_connection(emu, (fault and "secret") or case, tmp_path))
        result = run_authpolicy(env, "-v", "-v", *args, cwd=tmp_path)
    finally:
        if fault:
            emu.set_faults(**{f"{fault}_rate": 0.0})
    assert result.returncode == expected, result.stdout[-1500:] + result.stderr[-1500:]
    assert "Traceback" not in result.stderr
    secrets = _secrets(emu, recorder)
    texts = {"stdout": result.stdout, "stderr": result.stderr}
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".yaml", ".csv", ".md", ".txt"):
            if path.name == "policies.yaml":
                continue
            texts[path.name] = path.read_text(encoding="utf-8", errors="replace")
    if files["PLAN"].exists():
        texts["plan.json"] = files["PLAN"].read_text(encoding="utf-8")
    for where, text in texts.items():
        assert _leaks(text, secrets) == [], where
    if expected == 1 and case == "reader" and argv[0] == "apply":
        # A read-only identity: the first write is refused (403) and apply stops there, with
        # one line naming the role; nothing else is sent, nothing changes.
        assert "Apply finished with errors: 0 applied, 1 failed" in result.stdout
        assert "Stopped at the first refused write: Exchange refused" in result.stdout
        assert "assign the Exchange Administrator role" in result.stdout
        assert "assign the Exchange Administrator role to the app to apply" in result.stderr
        assert len(emu.write_log()) == writes_before  # refused: nothing was written
    elif expected == 1:
        # The error is one line a person can act on.
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, result.stderr[-2000:]
