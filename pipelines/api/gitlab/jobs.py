"""GitLab's jobs API for a project, a pipeline's bridges and its test reports
(``lib/api/ci/jobs.rb``, ``lib/api/ci/pipelines.rb``).

Pipehook has no trigger jobs (bridges) and no test reports: the CIs that report here send
neither, so those answers are GitLab's empty ones, for a pipeline that exists.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from pipelines.api.gitlab import entities
from pipelines.api.gitlab.pagination import GitLabPagination
from pipelines.api.gitlab.params import JobsParams
from pipelines.api.gitlab.views import (
    LIST_HEADERS,
    PIPELINE_ID,
    PROJECT_ID,
    GitLabView,
    error_responses,
)
from pipelines.models import Job

JOB_ID = OpenApiParameter("job_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Job id.")


class ProjectJobsView(GitLabView):
    pagination_class = GitLabPagination

    @extend_schema(
        operation_id="listProjectJobs",
        tags=["jobs"],
        parameters=[PROJECT_ID, JobsParams, *LIST_HEADERS],
        responses={200: entities.JobSerializer(many=True), **error_responses(400, 401, 403, 404)},
    )
    def get(self, request: Request, project_id: str) -> Response:
        """Every job of the project, retried attempts included, newest first."""
        project = self.get_project()
        params = self.query_params(JobsParams)
        jobs = Job.objects.filter(pipeline__project=project)
        if scope := params.get("scope"):
            jobs = jobs.filter(status__in=scope)
        jobs = jobs.select_related("pipeline__project", "user").order_by("-id")
        return self.paginated(jobs, entities.JobSerializer)


class ProjectJobView(GitLabView):
    @extend_schema(
        operation_id="getJob",
        tags=["jobs"],
        parameters=[PROJECT_ID, JOB_ID],
        responses={200: entities.JobSerializer, **error_responses(400, 401, 403, 404)},
    )
    def get(self, request: Request, project_id: str, job_id: str) -> Response:
        """One job of the project."""
        jobs = Job.objects.filter(pipeline__project=self.get_project())
        job = self.get_by_id(jobs.select_related("pipeline__project", "user"), "job_id")
        return Response(entities.JobSerializer(job).data)


class PipelineBridgesView(GitLabView):
    pagination_class = GitLabPagination

    @extend_schema(
        operation_id="listPipelineBridges",
        tags=["pipelines"],
        parameters=[PROJECT_ID, PIPELINE_ID, JobsParams, *LIST_HEADERS],
        responses={
            200: entities.JobSerializer(many=True),
            **error_responses(400, 401, 403, 404),
        },
    )
    def get(self, request: Request, project_id: str, pipeline_id: str) -> Response:
        """A pipeline's trigger jobs: none here, where no job triggers another pipeline."""
        self.get_pipeline(self.get_project())
        self.query_params(JobsParams)
        return self.paginated(Job.objects.none(), entities.JobSerializer)


class TestReportSerializer(serializers.Serializer):
    """GitLab's ``TestReportEntity``."""

    total_time = serializers.FloatField()
    total_count = serializers.IntegerField()
    success_count = serializers.IntegerField()
    failed_count = serializers.IntegerField()
    skipped_count = serializers.IntegerField()
    error_count = serializers.IntegerField()
    test_suites = serializers.ListField(child=serializers.DictField())


class TestReportTotalSerializer(serializers.Serializer):
    time = serializers.FloatField()
    count = serializers.IntegerField()
    success = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()
    error = serializers.IntegerField()
    suite_error = serializers.CharField(allow_null=True)


class TestReportSummarySerializer(serializers.Serializer):
    """GitLab's ``TestReportSummaryEntity``."""

    total = TestReportTotalSerializer()
    test_suites = serializers.ListField(child=serializers.DictField())


EMPTY_TEST_REPORT = {
    "total_time": 0,
    "total_count": 0,
    "success_count": 0,
    "failed_count": 0,
    "skipped_count": 0,
    "error_count": 0,
    "test_suites": [],
}
EMPTY_TEST_REPORT_SUMMARY = {
    "total": {
        "time": 0,
        "count": 0,
        "success": 0,
        "failed": 0,
        "skipped": 0,
        "error": 0,
        "suite_error": None,
    },
    "test_suites": [],
}


class PipelineTestReportView(GitLabView):
    @extend_schema(
        operation_id="getPipelineTestReport",
        tags=["pipelines"],
        parameters=[PROJECT_ID, PIPELINE_ID],
        responses={200: TestReportSerializer, **error_responses(400, 401, 403, 404)},
    )
    def get(self, request: Request, project_id: str, pipeline_id: str) -> Response:
        """The pipeline's test report: empty, as GitLab's for a pipeline without one."""
        self.get_pipeline(self.get_project())
        return Response(EMPTY_TEST_REPORT)


class PipelineTestReportSummaryView(GitLabView):
    @extend_schema(
        operation_id="getPipelineTestReportSummary",
        tags=["pipelines"],
        parameters=[PROJECT_ID, PIPELINE_ID],
        responses={200: TestReportSummarySerializer, **error_responses(400, 401, 403, 404)},
    )
    def get(self, request: Request, project_id: str, pipeline_id: str) -> Response:
        """The pipeline's test report summary: empty, as GitLab's without test reports."""
        self.get_pipeline(self.get_project())
        return Response(EMPTY_TEST_REPORT_SUMMARY)
