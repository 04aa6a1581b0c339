"""The pure parts of the sfn-sync-execution patch: Express's billed duration and the answer's shape."""

from __future__ import annotations

import datetime

import botocore.session

from services.localcloud.patches import sfn_sync_execution as patch

T0 = datetime.datetime(2026, 12, 6, tzinfo=datetime.UTC)


def test_duration_is_billed_in_100_ms_steps_at_least_one():
    assert patch.billed_ms(T0, T0) == 100
    assert patch.billed_ms(T0, T0 + datetime.timedelta(milliseconds=101)) == 200
    assert patch.billed_ms(T0, T0 + datetime.timedelta(seconds=2)) == 2000


def test_the_answer_has_every_required_member_of_aws_s_output_and_no_unknown_one():
    class Status:
        value = "FAILED"

    found = patch.answer(
        {"executionArn": "a", "startDate": T0, "stopDate": T0, "status": Status(), "error": "E", "cause": None}
    )
    shape = botocore.session.get_session().get_service_model("stepfunctions")
    output = shape.operation_model("StartSyncExecution").output_shape
    assert set(output.required_members) <= set(found) <= set(output.members)
    assert found["status"] == "FAILED" and "cause" not in found  # None members are left out
    assert set(found["billingDetails"]) == set(output.members["billingDetails"].members)
