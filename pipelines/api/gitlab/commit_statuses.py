"""GitLab's commit status API: external CI reports a job's state for a commit
(``lib/api/commit_statuses.rb``).

A status for a commit nobody reported creates its pipeline (source ``external``); the list
of statuses for such a commit is empty rather than a 404.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from pipelines import commit_statuses as statuses
from pipelines.api.gitlab import entities
from pipelines.api.gitlab.pagination import GitLabPagination
from pipelines.api.gitlab.params import (
    CommitStatusCreateParams,
    CommitStatusListParams,
    check_path_value,
)
from pipelines.api.gitlab.views import (
    LIST_HEADERS,
    PROJECT_ID,
    SHA,
    GitLabView,
    error_responses,
)
from pipelines.models import Job


class CommitStatusCreateView(GitLabView):
    @extend_schema(
        operation_id="createCommitStatus",
        tags=["commit statuses"],
        summary="Set the status of a commit (a job in the pipeline for that commit)",
        parameters=[PROJECT_ID, SHA],
        request=CommitStatusCreateParams,
        responses={201: entities.CommitStatusSerializer, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request: Request, project_id: str, sha: str) -> Response:
        """Create or update the job `name` in the pipeline for `sha` and `ref`.

        The pipeline is created (source `external`) when there is none. Parameters may come
        in the query string or the body.
        """
        project = self.get_project()
        sha = check_path_value("sha", sha, max_length=64)
        params = self.body_params(CommitStatusCreateParams)
        reported = statuses.ReportedCommitStatus(
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
        # The job as saved, with its pipeline and user: nothing to read again.
        job = statuses.report_commit_status(project, reported, user=request.user)
        return Response(entities.CommitStatusSerializer(job).data, status=status.HTTP_201_CREATED)


class CommitStatusListView(GitLabView):
    pagination_class = GitLabPagination

    @extend_schema(
        operation_id="listCommitStatuses",
        tags=["commit statuses"],
        parameters=[PROJECT_ID, SHA, CommitStatusListParams, *LIST_HEADERS],
        responses={
            200: entities.CommitStatusSerializer(many=True),
            **error_responses(400, 401, 403, 404),
        },
    )
    def get(self, request: Request, project_id: str, sha: str) -> Response:
        """List the statuses (jobs) reported for a commit; latest attempts unless `all`."""
        project = self.get_project()
        sha = check_path_value("sha", sha)
        params = self.query_params(CommitStatusListParams)
        jobs = Job.objects.filter(pipeline__project=project, pipeline__sha=sha)
        if pipeline_id := params.get("pipeline_id"):
            jobs = jobs.filter(pipeline_id=pipeline_id)
        if not params["all"]:
            jobs = jobs.filter(retried=False)
        if ref := params.get("ref"):
            jobs = jobs.filter(pipeline__ref=ref)
        if stage := params.get("stage"):
            jobs = jobs.filter(stage=stage)
        if name := params.get("name"):
            jobs = jobs.filter(name=name)
        prefix = "-" if params["sort"] == "desc" else ""
        jobs = jobs.select_related("pipeline__project", "user").order_by(
            f"{prefix}{params['order_by']}", f"{prefix}id"
        )
        return self.paginated(jobs, entities.CommitStatusSerializer)
