"""UpdateEndpoint: an endpoint moved to another endpoint configuration, as SageMaker's control plane answers it.

moto 5.2.5 routes no such action (the request ends in a 500), so `scones deploy --target aws --model NEW
--rollout …` or `--shadow`, which update the deployed endpoint in place, could not run against the local cloud.
AWS's contract (botocore's sagemaker model, UpdateEndpoint; the API reference's errors): the endpoint and the
configuration must exist (ValidationException "Could not find endpoint …" / "Could not find endpoint
configuration …"), the endpoint must be InService or Failed ("Cannot update in-progress endpoint"), and the answer
is the EndpointArn. moto completes everything at once (CreateEndpoint answers InService), so does this: the
endpoint serves the new configuration's production variants and data capture when the call returns, with
LastModifiedTime moved on. The DeploymentConfig (blue/green traffic shifting, auto-rollback alarms) is accepted
and not acted on: the local cloud shifts no traffic between fleets and evaluates no alarm here; the local targets'
rollouts run on the local endpoint (scones/rollout.py), where they are.
"""

from __future__ import annotations

from typing import Any

NAME = "sagemaker-update-endpoint"
WHAT = "UpdateEndpoint moves an InService endpoint to another existing endpoint configuration at once"
TOUCHES = (
    "moto.sagemaker.models:SageMakerModelBackend.describe_endpoint_config",
    "moto.sagemaker.models:FakeEndpoint._process_production_variants",
    "moto.sagemaker.models:FakeEndpoint.arn_formatter",
    "moto.sagemaker.models:FakeEndpointConfig.arn_formatter",
    "moto.sagemaker.responses:SageMakerResponse.sagemaker_backend",
    "moto.sagemaker.exceptions:ValidationError",
    "moto.core.responses:ActionResult",
    "moto.core.utils:utcnow",
)
UPDATABLE = ("InService", "Failed")  # the states SageMaker accepts an UpdateEndpoint in


def apply(context: Any) -> None:
    from moto.core.responses import ActionResult
    from moto.core.utils import utcnow
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import FakeEndpoint, FakeEndpointConfig, SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse

    def update_endpoint(self: Any, endpoint_name: str, endpoint_config_name: str) -> FakeEndpoint:
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is None:
            arn = FakeEndpoint.arn_formatter(endpoint_name, self.account_id, self.region_name)
            raise ValidationError(message=f'Could not find endpoint "{arn}".')
        try:
            config = self.describe_endpoint_config(endpoint_config_name)
        except KeyError:
            arn = FakeEndpointConfig.arn_formatter(endpoint_config_name, self.account_id, self.region_name)
            raise ValidationError(message=f"Could not find endpoint configuration '{arn}'.") from None
        if endpoint.endpoint_status not in UPDATABLE:
            raise ValidationError(message=f'Cannot update in-progress endpoint "{endpoint.arn}".')
        endpoint.endpoint_config_name = endpoint_config_name
        endpoint.production_variants = endpoint._process_production_variants(config["ProductionVariants"])
        endpoint.data_capture_config = config.get("DataCaptureConfig")
        endpoint.endpoint_status, endpoint.failure_reason = "InService", None
        endpoint.last_modified_time = utcnow()
        return endpoint

    def update_endpoint_response(self: Any) -> Any:
        endpoint = self.sagemaker_backend.update_endpoint(
            endpoint_name=self._get_param("EndpointName"),
            endpoint_config_name=self._get_param("EndpointConfigName"),
        )
        return ActionResult({"EndpointArn": endpoint.arn})

    SageMakerModelBackend.update_endpoint = update_endpoint
    SageMakerResponse.update_endpoint = update_endpoint_response
