"""Who can reach the local clouds (docs/security.md): loopback listeners only, the Host check, the Origin/CORS
policy and the optional SigV4 check, each through real sockets against a running cloud."""

from __future__ import annotations

import http.client
import json
import os
import uuid
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from helpers import TARGET, create_function, listening_sockets

from scones import localcloud, localstack, selftest
from scones.core import aws, settings
from scones.workflow import wait

ALLOWED_ORIGIN = "http://localhost:3000"  # what the guarded cloud below lists in SCONES_CORS_ORIGINS


def send(url: str, method: str = "GET", path: str = "/", headers: dict | None = None, body: bytes = b""):
    """(status, headers, body) of one raw HTTP request to the cloud at `url`, headers exactly as given."""
    where = urlsplit(url)
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_host="Host" in (headers or {}), skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def signed(url: str, method: str = "GET", path: str = "/", headers: dict | None = None, secret: str | None = None):
    """Headers of an S3 request signed as boto3 signs it (the local cloud's credentials unless told otherwise)."""
    access_key = settings.FAKE_CREDENTIALS[settings.AWS_ACCESS_KEY_ID]
    secret = secret or settings.FAKE_CREDENTIALS[settings.AWS_SECRET_ACCESS_KEY]
    request = AWSRequest(method=method, url=url.rstrip("/") + path, headers=dict(headers or {}), data=b"")
    S3SigV4Auth(Credentials(access_key, secret), "s3", settings.region()).add_auth(request)
    return dict(request.headers.items())


def cors_headers(headers: dict) -> dict:
    return {k: v for k, v in headers.items() if k.lower().startswith("access-control-")}


def cloud_pid(url: str) -> int:
    if TARGET == "localstack":
        return localstack.status().pid
    return localcloud.health(url)["pid"]


# --- both clouds ---------------------------------------------------------------------------------------------
@pytest.mark.integration
@pytest.mark.localstack
def test_every_listening_socket_of_the_cloud_and_its_workers_is_loopback(local_cloud):
    """Given a cloud with a warm Lambda worker, when its process tree's sockets are read from /proc/net/tcp[6],
    then every listening one is on 127.0.0.1 or ::1 (LocalStack host mode listened on 0.0.0.0: issue #21)."""
    name = f"listen-{uuid.uuid4().hex[:8]}"
    selftest.create_function(name, {"app.py": "def handler(event, context):\n    return event\n"}, Timeout=5)
    try:
        aws.client("lambda").invoke(FunctionName=name, Payload=b"{}")
        sockets = listening_sockets(cloud_pid(local_cloud))
    finally:
        aws.client("lambda").delete_function(FunctionName=name)
    assert urlsplit(local_cloud).port in {port for _, port in sockets}  # the gateway's own socket was found
    assert all(address in ("127.0.0.1", "::1") for address, _ in sockets), sockets


# --- the embedded cloud --------------------------------------------------------------------------------------
embedded_only = pytest.mark.skipif(TARGET != "local", reason="the embedded cloud's guard (services/localcloud)")


@pytest.mark.integration
@embedded_only
def test_a_foreign_host_is_refused_before_anything_happens(local_cloud, unique):
    """A DNS-rebinding page sends its own name as Host: refused with one AWS-shaped line, and nothing is made."""
    port = urlsplit(local_cloud).port
    bucket = f"rebind-{unique}"
    for host in ("evil.example", f"evil.example:{port}", "localhost.evil.example", "127.0.0.1.nip.io", ""):
        status, headers, body = send(local_cloud, "PUT", f"/{bucket}", {"Host": host})
        assert status == 403, (host, body)
        assert b"loopback Host" in body and b"\n" not in body.strip()
        assert not cors_headers(headers)
    with pytest.raises(ClientError):
        aws.client("s3").head_bucket(Bucket=bucket)
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "127.0.0.1", "127.8.9.10", f"[::1]:{port}", "s3.localhost"):
        status, _, body = send(local_cloud, "GET", "/_scones/health", {"Host": host})
        assert status == 200, (host, body)


@pytest.mark.integration
@embedded_only
def test_no_origin_gets_a_cors_grant_by_default_and_foreign_origins_are_refused(local_cloud):
    """moto echoes any Origin in Access-Control-Allow-Origin; the guard drops its CORS headers and refuses a
    foreign Origin (as LocalStack does), pre-flight included."""
    status, headers, _ = send(local_cloud, "GET", "/", signed(local_cloud))
    assert status == 200 and not cors_headers(headers)  # ListBuckets works, with no grant
    for origin in ("http://evil.example", "http://localhost:3000", "null"):
        status, headers, body = send(local_cloud, "GET", "/", {**signed(local_cloud), "Origin": origin})
        assert status == 403 and not cors_headers(headers), (origin, headers)
        assert settings.CORS_ORIGINS.encode() in body
        preflight = {"Origin": origin, "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "x"}
        status, headers, _ = send(local_cloud, "OPTIONS", "/some-bucket/key", preflight)
        assert status == 403 and not cors_headers(headers)


@pytest.fixture(scope="module")
def guarded_cloud():
    """An embedded cloud of its own started with SCONES_CORS_ORIGINS and SCONES_VERIFY_SIGNATURES=1."""
    if TARGET != "local":
        pytest.skip("the embedded cloud's guard (services/localcloud)")
    saved = {name: os.environ.get(name) for name in (settings.CORS_ORIGINS, settings.VERIFY_SIGNATURES)}
    os.environ.update({settings.CORS_ORIGINS: f"{ALLOWED_ORIGIN}/", settings.VERIFY_SIGNATURES: "1"})
    try:
        with localcloud.ephemeral("scones-guarded-") as cloud:
            yield cloud.url
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.mark.integration
def test_a_configured_origin_gets_the_grant_and_its_preflight_is_answered(guarded_cloud):
    status, headers, _ = send(guarded_cloud, "GET", "/", {**signed(guarded_cloud), "Origin": ALLOWED_ORIGIN})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    preflight = {
        "Origin": ALLOWED_ORIGIN,
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "authorization,x-amz-date",
    }
    status, headers, _ = send(guarded_cloud, "OPTIONS", "/a-bucket/a-key", preflight)
    assert status == 200 and headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "PUT" in headers["Access-Control-Allow-Methods"]
    assert headers["Access-Control-Allow-Headers"] == "authorization,x-amz-date"
    status, headers, _ = send(guarded_cloud, "GET", "/", {**signed(guarded_cloud), "Origin": "http://evil.example"})
    assert status == 403 and not cors_headers(headers)


@pytest.mark.integration
def test_with_signatures_on_unsigned_and_wrongly_signed_requests_are_refused(guarded_cloud):
    status, _, body = send(guarded_cloud, "GET", "/")
    assert status == 403 and b"not signed" in body
    status, _, body = send(guarded_cloud, "GET", "/", signed(guarded_cloud, secret="not-the-secret"))
    assert status == 403 and b"does not match" in body
    status, _, _ = send(guarded_cloud, "GET", "/", signed(guarded_cloud))
    assert status == 200
    status, _, _ = send(guarded_cloud, "GET", "/_scones/health")  # `scones status` probes it unsigned
    assert status == 200
    stranger = boto3.session.Session(aws_access_key_id="AKIAREALKEY", aws_secret_access_key="real").client(
        "s3", region_name=settings.region()
    )
    with pytest.raises(ClientError) as refused:
        stranger.list_buckets()
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


@pytest.mark.integration
def test_with_signatures_on_boto3_lambda_workers_and_step_functions_still_work(guarded_cloud, unique):
    """The cloud's own callers sign with its credentials: a Lambda writing to S3, a Step Functions Task
    invoking that Lambda, and the interpreter reading the result."""
    s3 = aws.client("s3")
    bucket = f"signed-{unique}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="in/é and space.txt", Body=b"from boto3")  # a path that needs quoting
    assert s3.get_object(Bucket=bucket, Key="in/é and space.txt")["Body"].read() == b"from boto3"
    arn = create_function(f"put-{unique}", "toolbox.put_s3")
    event = {"bucket": bucket, "key": "from-lambda.txt", "body": "from a worker"}
    response = aws.client("lambda").invoke(FunctionName=arn, Payload=json.dumps(event))
    assert "FunctionError" not in response, response["Payload"].read()
    assert s3.get_object(Bucket=bucket, Key="from-lambda.txt")["Body"].read() == b"from a worker"
    sfn = aws.client("stepfunctions")
    definition = {"StartAt": "Put", "States": {"Put": {"Type": "Task", "Resource": arn, "End": True}}}
    machine = sfn.create_state_machine(
        name=f"signed-{unique}", definition=json.dumps(definition), roleArn=selftest.ensure_role()
    )["stateMachineArn"]
    started = sfn.start_execution(stateMachineArn=machine, input=json.dumps({**event, "key": "from-sfn.txt"}))
    assert wait(sfn, started["executionArn"])["status"] == "SUCCEEDED"
    assert s3.get_object(Bucket=bucket, Key="from-sfn.txt")["Body"].read() == b"from a worker"
