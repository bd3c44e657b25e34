"""GitLab's pipelines API: list, start, get, retry, cancel and delete pipelines, and list
their jobs and variables (``lib/api/ci/pipelines.rb``).

``POST /projects/:id/pipeline`` takes an optional ``sha``; without it the commit of the
newest pipeline on ``ref`` is used (``services.start_pipeline``), and with neither the answer
is GitLab's ``400 {"message": {"base": ["Reference not found"]}}``. Retrying a pipeline with
nothing to retry (201) or cancelling one with nothing to cancel (200) answers with the
unchanged pipeline, as GitLab does: python-gitlab and go-gitlab then return it rather than
raise, and a bulk "cancel every running pipeline" does not stop at one that just finished.
"""

from __future__ import annotations

from django.db.models import Max, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.serializer_helpers import ReturnDict

from pipelines import auth, services
from pipelines.api.gitlab import entities
from pipelines.api.gitlab.pagination import GitLabPagination
from pipelines.api.gitlab.params import (
    PipelineCreateParams,
    PipelineJobsParams,
    PipelineLatestParams,
    PipelineListParams,
)
from pipelines.api.gitlab.views import (
    LIST_HEADERS,
    PIPELINE_ID,
    PROJECT_ID,
    GitLabView,
    error_responses,
)
from pipelines.errors import NotFound
from pipelines.models import FINISHED_STATUSES, Pipeline, Status


def filter_pipelines(pipelines: QuerySet, params: dict) -> QuerySet:
    """``Ci::PipelinesFinder``: scope, status, ref, sha, source, user, name, times, order."""
    scope = params.get("scope")
    if scope == "running":
        pipelines = pipelines.filter(status=Status.RUNNING)
    elif scope == "pending":
        pipelines = pipelines.filter(status=Status.PENDING)
    elif scope == "finished":
        pipelines = pipelines.filter(status__in=FINISHED_STATUSES)
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
    if value := params.get("created_after"):
        pipelines = pipelines.filter(created_at__gt=value)
    if value := params.get("created_before"):
        pipelines = pipelines.filter(created_at__lt=value)
    prefix = "-" if params.get("sort", "desc") == "desc" else ""
    order_by = params.get("order_by", "id")
    return pipelines.order_by(f"{prefix}{order_by}", f"{prefix}id")


class PipelineListView(GitLabView):
    pagination_class = GitLabPagination

    @extend_schema(
        operation_id="listPipelines",
        tags=["pipelines"],
        parameters=[PROJECT_ID, PipelineListParams, *LIST_HEADERS],
        responses={
            200: entities.PipelineBasicSerializer(many=True),
            **error_responses(400, 401, 403, 404),
        },
    )
    def get(self, request: Request, project_id: str) -> Response:
        """List a project's pipelines, newest first unless ordered otherwise."""
        project = self.get_project()
        params = self.query_params(PipelineListParams)
        pipelines = filter_pipelines(project.pipelines.select_related("project"), params)
        return self.paginated(pipelines, entities.PipelineBasicSerializer)


class PipelineCreateView(GitLabView):
    write_action = auth.START

    @extend_schema(
        operation_id="createPipeline",
        tags=["pipelines"],
        parameters=[PROJECT_ID],
        request=PipelineCreateParams,
        responses={201: entities.PipelineSerializer, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request: Request, project_id: str) -> Response:
        """Start a pipeline on `ref` (source `api`) with optional variables."""
        project = self.get_project()
        params = self.body_params(PipelineCreateParams)
        pipeline = services.start_pipeline(
            project,
            ref=params["ref"],
            sha=params.get("sha"),
            user=request.user,
            variables=[dict(variable) for variable in params.get("variables", [])],
        )
        return Response(render_pipeline(pipeline), status=status.HTTP_201_CREATED)


def render_pipeline(pipeline: Pipeline) -> ReturnDict:
    """A pipeline as the command that changed it returned it (its project, user and coverage
    loaded): nothing is read once the command has committed."""
    return entities.PipelineSerializer(pipeline).data


class PipelineLatestView(GitLabView):
    @extend_schema(
        operation_id="getLatestPipeline",
        tags=["pipelines"],
        parameters=[PROJECT_ID, PipelineLatestParams],
        responses={200: entities.PipelineSerializer, **error_responses(400, 401, 403, 404)},
    )
    def get(self, request: Request, project_id: str) -> Response:
        """The newest pipeline on `ref` (default: the default branch)."""
        project = self.get_project()
        params = self.query_params(PipelineLatestParams)
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
        """Retry the failed and canceled jobs; a finished pipeline runs again.

        With nothing to retry (or an `external` pipeline, whose CI retries), the answer is
        the unchanged pipeline, as GitLab's.
        """
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
        """Cancel every job that can still be canceled.

        With nothing to cancel (or an `external` pipeline, which its CI cancels), the answer
        is the unchanged pipeline, as GitLab's.
        """
        pipeline = self.get_pipeline(self.get_project())
        pipeline = services.cancel_pipeline(pipeline)
        return Response(render_pipeline(pipeline), status=status.HTTP_200_OK)


class PipelineJobsView(GitLabView):
    pagination_class = GitLabPagination

    @extend_schema(
        operation_id="listPipelineJobs",
        tags=["pipelines"],
        parameters=[PROJECT_ID, PIPELINE_ID, PipelineJobsParams, *LIST_HEADERS],
        responses={200: entities.JobSerializer(many=True), **error_responses(400, 401, 403, 404)},
    )
    def get(self, request: Request, project_id: str, pipeline_id: str) -> Response:
        """List a pipeline's jobs, newest first; latest attempts unless `include_retried`."""
        pipeline = self.get_pipeline(self.get_project())
        params = self.query_params(PipelineJobsParams)
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
