"""The one error hierarchy: known failures keep their line, AWS's are translated, the rest are logged."""

from __future__ import annotations

from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from scones.core import errors, failures, settings


def client_error(code: str, operation: str = "GetObject") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} happened"}}, operation)


def test_our_errors_keep_their_line_and_exit_code():
    failure = errors.NotReadyError("nothing staged", "scones stage")
    assert failures.explain(failure, "local") is failure
    assert failure.exit_code == 3 and failure.line() == "nothing staged (next: scones stage)"


def test_a_multi_line_message_becomes_one_line():
    assert errors.SconesError("first\n  second", "x").line() == "first second (next: x)"


def test_connection_refused_points_at_the_service_to_start():
    down = EndpointConnectionError(endpoint_url="http://127.0.0.1:4566/")
    assert failures.explain(down, "local").next_step == "scones up"
    endpoint = EndpointConnectionError(endpoint_url="http://127.0.0.1:8080/endpoints/e/invocations")
    assert "scones endpoint start" in failures.explain(endpoint, "local").next_step
    assert "network" in failures.explain(down, "aws").next_step


def test_aws_error_codes_are_translated_per_target():
    assert failures.explain(client_error("NoSuchKey"), "local").next_step == "scones stage"
    local = failures.explain(client_error("AccessDenied"), "local").next_step
    remote = failures.explain(client_error("AccessDenied"), "aws").next_step
    assert local != remote and "permissions" in remote
    expired = failures.explain(client_error("ExpiredToken", "ListBuckets"), "aws")
    assert "expired" in str(expired) and "refresh" in expired.next_step
    assert "aws configure" in failures.explain(NoCredentialsError(), "aws").next_step


def test_an_unknown_aws_code_still_names_the_operation():
    failure = failures.explain(client_error("Throttling", "StartExecution"), "aws")
    assert "StartExecution failed: Throttling" in str(failure)


def test_an_unwritable_path_is_a_usage_error():
    failure = failures.explain(PermissionError(13, "Permission denied", "/root/x.png"), "local")
    assert isinstance(failure, errors.UsageError) and "/root/x.png" in str(failure)


def test_an_unexpected_exception_is_logged_with_its_traceback(monkeypatch, tmp_path):
    monkeypatch.setenv(settings.STATE_DIR, str(tmp_path))

    def broken():
        raise KeyError("surprise")

    try:
        broken()
    except KeyError as exc:
        failure = failures.explain(exc, "local")
    assert "unexpected KeyError" in str(failure) and str(tmp_path / "errors.log") in failure.next_step
    logged = (tmp_path / "errors.log").read_text()
    assert "Traceback" in logged and "in broken" in logged
