"""The GraphQL schema at ``/api/graphql``: find applications, pipelines and workflows; start
and follow executions. Operations and shapes are those release tooling already sends
(``applicationByName``, ``pipelineByName``, ``workflowByName``, ``startExecution``,
``execution``).

An "application" is a Project; pipelines and workflows are its PipelineDefinitions; an
execution is a Pipeline (started here, or reported by CI). Callers authenticate with an API
key (``x-api-key``, or any place the REST API accepts one); the key's scopes and its groups'
permissions decide, through ``pipelines.auth.check_access``, what it may read and where it
may start executions. Every refusal is a GraphQL error with its message and an
``extensions.code`` (``ERROR_CODES``); unexpected failures are logged and masked.
"""

from __future__ import annotations

import logging
from typing import Any

import strawberry
from django.db import InterfaceError, OperationalError
from graphql import GraphQLError, StringValueNode, ValidationRule
from strawberry.extensions import AddValidationRules, MaskErrors, QueryDepthLimiter
from strawberry.schema.config import StrawberryConfig
from strawberry.types import Info

from pipelines import auth, executions
from pipelines.api.graphql.ids import (
    APPLICATION,
    EXECUTION,
    PIPELINE,
    WORKFLOW,
    decode_id,
    expect_id,
)
from pipelines.api.graphql.inputs import StartExecutionInput, service_inputs
from pipelines.api.graphql.types import (
    ApplicationType,
    DateTime,
    ExecutionInterface,
    ExecutionType,
    PipelineDefinitionType,
    PipelineExecution,
    StartExecutionPayload,
    WorkflowDefinitionType,
    WorkflowExecution,
    execution_for,
    execution_of,
    serialize_datetime,
)
from pipelines.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    ProjectHidden,
)
from pipelines.models import AccessToken, Pipeline, PipelineDefinition, Project

logger = logging.getLogger(__name__)


# --- Access --------------------------------------------------------------------------------


def authorize(info: Info, action: str, project: Project, missing: NotFound) -> AccessToken:
    """The key, if it may do ``action`` on the project. A key that holds nothing on the
    project gets ``missing``, the very error a project that does not exist gets."""
    token = info.context.token()
    try:
        auth.check_access(token, None, action, project)
    except ProjectHidden:
        raise missing from None
    except Forbidden as denied:
        raise Forbidden(f"User not authorized: {denied.message}") from None
    return token


def _application(info: Info, application_id: str, action: str = auth.READ) -> Project:
    info.context.token()  # unauthenticated callers learn nothing about ids
    pk = expect_id(application_id, APPLICATION, "applicationId")
    project = Project.objects.filter(pk=pk).first()
    missing = NotFound(f"No application with id {application_id!r}")
    if project is None:
        raise missing
    authorize(info, action, project, missing)
    return project


# --- Operations ---------------------------------------------------------------------------


def _definition_by_name(
    info: Info, application_id: str, kind: str, name: str
) -> PipelineDefinition:
    project = _application(info, application_id)
    definition = project.definitions.filter(kind=kind, name=name).first()
    if definition is None:
        raise NotFound(f"Application {project.name!r} has no {kind} named {name!r}")
    return definition


@strawberry.type
class Query:
    @strawberry.field(description="An application by its name (or its namespace/path).")
    def application_by_name(self, info: Info, name: str) -> ApplicationType | None:
        # Applications the key holds nothing on are not there for it: neither the "no
        # application" error nor the list of namesakes may tell it which names exist.
        grants = auth.grants_of(info.context.token())
        matches = [p for p in Project.objects.filter(name=name) if grants.sees(p)]
        if not matches and "/" in name:
            namespace, _, path = name.rpartition("/")
            found = Project.objects.filter(namespace=namespace, path=path)
            matches = [p for p in found if grants.sees(p)]
        missing = NotFound(f"No application named {name!r}")
        if not matches:
            raise missing
        if len(matches) > 1:
            readable = [p for p in matches if grants.may(auth.READ, p)]
            if len(readable) != 1:
                raise InvalidInput(
                    f"{len(matches)} applications are named {name!r}: ask by namespace/path,"
                    f" e.g. {matches[0].path_with_namespace!r}"
                )
            matches = readable
        authorize(info, auth.READ, matches[0], missing)
        return ApplicationType(project=matches[0])

    @strawberry.field(description="An application by its id.")
    def application(self, info: Info, application_id: str) -> ApplicationType | None:
        return ApplicationType(project=_application(info, application_id))

    @strawberry.field(description="A pipeline of an application, by name.")
    def pipeline_by_name(
        self, info: Info, application_id: str, pipeline_name: str
    ) -> PipelineDefinitionType | None:
        kind = PipelineDefinition.Kind.PIPELINE
        return PipelineDefinitionType(
            definition=_definition_by_name(info, application_id, kind, pipeline_name)
        )

    @strawberry.field(description="A workflow of an application, by name.")
    def workflow_by_name(
        self, info: Info, application_id: str, workflow_name: str
    ) -> WorkflowDefinitionType | None:
        kind = PipelineDefinition.Kind.WORKFLOW
        return WorkflowDefinitionType(
            definition=_definition_by_name(info, application_id, kind, workflow_name)
        )

    @strawberry.field(description="An execution by its id, with its current status.")
    def execution(self, info: Info, execution_id: str) -> ExecutionInterface | None:
        info.context.token()
        pk = expect_id(execution_id, EXECUTION, "executionId")
        run = Pipeline.objects.select_related("project").filter(pk=pk).first()
        missing = NotFound(f"No execution with id {execution_id!r}")
        if run is None:
            raise missing
        authorize(info, auth.READ, run.project, missing)
        return execution_for(run)


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Start a pipeline or workflow: creates a pipeline run with source api."
    )
    def start_execution(self, info: Info, input: StartExecutionInput) -> StartExecutionPayload:  # noqa: A002 - the argument's name on the wire
        project = _application(info, input.application_id, auth.START)
        expected = PIPELINE if input.execution_type == ExecutionType.PIPELINE else WORKFLOW
        decoded = decode_id(input.entity_id)
        if decoded is None or decoded[0] not in (PIPELINE, WORKFLOW):
            raise InvalidInput(f"entityId {input.entity_id!r} is not a pipeline or workflow id")
        if decoded[0] != expected:
            raise InvalidInput(
                f"entityId {input.entity_id!r} is a {decoded[0].lower()}: use executionType"
                f" {decoded[0].upper()} or give a {expected.lower()} id"
            )
        definition = (
            PipelineDefinition.objects.select_related("project")
            .filter(pk=decoded[1], project=project)
            .first()
        )
        if definition is None:
            raise NotFound(
                f"Application {project.name!r} has no {expected.lower()} with id"
                f" {input.entity_id!r}"
            )
        token = info.context.token()
        record = executions.start_execution(
            definition,
            variable_inputs=[
                (item.name, item.variable_value.type.value, item.variable_value.value)
                for item in input.variable_inputs or []
            ],
            service_inputs=service_inputs(input.service_inputs),
            notes=input.notes or "",
            user=token.user,
            token=token,
        )
        logger.info(
            "Execution of %s started as pipeline %s by token %s",
            definition,
            record.pipeline_id,
            token.pk,
        )
        return StartExecutionPayload(
            client_mutation_id=input.client_mutation_id, execution=execution_of(record)
        )


# --- Schema ---------------------------------------------------------------------------------


# ``extensions.code`` of each refusal, by the most specific kind it is.
ERROR_CODES: dict[type[DomainError], str] = {
    InvalidInput: "BAD_USER_INPUT",
    NotAuthenticated: "UNAUTHENTICATED",
    Forbidden: "FORBIDDEN",
    NotFound: "NOT_FOUND",
    Conflict: "CONFLICT",
}


def error_code(refusal: DomainError) -> str:
    kind = next((kind for kind in type(refusal).__mro__ if kind in ERROR_CODES), InvalidInput)
    return ERROR_CODES[kind]


def _is_unexpected(error: GraphQLError) -> bool:
    # Syntax and validation errors have no original error, input coercion errors wrap a
    # GraphQLError, and refusals are DomainErrors. Anything else is a bug.
    original = error.original_error
    return original is not None and not isinstance(original, (DomainError, GraphQLError))


class RefuseNulCharacters(ValidationRule):
    """String literals with a NUL character (``"\\u0000"``): nothing here can store or match one."""

    def enter_string_value(self, node: StringValueNode, *_args: Any) -> None:
        if "\x00" in node.value:
            self.report_error(
                GraphQLError("Strings cannot contain the NUL character (\\u0000)", node)
            )


class PipehookSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        # Callers' mistakes are answered with their code, not logged as failures; bugs are
        # logged with traceback.
        for error in errors:
            if isinstance(error.original_error, DomainError):
                error.extensions = {"code": error_code(error.original_error)}
            elif isinstance(error.original_error, (OperationalError, InterfaceError)):
                execution_context.context.database_error = error.original_error
            elif _is_unexpected(error):
                logger.error(
                    "GraphQL resolver failed: %s",
                    error.message,
                    exc_info=(type(error.original_error), error.original_error, None),
                )


schema = PipehookSchema(
    query=Query,
    mutation=Mutation,
    types=[PipelineExecution, WorkflowExecution],
    config=StrawberryConfig(
        scalar_map={
            DateTime: strawberry.scalar(
                name="DateTime",
                description="Milliseconds since 1970-01-01 UTC.",
                serialize=serialize_datetime,
            )
        }
    ),
    extensions=[
        lambda: QueryDepthLimiter(max_depth=12),
        lambda: AddValidationRules([RefuseNulCharacters]),
        lambda: MaskErrors(should_mask_error=_is_unexpected),
    ],
)
