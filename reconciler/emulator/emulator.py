"""`Emulator`: start the HTTPS emulator in-process (tests, demo) or in the foreground (CLI)."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from reconciler.emulator.http import EmulatorHTTPServer, make_ssl_context
from reconciler.emulator.identity import (
    AppRegistration,
    IdentityService,
    load_or_create_apps,
)
from reconciler.emulator.pki import load_or_create_pki, write_atomic
from reconciler.emulator.server import EmulatorService
from reconciler.emulator.settings import EmulatorSettings
from reconciler.emulator.state import TenantState
from reconciler.emulator.synthetic import generate_tenant

log = logging.getLogger("authpolicy.emulator")

CREDENTIALS = ("secret", "certificate", "federated")
# The tenants of `--tenants N`, in order (then tenant11, tenant12, ...); the first is Contoso.
TENANT_NAMES = (
    "contoso",
    "fabrikam",
    "northwind",
    "tailspin",
    "adatum",
    "litware",
    "woodgrove",
    "proseware",
    "wingtip",
    "lucerne",
)
SIZE_FACTORS = (1.0, 0.5, 1.5, 0.25, 0.75)


def tenant_name(position: int) -> str:
    """The short name of tenant `position` (1-based)."""
    if position <= len(TENANT_NAMES):
        return TENANT_NAMES[position - 1]
    return f"tenant{position}"


class Emulator:
    """A running Exchange Online emulator (context manager).

    >>> with Emulator(EmulatorSettings(users=100)) as emu:
    ...     env = emu.connection_env(app="writer")
    """

    def __init__(self, settings: EmulatorSettings | None = None) -> None:
        self.settings = settings or EmulatorSettings()
        self.settings.validate()
        self._own_state_dir = self.settings.state_dir is None
        self.state_dir = Path(
            self.settings.state_dir
            if self.settings.state_dir is not None
            else tempfile.mkdtemp(prefix="authpolicy-emulator-")
        )
        self.state_path = (
            Path(self.settings.state_file)
            if self.settings.state_file is not None
            else self.state_dir / "tenant.json"
        )
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._service: EmulatorService | None = None
        self._services: list[EmulatorService] = []
        self._apps: dict[str, AppRegistration] = {}

    # ----------------------------------------------------------------- lifecycle
    def _initial_state(self) -> TenantState:
        settings = self.settings
        if settings.state_file is not None and Path(settings.state_file).exists():
            return TenantState.load(Path(settings.state_file))
        return TenantState(
            generate_tenant(
                settings.users,
                settings.seed,
                tenant_domain=settings.tenant_domain,
                user_domain=settings.user_domain,
            )
        )

    def _tenant_state(self, position: int) -> TenantState:
        """Tenant `position` (2..N) of a fleet: its own size, seed (so its own drift) and
        domain; loaded from its state file when it exists."""
        settings = self.settings
        path = self.state_dir / f"tenant-{position}.json"
        if settings.state_file is not None and path.exists():
            return TenantState.load(path)
        name = tenant_name(position)
        factor = 1.0 if settings.tenant_sizes == "equal" else SIZE_FACTORS[(position - 1) % 5]
        return TenantState(
            generate_tenant(
                max(10, int(settings.users * factor)),
                settings.seed + position - 1,
                tenant_domain=f"{name}.onmicrosoft.com",
                user_domain=f"{name}.com",
            )
        )

    def start(self) -> Emulator:
        """Create keys (first run), load or generate the tenant, and start serving."""
        if self._server is not None:
            return self
        self.state_dir.mkdir(parents=True, exist_ok=True)
        pki = load_or_create_pki(self.state_dir / "pki")
        self._apps = load_or_create_apps(self.state_dir / "identity", self.settings.apps)
        state = self._initial_state()
        identity = IdentityService(pki, self._apps, state.tenant_id, state.domain)
        service = EmulatorService(self.settings, state, identity, self._initial_state)
        server = EmulatorHTTPServer(
            (self.settings.host, self.settings.port),
            service,
            make_ssl_context(str(pki.server_cert_path), str(pki.server_key_path)),
        )
        services = [service]
        unconsented = set(self.settings.tenants_without_consent)
        if 1 in unconsented:
            service.identity = IdentityService(pki, {}, state.tenant_id, state.domain)
        for position in range(2, self.settings.tenants + 1):
            # One multi-tenant app registration, consented in every tenant (the same client id
            # and credential), except where the consent is missing: no service principal.
            other = self._tenant_state(position)
            apps = {} if position in unconsented else self._apps
            other_service = EmulatorService(
                self.settings,
                other,
                IdentityService(pki, apps, other.tenant_id, other.domain),
                lambda position=position: self._tenant_state(position),
            )
            server.add_service(other_service, position)
            services.append(other_service)
        port = server.server_address[1]
        for each in services:
            each.endpoint = f"https://{self.settings.host}:{port}"
            each.backend_endpoint = f"https://{self.settings.backend_host}:{port}"
        self._services = services
        self._pki = pki
        self._service = service
        self._server = server
        # A short poll interval makes stop() prompt (shutdown waits for the loop to notice).
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="authpolicy-emulator",
            daemon=True,
        )
        self._thread.start()
        log.info("emulator listening on %s (tenant %s)", service.endpoint, state.domain)
        return self

    def stop(self) -> None:
        """Stop serving, save the tenant (when configured), clean a temporary state dir."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_all_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._service is not None:
            self.settings = self._service.settings  # /_emulator/faults may have changed them
        if self.settings.save_on_exit and not (
            self._own_state_dir and self.settings.state_file is None
        ):
            self.save_state()
        if self._own_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Block until interrupted (Ctrl-C raises KeyboardInterrupt to the caller)."""
        if self._thread is None:
            self.start()
        assert self._thread is not None
        while self._thread.is_alive():
            self._thread.join(timeout=0.5)

    # ----------------------------------------------------------------- properties
    @property
    def service(self) -> EmulatorService:
        """The running service (raises when not started)."""
        if self._service is None:
            raise RuntimeError("the emulator is not running")
        return self._service

    @property
    def services(self) -> list[EmulatorService]:
        """Every tenant's service, in order (one unless `tenants` > 1)."""
        return self._services or [self.service]

    def tenant(self, position: int) -> EmulatorService:
        """Tenant `position` (1-based) of a fleet."""
        return self.services[position - 1]

    @property
    def tenant_ids(self) -> list[str]:
        """The tenant GUIDs, in order."""
        return [service.state.tenant_id for service in self.services]

    @property
    def endpoint(self) -> str:
        """Base URL of both the login authority and the admin API: https://127.0.0.1:PORT."""
        return self.service.endpoint

    @property
    def backend_endpoint(self) -> str:
        """The same socket under the backend host name: https://localhost:PORT."""
        return self.service.backend_endpoint

    @property
    def trusted_hosts(self) -> tuple[str, ...]:
        """host:port of the front end and the backend, as AUTHPOLICY_TRUSTED_HOSTS lists them."""
        return tuple(e.split("://", 1)[1] for e in (self.endpoint, self.backend_endpoint))

    @property
    def ca_path(self) -> Path:
        """PEM of the emulator's CA (trust this file)."""
        return self._pki.ca_path

    @property
    def tenant_id(self) -> str:
        """The tenant GUID."""
        return self.service.state.tenant_id

    @property
    def tenant_domain(self) -> str:
        """The initial domain, e.g. contoso.onmicrosoft.com."""
        return self.service.state.domain

    @property
    def authority(self) -> str:
        """The msal authority URL for this tenant."""
        return f"{self.endpoint}/{self.tenant_id}"

    def app(self, name: str) -> AppRegistration:
        """A registered app: writer | reader | no_permission | no_role."""
        try:
            return self._apps[name]
        except KeyError:
            raise ValueError(
                f"unknown app {name!r}; choose one of {', '.join(sorted(self._apps))}"
            ) from None

    # ----------------------------------------------------------------- connections
    def connection_env(self, app: str = "writer", credential: str = "secret") -> dict[str, str]:
        """Environment variables that connect the reconciler to this emulator as `app`."""
        registration = self.app(app)
        env = {
            "AZURE_TENANT_ID": self.tenant_id,
            "AZURE_CLIENT_ID": registration.client_id,
            "AUTHPOLICY_ENDPOINT": self.endpoint,
            "AUTHPOLICY_CA_BUNDLE": str(self.ca_path),
            # Hosts the emulator's redirects and nextLinks may name (the same socket).
            "AUTHPOLICY_TRUSTED_HOSTS": ",".join(self.trusted_hosts),
        }
        if self.settings.cloud != "commercial":  # the client's default cloud
            env["AUTHPOLICY_CLOUD"] = self.settings.cloud
        if len(self.services) > 1:
            for position, tenant_id in enumerate(self.tenant_ids, start=1):
                env[f"AZURE_TENANT_ID_{position}"] = tenant_id
        if credential == "secret":
            env["AZURE_CLIENT_SECRET"] = registration.secret
        elif credential == "certificate":
            if registration.certificate is None:
                raise ValueError(f"app {app!r} has no certificate credential")
            env["AZURE_CLIENT_CERTIFICATE_PATH"] = str(registration.certificate.path)
        elif credential == "federated":
            if registration.federated_subject is None:
                raise ValueError(f"app {app!r} has no federated credential")
            token = self.issue_federated_token(subject=registration.federated_subject)
            path = self.state_dir / "identity" / f"federated-{app}.jwt"
            write_atomic(path, token.encode("ascii"))
            env["AZURE_FEDERATED_TOKEN_FILE"] = str(path)
        else:
            raise ValueError(f"credential must be one of {', '.join(CREDENTIALS)}")
        return env

    def issue_federated_token(
        self, subject: str | None = None, ttl: int = 600, audience: str | None = None
    ) -> str:
        """A JWT from the trusted test issuer (default subject: the writer app's)."""
        settings = self.service.settings
        return self.service.identity.issue_federated_token(
            subject or (self.app("writer").federated_subject or ""),
            ttl,
            audience or settings.federated_audience,
            settings.federated_issuer,
        )

    def issue_access_token(
        self,
        app: str = "writer",
        *,
        resource: str = "https://outlook.office365.com",
        lifetime: int = 3599,
        **claim_overrides: Any,
    ) -> str:
        """Mint an access token directly (tests craft expired/foreign/wrong-audience ones).

        A claim override of None removes that claim.
        """
        return self.service.identity.mint(
            self.app(app), resource, lifetime, overrides=claim_overrides or None
        )

    # ----------------------------------------------------------------- observation
    def stats(self) -> dict[str, Any]:
        """Requests by cmdlet and status, writes that changed state vs no-ops, the write log."""
        return self.service.stats_dict()

    def write_log(self) -> list[dict[str, Any]]:
        """State-changing writes, in order: cmdlet, identity, target, params, time."""
        return list(self.service.stats_dict()["write_log"])

    def reset_stats(self) -> None:
        """Zero the statistics (of every tenant)."""
        for service in self.services:
            service.reset(state=False)

    def add_users(self, count: int) -> list[str]:
        """Joiners: `count` new user mailboxes with no direct policy; their UPNs."""
        return self.service.joiners_and_leavers({"add": count})["added"]

    def remove_users(self, upns: list[str]) -> list[str]:
        """Leavers: delete these users (UPN, name, GUID or Entra object id); their UPNs."""
        return self.service.joiners_and_leavers({"remove": upns})["removed"]

    def reset_state(self) -> None:
        """Restore the tenant as it was at start (and zero the statistics)."""
        self.service.reset(state=True)

    def set_faults(self, **changes: Any) -> None:
        """Change run-time settings (faults, throttling, latency, unverified behaviours) of
        every tenant; each keeps its own throttling budget and counters."""
        for service in self.services:
            service.set_faults(changes)
        self.settings = self.service.settings

    def dump_state(self) -> dict[str, Any]:
        """The tenant as a JSON-able dict (the state file format)."""
        return self.service.state.to_dict()

    def save_state(self, path: Path | None = None) -> Path:
        """Write the tenant atomically (default: the state file); the other tenants of a fleet
        beside it as tenant-K.json."""
        target = path or self.state_path
        self.service.state.save(target)
        for position, service in enumerate(self.services[1:], start=2):
            service.state.save(target.parent / f"tenant-{position}.json")
        return target

    def settings_snapshot(self) -> dict[str, Any]:
        """The live settings as a dict."""
        return json.loads(json.dumps(dataclasses.asdict(self.service.settings), default=str))
