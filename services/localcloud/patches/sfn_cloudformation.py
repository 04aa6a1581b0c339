"""State machines created by CloudFormation execute, and their definitions arrive whole.

moto's CloudFormation creates state machines in the non-executing backend, ignores `Definition`,
`DefinitionS3Location` and `DefinitionSubstitutions`, and its template cleaner drops keys whose value is
null, although in ASL `"ResultPath": null` means "keep the state's input".
"""

from __future__ import annotations

import json
import re
from typing import Any

NAME = "sfn-cloudformation"
WHAT = "CloudFormation state machines execute, with Definition/DefinitionS3Location/substitutions and nulls kept"
TOUCHES = (
    "moto.stepfunctions.models:stepfunctions_backends",
    "moto.stepfunctions.models:StateMachine.create_from_cloudformation_json",
    "moto.stepfunctions.models:StateMachine.update_from_cloudformation_json",
    "moto.stepfunctions.parser.models:stepfunctions_parser_backends",
    "moto.stepfunctions.utils:cfn_to_api_tags",
    "moto.s3.models:s3_backends",
    "moto.cloudformation.parsing:clean_json",
)


def definition_from(properties: dict[str, Any], account_id: str) -> str | None:
    """The definition text of an AWS::StepFunctions::StateMachine, substitutions applied."""
    definition = properties.get("DefinitionString")
    if definition is None and "Definition" in properties:
        definition = json.dumps(properties["Definition"])
    if definition is None and "DefinitionS3Location" in properties:
        from moto.s3.models import s3_backends

        location = properties["DefinitionS3Location"]
        key = s3_backends[account_id]["aws"].get_object(location["Bucket"], location["Key"])
        if key is None:
            raise ValueError(f"DefinitionS3Location s3://{location['Bucket']}/{location['Key']} does not exist")
        definition = key.value.decode()
    if definition is None:
        return None
    for key, value in (properties.get("DefinitionSubstitutions") or {}).items():
        definition = definition.replace("${" + key + "}", str(value))
    unresolved = re.findall(r"\$\{[A-Za-z0-9_]+\}", definition)
    if unresolved:
        raise ValueError(f"state machine definition has unresolved placeholders: {sorted(set(unresolved))}")
    return definition


def apply(context: Any) -> None:
    import moto.stepfunctions.models as sfn_models
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends
    from moto.stepfunctions.utils import cfn_to_api_tags

    sfn_models.stepfunctions_backends = stepfunctions_parser_backends
    machine = sfn_models.StateMachine

    def create(
        cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> Any:
        properties = cloudformation_json["Properties"]
        name = properties.get("StateMachineName", resource_name)
        backend = stepfunctions_parser_backends[account_id][region_name]
        return backend.create_state_machine(
            name,
            definition_from(properties, account_id) or "",
            properties.get("RoleArn", ""),
            tags=cfn_to_api_tags(properties.get("Tags", [])),
            sm_type=properties.get("StateMachineType"),
        )

    def update(
        cls: Any,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
    ) -> Any:
        properties = cloudformation_json.get("Properties", {})
        name = properties.get("StateMachineName", original_resource.name)
        backend = stepfunctions_parser_backends[account_id][region_name]
        if name != original_resource.name:
            new = create(cls, name, cloudformation_json, account_id, region_name)
            backend.delete_state_machine(original_resource.arn)
            return new
        return backend.update_state_machine(
            original_resource.arn,
            definition=definition_from(properties, account_id),
            role_arn=properties.get("RoleArn"),
        )

    machine.create_from_cloudformation_json = classmethod(create)
    machine.update_from_cloudformation_json = classmethod(update)
    _keep_nulls_in_definitions()


_NULL = "\x00scones-json-null\x00"


def swap(value: Any, old: Any, new: Any) -> Any:
    """`value` with every `old` (same type) replaced by `new`, recursively."""
    if isinstance(value, dict):
        return {k: swap(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [swap(v, old, new) for v in value]
    return new if value == old and type(value) is type(old) else value


def _keep_nulls_in_definitions() -> None:
    from moto.cloudformation import parsing

    original = parsing.clean_json

    def clean_json(resource_json: Any, resources_map: Any) -> Any:
        if isinstance(resource_json, dict) and isinstance(resource_json.get("Definition"), dict):
            protected = dict(resource_json, Definition=swap(resource_json["Definition"], None, _NULL))
            cleaned = original(protected, resources_map)
            cleaned["Definition"] = swap(cleaned["Definition"], _NULL, None)
            return cleaned
        return original(resource_json, resources_map)

    parsing.clean_json = clean_json
