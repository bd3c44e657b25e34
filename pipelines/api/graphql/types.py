"""The GraphQL API's output types: applications (projects), their pipeline and workflow
definitions, and executions (pipelines) with their status, in the shapes release tooling
reads. Python names say what each is; the schema keeps the names clients know
(``PipelineDefinitionType`` is ``Pipeline``, ``ExecutionInterface`` is ``Execution``).
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import NewType

import strawberry

from pipelines.api.graphql.ids import APPLICATION, EXECUTION, definition_id, encode_id
from pipelines.errors import InvalidInput
from pipelines.models import Execution, Pipeline, PipelineDefinition, Project, Status

MAX_PAGE_SIZE = 100

# Times are milliseconds since the epoch, as the release tooling these shapes come from sends them.
DateTime = NewType("DateTime", datetime)


def serialize_datetime(value: datetime) -> int:
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
    def application(self) -> ApplicationType:
        return ApplicationType(project=self.definition.project)


@strawberry.type(name="Pipeline", description="A pipeline definition of an application.")
class PipelineDefinitionType(_DefinitionFields):
    @strawberry.field
    def pipeline_variables(self) -> list[Variable]:
        return _variables(self.definition)


@strawberry.type(name="Workflow", description="A workflow definition of an application.")
class WorkflowDefinitionType(_DefinitionFields):
    @strawberry.field
    def workflow_variables(self) -> list[Variable]:
        return _variables(self.definition)


@strawberry.type
class PipelineConnection:
    nodes: list[PipelineDefinitionType]
    page_info: PageInfo


@strawberry.type
class WorkflowConnection:
    nodes: list[WorkflowDefinitionType]
    page_info: PageInfo


def _definitions_page(
    project: Project, kind: str, limit: int, offset: int
) -> tuple[list[PipelineDefinition], PageInfo]:
    limit, offset = check_page(limit, offset)
    definitions = project.definitions.filter(kind=kind).select_related("project").order_by("id")
    total = definitions.count()
    rows = list(definitions[offset : offset + limit])
    return rows, PageInfo(
        limit=limit, offset=offset, total=total, has_more=offset + len(rows) < total
    )


@strawberry.type(
    name="Application", description="An application: a project, with its pipelines and workflows."
)
class ApplicationType:
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
        return PipelineConnection(
            nodes=[PipelineDefinitionType(definition=d) for d in rows], page_info=page
        )

    @strawberry.field
    def workflows(self, limit: int = 20, offset: int = 0) -> WorkflowConnection:
        rows, page = _definitions_page(
            self.project, PipelineDefinition.Kind.WORKFLOW, limit, offset
        )
        return WorkflowConnection(
            nodes=[WorkflowDefinitionType(definition=d) for d in rows], page_info=page
        )


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


@strawberry.interface(name="Execution", description="A run of a pipeline or a workflow.")
class ExecutionInterface:
    run: strawberry.Private[Pipeline]
    record: strawberry.Private[Execution | None]

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
    def application(self) -> ApplicationType:
        return ApplicationType(project=self.run.project)


@strawberry.type(description="A run of a pipeline definition, or a pipeline CI reported.")
class PipelineExecution(ExecutionInterface):
    @strawberry.field(description="The pipeline definition run; null when CI reported it.")
    def pipeline(self) -> PipelineDefinitionType | None:
        definition = self.record.definition if self.record else None
        return PipelineDefinitionType(definition=definition) if definition else None


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
class WorkflowExecution(ExecutionInterface):
    @strawberry.field
    def workflow(self) -> WorkflowDefinitionType | None:
        definition = self.record.definition if self.record else None
        return WorkflowDefinitionType(definition=definition) if definition else None

    @strawberry.field(description="The deployment this workflow run makes.")
    def outcomes(self, limit: int = 20, offset: int = 0) -> OutcomeConnection:
        limit, offset = check_page(limit, offset)
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


def execution_for(run: Pipeline) -> ExecutionInterface:
    record = Execution.objects.filter(pipeline=run).select_related("definition").first()
    if record is None:
        return PipelineExecution(run=run, record=None)
    return execution_of(record, run)


def execution_of(record: Execution, run: Pipeline | None = None) -> ExecutionInterface:
    """The execution of ``record`` as its command returned it: nothing read again."""
    run = run or record.pipeline
    if record.kind == PipelineDefinition.Kind.WORKFLOW:
        return WorkflowExecution(run=run, record=record)
    return PipelineExecution(run=run, record=record)


@strawberry.type
class StartExecutionPayload:
    client_mutation_id: str | None
    execution: ExecutionInterface


def check_page(limit: int, offset: int) -> tuple[int, int]:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE_SIZE}, not {limit}")
    if offset < 0:
        raise InvalidInput(f"offset must be 0 or more, not {offset}")
    return limit, offset
