"""Routes of the GitLab v4-compatible API (mounted at /api/v4/); the most specific first."""

from django.urls import path

from pipelines.api.gitlab import (
    commit_statuses,
    commits,
    definitions,
    instance,
    jobs,
    pipelines,
    projects,
)
from pipelines.api.gitlab.converters import PROJECT

PIPELINE = PROJECT + "/pipelines/<str:pipeline_id>"

urlpatterns = [
    path("user", instance.CurrentUserView.as_view(), name="gitlab-current-user"),
    path("version", instance.VersionView.as_view(), name="gitlab-version"),
    path("metadata", instance.MetadataView.as_view(), name="gitlab-metadata"),
    path("projects", projects.ProjectListView.as_view(), name="gitlab-projects"),
    path(
        PROJECT + "/statuses/<str:sha>",
        commit_statuses.CommitStatusCreateView.as_view(),
        name="gitlab-commit-status-create",
    ),
    path(
        PROJECT + "/repository/commits/<str:sha>/statuses",
        commit_statuses.CommitStatusListView.as_view(),
        name="gitlab-commit-statuses",
    ),
    path(
        PROJECT + "/repository/commits/<str:sha>",
        commits.CommitDetailView.as_view(),
        name="gitlab-commit",
    ),
    path(PIPELINE + "/bridges", jobs.PipelineBridgesView.as_view(), name="gitlab-pipeline-bridges"),
    path(
        PIPELINE + "/test_report_summary",
        jobs.PipelineTestReportSummaryView.as_view(),
        name="gitlab-pipeline-test-report-summary",
    ),
    path(
        PIPELINE + "/test_report",
        jobs.PipelineTestReportView.as_view(),
        name="gitlab-pipeline-test-report",
    ),
    path(
        PROJECT + "/pipelines/latest",
        pipelines.PipelineLatestView.as_view(),
        name="gitlab-pipeline-latest",
    ),
    path(PIPELINE + "/jobs", pipelines.PipelineJobsView.as_view(), name="gitlab-pipeline-jobs"),
    path(
        PIPELINE + "/variables",
        pipelines.PipelineVariablesView.as_view(),
        name="gitlab-pipeline-variables",
    ),
    path(PIPELINE + "/retry", pipelines.PipelineRetryView.as_view(), name="gitlab-pipeline-retry"),
    path(
        PIPELINE + "/cancel", pipelines.PipelineCancelView.as_view(), name="gitlab-pipeline-cancel"
    ),
    path(PIPELINE, pipelines.PipelineDetailView.as_view(), name="gitlab-pipeline"),
    path(PROJECT + "/pipelines", pipelines.PipelineListView.as_view(), name="gitlab-pipelines"),
    path(
        PROJECT + "/pipeline", pipelines.PipelineCreateView.as_view(), name="gitlab-pipeline-create"
    ),
    path(
        PROJECT + "/pipeline_definitions/<str:definition_id>",
        definitions.DefinitionDetailView.as_view(),
        name="pipeline-definition",
    ),
    path(
        PROJECT + "/pipeline_definitions",
        definitions.DefinitionListView.as_view(),
        name="pipeline-definitions",
    ),
    # After every pipeline route: a lazy :id would take "1/pipelines/2" of ".../2/jobs".
    path(PROJECT + "/jobs/<str:job_id>", jobs.ProjectJobView.as_view(), name="gitlab-job"),
    path(PROJECT + "/jobs", jobs.ProjectJobsView.as_view(), name="gitlab-jobs"),
    path(
        "projects/<bare_project_id:project_id>",
        projects.ProjectDetailView.as_view(),
        name="gitlab-project",
    ),
]
