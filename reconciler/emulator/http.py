"""The HTTP plumbing: a lean HTTP/1.1 keep-alive handler, routing to the service's rooms, and
a threading HTTPS server that wraps each accepted socket in TLS in its worker thread (so a
slow handshake never blocks accept).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import socketserver
import ssl
import struct
import threading
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from reconciler.emulator import wire

log = logging.getLogger("authpolicy.emulator")

MAX_BODY = 4 * 1024 * 1024


@dataclass
class Response:
    """An HTTP answer before it is written."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    cmdlet: str = "-"
    reset: bool = False


def json_response(status: int, body: Any) -> Response:
    """A JSON answer."""
    return Response(status, wire.dumps(body), {"Content-Type": wire.JSON_CONTENT_TYPE})


class Headers:
    """Request headers with case-insensitive `get` (all the emulator needs)."""

    __slots__ = ("_items",)

    def __init__(self, items: dict[str, str]) -> None:
        self._items = items

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._items.get(name.lower(), default)


_REASONS = {
    200: "OK",
    204: "No Content",
    307: "Temporary Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_MAX_HEADERS = 100
_MAX_LINE = 65536


class _Handler(socketserver.StreamRequestHandler):
    """A lean HTTP/1.1 keep-alive handler.

    http.server's BaseHTTPRequestHandler parses headers with the email package, which costs
    more than the whole cmdlet; this reads exactly what the emulator needs (request line,
    headers, Content-Length or chunked body) and answers with one write per response.
    """

    disable_nagle_algorithm = True  # without it, keep-alive answers crawl at ~25/s
    timeout = 120  # idle keep-alive connections
    server: EmulatorHTTPServer

    def handle(self) -> None:
        while self._handle_one():
            pass

    def _handle_one(self) -> bool:
        line = self.rfile.readline(_MAX_LINE + 1)
        if not line:
            return False
        if line in (b"\r\n", b"\n"):  # tolerate a stray blank line between requests
            line = self.rfile.readline(_MAX_LINE + 1)
            if not line:
                return False
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._write(Response(400, b""), version="HTTP/1.1", close=True)
            return False
        method, self.path, version = parts
        items: dict[str, str] = {}
        for _ in range(_MAX_HEADERS + 1):
            raw = self.rfile.readline(_MAX_LINE + 1)
            if raw in (b"\r\n", b"\n", b""):
                break
            name, sep, value = raw.decode("latin-1").partition(":")
            if not sep:
                self._write(Response(400, b""), version=version, close=True)
                return False
            items[name.strip().lower()] = value.strip()
        else:
            self._write(Response(431, b""), version=version, close=True)
            return False
        self.headers = Headers(items)
        connection = items.get("connection", "").lower()
        close = connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive")
        if items.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl waits for this
        body = self._read_body(items)
        if body is None:
            self._write(Response(413, b""), version=version, close=True)
            return False
        if method not in ("GET", "POST"):
            response = Response(405, b"", {"Allow": "GET, POST"})
        else:
            try:
                response = self._route(method, body)
            except Exception:  # a bug must answer 500, never kill the connection silently
                log.exception("emulator: unhandled error for %s %s", method, self.path)
                response = json_response(
                    500,
                    {
                        "error": {
                            "code": "InternalServerError",
                            "message": "Internal emulator error",
                        }
                    },
                )
        if response.reset:
            self._reset_connection()
            return False
        self._write(response, version=version, close=close, head=method == "HEAD")
        return not close

    def _read_body(self, items: dict[str, str]) -> bytes | None:
        if "chunked" in items.get("transfer-encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size_line = self.rfile.readline(_MAX_LINE + 1)
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError:
                    return None
                if size == 0:
                    while self.rfile.readline(_MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(_MAX_LINE + 1)
        length_text = items.get("content-length")
        if length_text is None:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            return None
        if length < 0 or length > MAX_BODY:
            return None
        return self.rfile.read(length) if length else b""

    def _route(self, method: str, body: bytes) -> Response:
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        query = parse_qs(url.query, keep_blank_values=True)
        lowered = [p.lower() for p in parts]
        service = self.server.service_for(_tenant_of(lowered, parts, query, self.headers))
        if len(parts) == 4 and lowered[0] == "adminapi":
            if lowered[1] != "beta":
                return Response(405, b"", {"Allow": ""})
            if method != "POST":
                return Response(405, b"", {"Allow": "POST"})
            if lowered[3] == "invokecommand":
                return service.admin_request(
                    parts[2], "InvokeCommand", query, self.headers, body, self.path
                )
            if lowered[3] == "$batch":
                return service.admin_request(
                    parts[2], "$batch", query, self.headers, body, self.path
                )
            return Response(404, b"")
        if lowered == ["v1.0", "auditlogs", "signins"]:
            if method != "GET":
                return Response(405, b"", {"Allow": "GET"})
            return service.graph_sign_ins(self.headers, query)
        if lowered == ["v1.0", "identity", "conditionalaccess", "policies"]:
            if method != "GET":
                return Response(405, b"", {"Allow": "GET"})
            return service.graph_conditional_access(self.headers)
        if len(parts) == 2 and lowered[0] == "_emulator":
            if not service.settings.control_api:
                return Response(404, b"")
            return service.control(method, lowered[1], body)
        if lowered[-3:] == ["v2.0", ".well-known", "openid-configuration"] and len(parts) == 4:
            return service.openid_configuration(parts[0])
        if lowered[-2:] == [".well-known", "openid-configuration"] and len(parts) == 3:
            return service.openid_configuration(parts[0])
        if lowered == ["common", "discovery", "instance"]:
            return service.instance_discovery(query)
        if len(parts) >= 3 and lowered[1] == "discovery" and lowered[-1] == "keys":
            return service.jwks()
        if len(parts) == 4 and lowered[1:] == ["oauth2", "v2.0", "token"]:
            if method != "POST":
                return Response(405, b"", {"Allow": "POST"})
            return service.token(parts[0], body)
        return Response(404, b"")

    def _write(self, response: Response, *, version: str, close: bool, head: bool = False) -> None:
        # Status, headers and body leave in ONE write: each TLS write is a record and a GIL
        # round trip, and two small writes per answer halve the keep-alive request rate.
        reason = _REASONS.get(response.status, "Unknown")
        lines = [f"HTTP/1.1 {response.status} {reason}", "Server: Microsoft-IIS/10.0"]
        lines.extend(f"{key}: {value}" for key, value in response.headers.items())
        lines.append(f"request-id: {secrets.token_hex(16)}")
        lines.append(f"Content-Length: {len(response.body)}")
        if close:
            lines.append("Connection: close")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if response.body and not head:
            data += response.body
        self.wfile.write(data)

    def _reset_connection(self) -> None:
        """Drop the connection with RST (SO_LINGER 0) without answering.

        The socket is closed by the server after the handler returns; with linger 0 that close
        sends a TCP reset, which the client sees as "connection reset by peer".
        """
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class EmulatorHTTPServer(ThreadingHTTPServer):
    """Threading keep-alive HTTPS server; TLS handshakes happen in the worker threads."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        service: Any,  # an EmulatorService
        ssl_context: ssl.SSLContext,
    ) -> None:
        super().__init__(address, _Handler)
        self.service = service
        # Every tenant's service, by lower-case GUID, initial domain and position ("1", "2"):
        # `emulator serve --tenants N` serves N tenants from one socket.
        self.services: dict[str, Any] = {}
        self.add_service(service, 1)
        self.ssl_context = ssl_context
        self._connections: set[Any] = set()
        self._connections_lock = threading.Lock()

    def add_service(self, service: Any, position: int) -> None:
        """Serve one more tenant (its GUID, initial domain and position route to it)."""
        state = service.state
        for key in (state.tenant_id, state.domain, str(position)):
            self.services[key.lower()] = service

    def service_for(self, tenant: str) -> Any:
        """The service of `tenant` (GUID, domain or position), else the first tenant's."""
        return self.services.get(tenant.lower(), self.service) if tenant else self.service

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Wrap the socket in TLS (in this worker thread) and serve it."""
        request.settimeout(30)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.debug("emulator: TLS handshake failed: %s", exc)
            return
        with self._connections_lock:
            self._connections.add(tls)
        try:
            self.RequestHandlerClass(tls, client_address, self)  # type: ignore[arg-type]
        except (OSError, ssl.SSLError):
            pass
        finally:
            with self._connections_lock:
                self._connections.discard(tls)
            with contextlib.suppress(OSError):
                tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connection-level errors are normal (clients hang up); log quietly."""
        log.debug("emulator: connection error from %s", client_address, exc_info=True)

    def close_all_connections(self) -> None:
        """Wake and close every open keep-alive connection (on stop)."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


def _tenant_of(
    lowered: list[str], parts: list[str], query: dict[str, list[str]], headers: Headers
) -> str:
    """Which tenant a request is for: the path's tenant segment (admin API, token endpoint,
    discovery), the token's `tid` (Graph, which has no tenant in its path), or `?tenant=` of
    the control API. Empty: the first tenant. The chosen tenant's service still checks
    everything itself (a token for another tenant is refused there)."""
    if len(parts) == 4 and lowered[0] == "adminapi":
        return parts[2]
    if lowered[:1] == ["v1.0"]:
        scheme, _, token = (headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            try:
                import jwt

                claims = jwt.decode(token.strip(), options={"verify_signature": False})
                return str(claims.get("tid") or "")
            except Exception:  # not a JWT: the first tenant's Graph says 401
                return ""
        return ""
    if lowered[:1] == ["_emulator"]:
        return (query.get("tenant") or [""])[0]
    return parts[0] if parts else ""


def make_ssl_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    """Server TLS context (TLS 1.2+)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    return context
