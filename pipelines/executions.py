"""Runs of pipeline and workflow definitions started through the API (GraphQL's
``startExecution``): the caller's values bound to the declared variables, then a pipeline.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models, transaction

from pipelines.errors import InvalidInput
from pipelines.models import AccessToken, Execution, PipelineDefinition
from pipelines.services import start_pipeline
from pipelines.variables import VariableType, normalize_variable_declarations

# Pipeline variables a service input sets, so the run knows which build to deploy.
SERVICE_VARIABLES = ("SERVICE_NAME", "ARTIFACT_SOURCE_NAME", "ARTIFACT_BUILD_NUMBER")


def start_execution(
    definition: PipelineDefinition,
    *,
    variable_inputs: Iterable[tuple[str, str, str]] = (),
    service_inputs: Iterable[dict] = (),
    notes: str = "",
    user: AbstractBaseUser | None = None,
    token: AccessToken | None = None,
) -> Execution:
    """Start a run of a pipeline or workflow definition: a new pipeline with source ``api``.

    ``variable_inputs`` are ``(name, value type, value)`` checked against the definition's
    declarations; ``service_inputs`` are ``{name, artifactSourceName, buildNumber}``. The run
    is for the definition's ref (the project's default branch when blank) at that ref's commit
    (``start_pipeline``), or ``UNKNOWN_SHA`` when nothing was reported there yet.
    """
    variables = bind_variables(definition, list(variable_inputs))
    services_given = list(service_inputs)
    if len(services_given) > 1:
        raise InvalidInput("serviceInputs: one service per execution is supported")
    for service in services_given:
        taken = {v["key"] for v in variables} & set(SERVICE_VARIABLES)
        if taken:
            raise InvalidInput(
                f"variable {sorted(taken)[0]!r} is also set by serviceInputs: give it once"
            )
        values = (service["name"], service.get("artifactSourceName") or "", service["buildNumber"])
        variables += [
            {"key": key, "value": value, "variable_type": "env_var"}
            for key, value in zip(SERVICE_VARIABLES, values, strict=True)
        ]
    project = definition.project
    with transaction.atomic():
        pipeline = start_pipeline(
            project,
            ref=definition.ref or project.default_branch,
            user=user,
            variables=variables,
            commit_required=False,  # a deployment may start before anything was reported
            name=definition.name,
        )
        return Execution.objects.create(
            pipeline=pipeline,
            definition=definition,
            kind=definition.kind,
            notes=notes,
            service_inputs=services_given,
            token=token,
        )


# --- Variables -------------------------------------------------------------------------------


class VariableValueType(models.TextChoices):
    """How a caller gives a variable's value: as a name, or as the id of an entity."""

    NAME = "NAME"
    ID = "ID"


# Variables that name an entity of the deployment target; they may be given by name or by id.
ENTITY_VARIABLE_TYPES = frozenset(
    {VariableType.ENVIRONMENT, VariableType.SERVICE, VariableType.INFRASTRUCTURE_DEFINITION}
)


def bind_variables(
    definition: PipelineDefinition, inputs: list[tuple[str, str, str]]
) -> list[dict]:
    """Check ``(name, value type, value)`` inputs against the declarations.

    Returns GitLab pipeline variables; raises ``InvalidInput`` naming every unknown,
    repeated, missing or mistyped variable at once, so a caller fixes them in one go.
    """
    declared = {
        item["name"]: item for item in normalize_variable_declarations(definition.variables)
    }
    problems: list[str] = []
    values: dict[str, str] = {}
    for name, value_type, value in inputs:
        declaration = declared.get(name)
        if name in values:
            problems.append(f"variable {name!r} is given more than once")
        elif declaration is None:
            problems.append(
                f"unknown variable {name!r}: {definition.name!r} declares "
                + (", ".join(repr(n) for n in declared) or "no variables")
            )
        elif problem := _variable_value_problem(declaration, value_type, value):
            problems.append(problem)
        values[name] = value
    missing = [
        name
        for name, declaration in declared.items()
        if declaration["required"] and not values.get(name)
    ]
    if missing:
        problems.append("required variables missing: " + ", ".join(repr(name) for name in missing))
    if problems:
        raise InvalidInput("; ".join(problems))
    return [
        {"key": name, "value": value, "variable_type": "env_var"} for name, value in values.items()
    ]


def _variable_value_problem(declaration: dict, value_type: str, value: str) -> str | None:
    name, kind = declaration["name"], declaration["type"]
    if value_type not in VariableValueType.values:
        return f"variable {name!r}: value type {value_type!r} is not NAME or ID"
    if value_type == VariableValueType.ID and kind not in ENTITY_VARIABLE_TYPES:
        return f"variable {name!r} is {kind}: give its value with type NAME, not ID"
    if not value:
        return None  # emptiness matters only for required variables, reported together
    if kind == VariableType.NUMBER and not NUMBER_PATTERN.fullmatch(value):
        return f"variable {name!r} is a Number: {value!r} is not a number"
    if kind == VariableType.EMAIL:
        try:
            validate_email(value)
        except ValidationError:
            return f"variable {name!r} is an Email: {value!r} is not an email address"
    return None


NUMBER_PATTERN = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")
