"""The GitLab v4-compatible REST API: projects, commit statuses, pipelines and their jobs.

Thin edges over ``pipelines.services``: each view reads GitLab's parameters (from the query
string and the body, as Grape merges them), checks the token against the project, calls a
service and answers with GitLab's entity, status code and error body. Tools written for
GitLab's API (python-gitlab, glab, CI integrations posting commit statuses) work unchanged.

Where GitLab needs a git repository we have none, so:

- ``:id`` is the numeric id or the URL-encoded ``namespace/path``;
- ``POST /projects/:id/pipeline`` takes an optional ``sha``; without it the commit of the
  newest pipeline on ``ref`` is used, and with neither the answer is GitLab's
  ``400 {"message": {"base": ["Reference not found"]}}``;
- commit status lists for a commit nobody reported are empty rather than 404.

Retrying a pipeline with nothing to retry, or cancelling a finished one, is refused with a 400
saying why; GitLab silently answers with the unchanged pipeline there.
"""

from __future__ import annotations

import re
from typing import Any

from django.db.models import Max, Q, QuerySet
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.serializer_helpers import ReturnDict
from rest_framework.views import APIView

from pipelines import auth, services
from pipelines.api import serializers as entities
from pipelines.api.pagination import GitLabPagination, pagination_header_parameters
from pipelines.api.parsing import MAX_ID as MAX_ID  # re-exported: the hooks API uses it
from pipelines.api.parsing import (
    FormParser,
    JSONParser,
    check_request_text,
    is_digits,
    parse_id,
)
from pipelines.errors import (
    Forbidden,
    InvalidParameter,
    NotFound,
    ProjectHidden,
)
from pipelines.models import COMPLETED_STATUSES, AccessToken, Job, Pipeline, Project, Status

# Explicit indexes are ASCII and short: ``int()`` refuses thousands of digits with a crash.
_ARRAY_OF_HASHES_KEY = re.compile(r"^(?P<name>\w+)\[(?P<index>[0-9]{0,9})\]\[(?P<field>\w+)\]$")


# --- Parameters --------------------------------------------------------------------------


def _plain_params(data) -> dict[str, Any]:
    """A QueryDict (query string or form body) as Grape sees it.

    ``scope[]=a&scope[]=b`` is a list; ``variables[][key]=K&variables[][value]=V`` (or with
    explicit indexes) is GitLab's "array of hashes"; any other key keeps its last value.
    """
    result: dict[str, Any] = {}
    hashes: dict[str, dict[int, dict[str, str]]] = {}
    for key, values in data.lists():
        if match := _ARRAY_OF_HASHES_KEY.match(key):
            rows = hashes.setdefault(match["name"], {})
            if match["index"]:
                rows.setdefault(int(match["index"]), {})[match["field"]] = values[-1]
            else:
                for position, value in enumerate(values):
                    rows.setdefault(position, {})[match["field"]] = value
        elif key.endswith("[]"):
            result[key[:-2]] = values
        else:
            result[key] = values[-1]
    for name, rows in hashes.items():
        result[name] = [rows[index] for index in sorted(rows)]
    return result


def _describe_problem(name: str, detail: serializers.ErrorDetail, field=None) -> str:
    """One parameter problem in Grape's words (``ref is missing``)."""
    code = getattr(detail, "code", None)
    if code in ("required", "null"):
        return f"{name} is missing"
    if code == "blank":
        return f"{name} is empty"
    if code == "invalid_choice":
        choices = getattr(field, "choices", None)
        allowed = f" (one of: {', '.join(map(str, choices))})" if choices else ""
        return f"{name} does not have a valid value{allowed}"
    if code == "explained":
        return str(detail)
    if code == "invalid":
        return f"{name} is invalid"
    return f"{name} is invalid: {detail}"


def _problems(errors, name: str, field=None) -> list[str]:
    if isinstance(errors, dict):
        found = []
        for key, nested in errors.items():
            child = None
            if isinstance(field, serializers.Serializer):
                child = field.fields.get(key)
            elif isinstance(field, serializers.ListField):
                child = field.child
            found += _problems(nested, f"{name}[{key}]" if name else str(key), child)
        return found
    if isinstance(errors, list):
        if errors and all(isinstance(item, serializers.ErrorDetail) for item in errors):
            return [_describe_problem(name, errors[0], field)]
        found = []
        for index, nested in enumerate(errors):
            found += _problems(nested, f"{name}[{index}]", getattr(field, "child", None))
        return found
    return [_describe_problem(name, errors, field)]


def validate_params(serializer_class: type[serializers.Serializer], data: dict) -> dict:
    """Validated parameters, or an ``InvalidParameter`` naming every bad one."""
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        raise InvalidParameter(", ".join(_problems(serializer.errors, "", serializer)))
    return dict(serializer.validated_data)


def _check_path_value(name: str, value: str, max_length: int | None = None) -> str:
    if "\x00" in value:
        raise InvalidParameter(f"{name} is invalid: it contains a NUL character")
    if max_length is not None and len(value) > max_length:
        raise InvalidParameter(f"{name} is invalid: at most {max_length} characters")
    return value


# --- Shared view behaviour ---------------------------------------------------------------


def find_project(project_id: str) -> Project | None:
    """A project by numeric id or by ``namespace/path`` (case-insensitive, as GitLab)."""
    if is_digits(project_id):
        number = parse_id(project_id)
        return Project.objects.filter(pk=number).first() if number is not None else None
    namespace, _, path = project_id.rpartition("/")
    if not namespace or not path:
        return None
    return Project.objects.filter(namespace__iexact=namespace, path__iexact=path).first()


class GitLabView(APIView):
    """Token lookup, project and pipeline resolution, and GitLab's parameter merging."""

    parser_classes = [JSONParser, FormParser, MultiPartParser]

    # Set per view when a write is more than a change (starting a pipeline).
    write_action = auth.WRITE

    def initial(self, request: Request, *args, **kwargs) -> None:
        check_request_text(request._request)
        super().initial(request, *args, **kwargs)

    @property
    def required_action(self) -> str:
        if self.request.method in ("GET", "HEAD", "OPTIONS"):
            return auth.READ
        return self.write_action

    @property
    def token(self) -> AccessToken | None:
        return self.request.auth if isinstance(self.request.auth, AccessToken) else None

    def query_params(self, serializer_class: type[serializers.Serializer]) -> dict:
        return validate_params(serializer_class, _plain_params(self.request.query_params))

    def body_params(self, serializer_class: type[serializers.Serializer]) -> dict:
        """Query string and body together, the body winning, as Grape merges them."""
        params = _plain_params(self.request.query_params)
        body = self.request.data
        if hasattr(body, "lists"):
            params.update(_plain_params(body))
        elif isinstance(body, dict):
            params.update(body)
        else:
            raise InvalidParameter("the request body must be a JSON object")
        return validate_params(serializer_class, params)

    def get_project(self) -> Project:
        project_id = _check_path_value("id", self.kwargs["project_id"])
        project = find_project(project_id)
        if project is None:
            raise NotFound("404 Project Not Found")
        self.check_project_access(project, self.required_action)
        return project

    def check_project_access(self, project: Project, action: str) -> None:
        """403 saying what is missing; 404, as for a missing project, when the caller holds
        nothing on it (GitLab's answer to a project one may not read)."""
        try:
            auth.check_access(self.token, self.request.user, action, project)
        except ProjectHidden:
            raise NotFound("404 Project Not Found") from None

    def get_pipeline(self, project: Project) -> Pipeline:
        raw = self.kwargs["pipeline_id"]
        if not is_digits(raw):
            raise InvalidParameter("pipeline_id is invalid")
        number = parse_id(raw)  # None: too large to be any pipeline's id
        pipelines = project.pipelines.select_related("project", "user")
        pipeline = pipelines.filter(pk=number).first() if number is not None else None
        if pipeline is None:
            raise NotFound("404 Not found")
        return pipeline

    def paginated(self, queryset: QuerySet, serializer_class) -> Response:
        paginator = GitLabPagination()
        items = paginator.paginate_queryset(queryset, self.request, self)
        return paginator.get_paginated_response(serializer_class(items, many=True).data)


# --- OpenAPI helpers ---------------------------------------------------------------------


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    """How the schema shows ``pipelines.auth.TokenAuthentication``: GitLab's two headers."""

    target_class = "pipelines.auth.TokenAuthentication"
    name = ["PrivateToken", "BearerToken"]

    def get_security_requirement(self, auto_schema) -> list[dict]:
        return [{"PrivateToken": []}, {"BearerToken": []}]  # either one is enough

    def get_security_definition(self, auto_schema) -> list[dict]:
        return [
            {"type": "apiKey", "in": "header", "name": "PRIVATE-TOKEN"},
            {"type": "http", "scheme": "bearer"},
        ]


class GitLabErrorSerializer(serializers.Serializer):
    message = serializers.JSONField(
        required=False, help_text='"404 Project Not Found", or {field: [problems]}'
    )
    error = serializers.CharField(required=False, help_text='e.g. "ref is missing"')


_ERROR_TEXT = {
    400: "Bad parameter, malformed body or refused transition",
    401: "Missing or unknown token",
    403: "The token lacks the scope, the permission or the project",
    404: "Unknown project or pipeline",
}


def error_responses(*codes: int, texts: dict[int, str] | None = None) -> dict:
    """GitLab's error bodies for ``codes`` in the schema; ``texts`` words some for a view."""
    wording = {**_ERROR_TEXT, **(texts or {})}
    return {code: OpenApiResponse(GitLabErrorSerializer, wording[code]) for code in codes}


PROJECT_ID = OpenApiParameter(
    "project_id",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="The numeric id or the URL-encoded path (acme%2Fweb) of the project.",
)
PIPELINE_ID = OpenApiParameter(
    "pipeline_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The pipeline id."
)
SHA = OpenApiParameter("sha", OpenApiTypes.STR, OpenApiParameter.PATH, description="Commit SHA.")
LIST_HEADERS = pagination_header_parameters()


# --- Projects ----------------------------------------------------------------------------


class ProjectListView(GitLabView):
    pagination_class = GitLabPagination
    write_action = auth.CREATE_PROJECT

    @extend_schema(
        operation_id="listProjects",
        tags=["projects"],
        parameters=[entities.ProjectListParams, *LIST_HEADERS],
        responses={200: entities.ProjectSerializer(many=True), **error_responses(400, 401, 403)},
    )
    def get(self, request: Request) -> Response:
        """List the projects the caller may read."""
        params = self.query_params(entities.ProjectListParams)
        # Only the projects the caller may read (and a limited token is limited to).
        projects = auth.permitted_projects(self.token, auth.READ, self.request.user)
        if search := params.get("search"):
            projects = projects.filter(Q(name__icontains=search) | Q(path__icontains=search))
        if visibility := params.get("visibility"):
            projects = projects.filter(visibility=visibility)
        field = {"last_activity_at": "updated_at"}.get(params["order_by"], params["order_by"])
        prefix = "-" if params["sort"] == "desc" else ""
        projects = projects.order_by(f"{prefix}{field}", f"{prefix}id")
        return self.paginated(projects, entities.ProjectSerializer)

    @extend_schema(
        operation_id="createProject",
        tags=["projects"],
        request=entities.ProjectCreateParams,
        responses={201: entities.ProjectSerializer, **error_responses(400, 401, 403)},
    )
    def post(self, request: Request) -> Response:
        """Create a project from `name` and/or `path` (one is needed)."""
        if self.token is not None and self.token.projects.exists():
            raise Forbidden("this token is limited to some projects and cannot create new ones")
        params = self.body_params(entities.ProjectCreateParams)
        if not params.get("name") and not params.get("path"):
            raise InvalidParameter(
                "name, path are missing, at least one parameter must be provided"
            )
        fields = {
            key: params[key]
            for key in ("description", "default_branch", "visibility")
            if key in params
        }
        namespace = params.get("namespace") or params.get("namespace_id")
        if namespace:
            fields["namespace"] = namespace
        project = services.create_project(
            name=params.get("name") or params["path"], path=params.get("path"), **fields
        )
        return Response(entities.ProjectSerializer(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailView(GitLabView):
    @extend_schema(
        operation_id="getProject",
        tags=["projects"],
        parameters=[PROJECT_ID],
        responses={200: entities.ProjectSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, project_id: str) -> Response:
        """Get one project by id or URL-encoded path."""
        return Response(entities.ProjectSerializer(self.get_project()).data)


# --- Commit statuses ---------------------------------------------------------------------


class CommitStatusCreateView(GitLabView):
    @extend_schema(
        operation_id="createCommitStatus",
        tags=["commit statuses"],
        summary="Set the status of a commit (a job in the pipeline for that commit)",
        parameters=[PROJECT_ID, SHA],
        request=entities.CommitStatusCreateParams,
        responses={201: entities.CommitStatusSerializer, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request: Request, project_id: str, sha: str) -> Response:
        """Create or update the job `name` in the pipeline for `sha` and `ref`.

        The pipeline is created (source `external`) when there is none. Parameters may come
        in the query string or the body.
        """
        project = self.get_project()
        sha = _check_path_value("sha", sha, max_length=64)
        params = self.body_params(entities.CommitStatusCreateParams)
        reported = services.ReportedCommitStatus(
            sha=sha,
            state=params["state"],
            name=params.get("name") or params.get("context"),
            ref=params.get("ref"),
            stage=params.get("stage"),
            target_url=params.get("target_url"),
            description=params.get("description"),
            coverage=params.get("coverage"),
            pipeline_id=params.get("pipeline_id"),
        )
        job = services.report_commit_status(project, reported, user=request.user)
        job = Job.objects.select_related("pipeline__project", "user").get(pk=job.pk)
        return Response(entities.CommitStatusSerializer(job).data, status=status.HTTP_201_CREATED)


class CommitStatusListView(GitLabView):
    pagination_class = GitLabPagination

    @extend_schema(
        operation_id="listCommitStatuses",
        tags=["commit statuses"],
        parameters=[PROJECT_ID, SHA, entities.CommitStatusListParams, *LIST_HEADERS],
        responses={
            200: entities.CommitStatusSerializer(many=True),
            **error_responses(400, 401, 403, 404),
        },
    )
    def get(self, request: Request, project_id: str, sha: str) -> Response:
        """List the statuses (jobs) reported for a commit; latest attempts unless `all`."""
        project = self.get_project()
        sha = _check_path_value("sha", sha)
        params = self.query_params(entities.CommitStatusListParams)
        jobs = Job.objects.filter(pipeline__project=project, pipeline__sha=sha)
        if not params["all"]:
            jobs = jobs.filter(retried=False)
        if ref := params.get("ref"):
            jobs = jobs.filter(pipeline__ref=ref)
        if stage := params.get("stage"):
            jobs = jobs.filter(stage=stage)
        if name := params.get("name"):
            jobs = jobs.filter(name=name)
        jobs = jobs.select_related("pipeline__project", "user").order_by("id")
        return self.paginated(jobs, entities.CommitStatusSerializer)


# --- Pipelines ---------------------------------------------------------------------------


def filter_pipelines(pipelines: QuerySet, params: dict) -> QuerySet:
    """``Ci::PipelinesFinder``: scope, status, ref, sha, source, user, name, times, order."""
    scope = params.get("scope")
    if scope == "running":
        pipelines = pipelines.filter(status=Status.RUNNING)
    elif scope == "pending":
        pipelines = pipelines.filter(status=Status.PENDING)
    elif scope == "finished":
        pipelines = pipelines.filter(status__in=COMPLETED_STATUSES)
    elif scope in ("branches", "tags"):
        # The newest pipeline of each branch (or tag).
        newest = (
            pipelines.filter(tag=scope == "tags")
            .values("ref")
            .annotate(newest_id=Max("id"))
            .values("newest_id")
        )
        pipelines = pipelines.filter(pk__in=newest)
    if value := params.get("status"):
        pipelines = pipelines.filter(status=value)
    if value := params.get("ref"):
        pipelines = pipelines.filter(ref=value)
    if value := params.get("sha"):
        pipelines = pipelines.filter(sha=value)
    # Child pipelines show only when asked for, as in GitLab 17.
    if value := params.get("source"):
        pipelines = pipelines.filter(source=value)
    else:
        pipelines = pipelines.exclude(source=Pipeline.Source.PARENT_PIPELINE)
    if value := params.get("name"):
        pipelines = pipelines.filter(name=value)
    if value := params.get("username"):
        pipelines = pipelines.filter(user__username=value)
    if params.get("yaml_errors"):
        pipelines = pipelines.none()  # nothing here is configured by YAML, so none has errors
    if value := params.get("updated_after"):
        pipelines = pipelines.filter(updated_at__gt=value)
    if value := params.get("updated_before"):
        pipelines = pipelines.filter(updated_at__lt=value)
    prefix = "-" if params.get("sort", "desc") == "desc" else ""
    order_by = params.get("order_by", "id")
    return pipelines.order_by(f"{prefix}{order_by}", f"{prefix}id")


class PipelineListView(GitLabView):
    pagination_class = GitLabPagination

    @extend_schema(
        operation_id="listPipelines",
        tags=["pipelines"],
        parameters=[PROJECT_ID, entities.PipelineListParams, *LIST_HEADERS],
        responses={
            200: entities.PipelineBasicSerializer(many=True),
            **error_responses(400, 401, 403, 404),
        },
    )
    def get(self, request: Request, project_id: str) -> Response:
        """List a project's pipelines, newest first unless ordered otherwise."""
        project = self.get_project()
        params = self.query_params(entities.PipelineListParams)
        pipelines = filter_pipelines(project.pipelines.select_related("project"), params)
        return self.paginated(pipelines, entities.PipelineBasicSerializer)


class PipelineCreateView(GitLabView):
    write_action = auth.START

    @extend_schema(
        operation_id="createPipeline",
        tags=["pipelines"],
        parameters=[PROJECT_ID],
        request=entities.PipelineCreateParams,
        responses={201: entities.PipelineSerializer, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request: Request, project_id: str) -> Response:
        """Start a pipeline on `ref` (source `api`) with optional variables."""
        project = self.get_project()
        params = self.body_params(entities.PipelineCreateParams)
        pipeline = services.start_pipeline(
            project,
            ref=params["ref"],
            sha=params.get("sha"),
            user=request.user,
            variables=[dict(variable) for variable in params.get("variables", [])],
        )
        return Response(render_pipeline(pipeline), status=status.HTTP_201_CREATED)


def render_pipeline(pipeline: Pipeline) -> ReturnDict:
    """A pipeline a service just changed, read again with what its entity shows."""
    pipeline = Pipeline.objects.select_related("project", "user").get(pk=pipeline.pk)
    return entities.PipelineSerializer(pipeline).data


class PipelineLatestView(GitLabView):
    @extend_schema(
        operation_id="getLatestPipeline",
        tags=["pipelines"],
        parameters=[PROJECT_ID, entities.PipelineLatestParams],
        responses={200: entities.PipelineSerializer, **error_responses(400, 401, 403, 404)},
    )
    def get(self, request: Request, project_id: str) -> Response:
        """The newest pipeline on `ref` (default: the default branch)."""
        project = self.get_project()
        params = self.query_params(entities.PipelineLatestParams)
        ref = params.get("ref") or project.default_branch
        pipeline = (
            project.pipelines.select_related("project", "user")
            .filter(ref=ref)
            .exclude(source=Pipeline.Source.PARENT_PIPELINE)
            .order_by("-id")
            .first()
        )
        if pipeline is None:
            raise NotFound("404 Not found")
        return Response(entities.PipelineSerializer(pipeline).data)


class PipelineDetailView(GitLabView):
    @extend_schema(
        operation_id="getPipeline",
        tags=["pipelines"],
        parameters=[PROJECT_ID, PIPELINE_ID],
        responses={200: entities.PipelineSerializer, **error_responses(400, 401, 403, 404)},
    )
    def get(self, request: Request, project_id: str, pipeline_id: str) -> Response:
        """Get one pipeline with its user, times, coverage and detailed status."""
        pipeline = self.get_pipeline(self.get_project())
        return Response(entities.PipelineSerializer(pipeline).data)

    @extend_schema(
        operation_id="deletePipeline",
        tags=["pipelines"],
        parameters=[PROJECT_ID, PIPELINE_ID],
        responses={204: None, **error_responses(400, 401, 403, 404)},
    )
    def delete(self, request: Request, project_id: str, pipeline_id: str) -> Response:
        """Delete a pipeline and its jobs."""
        pipeline = self.get_pipeline(self.get_project())
        services.delete_pipeline(pipeline)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PipelineRetryView(GitLabView):
    write_action = auth.START

    @extend_schema(
        operation_id="retryPipeline",
        tags=["pipelines"],
        summary="Retry the failed and canceled jobs of a pipeline",
        request=None,
        parameters=[PROJECT_ID, PIPELINE_ID],
        responses={201: entities.PipelineSerializer, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request: Request, project_id: str, pipeline_id: str) -> Response:
        """Retry the failed and canceled jobs; a finished pipeline runs again."""
        pipeline = self.get_pipeline(self.get_project())
        pipeline = services.retry_pipeline(pipeline, user=request.user)
        return Response(render_pipeline(pipeline), status=status.HTTP_201_CREATED)


class PipelineCancelView(GitLabView):
    @extend_schema(
        operation_id="cancelPipeline",
        tags=["pipelines"],
        summary="Cancel the jobs of a pipeline that can still be canceled",
        request=None,
        parameters=[PROJECT_ID, PIPELINE_ID],
        responses={200: entities.PipelineSerializer, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request: Request, project_id: str, pipeline_id: str) -> Response:
        """Cancel every job that can still be canceled."""
        pipeline = self.get_pipeline(self.get_project())
        pipeline = services.cancel_pipeline(pipeline)
        return Response(render_pipeline(pipeline), status=status.HTTP_200_OK)


class PipelineJobsView(GitLabView):
    pagination_class = GitLabPagination

    @extend_schema(
        operation_id="listPipelineJobs",
        tags=["pipelines"],
        parameters=[PROJECT_ID, PIPELINE_ID, entities.PipelineJobsParams, *LIST_HEADERS],
        responses={200: entities.JobSerializer(many=True), **error_responses(400, 401, 403, 404)},
    )
    def get(self, request: Request, project_id: str, pipeline_id: str) -> Response:
        """List a pipeline's jobs, newest first; latest attempts unless `include_retried`."""
        pipeline = self.get_pipeline(self.get_project())
        params = self.query_params(entities.PipelineJobsParams)
        jobs = pipeline.jobs.all()
        if not params["include_retried"]:
            jobs = jobs.filter(retried=False)
        if scope := params.get("scope"):
            jobs = jobs.filter(status__in=scope)
        jobs = jobs.select_related("pipeline__project", "user").order_by("-id")
        return self.paginated(jobs, entities.JobSerializer)


class PipelineVariablesView(GitLabView):
    @extend_schema(
        operation_id="listPipelineVariables",
        tags=["pipelines"],
        parameters=[PROJECT_ID, PIPELINE_ID],
        responses={
            200: entities.PipelineVariableSerializer(many=True),
            **error_responses(400, 401, 403, 404),
        },
    )
    def get(self, request: Request, project_id: str, pipeline_id: str) -> Response:
        """The variables the pipeline was started with."""
        pipeline = self.get_pipeline(self.get_project())
        return Response(entities.PipelineVariableSerializer(pipeline.variables, many=True).data)
