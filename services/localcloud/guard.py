"""Who may talk to the local cloud: a WSGI wrapper in front of moto's dispatcher.

The server binds loopback only, but a loopback port is reachable by every web page the user opens (a
DNS-rebinding page names its own host; a plain page sends its `Origin`) and by every local user. So:

- **Host**: a request whose Host header is not a loopback name or address (`localhost`, `*.localhost`,
  127.x.y.z, `[::1]`, with or without a port) is refused (403). A DNS-rebinding page sends its own name.
- **Origin / CORS**: moto grants every origin (flask-cors, and S3's bucket rules); every `Access-Control-*`
  header it sets is dropped here. A request carrying an `Origin` that is neither the cloud's own address nor
  one listed in SCONES_CORS_ORIGINS is refused (403, as LocalStack does): a web page can neither read an
  answer nor cause a side effect with a "simple" cross-origin POST. A listed origin gets the grant, its
  pre-flight OPTIONS answered here.
- **SigV4** (SCONES_VERIFY_SIGNATURES=1): the Authorization header's signature is recomputed with botocore's
  own signer over the request as received and the local cloud's credentials (settings.FAKE_CREDENTIALS);
  unsigned or wrongly signed requests are refused (403). Off by default: `scones` lets credentials the user
  set win over the fake ones (a user with real AWS keys in the environment would be locked out of the local
  cloud), other tools (the aws CLI, the SageMaker SDK, notebooks) sign with whatever credentials they find,
  and the key it checks ("testing") is public, so it stops unsigned requests, not a deliberate local user.
  The local cloud's own callers (Lambda workers, the Step Functions interpreter) sign with those credentials.

Every refusal is one line naming the problem: AWS's JSON error shape for JSON requests, its XML shape otherwise.
"""

from __future__ import annotations

import datetime
import hmac
import io
import ipaddress
import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from scones.core import settings

MAX_CLOCK_SKEW = datetime.timedelta(minutes=15)  # AWS's own limit: an old signed request cannot be replayed
CORS_MAX_AGE_S = 600


def host_name(host_header: str) -> str:
    """The name in a Host header, without port or IPv6 brackets, lower-cased: "[::1]:4566" → "::1"."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.removesuffix(".")


def is_loopback_host(host_header: str | None) -> bool:
    """Whether a Host header names this machine's loopback: localhost, *.localhost (S3's virtual-host style
    `bucket.localhost`), 127.x.y.z or ::1. Names under .localhost never leave the machine (RFC 6761)."""
    if not host_header:
        return False
    name = host_name(host_header)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_loopback_address(address: str) -> bool:
    """Whether a bind address is loopback (the server refuses any other)."""
    return is_loopback_host(address if ":" not in address or address.startswith("[") else f"[{address}]")


def _refuse(environ: dict, start_response: Callable, code: str, message: str) -> Iterable[bytes]:
    wants_json = "json" in environ.get("CONTENT_TYPE", "") or "HTTP_X_AMZ_TARGET" in environ
    if wants_json:
        body = json.dumps({"__type": code, "message": message}).encode()
        content_type = "application/x-amz-json-1.1"
    else:
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
            f"<Message>{escape(message)}</Message></Error></ErrorResponse>"
        ).encode()
        content_type = "text/xml"
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("x-amzn-ErrorType", code),
        ("Vary", "Origin"),
    ]
    start_response("403 Forbidden", headers)
    return [body]


def _read_body(environ: dict) -> bytes:
    """The request body, read once and put back for moto."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = environ.get("CONTENT_LENGTH", "")
    if length.isdigit():
        body = stream.read(int(length))
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _parse_authorization(value: str) -> dict[str, str] | None:
    """The parts of a SigV4 Authorization header, or None when it is not one."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != "AWS4-HMAC-SHA256":
        return None
    parts = {}
    for item in rest.split(","):
        key, _, val = item.strip().partition("=")
        parts[key] = val
    credential = parts.get("Credential", "").split("/")
    if len(credential) != 5 or not parts.get("SignedHeaders") or not parts.get("Signature"):
        return None
    access_key, date, region, service, _ = credential
    return {
        "access_key": access_key,
        "date": date,
        "region": region,
        "service": service,
        "signed_headers": parts["SignedHeaders"],
        "signature": parts["Signature"],
    }


def _header(environ: dict, name: str) -> str | None:
    key = name.upper().replace("-", "_")
    if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        return environ.get(key) or None
    return environ.get(f"HTTP_{key}")


def signature_problem(environ: dict, credentials: dict[str, str], now: datetime.datetime | None = None) -> str | None:
    """None when the request carries a valid SigV4 signature by `credentials`; else what is wrong, in words.

    botocore's own signer recomputes the signature over the request as received: method, raw path and query,
    the headers the client signed, and the body (or its declared hash, as S3 sends it)."""
    authorization = environ.get("HTTP_AUTHORIZATION")
    if not authorization:
        return "the request is not signed (no Authorization header)"
    parts = _parse_authorization(authorization)
    if parts is None:
        return "the Authorization header is not an AWS Signature Version 4 header"
    access_key = credentials[settings.AWS_ACCESS_KEY_ID]
    if parts["access_key"] != access_key:
        return f"the request is signed by access key {parts['access_key']!r}, not the local cloud's ({access_key!r})"
    amz_date = _header(environ, "x-amz-date")
    if not amz_date:
        return "the request has no X-Amz-Date header"
    try:
        signed_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return f"X-Amz-Date {amz_date!r} is not a SigV4 timestamp"
    now = now or datetime.datetime.now(datetime.UTC)
    if abs(now - signed_at) > MAX_CLOCK_SKEW:
        return f"the signature's time {amz_date} is more than 15 minutes from the server's"

    host = environ.get("HTTP_HOST", "")
    raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
    split = urlsplit(raw_uri)
    query = split.query or environ.get("QUERY_STRING", "")
    url = f"http://{host}{split.path}" + (f"?{query}" if query else "")
    headers = {}
    for name in parts["signed_headers"].split(";"):
        value = host if name == "host" else _header(environ, name)
        if value is not None:
            headers[name] = value
    request = AWSRequest(
        method=environ.get("REQUEST_METHOD", "GET"), url=url, headers=headers, data=_read_body(environ)
    )
    request.context["timestamp"] = amz_date
    signer_class = S3SigV4Auth if parts["service"] == "s3" else SigV4Auth
    signer = signer_class(
        Credentials(access_key, credentials[settings.AWS_SECRET_ACCESS_KEY]), parts["service"], parts["region"]
    )
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, parts["signature"]):
        return "the signature does not match the local cloud's credentials"
    return None


class Guard:
    """The WSGI wrapper: Host check, Origin/CORS policy, optional SigV4, then the wrapped application."""

    def __init__(
        self,
        app: Callable,
        cors_origins: Iterable[str] = (),
        verify_signatures: bool = False,
        credentials: dict[str, str] | None = None,
        unsigned_paths: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.cors_origins = frozenset(o.rstrip("/") for o in cors_origins)
        self.verify_signatures = verify_signatures
        self.credentials = dict(credentials or settings.FAKE_CREDENTIALS)
        self.unsigned_paths = frozenset(unsigned_paths)

    def _origin_allowed(self, origin: str, host: str) -> bool:
        if origin in self.cors_origins:
            return True
        return origin == f"http://{host}"  # a page the cloud served itself (moto's dashboard): same origin

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        host = environ.get("HTTP_HOST", "")
        if not is_loopback_host(host):
            return _refuse(
                environ,
                start_response,
                "AccessDenied",
                f"the local cloud answers only loopback Host names (localhost, 127.0.0.1, [::1]), not Host: {host!r}",
            )
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and not self._origin_allowed(origin.rstrip("/"), host):
            return _refuse(
                environ,
                start_response,
                "AccessDenied",
                f"cross-origin requests from {origin!r} are refused; list the origin in {settings.CORS_ORIGINS}",
            )
        grant = origin is not None and origin.rstrip("/") in self.cors_origins
        if grant and environ.get("REQUEST_METHOD") == "OPTIONS" and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ:
            start_response("200 OK", [*self._grant(origin, environ), ("Content-Length", "0")])
            return [b""]
        if self.verify_signatures and environ.get("PATH_INFO") not in self.unsigned_paths:
            problem = signature_problem(environ, self.credentials)
            if problem:
                return _refuse(
                    environ,
                    start_response,
                    "InvalidSignatureException",
                    f"{problem} ({settings.VERIFY_SIGNATURES}=1; `scones env` prints the local cloud's credentials)",
                )

        def without_moto_cors(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            kept = [(k, v) for k, v in headers if not k.lower().startswith("access-control-")]
            if grant:
                kept += self._grant(origin, environ)
            return start_response(status, kept, exc_info) if exc_info else start_response(status, kept)

        return self.app(environ, without_moto_cors)

    @staticmethod
    def _grant(origin: str, environ: dict) -> list[tuple[str, str]]:
        headers = [
            ("Access-Control-Allow-Origin", origin),
            ("Vary", "Origin"),
            ("Access-Control-Expose-Headers", "ETag, x-amz-request-id, x-amzn-RequestId, x-amzn-ErrorType"),
        ]
        if environ.get("REQUEST_METHOD") == "OPTIONS":
            requested = environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS")
            headers += [
                ("Access-Control-Allow-Methods", "GET, PUT, POST, DELETE, HEAD"),
                ("Access-Control-Max-Age", str(CORS_MAX_AGE_S)),
            ]
            if requested:
                headers.append(("Access-Control-Allow-Headers", requested))
        return headers
