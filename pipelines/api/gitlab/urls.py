"""Routes of the GitLab v4-compatible API (mounted at /api/v4/); the most specific first."""

from django.urls import path

from pipelines.api.gitlab import commit_statuses, definitions, pipelines, projects
from pipelines.api.gitlab.converters import PROJECT

PIPELINE = PROJECT + "/pipelines/<str:pipeline_id>"

urlpatterns = [
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
    path(
        "projects/<bare_project_id:project_id>",
        projects.ProjectDetailView.as_view(),
        name="gitlab-project",
    ),
]
