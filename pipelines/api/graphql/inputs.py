"""The GraphQL API's input types: what ``startExecution`` takes, as release tooling sends it."""

from __future__ import annotations

from enum import Enum

import strawberry

from pipelines.api.graphql.types import ExecutionType
from pipelines.errors import InvalidInput


@strawberry.enum
class VariableValueType(Enum):
    NAME = "NAME"
    ID = "ID"


@strawberry.input(name="VariableValue")
class VariableValueInput:
    type: VariableValueType
    value: str


@strawberry.input
class VariableInput:
    name: str
    variable_value: VariableValueInput


@strawberry.enum
class ArtifactInputType(Enum):
    BUILD_NUMBER = "BUILD_NUMBER"


@strawberry.input
class BuildNumberInput:
    build_number: str
    artifact_source_name: str | None = None


@strawberry.input
class ArtifactValueInput:
    value_type: ArtifactInputType
    build_number: BuildNumberInput | None = None


@strawberry.input(description="The build of a service to deploy.")
class ServiceInput:
    name: str
    artifact_value_input: ArtifactValueInput | None = None


@strawberry.input
class StartExecutionInput:
    application_id: str
    entity_id: str = strawberry.field(description="The id of the pipeline or workflow to run.")
    execution_type: ExecutionType
    notes: str | None = None
    variable_inputs: list[VariableInput] | None = None
    service_inputs: list[ServiceInput] | None = None
    client_mutation_id: str | None = None


def service_inputs(given: list[ServiceInput] | None) -> list[dict]:
    result = []
    for service in given or []:
        artifact = service.artifact_value_input
        if artifact is None or artifact.build_number is None:
            raise InvalidInput(
                f"serviceInputs {service.name!r}: artifactValueInput.buildNumber is needed"
            )
        result.append(
            {
                "name": service.name,
                "artifactSourceName": artifact.build_number.artifact_source_name,
                "buildNumber": artifact.build_number.build_number,
            }
        )
    return result
