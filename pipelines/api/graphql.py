"""GraphQL API at ``/api/graphql``: find applications, pipelines and workflows; start and follow
executions. Operations and shapes are those release tooling already sends (``applicationByName``,
``pipelineByName``, ``workflowByName``, ``startExecution``, ``execution``).

An "application" is a Project; pipelines and workflows are its PipelineDefinitions; an
execution is a Pipeline (started here, or reported by CI). Ids are opaque strings: url-safe
base64 of ``"<Type>:<primary key>"``, so a pipeline id given where a workflow id belongs is
recognised and refused with a message that says so.

Callers authenticate with an API key (``x-api-key``, or any place the REST API accepts one);
the key's scopes and its groups' permissions decide, through ``pipelines.auth.check_access``,
what it may read and where it may start executions. Every refusal and bad input is a GraphQL
error with a message and an ``extensions.code``; unexpected failures are logged and masked.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, NewType

import strawberry
from cross_web import HTTPException
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from graphql import GraphQLError, StringValueNode, ValidationRule
from strawberry.django.views import GraphQLView
from strawberry.extensions import AddValidationRules, MaskErrors, QueryDepthLimiter
from strawberry.schema.config import StrawberryConfig
from strawberry.types import Info

from pipelines import auth, executions
from pipelines.api.parsing import check_request_text, load_json, parse_id
from pipelines.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    InvalidJSON,
    MalformedInput,
    NotAuthenticated,
    NotFound,
    ProjectHidden,
)
from pipelines.models import AccessToken, PipelineDefinition, Project, Status
from pipelines.models import Execution as ExecutionRecord
from pipelines.models import Pipeline as PipelineRun

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE = 100

# --- Ids ----------------------------------------------------------------------------------

APPLICATION, PIPELINE, WORKFLOW, EXECUTION = "Application", "Pipeline", "Workflow", "Execution"
TYPE_FOR_KIND = {
    PipelineDefinition.Kind.PIPELINE: PIPELINE,
    PipelineDefinition.Kind.WORKFLOW: WORKFLOW,
}


def encode_id(type_name: str, pk: int) -> str:
    """The opaque id of a row: url-safe base64 of ``"<Type>:<pk>"`` without padding."""
    return base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode().rstrip("=")


def decode_id(value: str) -> tuple[str, int] | None:
    """``(type, pk)`` for an id made by ``encode_id``; None for anything else."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    type_name, _, text = raw.partition(":")
    pk = parse_id(text)
    if pk is None or type_name not in (APPLICATION, PIPELINE, WORKFLOW, EXECUTION):
        return None
    return type_name, pk


def definition_id(definition: PipelineDefinition) -> str:
    return encode_id(TYPE_FOR_KIND[definition.kind], definition.pk)


def _expect_id(value: str, type_name: str, argument: str) -> int:
    decoded = decode_id(value)
    if decoded is None:
        raise InvalidInput(f"{argument} {value!r} is not a valid {type_name.lower()} id")
    found_type, pk = decoded
    if found_type != type_name:
        raise InvalidInput(
            f"{argument} {value!r} is the id of a {found_type.lower()}, not of a"
            f" {type_name.lower()}"
        )
    return pk


# --- Context and access --------------------------------------------------------------------


@dataclass
class ApiContext:
    """Per-request context; the API key is looked up on first use, so introspection needs none."""

    request: HttpRequest
    response: HttpResponse
    _token: AccessToken | None = field(default=None, init=False)
    # Set when a resolver could not reach the database: the view then answers 503, not 200
    # with "Unexpected error.".
    database_error: DatabaseError | None = field(default=None, init=False)

    def token(self) -> AccessToken:
        if self._token is None:
            raw = auth.raw_token_from_request(self.request)
            if raw is None:
                raise NotAuthenticated("Not authenticated: send an API key in the x-api-key header")
            token = auth.find_token(raw)
            if token is None:
                raise NotAuthenticated("Invalid API key: it is unknown, revoked or expired")
            self._token = token
        return self._token


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
    pk = _expect_id(application_id, APPLICATION, "applicationId")
    project = Project.objects.filter(pk=pk).first()
    missing = NotFound(f"No application with id {application_id!r}")
    if project is None:
        raise missing
    authorize(info, action, project, missing)
    return project


def _page(limit: int, offset: int) -> tuple[int, int]:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE_SIZE}, not {limit}")
    if offset < 0:
        raise InvalidInput(f"offset must be 0 or more, not {offset}")
    return limit, offset


# --- Types --------------------------------------------------------------------------------

# Times are milliseconds since the epoch, as the release tooling these shapes come from sends them.
DateTime = NewType("DateTime", datetime)


def _serialize_datetime(value: datetime) -> int:
    return int(value.timestamp() * 1000)


@strawberry.type(description="A page of a list: where it starts, how long, and what is left.")
class PageInfo:
    limit: int
    offset: int
    total: int
    has_more: bool


@strawberry.type(description="A variable a pipeline or workflow declares.")
class Variable:
    name: str
    type: str = strawberry.field(description="Text, Number, Email, Environment, Service...")
    required: bool


def _variables(definition: PipelineDefinition) -> list[Variable]:
    return [
        Variable(name=item["name"], type=item["type"], required=bool(item.get("required")))
        for item in definition.variables
    ]


@strawberry.type(name="DefinitionFields")
class _DefinitionFields:
    """The fields pipelines and workflows share; each type adds its own variables field.

    A Strawberry type so that its fields are inherited; nothing returns it, so it stays out
    of the schema.
    """

    definition: strawberry.Private[PipelineDefinition]

    @strawberry.field
    def id(self) -> str:
        return definition_id(self.definition)

    @strawberry.field
    def name(self) -> str:
        return self.definition.name

    @strawberry.field
    def description(self) -> str:
        return self.definition.description

    @strawberry.field
    def created_at(self) -> DateTime:
        return DateTime(self.definition.created_at)

    @strawberry.field
    def application(self) -> Application:
        return Application(project=self.definition.project)


@strawberry.type(description="A pipeline definition of an application.")
class Pipeline(_DefinitionFields):
    @strawberry.field
    def pipeline_variables(self) -> list[Variable]:
        return _variables(self.definition)


@strawberry.type(description="A workflow definition of an application.")
class Workflow(_DefinitionFields):
    @strawberry.field
    def workflow_variables(self) -> list[Variable]:
        return _variables(self.definition)


@strawberry.type
class PipelineConnection:
    nodes: list[Pipeline]
    page_info: PageInfo


@strawberry.type
class WorkflowConnection:
    nodes: list[Workflow]
    page_info: PageInfo


def _definitions_page(
    project: Project, kind: str, limit: int, offset: int
) -> tuple[list[PipelineDefinition], PageInfo]:
    limit, offset = _page(limit, offset)
    definitions = project.definitions.filter(kind=kind).select_related("project").order_by("id")
    total = definitions.count()
    rows = list(definitions[offset : offset + limit])
    return rows, PageInfo(
        limit=limit, offset=offset, total=total, has_more=offset + len(rows) < total
    )


@strawberry.type(description="An application: a project, with its pipelines and workflows.")
class Application:
    project: strawberry.Private[Project]

    @strawberry.field
    def id(self) -> str:
        return encode_id(APPLICATION, self.project.pk)

    @strawberry.field
    def name(self) -> str:
        return self.project.name

    @strawberry.field
    def description(self) -> str:
        return self.project.description

    @strawberry.field(description="namespace/path, unique among applications.")
    def path_with_namespace(self) -> str:
        return self.project.path_with_namespace

    @strawberry.field
    def created_at(self) -> DateTime:
        return DateTime(self.project.created_at)

    @strawberry.field
    def pipelines(self, limit: int = 20, offset: int = 0) -> PipelineConnection:
        rows, page = _definitions_page(
            self.project, PipelineDefinition.Kind.PIPELINE, limit, offset
        )
        return PipelineConnection(nodes=[Pipeline(definition=d) for d in rows], page_info=page)

    @strawberry.field
    def workflows(self, limit: int = 20, offset: int = 0) -> WorkflowConnection:
        rows, page = _definitions_page(
            self.project, PipelineDefinition.Kind.WORKFLOW, limit, offset
        )
        return WorkflowConnection(nodes=[Workflow(definition=d) for d in rows], page_info=page)


@strawberry.enum(description="What kind of definition an execution runs.")
class ExecutionType(Enum):
    PIPELINE = "PIPELINE"
    WORKFLOW = "WORKFLOW"


@strawberry.enum(description="Where an execution is; mapped from the pipeline's status.")
class ExecutionStatus(Enum):
    QUEUED = "QUEUED"
    WAITING = "WAITING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    ABORTED = "ABORTED"
    SKIPPED = "SKIPPED"


EXECUTION_STATUS = {
    Status.CREATED: ExecutionStatus.QUEUED,
    Status.PREPARING: ExecutionStatus.QUEUED,
    Status.PENDING: ExecutionStatus.QUEUED,
    Status.WAITING_FOR_RESOURCE: ExecutionStatus.WAITING,
    Status.SCHEDULED: ExecutionStatus.WAITING,
    Status.RUNNING: ExecutionStatus.RUNNING,
    # Still running until its jobs have stopped; ABORTED once they have.
    Status.CANCELING: ExecutionStatus.RUNNING,
    # Waiting for a person to play a manual job.
    Status.MANUAL: ExecutionStatus.PAUSED,
    Status.SUCCESS: ExecutionStatus.SUCCESS,
    Status.FAILED: ExecutionStatus.FAILED,
    Status.CANCELED: ExecutionStatus.ABORTED,
    Status.SKIPPED: ExecutionStatus.SKIPPED,
}


@strawberry.interface(description="A run of a pipeline or a workflow.")
class Execution:
    run: strawberry.Private[PipelineRun]
    record: strawberry.Private[ExecutionRecord | None]

    @strawberry.field
    def id(self) -> str:
        return encode_id(EXECUTION, self.run.pk)

    @strawberry.field(
        description="What the caller wrote when starting it; null if not started here."
    )
    def notes(self) -> str | None:
        return self.record.notes if self.record else None

    @strawberry.field
    def status(self) -> ExecutionStatus:
        return EXECUTION_STATUS[Status(self.run.status)]

    @strawberry.field(description="When it was started (its pipeline was created).")
    def created_at(self) -> DateTime:
        return DateTime(self.run.created_at)

    @strawberry.field(description="When it was started (its pipeline was created).")
    def started_at(self) -> DateTime:
        return DateTime(self.run.created_at)

    @strawberry.field(description="When it finished; null while it has not.")
    def ended_at(self) -> DateTime | None:
        return DateTime(self.run.finished_at) if self.run.finished_at else None

    @strawberry.field
    def application(self) -> Application:
        return Application(project=self.run.project)


@strawberry.type(description="A run of a pipeline definition, or a pipeline CI reported.")
class PipelineExecution(Execution):
    @strawberry.field(description="The pipeline definition run; null when CI reported it.")
    def pipeline(self) -> Pipeline | None:
        definition = self.record.definition if self.record else None
        return Pipeline(definition=definition) if definition else None


@strawberry.type(description="What a deployment reached: its execution, service and environment.")
class DeploymentOutcome:
    execution: WorkflowExecution
    service: str | None
    environment: str | None


@strawberry.type
class OutcomeConnection:
    nodes: list[DeploymentOutcome]
    page_info: PageInfo


@strawberry.type(description="A run of a workflow definition.")
class WorkflowExecution(Execution):
    @strawberry.field
    def workflow(self) -> Workflow | None:
        definition = self.record.definition if self.record else None
        return Workflow(definition=definition) if definition else None

    @strawberry.field(description="The deployment this workflow run makes.")
    def outcomes(self, limit: int = 20, offset: int = 0) -> OutcomeConnection:
        limit, offset = _page(limit, offset)
        outcome = DeploymentOutcome(
            execution=self, service=self._service(), environment=self._environment()
        )
        nodes = [outcome][offset : offset + limit]
        return OutcomeConnection(
            nodes=nodes,
            page_info=PageInfo(
                limit=limit, offset=offset, total=1, has_more=offset + len(nodes) < 1
            ),
        )

    def _service(self) -> str | None:
        inputs = self.record.service_inputs if self.record else []
        return inputs[0]["name"] if inputs else self._variable_of_type("Service")

    def _environment(self) -> str | None:
        return self._variable_of_type("Environment")

    def _variable_of_type(self, kind: str) -> str | None:
        definition = self.record.definition if self.record else None
        if definition is None:
            return None
        names = {item["name"] for item in definition.variables if item["type"] == kind}
        values = [v["value"] for v in self.run.variables if v["key"] in names]
        return values[0] if values else None


def execution_for(run: PipelineRun) -> Execution:
    record = ExecutionRecord.objects.filter(pipeline=run).select_related("definition").first()
    if record is not None and record.kind == PipelineDefinition.Kind.WORKFLOW:
        return WorkflowExecution(run=run, record=record)
    return PipelineExecution(run=run, record=record)


# --- Inputs -------------------------------------------------------------------------------


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


@strawberry.type
class StartExecutionPayload:
    client_mutation_id: str | None
    execution: Execution


def _service_inputs(given: list[ServiceInput] | None) -> list[dict]:
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
    def application_by_name(self, info: Info, name: str) -> Application | None:
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
        return Application(project=matches[0])

    @strawberry.field(description="An application by its id.")
    def application(self, info: Info, application_id: str) -> Application | None:
        return Application(project=_application(info, application_id))

    @strawberry.field(description="A pipeline of an application, by name.")
    def pipeline_by_name(
        self, info: Info, application_id: str, pipeline_name: str
    ) -> Pipeline | None:
        kind = PipelineDefinition.Kind.PIPELINE
        return Pipeline(definition=_definition_by_name(info, application_id, kind, pipeline_name))

    @strawberry.field(description="A workflow of an application, by name.")
    def workflow_by_name(
        self, info: Info, application_id: str, workflow_name: str
    ) -> Workflow | None:
        kind = PipelineDefinition.Kind.WORKFLOW
        return Workflow(definition=_definition_by_name(info, application_id, kind, workflow_name))

    @strawberry.field(description="An execution by its id, with its current status.")
    def execution(self, info: Info, execution_id: str) -> Execution | None:
        info.context.token()
        pk = _expect_id(execution_id, EXECUTION, "executionId")
        run = PipelineRun.objects.select_related("project").filter(pk=pk).first()
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
            service_inputs=_service_inputs(input.service_inputs),
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
            client_mutation_id=input.client_mutation_id, execution=execution_for(record.pipeline)
        )


# --- Schema and view ----------------------------------------------------------------------


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
                serialize=_serialize_datetime,
            )
        }
    ),
    extensions=[
        lambda: QueryDepthLimiter(max_depth=12),
        lambda: AddValidationRules([RefuseNulCharacters]),
        lambda: MaskErrors(should_mask_error=_is_unexpected),
    ],
)


def _check_request(request: HttpRequest) -> None:
    """Refuse, with a 400 (``MalformedInput``), what every API refuses
    (``check_request_text``, ``load_json``) and the bodies Strawberry would fail on with a 500
    (not an object, not UTF-8)."""
    check_request_text(request)
    if request.method != "POST" or "application/json" not in (request.content_type or ""):
        return
    try:
        data = _load_json(request.body)
    except UnicodeDecodeError:
        raise MalformedInput("the body is not UTF-8 text") from None
    if not isinstance(data, dict):
        raise MalformedInput('the body must be a JSON object: {"query": "...", "variables": {...}}')


def _load_json(data: str | bytes) -> object:
    try:
        return load_json(data.decode() if isinstance(data, bytes) else data)
    except InvalidJSON:
        raise InvalidJSON(UNPARSABLE) from None  # in Strawberry's own words


UNPARSABLE = "Unable to parse request body as JSON"


class PipehookGraphQLView(GraphQLView):
    """Strawberry's Django view with API-key context and JSON bodies for HTTP-level errors."""

    context: ApiContext | None = None

    def get_context(self, request: HttpRequest, response: HttpResponse) -> ApiContext:
        # Django makes a view instance per request, so this is the request's own context.
        self.context = ApiContext(request=request, response=response)
        return self.context

    def decode_json(self, data: str | bytes) -> object:
        # GET's variables and extensions parameters; POST bodies passed _check_request.
        try:
            return _load_json(data)
        except UnicodeDecodeError as undecodable:
            raise MalformedInput(str(undecodable)) from None

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            _check_request(request)
            response = self.run(request=request)
        except HTTPException as refused:  # Strawberry's own refusals
            return _refusal(refused.status_code, refused.reason)
        except MalformedInput as refused:
            return _refusal(400, refused.message)
        if self.context is not None and self.context.database_error is not None:
            raise self.context.database_error  # answered 503 like every API's
        return response


def _refusal(status: int, message: str) -> JsonResponse:
    """A request refused before any operation ran, in GraphQL's error shape."""
    return JsonResponse({"data": None, "errors": [{"message": message}]}, status=status)


# Only API keys authenticate here (never the session cookie), so cross-site requests carry
# no credentials and the CSRF check has nothing to protect.
graphql_view = csrf_exempt(PipehookGraphQLView.as_view(schema=schema, graphql_ide="graphiql"))
