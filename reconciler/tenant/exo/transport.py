"""HTTPS sessions that always verify TLS against exactly the trust we chose.

requests lets `REQUESTS_CA_BUNDLE` / `CURL_CA_BUNDLE` (set on many machines, these included)
silently replace `Session.verify`, and lets any caller pass `verify=False`. `VerifiedSession`
does neither: its trust is an `ssl.SSLContext` built once from the system store (plus an extra
CA), or from only the given CA bundle when everything points at one endpoint (the emulator).
There is no switch that turns verification off.
"""

from __future__ import annotations

import os
import ssl
import stat
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from requests.sessions import merge_setting
from requests.utils import get_environ_proxies

from reconciler.errors import ConnectionSettingsError
from reconciler.tenant.exo.settings import shown_path

MAX_CA_BUNDLE_BYTES = 10 * 2**20  # a system bundle is about 200 KB


def _check_ca_file(ca_bundle: str) -> None:
    """A regular file of sane size: a FIFO would hang the load, a device would never end."""
    try:
        info = os.stat(ca_bundle)
    except OSError:
        return  # the load below says what is wrong (missing, unreadable)
    if not stat.S_ISREG(info.st_mode):
        raise ConnectionSettingsError(
            f"AUTHPOLICY_CA_BUNDLE={shown_path(ca_bundle)}: not a regular file (a FIFO, a "
            "device or a directory); point it at the PEM file of the CA to trust"
        )
    if info.st_size > MAX_CA_BUNDLE_BYTES:
        raise ConnectionSettingsError(
            f"AUTHPOLICY_CA_BUNDLE={shown_path(ca_bundle)}: larger than "
            f"{MAX_CA_BUNDLE_BYTES // 2**20} MiB, not a CA bundle"
        )


def build_ssl_context(ca_bundle: str | None, *, only_ca_bundle: bool) -> ssl.SSLContext:
    """The trust store: the CA bundle alone (emulator) or the system store plus the CA bundle."""
    if ca_bundle:
        _check_ca_file(ca_bundle)
    try:
        if ca_bundle and only_ca_bundle:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_bundle)
        else:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
            try:  # requests' own default store, so real clouds verify as they would with requests
                import certifi

                context.load_verify_locations(cafile=certifi.where())
            except (ImportError, OSError):
                pass
            if ca_bundle:
                context.load_verify_locations(cafile=ca_bundle)
    except FileNotFoundError:
        raise ConnectionSettingsError(
            f"AUTHPOLICY_CA_BUNDLE={shown_path(ca_bundle or '')}: the file does not exist; "
            "check the path"
        ) from None
    except PermissionError:
        raise ConnectionSettingsError(
            f"AUTHPOLICY_CA_BUNDLE={ca_bundle}: the file is not readable by this user"
        ) from None
    except (ssl.SSLError, OSError, ValueError):
        raise ConnectionSettingsError(
            f"AUTHPOLICY_CA_BUNDLE={ca_bundle}: not a PEM file of CA certificates"
        ) from None
    # Never lowered: these are create_default_context's values, stated so a reader sees them.
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class _PinnedTrustAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections all use one SSLContext, whatever `verify` says."""

    def __init__(self, context: ssl.SSLContext, pool_maxsize: int) -> None:
        self._context = context
        super().__init__(pool_connections=4, pool_maxsize=pool_maxsize, max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        proxy_kwargs["ssl_context"] = self._context
        return super().proxy_manager_for(proxy, **proxy_kwargs)

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> Any:
        # Ignore `verify` (a path or False): the pinned context alone decides trust.
        host_params, _ = super().build_connection_pool_key_attributes(request, True, None)
        return host_params, {"cert_reqs": "CERT_REQUIRED"}

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # requests would point ca_certs at certifi (adding to our context); keep it pinned.
        if url.lower().startswith("https"):
            conn.cert_reqs = "CERT_REQUIRED"
            conn.ca_certs = None
            conn.ca_cert_dir = None


class _RefusePlainHttp(HTTPAdapter):
    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        raise requests.exceptions.InvalidURL(
            f"refusing plain http:// to {request.url}: only https:// is used"
        )


class VerifiedSession(requests.Session):
    """A requests.Session that always verifies TLS with its own pinned trust store."""

    def __init__(self, context: ssl.SSLContext, pool_maxsize: int = 16) -> None:
        super().__init__()
        self.verify = True
        self.mount("https://", _PinnedTrustAdapter(context, pool_maxsize))
        self.mount("http://", _RefusePlainHttp())
        self._environ_proxies: dict[str, dict[str, str]] = {}

    def merge_environment_settings(
        self,
        url: Any,
        proxies: Any,
        stream: Any,
        verify: Any,
        cert: Any,
    ) -> Any:
        if self.trust_env and not proxies:
            # requests scans the whole environment for proxy variables on every request, a
            # fifth of the client's CPU per Set-User (bench/); the answer depends only on the
            # origin, so look it up once per origin.
            parts = urlsplit(str(url))
            key = f"{parts.scheme}://{parts.netloc}".lower()
            found = self._environ_proxies.get(key)
            if found is None:
                found = self._environ_proxies[key] = dict(get_environ_proxies(str(url)))
            return {
                "proxies": merge_setting(dict(found), self.proxies),
                "stream": merge_setting(stream, self.stream),
                "verify": True,
                "cert": None,
            }
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        # REQUESTS_CA_BUNDLE and verify=False would land here; trust is the adapter's context.
        settings["verify"] = True
        settings["cert"] = None
        return settings


def make_session(
    ca_bundle: str | None, *, only_ca_bundle: bool, pool_maxsize: int = 16
) -> VerifiedSession:
    """A verified session; see `build_ssl_context` for which CAs it trusts."""
    return VerifiedSession(
        build_ssl_context(ca_bundle, only_ca_bundle=only_ca_bundle), pool_maxsize
    )


def root_cause_name(exc: BaseException) -> str:
    """The innermost exception's class name (e.g. ConnectionRefusedError), for messages."""
    current: BaseException = exc
    for _ in range(10):
        nxt: BaseException | None
        if isinstance(current, urllib3.exceptions.MaxRetryError) and current.reason is not None:
            nxt = current.reason
        else:
            nxt = current.__cause__ or (
                current.args[0]
                if current.args and isinstance(current.args[0], BaseException)
                else None
            )
        if nxt is None:
            break
        current = nxt
    return type(current).__name__
