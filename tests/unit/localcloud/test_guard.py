"""The local cloud's guard (services/localcloud/guard.py) as a WSGI wrapper around a stand-in for moto."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from werkzeug.test import Client

from scones.core import settings
from services.localcloud import guard

KEY, SECRET = (
    settings.FAKE_CREDENTIALS[settings.AWS_ACCESS_KEY_ID],
    settings.FAKE_CREDENTIALS[settings.AWS_SECRET_ACCESS_KEY],
)
SEEN: list[dict] = []
ROOT = Path(__file__).resolve().parents[3]


def moto_like(environ, start_response):
    """Echoes the Origin as moto's flask-cors does, and records what reached it (with the body it read)."""
    SEEN.append({"path": environ["PATH_INFO"], "body": environ["wsgi.input"].read()})
    headers = [("Content-Type", "text/plain"), ("Access-Control-Allow-Origin", environ.get("HTTP_ORIGIN", "*"))]
    start_response("200 OK", headers)
    return [b"ok"]


def client(**kwargs) -> Client:
    SEEN.clear()
    return Client(guard.Guard(moto_like, **kwargs))


@pytest.mark.parametrize(
    "host",
    [
        *("localhost", "localhost:4566", "LOCALHOST.", "127.0.0.1", "127.0.0.1:4566", "127.9.8.7:1"),
        *("[::1]", "[::1]:4566", "bucket.localhost:4566", "bucket.s3.localhost", "::1"),
    ],
)
def test_loopback_hosts_are_recognised(host):
    assert guard.is_loopback_host(host)


@pytest.mark.parametrize(
    "host",
    [
        *("", None, "evil.example", "evil.example:4566", "localhost.evil.example", "127.0.0.1.nip.io"),
        *("10.0.0.1", "0.0.0.0", "[::]:4566", "192.168.1.2:4566", "[fe80::1]", "notlocalhost"),
    ],
)
def test_other_hosts_are_not(host):
    assert not guard.is_loopback_host(host)


def test_bind_addresses_are_checked_the_same_way():
    assert guard.is_loopback_address("127.0.0.1") and guard.is_loopback_address("::1")
    assert not guard.is_loopback_address("0.0.0.0") and not guard.is_loopback_address("::")


def test_a_foreign_host_gets_one_aws_shaped_line_and_never_reaches_moto():
    response = client().put("/bucket", headers={"Host": "evil.example:4566"})
    assert response.status_code == 403 and SEEN == []
    assert response.headers["x-amzn-ErrorType"] == "AccessDenied"
    body = response.get_data(as_text=True)
    assert "<Code>AccessDenied</Code>" in body and "evil.example:4566" in body and "\n" not in body
    json_response = client().post("/", headers={"Host": "evil.example", "Content-Type": "application/x-amz-json-1.0"})
    assert json_response.status_code == 403 and json.loads(json_response.get_data())["__type"] == "AccessDenied"


def test_no_cors_grant_without_an_origin_and_a_foreign_origin_is_refused():
    plain = client().get("/", headers={"Host": "127.0.0.1:4566"})
    assert plain.status_code == 200 and "Access-Control-Allow-Origin" not in plain.headers  # moto's "*" dropped
    for origin in ("http://evil.example", "http://localhost:3000", "null"):
        refused = client().get("/", headers={"Host": "127.0.0.1:4566", "Origin": origin})
        assert refused.status_code == 403 and "Access-Control-Allow-Origin" not in refused.headers and SEEN == []
        assert settings.CORS_ORIGINS in refused.get_data(as_text=True)
    preflight = {"Host": "localhost", "Origin": "http://evil.example", "Access-Control-Request-Method": "PUT"}
    refused = client().options("/b/k", headers=preflight)
    assert refused.status_code == 403 and "Access-Control-Allow-Origin" not in refused.headers


def test_the_cloud_s_own_pages_are_same_origin():
    response = client().post("/moto-api/x", headers={"Host": "127.0.0.1:4566", "Origin": "http://127.0.0.1:4566"})
    assert response.status_code == 200 and "Access-Control-Allow-Origin" not in response.headers


def test_a_configured_origin_gets_the_grant_and_its_preflight_is_answered_here():
    allowed = client(cors_origins=["http://localhost:3000/"])
    response = allowed.get("/", headers={"Host": "localhost:4566", "Origin": "http://localhost:3000"})
    assert response.status_code == 200 and response.headers.getlist("Access-Control-Allow-Origin") == [
        "http://localhost:3000"
    ]
    preflight = {
        "Host": "localhost:4566",
        "Origin": "http://localhost:3000",
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "authorization",
    }
    SEEN.clear()
    response = allowed.options("/b/k", headers=preflight)
    assert response.status_code == 200 and SEEN == []  # answered by the guard
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert response.headers["Access-Control-Allow-Headers"] == "authorization"


def test_cors_origins_setting(monkeypatch):
    monkeypatch.setenv(settings.CORS_ORIGINS, " http://localhost:3000/, https://app.example ")
    assert settings.cors_origins() == ("http://localhost:3000", "https://app.example")
    monkeypatch.setenv(settings.CORS_ORIGINS, "*")
    with pytest.raises(settings.SettingsError, match="no wildcard"):
        settings.cors_origins()
    monkeypatch.delenv(settings.CORS_ORIGINS)
    assert settings.cors_origins() == ()
    assert not settings.verify_signatures()
    monkeypatch.setenv(settings.VERIFY_SIGNATURES, "1")
    assert settings.verify_signatures()


def signed_headers(method, url, body=b"", service="lambda", secret=SECRET, key=KEY, headers=None):
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    signer = S3SigV4Auth if service == "s3" else SigV4Auth
    signer(Credentials(key, secret), service, "us-east-1").add_auth(request)
    return {**dict(request.headers.items()), "Host": url.split("/")[2]}


def test_signatures_are_checked_when_asked_and_the_body_still_reaches_moto():
    checking = client(verify_signatures=True, unsigned_paths=["/_scones/health"])
    url = "http://127.0.0.1:4566/2015-03-31/functions/f/invocations"
    body = b'{"n": 1}'
    ok = checking.post("/2015-03-31/functions/f/invocations", data=body, headers=signed_headers("POST", url, body))
    assert ok.status_code == 200 and SEEN[-1]["body"] == body
    tampered = checking.post(
        "/2015-03-31/functions/f/invocations", data=b'{"n": 2}', headers=signed_headers("POST", url, body)
    )
    assert tampered.status_code == 403 and "does not match" in tampered.get_data(as_text=True)
    wrong = checking.post(
        "/2015-03-31/functions/f/invocations", data=body, headers=signed_headers("POST", url, body, secret="x")
    )
    assert wrong.status_code == 403
    other_key = signed_headers("POST", url, body, key="AKIAOTHER")
    assert "access key 'AKIAOTHER'" in checking.post(
        "/2015-03-31/functions/f/invocations", data=body, headers=other_key
    ).get_data(as_text=True)
    unsigned = checking.get("/", headers={"Host": "127.0.0.1:4566"})
    assert unsigned.status_code == 403 and "not signed" in unsigned.get_data(as_text=True)
    assert unsigned.headers["x-amzn-ErrorType"] == "InvalidSignatureException"
    assert checking.get("/_scones/health", headers={"Host": "127.0.0.1:4566"}).status_code == 200


def test_s3_signatures_over_quoted_paths_and_queries_verify():
    checking = client(verify_signatures=True)
    path = "/bucket/in/%C3%A9%20and%20space.txt"
    query = "list-type=2&prefix=in%2F"
    headers = signed_headers("GET", f"http://localhost:4566{path}?{query}", service="s3")
    assert checking.get(f"{path}?{query}", headers=headers).status_code == 200


def test_an_old_signature_is_refused():
    environ = {"HTTP_AUTHORIZATION": "x"}
    assert "not an AWS Signature Version 4" in guard.signature_problem(environ, settings.FAKE_CREDENTIALS)
    url = "http://127.0.0.1:4566/"
    headers = signed_headers("GET", url)
    environ = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    environ.update(HTTP_HOST="127.0.0.1:4566", REQUEST_METHOD="GET", PATH_INFO="/", RAW_URI="/")
    assert guard.signature_problem(environ, settings.FAKE_CREDENTIALS) is None
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=20)
    assert "15 minutes" in guard.signature_problem(environ, settings.FAKE_CREDENTIALS, now=later)


def test_the_server_refuses_a_non_loopback_bind_address(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "services.localcloud", "--host", "0.0.0.0", "--port", "0", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "not a loopback address" in done.stderr and "Traceback" not in done.stderr
