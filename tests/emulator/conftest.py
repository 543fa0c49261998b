"""One emulator for the emulator's own integration tests, restored between tests."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msal
import pytest
import requests

from reconciler.emulator import Emulator, EmulatorSettings
from reconciler.emulator.settings import runtime_setting_names

USERS = 400
SCOPE = ["https://outlook.office365.com/.default"]
# The cmdlet-level tests below read raw answers, so they pin the plain reading of each
# unverified behaviour; tests/emulator/test_pessimistic.py covers every pessimistic default,
# and every client test (tests/tenant, tests/commands, tests/reliability) runs under them.
PLAIN = {
    "redirect_to_backend": False,
    "policy_reference_format": "name",
    "cursor_affinity": "lenient",
    "batch_member_auth": "ignored",
    "missing_identity_returns_all": False,
    "set_user_refuses": (),
}


class TrustingSession(requests.Session):
    """A session that trusts exactly its own `verify` (REQUESTS_CA_BUNDLE must not win)."""

    def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[no-untyped-def]
        merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
        merged["verify"] = self.verify
        return merged


def session_for(emu: Emulator) -> TrustingSession:
    """A keep-alive session trusting the emulator's CA."""
    session = TrustingSession()
    session.verify = str(emu.ca_path)
    return session


def msal_app(
    emu: Emulator, app: str = "writer", credential: Any = None
) -> msal.ConfidentialClientApplication:
    """A real msal confidential client pointed at the emulator."""
    registration = emu.app(app)
    return msal.ConfidentialClientApplication(
        registration.client_id,
        authority=emu.authority,
        client_credential=credential if credential is not None else registration.secret,
        instance_discovery=False,
        http_client=session_for(emu),
    )


class AdminClient:
    """Minimal InvokeCommand client for the tests (no retries: tests see raw answers)."""

    def __init__(self, emu: Emulator, token: str, tenant: str | None = None) -> None:
        self.emu = emu
        self.session = session_for(emu)
        self.token = token
        self.tenant = tenant or emu.tenant_id

    @property
    def url(self) -> str:
        return f"{self.emu.endpoint}/adminapi/beta/{self.tenant}/InvokeCommand"

    def post(
        self,
        cmdlet: str,
        parameters: dict[str, Any] | None = None,
        *,
        select: str | None = None,
        page_size: int | None = None,
        url: str | None = None,
        token: str | None = None,
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        if page_size is not None:
            headers["Prefer"] = f"odata.maxpagesize={page_size}"
        target = url or self.url + (f"?$select={select}" if select else "")
        body = {"CmdletInput": {"CmdletName": cmdlet, "Parameters": parameters or {}}}
        # stream=True: Exchange's 403 body is NUL bytes declared as gzip, which requests would
        # fail to decode while reading it eagerly; tests read such bodies with raw_body().
        send = {"json": body, "headers": headers, "timeout": 60, "stream": True}
        # requests would follow a 307 itself and drop the token on the new host.
        response = self.session.post(target, allow_redirects=False, **send)
        if response.status_code == 307:  # redirect_to_backend: re-send, token included, once
            response = self.session.post(
                response.headers["Location"], allow_redirects=False, **send
            )
        return response

    def ok(
        self, cmdlet: str, parameters: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        response = self.post(cmdlet, parameters, **kw)
        assert response.status_code == 200, response.text
        return response.json()

    def all_pages(
        self, cmdlet: str, parameters: dict[str, Any] | None = None, **kw: Any
    ) -> tuple[list[dict[str, Any]], int]:
        body = self.ok(cmdlet, parameters, **kw)
        objects, pages = list(body["value"]), 1
        while "@odata.nextLink" in body:
            kw["url"] = body["@odata.nextLink"]
            body = self.ok(cmdlet, parameters, **kw)
            objects += body["value"]
            pages += 1
        return objects, pages


def raw_body(response: requests.Response) -> bytes:
    """The undecoded body (for 403 answers declared as gzip)."""
    return response.raw.read(decode_content=False)


def details_message(response: requests.Response) -> str:
    """details[0].message of an Exchange error."""
    return response.json()["error"]["details"][0]["message"]


def prepared_state_dir(source: Emulator, target: Path) -> Path:
    """A state dir holding a copy of `source`'s keys, so a new emulator skips RSA generation."""
    for part in ("pki", "identity"):
        shutil.copytree(source.state_dir / part, target / part, dirs_exist_ok=True)
    return target


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    settings = EmulatorSettings(
        users=USERS,
        seed=11,
        state_dir=tmp_path_factory.mktemp("emulator"),
        save_on_exit=False,
        control_api=True,
    )
    with Emulator(settings) as emu:
        yield emu


@pytest.fixture
def emu(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """The shared emulator; settings, tenant and statistics restored after each test."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    defaults = {**dataclasses.asdict(EmulatorSettings(control_api=True)), **PLAIN}
    emulator.set_faults(**PLAIN)
    emulator.reset_stats()
    yield emulator
    emulator.set_faults(**{k: defaults[k] for k in runtime_setting_names()})
    emulator.reset_state()


@pytest.fixture(scope="session")
def writer_token(emulator: Emulator) -> str:
    result = msal_app(emulator).acquire_token_for_client(scopes=SCOPE)
    return result["access_token"]


@pytest.fixture(scope="session")
def reader_token(emulator: Emulator) -> str:
    result = msal_app(emulator, "reader").acquire_token_for_client(scopes=SCOPE)
    return result["access_token"]


@pytest.fixture
def client(emu: Emulator, writer_token: str) -> AdminClient:
    return AdminClient(emu, writer_token)


@pytest.fixture
def reader(emu: Emulator, reader_token: str) -> AdminClient:
    return AdminClient(emu, reader_token)
