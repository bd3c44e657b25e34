"""Routes of the GitLab v4-compatible API (mounted at /api/v4/).

A project's ``:id`` may be its URL-encoded path (``acme%2Fweb``), which arrives decoded
(``acme/web``); so the id matches lazily up to the fixed end of each route, and the most
specific routes come first. It matches any character, line breaks too: an id no project has
is a 404 from the view, not a 405 from the project route that ``.`` would leave it to.
"""

from django.urls import re_path

from pipelines.api.gitlab import commit_statuses, definitions, pipelines, projects

PROJECT = r"^projects/(?P<project_id>[\s\S]+?)"
PIPELINE = PROJECT + r"/pipelines/(?P<pipeline_id>[^/]+)"

urlpatterns = [
    re_path(r"^projects$", projects.ProjectListView.as_view(), name="gitlab-projects"),
    re_path(
        PROJECT + r"/statuses/(?P<sha>[^/]+)$",
        commit_statuses.CommitStatusCreateView.as_view(),
        name="gitlab-commit-status-create",
    ),
    re_path(
        PROJECT + r"/repository/commits/(?P<sha>[^/]+)/statuses$",
        commit_statuses.CommitStatusListView.as_view(),
        name="gitlab-commit-statuses",
    ),
    re_path(
        PROJECT + r"/pipelines/latest$",
        pipelines.PipelineLatestView.as_view(),
        name="gitlab-pipeline-latest",
    ),
    re_path(
        PIPELINE + r"/jobs$", pipelines.PipelineJobsView.as_view(), name="gitlab-pipeline-jobs"
    ),
    re_path(
        PIPELINE + r"/variables$",
        pipelines.PipelineVariablesView.as_view(),
        name="gitlab-pipeline-variables",
    ),
    re_path(
        PIPELINE + r"/retry$", pipelines.PipelineRetryView.as_view(), name="gitlab-pipeline-retry"
    ),
    re_path(
        PIPELINE + r"/cancel$",
        pipelines.PipelineCancelView.as_view(),
        name="gitlab-pipeline-cancel",
    ),
    re_path(PIPELINE + r"$", pipelines.PipelineDetailView.as_view(), name="gitlab-pipeline"),
    re_path(
        PROJECT + r"/pipelines$", pipelines.PipelineListView.as_view(), name="gitlab-pipelines"
    ),
    re_path(
        PROJECT + r"/pipeline$",
        pipelines.PipelineCreateView.as_view(),
        name="gitlab-pipeline-create",
    ),
    re_path(
        PROJECT + r"/pipeline_definitions/(?P<definition_id>[^/]+)$",
        definitions.DefinitionDetailView.as_view(),
        name="pipeline-definition",
    ),
    re_path(
        PROJECT + r"/pipeline_definitions$",
        definitions.DefinitionListView.as_view(),
        name="pipeline-definitions",
    ),
    re_path(
        r"^projects/(?P<project_id>[^/]+(?:/[^/]+)*)$",
        projects.ProjectDetailView.as_view(),
        name="gitlab-project",
    ),
]
