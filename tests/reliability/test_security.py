"""Security promises end to end: TLS is always verified and cannot be turned off, saved plans
and audit logs are owner-only whatever the umask, and a config or plan for one tenant never
writes to another."""

from __future__ import annotations

import argparse
import ast
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import VERBS, build_parser
from reconciler.emulator import Emulator, EmulatorSettings
from tests.reliability.harness import EVERY_KIND, ROOT, run_authpolicy, subprocess_env, write_config
from tests.tenant.exo import certs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def contoso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    settings = EmulatorSettings(
        users=120, seed=7, state_dir=tmp_path_factory.mktemp("contoso"), save_on_exit=False
    )
    with Emulator(settings) as emu:
        yield emu


@pytest.fixture(scope="module")
def fabrikam(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    settings = EmulatorSettings(
        users=120,
        seed=8,
        state_dir=tmp_path_factory.mktemp("fabrikam"),
        save_on_exit=False,
        tenant_domain="fabrikam.onmicrosoft.com",
        user_domain="contoso.com",  # same users and rules; only the tenant differs
    )
    with Emulator(settings) as emu:
        yield emu


# --------------------------------------------------------------------------- TLS


def _other_ca(tmp_path: Path) -> Path:
    key = certs.make_key()
    path = tmp_path / "other-ca.pem"
    path.write_bytes(certs.cert_pem(certs.make_cert(key, cn="Untrusted CA", ca=True)))
    return path


@pytest.mark.parametrize("verb", ["plan", "apply", "drift", "report", "export"])
def test_a_server_with_an_untrusted_certificate_is_refused_by_every_verb(
    contoso: Emulator, tmp_path: Path, verb: str
) -> None:
    env = contoso.connection_env("writer")
    env["AUTHPOLICY_CA_BUNDLE"] = str(_other_ca(tmp_path))
    # The emulator's CA offered through every variable requests and OpenSSL would honour:
    # none of them may replace the trust authpolicy was configured with.
    ca = str(contoso.ca_path)
    run_env = subprocess_env(env, REQUESTS_CA_BUNDLE=ca, CURL_CA_BUNDLE=ca, SSL_CERT_FILE=ca)
    config = write_config(tmp_path)
    argv = {
        "plan": ["plan", "-c", str(config)],
        "apply": ["apply", "-c", str(config), "--auto-approve"],
        "drift": ["drift", "-c", str(config)],
        "report": ["report"],
        "export": ["export"],
    }[verb]
    contoso.reset_stats()
    result = run_authpolicy(run_env, *argv, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == (
        f"error: TLS verification of {contoso.endpoint}/{contoso.tenant_id} failed: its "
        "certificate is not trusted; set AUTHPOLICY_CA_BUNDLE to the CA that signed it "
        "(verification cannot be turned off)\n"
    )
    assert result.stdout == ""
    stats = contoso.stats()
    assert stats["requests_total"] == 0 and stats["token_requests"] == {}


def _all_flags() -> dict[str, set[str]]:
    parser = build_parser()
    flags: dict[str, set[str]] = {"": {o for a in parser._actions for o in a.option_strings}}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for verb, sub in action.choices.items():
                found = {o for a in sub._actions for o in a.option_strings}
                for inner in sub._actions:  # `emulator serve`
                    if isinstance(inner, argparse._SubParsersAction):
                        for subsub in inner.choices.values():
                            found |= {o for a in subsub._actions for o in a.option_strings}
                flags[verb] = found
    return flags


def _verification_off(tree: ast.AST) -> list[int]:
    """Lines of code (not strings or comments) that would weaken certificate checks."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "verify":
            if isinstance(node.value, ast.Constant) and node.value.value is False:
                lines.append(node.value.lineno)
        elif isinstance(node, ast.Attribute) and node.attr in (
            "CERT_NONE",
            "_create_unverified_context",
            "disable_warnings",
        ):
            lines.append(node.lineno)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if (
                    isinstance(target, ast.Attribute)
                    and target.attr in ("check_hostname", "verify")
                    and node.value.value is False
                ):
                    lines.append(node.lineno)
        elif isinstance(node, ast.Constant) and node.value in (
            "AUTHPOLICY_INSECURE",
            "PYTHONHTTPSVERIFY",
        ):
            lines.append(node.lineno)
    return lines


def test_no_flag_or_code_turns_verification_off() -> None:
    # Every verb's flags: nothing that reads like a way around verification.
    flags = _all_flags()
    assert set(VERBS) <= set(flags)
    for verb, options in flags.items():
        risky = {f for f in options if re.search(r"insecure|verify|tls|ssl|skip|no-check", f)}
        assert risky == set(), (verb, risky)
    # The client code: no call that disables verification anywhere outside the emulator
    # (the server side, which never verifies clients).
    offenders = []
    for path in sorted((ROOT / "reconciler").rglob("*.py")):
        if "emulator" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        offenders += [f"{path.relative_to(ROOT)}:{n}" for n in _verification_off(tree)]
    assert offenders == []
    # The check itself catches what it is meant to catch.
    sample = "s.get(u, verify=False)\nctx.check_hostname = False\nx = ssl.CERT_NONE\n"
    assert sorted(_verification_off(ast.parse(sample))) == [1, 2, 3]


# --------------------------------------------------------------------------- file modes


def test_plan_files_and_audit_logs_are_owner_only_whatever_the_umask(
    contoso: Emulator, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text("old", encoding="utf-8")
    plan_file.chmod(0o644)  # an older, world-readable file is replaced, not reused
    env = subprocess_env(contoso.connection_env("reader"))
    old_umask = os.umask(0)  # the most permissive umask; children inherit it
    try:
        result = run_authpolicy(env, "plan", "-c", str(config), "--out", str(plan_file))
        assert result.returncode == 0, result.stderr
        # Apply with the default audit location (.authpolicy/ in the working directory): the
        # reader is refused every write, but the audit log is still created.
        result = run_authpolicy(env, "apply", "-c", str(config), "--auto-approve", cwd=tmp_path)
        assert result.returncode == 1, result.stderr
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(plan_file.stat().st_mode) == 0o600
    audit_dir = tmp_path / ".authpolicy"
    [audit] = list(audit_dir.glob("audit-*.jsonl"))
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600
    assert stat.S_IMODE(audit_dir.stat().st_mode) == 0o700


# --------------------------------------------------------------------------- tenant guard


def test_a_config_or_plan_for_one_tenant_never_writes_to_another(
    contoso: Emulator, fabrikam: Emulator, tmp_path: Path
) -> None:
    to_contoso = subprocess_env(contoso.connection_env("writer"))
    to_fabrikam = subprocess_env(fabrikam.connection_env("writer"))
    config = write_config(tmp_path)  # tenant: contoso.onmicrosoft.com
    fabrikam.reset_stats()

    # 1. The config names contoso; the connection is to fabrikam.
    result = run_authpolicy(to_fabrikam, "apply", "-c", str(config), "--auto-approve")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: {config} is for tenant 'contoso.onmicrosoft.com' but the connection is to "
        f"'{fabrikam.tenant_id}'; refusing to apply (check AZURE_TENANT_ID)"
    )

    # 2. No tenant in the config, but a plan reviewed against contoso applied to fabrikam.
    untied = tmp_path / "untied.yaml"
    untied.write_text(EVERY_KIND.replace("tenant: contoso.onmicrosoft.com\n", ""), "utf-8")
    plan_file = tmp_path / "plan.json"
    result = run_authpolicy(to_contoso, "plan", "-c", str(untied), "--out", str(plan_file))
    assert result.returncode == 0, result.stderr
    result = run_authpolicy(to_fabrikam, "apply", str(plan_file), "-c", str(untied))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == (
        f"error: {plan_file} is stale, refusing to apply: the plan was made for tenant "
        f"'{contoso.tenant_id}', not '{fabrikam.tenant_id}'. Run plan again and review the new "
        "plan.\n"
    )

    assert fabrikam.stats()["writes_changed_state"] == 0
    assert fabrikam.write_log() == []


# --------------------------------------------------------------------------- foreign hosts


def test_a_next_link_to_another_host_is_never_even_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from reconciler.model import SnapshotNeeds
    from reconciler.tenant.connect import open_tenant
    from reconciler.tenant.exo.errors import ExoProtocolError

    looked_up: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def recording_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(str(host))
        return real_getaddrinfo(host, *args, **kwargs)

    settings = EmulatorSettings(users=1100, seed=7, state_dir=tmp_path / "emu", save_on_exit=False)
    with Emulator(settings) as emu:  # two pages of users: there is a nextLink to tamper with
        monkeypatch.setattr(socket, "getaddrinfo", recording_getaddrinfo)
        tenant = open_tenant(argparse.Namespace(), emu.connection_env("reader"))
        tenant.facts()
        emu.set_faults(one_shot=["foreign_next_link"])
        with pytest.raises(ExoProtocolError) as err:
            tenant.read_snapshot(SnapshotNeeds())
        assert emu.stats()["faults_injected"] == {"foreign_next_link": 1}
    assert str(err.value) == (
        "refusing to follow @odata.nextLink to https://attacker.example:443: that host is not "
        "one this cloud's Exchange service uses (nor in AUTHPOLICY_TRUSTED_HOSTS); the token is "
        "never sent elsewhere"
    )
    # No connection was even attempted: the name was never resolved, so no byte (and no
    # Authorization header) can have left for it. (The hook saw the emulator's connections.)
    # 127.0.0.1 (the configured endpoint) and localhost (the trusted backend it redirects to).
    assert "127.0.0.1" in looked_up
    assert set(looked_up) == {"127.0.0.1", "localhost"}
