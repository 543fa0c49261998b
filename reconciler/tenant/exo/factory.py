"""Wiring: settings -> verified session -> msal token provider -> client -> ExoTenant."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping

from reconciler.tenant.exo.auth import TokenProvider
from reconciler.tenant.exo.client import AdminApiClient
from reconciler.tenant.exo.credentials import msal_client_credential
from reconciler.tenant.exo.redact import install_log_redaction
from reconciler.tenant.exo.retry import RetryPolicy
from reconciler.tenant.exo.settings import ConnectionSettings
from reconciler.tenant.exo.tenant import ExoTenant
from reconciler.tenant.exo.transport import make_session
from reconciler.tenant.graph import ConditionalAccessReader, SignInReader, graph_scope


def build_tenant(
    settings: ConnectionSettings,
    environ: Mapping[str, str] = os.environ,
    *,
    use_batch: bool = True,
    page_size: int = 1000,
    retry: RetryPolicy | None = None,
    on_throttle: Callable[[float | None], None] | None = None,
    pool_maxsize: int = 16,
    timeout: tuple[float, float] = (15.0, 960.0),
) -> ExoTenant:
    """An ExoTenant for `settings`; the credential is read now, the token on first use."""
    install_log_redaction()
    # With one endpoint for everything (the emulator) trust only its CA; for Microsoft's
    # clouds trust the system store plus the extra CA, if any.
    session = make_session(
        settings.ca_bundle, only_ca_bundle=settings.endpoint is not None, pool_maxsize=pool_maxsize
    )
    credential = msal_client_credential(settings.credential, environ)
    tokens = TokenProvider(settings, credential, session)
    client = AdminApiClient(
        settings,
        tokens,
        session,
        retry=retry,
        page_size=page_size,
        timeout=timeout,
        on_throttle=on_throttle,
    )
    tenant = ExoTenant(client, use_batch=use_batch)
    # Graph (the sign-in log, for evidence): the same app, session and trust, its own token.
    graph_tokens = TokenProvider(
        dataclasses.replace(settings, scope=graph_scope(settings)), credential, session
    )
    tenant.sign_in_reader = SignInReader(
        settings, graph_tokens, session, retry=retry, on_throttle=on_throttle
    )
    tenant.conditional_access_reader = ConditionalAccessReader(
        settings, graph_tokens, session, retry=retry, on_throttle=on_throttle
    )
    return tenant
