"""Harness SEI's custom CI/CD API, mounted at ``/sei/api/v1/``.

A CI system that reports to SEI reports here by changing only its base URL and key:

- ``POST cicd/instances`` mints the GUID of a CI/CD instance; ``integration_id`` is the id
  of the project the instance's runs belong to.
- ``POST custom-cicd`` reports a run. ``execution_id`` (or, without it, the job and its
  build number; without both, the job and its start time) identifies the run, so posting it
  again updates the same pipeline. The run's stages and steps (``job_run``) become jobs.

Field by field, and every leniency with its reason: ``docs/dialects.md``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response

from pipelines import reports, services
from pipelines.api.dialect import (
    DialectView,
    Text,
    optional_list,
    optional_text,
    parse_json_text,
    refusals,
    token_from_request,
    validated,
)
from pipelines.api.parsing import MAX_ID, parse_id
from pipelines.auth import WRITE, check_access
from pipelines.errors import InvalidInput, ProjectHidden
from pipelines.models import (
    COMPLETED_STATUSES,
    UNKNOWN_SHA,
    CicdInstance,
    Project,
    Status,
)

SCHEMA_TAG = "Harness SEI custom CI/CD"
HOW_TO_AUTHENTICATE = "send Authorization: ApiKey <token> (or Authorization: Bearer <token>)"

# Names older clients (the Jenkins plugin, the first page's curl) use for the same fields.
FIELD_ALIASES = {
    "pipeline": "job_name",
    "instance_guid": "jenkins_instance_guid",
    "instance_name": "jenkins_instance_name",
    "instance_url": "jenkins_instance_url",
    "qualified_name": "job_normalized_full_name",
}

# ``result`` as real clients spell it (Jenkins, Azure DevOps, GitHub Actions, Harness...),
# compared without case, spaces, hyphens or underscores.
RESULTS: dict[str, Status] = {
    **dict.fromkeys(["success", "succeeded", "successful", "passed", "pass", "ok"], Status.SUCCESS),
    # Azure DevOps: some tasks failed but were allowed to (GitLab: passed with warnings).
    **dict.fromkeys(["partiallysucceeded", "succeededwithissues"], Status.SUCCESS),
    **dict.fromkeys(
        ["failure", "failed", "fail", "error", "errored", "expired", "rejected"], Status.FAILED
    ),
    # Jenkins: the build ran but tests failed; it did not pass.
    "unstable": Status.FAILED,
    **dict.fromkeys(["timedout", "timeout"], Status.FAILED),
    **dict.fromkeys(["aborted", "cancelled", "canceled", "stopped"], Status.CANCELED),
    **dict.fromkeys(["skipped", "notbuilt"], Status.SKIPPED),
    **dict.fromkeys(["running", "inprogress", "started", "building"], Status.RUNNING),
    **dict.fromkeys(["pending", "queued", "waiting"], Status.PENDING),
}
TIMED_OUT_RESULTS = frozenset({"timedout", "timeout"})
# Results that say nothing (Blue Ocean's "UNKNOWN"): the stage's state, or the run, decides.
NO_RESULT = frozenset({"", "unknown", "none", "null"})
# Stage and step ``state`` values (Blue Ocean's); None means "finished: its result says how".
STATES: dict[str, Status | None] = {
    **dict.fromkeys(["queued", "pending", "waiting"], Status.PENDING),
    **dict.fromkeys(["running", "inprogress", "paused"], Status.RUNNING),
    **dict.fromkeys(["skipped", "notbuilt"], Status.SKIPPED),
    **dict.fromkeys(["finished", "completed", "complete", "done", "unknown"], None),
}
ACCEPTED_RESULTS = "SUCCESS, FAILURE (or FAILED), ABORTED, UNSTABLE, NOT_BUILT, RUNNING, QUEUED"


def _squash(value: str) -> str:
    return "".join(c for c in value.lower() if c not in " -_")


def status_from_result(result: str, *, where: str = "result") -> Status:
    status = RESULTS.get(_squash(result))
    if status is None:
        raise InvalidInput(
            f"{where} {result!r} is not a result this API knows; use one of {ACCEPTED_RESULTS}"
            " (any case; succeeded, failed, cancelled, timed_out and in_progress work too)",
        )
    return status


# --- Input ------------------------------------------------------------------------------------


def _missing(field: str) -> dict[str, str]:
    alias = FIELD_ALIASES.get(field)
    hint = f" (older clients send it as {alias})" if alias else ""
    return {"required": f"is missing{hint}", "null": f"is missing{hint}"}


class StepInput(serializers.Serializer):
    displayName = Text(max_length=255)  # noqa: N815 - SEI's own key
    displayDescription = optional_text(2000)  # noqa: N815
    result = optional_text(64)
    state = optional_text(64)
    durationInMillis = serializers.IntegerField(  # noqa: N815
        required=False, allow_null=True, min_value=0
    )


class StageInput(StepInput):
    steps = optional_list(StepInput())


class JobRunInput(serializers.Serializer):
    stages = optional_list(StageInput())


class JobRunParamInput(serializers.Serializer):
    name = Text(max_length=255)
    type = optional_text()
    value = serializers.JSONField(required=False, allow_null=True)

    def validate_value(self, value):
        if isinstance(value, (dict, list)):
            raise serializers.ValidationError("must be a string, number or boolean")
        return value


@extend_schema_field(OpenApiTypes.STR)
class ModuleName(serializers.Field):
    """A string on the first page, an integer on the second: either is taken."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (str, int)):
            raise serializers.ValidationError("must be a string or an integer")
        return str(data)


class RunInput(serializers.Serializer):
    pipeline = Text(max_length=255, error_messages=_missing("pipeline"))
    job_full_name = Text(max_length=255, error_messages=_missing("job_full_name"))
    qualified_name = Text(max_length=255, error_messages=_missing("qualified_name"))
    instance_name = Text(max_length=255, error_messages=_missing("instance_name"))
    instance_guid = serializers.UUIDField(error_messages=_missing("instance_guid"))
    start_time = serializers.IntegerField(min_value=0, error_messages=_missing("start_time"))
    duration = serializers.IntegerField(min_value=0, error_messages=_missing("duration"))
    result = Text(max_length=64, error_messages=_missing("result"))

    user_id = optional_text()
    job_run_params = optional_list(JobRunParamInput())
    scm_commit_ids = optional_list(Text(max_length=64))
    repo_url = optional_text(2000)
    build_number = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=MAX_ID
    )
    instance_url = optional_text(2000)
    job_run = JobRunInput(required=False, allow_null=True)
    module_name = ModuleName(required=False, allow_null=True)
    ci = serializers.BooleanField(required=False, allow_null=True)
    cd = serializers.BooleanField(required=False, allow_null=True)
    artifacts = optional_list(serializers.DictField())
    trigger_chain = optional_list(serializers.DictField())
    branch_name = optional_text()
    project_name = optional_text()
    execution_id = optional_text()
    cfr_status = serializers.BooleanField(required=False, allow_null=True)
    themes = optional_list(Text())
    web_url = optional_text(2000)


class InstanceInput(serializers.Serializer):
    integration_id = serializers.JSONField(error_messages=_missing("integration_id"))
    name = Text(max_length=255, error_messages=_missing("name"))
    type = Text(max_length=64, required=False, allow_null=True, allow_blank=True)
    # SEI lets a client keep a GUID it already has configured; so does this API.
    id = serializers.UUIDField(required=False, allow_null=True)

    def validate_integration_id(self, value) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise serializers.ValidationError("must be a project id (an integer)")
        project_id = parse_id(value.strip()) if isinstance(value, str) else value
        if project_id is None:
            raise serializers.ValidationError(f"must be a project id (an integer), not {value!r}")
        return project_id


def unwrap_envelope(data: dict) -> dict:
    """SEI's pages say the body "contains a data object with request_type and payload"; the
    Jenkins plugin sends ``{"request_type": ..., "payload": "<the run as a JSON string>"}``.
    Either shape, or the run object itself, is taken."""
    if "payload" not in data or "pipeline" in data or "job_name" in data:
        return data
    payload = data["payload"]
    if isinstance(payload, str):
        payload = parse_json_text(payload)
    if not isinstance(payload, dict):
        raise InvalidInput("payload must be the run as a JSON object (or a string of one)")
    return payload


def resolve_aliases(data: dict) -> dict:
    resolved = dict(data)
    for field, alias in FIELD_ALIASES.items():
        if resolved.get(field) is None and resolved.get(alias) is not None:
            resolved[field] = resolved[alias]
    return resolved


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def time_from_epoch_ms(value: int, field: str) -> datetime:
    try:
        return EPOCH + timedelta(milliseconds=value)
    except OverflowError:
        raise InvalidInput(f"{field}: {value} is not a time in epoch milliseconds") from None


def later_by(moment: datetime, millis: int, field: str) -> datetime:
    """``moment`` plus ``millis``; a sum past year 9999 is the client's mistake, a 400."""
    try:
        return moment + timedelta(milliseconds=millis)
    except OverflowError:
        raise InvalidInput(
            f"{field}: {millis} milliseconds from {moment:%Y-%m-%d} is past year 9999"
        ) from None


# --- Mapping ----------------------------------------------------------------------------------


def _step_status(step: dict, run_status: Status, where: str) -> Status:
    """A stage or step's status: its result, else its state, else the run's.

    In a finished run nothing is still going: unfinished steps take the run's status.
    """
    status: Status | None = None
    result = step.get("result") or ""
    state = step.get("state") or ""
    if _squash(result) not in NO_RESULT:
        status = status_from_result(result, where=f"{where}.result")
    elif state:
        if _squash(state) not in STATES:
            raise InvalidInput(
                f"{where}.state {state!r} is not a state this API knows; use one of "
                "QUEUED, RUNNING, PAUSED, SKIPPED, NOT_BUILT, FINISHED",
            )
        status = STATES[_squash(state)]
    if status is None:
        status = run_status
    if run_status in COMPLETED_STATUSES and status not in COMPLETED_STATUSES:
        status = run_status
    return status


def jobs_from_job_run(job_run: dict | None, run_status: Status, start: datetime) -> list:
    """Stages and steps as jobs: each step a job in its stage, a stage without steps a job.

    SEI reports only durations, so jobs are laid end to end from the run's start, in the
    order given; a missing duration counts as zero. Repeated names in a stage are numbered.
    """
    jobs: list[reports.ReportedJob] = []
    cursor = start
    for stage_index, stage in enumerate((job_run or {}).get("stages") or []):
        stage_name = stage["displayName"]
        where = f"job_run.stages[{stage_index}]"
        stage_start = cursor
        steps = stage.get("steps") or []
        units = [(step, f"{where}.steps[{i}]") for i, step in enumerate(steps)] or [(stage, where)]
        taken: dict[str, int] = {}
        for unit, unit_where in units:
            status = _step_status(unit, run_status, unit_where)
            millis = unit.get("durationInMillis") or 0
            name = unit["displayName"]
            taken[name] = taken.get(name, 0) + 1
            if taken[name] > 1:
                suffix = f" ({taken[name]})"
                name = name[: 255 - len(suffix)] + suffix
            finished = later_by(cursor, millis, f"{unit_where}.durationInMillis")
            jobs.append(
                reports.ReportedJob(
                    name=name,
                    stage=stage_name,
                    status=status,
                    started_at=cursor,
                    finished_at=finished,
                    failure_reason=_failure_reason(unit.get("result") or ""),
                )
            )
            cursor = finished
        if stage.get("durationInMillis") is not None and steps:
            stage_end = later_by(
                stage_start, stage["durationInMillis"], f"{where}.durationInMillis"
            )
            cursor = max(cursor, stage_end)
    return jobs


def _failure_reason(result: str) -> str | None:
    return "job_execution_timeout" if _squash(result) in TIMED_OUT_RESULTS else None


def run_identity(run: dict) -> str:
    if run.get("execution_id"):
        return f"execution:{run['execution_id']}"
    if run.get("build_number") is not None:
        return f"build:{run['job_full_name']}#{run['build_number']}"
    return f"start:{run['job_full_name']}@{run['start_time']}"


# --- Output -----------------------------------------------------------------------------------


class InstanceCreated(serializers.Serializer):
    id = serializers.UUIDField(help_text="The GUID the instance's runs carry as instance_guid.")


class RunAccepted(serializers.Serializer):
    id = serializers.IntegerField(help_text="The run's record; a re-post of the run keeps it.")
    pipeline_id = serializers.IntegerField(help_text="The pipeline the run is shown as.")
    iid = serializers.IntegerField(help_text="The pipeline's number in its project.")
    project_id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Status.choices, help_text="The pipeline's status.")
    web_url = serializers.URLField()
    created = serializers.BooleanField(
        help_text="True when this report created the run, false when it updated it."
    )


REFUSALS = {
    400: "A missing or mistyped field, an unknown result, instance or project",
    401: "No access token, or one that is unknown, revoked or expired",
    403: "The token lacks the api scope, the permission or the project",
}


# --- Views ------------------------------------------------------------------------------------


class CicdInstancesView(DialectView):
    """``POST cicd/instances``: register a CI/CD instance of a project; answers ``{"id"}``."""

    @extend_schema(
        tags=[SCHEMA_TAG],
        request=InstanceInput,
        responses={
            200: OpenApiResponse(InstanceCreated, "The instance is registered"),
            **refusals({**REFUSALS, 409: "An instance with this id exists already"}),
        },
    )
    def post(self, request):
        token = _token(request)
        data = validated(InstanceInput(data=self.json_object(request)))
        project = Project.objects.filter(pk=data["integration_id"]).first()
        not_a_project = InvalidInput(
            f"integration_id {data['integration_id']} is not a project id: use the id of"
            " the project this instance's runs belong to",
        )
        if project is None:
            raise not_a_project
        try:
            check_access(token, token.user, WRITE, project)
        except ProjectHidden:
            raise not_a_project from None
        instance = reports.register_cicd_instance(
            project,
            guid=data.get("id"),
            name=data["name"],
            type=data.get("type") or "custom",
            user=token.user,
        )
        return Response({"id": str(instance.guid)})


class CustomCicdView(DialectView):
    """``POST custom-cicd``: report (or report again) a run; answers 202 with its pipeline."""

    @extend_schema(
        tags=[SCHEMA_TAG],
        request=RunInput,
        responses={
            202: OpenApiResponse(RunAccepted, "The run is recorded, or updated when re-posted"),
            **refusals(REFUSALS),
        },
    )
    def post(self, request):
        token = _token(request)
        body = resolve_aliases(unwrap_envelope(self.json_object(request)))
        run = validated(RunInput(data=body))
        instance = (
            CicdInstance.objects.select_related("project").filter(guid=run["instance_guid"]).first()
        )
        not_registered = InvalidInput(
            f"instance_guid {run['instance_guid']} is not a registered CI/CD instance:"
            " mint one with POST /sei/api/v1/cicd/instances",
        )
        if instance is None:
            raise not_registered
        try:
            check_access(token, token.user, WRITE, instance.project)
        except ProjectHidden:
            raise not_registered from None

        status = status_from_result(run["result"])
        start = time_from_epoch_ms(run["start_time"], "start_time")
        end = later_by(start, run["duration"], "duration")
        jobs = jobs_from_job_run(run.get("job_run"), status, start)
        whole_run = reports.ReportedJob(
            name=run["job_full_name"],
            stage=services.EXTERNAL_STAGE,
            status=status,
            started_at=start,
            finished_at=end if status in COMPLETED_STATUSES else None,
            failure_reason=_failure_reason(run["result"]),
            target_url=run.get("web_url") or "",
        )
        record, created = reports.record_cicd_run(
            instance,
            run_identity(run),
            report=body,
            run=whole_run,
            jobs=jobs,
            user=token.user,
            new_pipeline={
                "ref": run.get("branch_name") or instance.project.default_branch,
                "sha": (run.get("scm_commit_ids") or [UNKNOWN_SHA])[0],
                "name": run["pipeline"],
                "variables": [
                    {"key": param["name"], "value": _param_value(param.get("value"))}
                    for param in run.get("job_run_params") or []
                ],
            },
            new_record={
                "job_full_name": run["job_full_name"],
                "execution_id": run.get("execution_id") or None,
                "build_number": run.get("build_number"),
            },
        )
        pipeline = record.pipeline
        return Response(
            {
                "id": record.pk,
                "pipeline_id": pipeline.pk,
                "iid": pipeline.iid,
                "project_id": pipeline.project_id,
                "status": pipeline.status,
                "web_url": pipeline.web_url,
                "created": created,
            },
            status=202,
        )


def _param_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _token(request):
    return token_from_request(request, how=HOW_TO_AUTHENTICATE)


urlpatterns = [
    path("cicd/instances", CicdInstancesView.as_view(), name="sei-cicd-instances"),
    path("custom-cicd", CustomCicdView.as_view(), name="sei-custom-cicd"),
]
