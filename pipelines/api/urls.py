"""Routes of the GitLab v4-compatible API (mounted at /api/v4/).

A project's ``:id`` may be its URL-encoded path (``acme%2Fweb``), which arrives decoded
(``acme/web``); so the id matches lazily up to the fixed end of each route, and the most
specific routes come first. It matches any character, line breaks too: an id no project has
is a 404 from the view, not a 405 from the project route that ``.`` would leave it to.
"""

from django.urls import re_path

from pipelines.api import definitions, gitlab

PROJECT = r"^projects/(?P<project_id>[\s\S]+?)"
PIPELINE = PROJECT + r"/pipelines/(?P<pipeline_id>[^/]+)"

urlpatterns = [
    re_path(r"^projects$", gitlab.ProjectListView.as_view(), name="gitlab-projects"),
    re_path(
        PROJECT + r"/statuses/(?P<sha>[^/]+)$",
        gitlab.CommitStatusCreateView.as_view(),
        name="gitlab-commit-status-create",
    ),
    re_path(
        PROJECT + r"/repository/commits/(?P<sha>[^/]+)/statuses$",
        gitlab.CommitStatusListView.as_view(),
        name="gitlab-commit-statuses",
    ),
    re_path(
        PROJECT + r"/pipelines/latest$",
        gitlab.PipelineLatestView.as_view(),
        name="gitlab-pipeline-latest",
    ),
    re_path(PIPELINE + r"/jobs$", gitlab.PipelineJobsView.as_view(), name="gitlab-pipeline-jobs"),
    re_path(
        PIPELINE + r"/variables$",
        gitlab.PipelineVariablesView.as_view(),
        name="gitlab-pipeline-variables",
    ),
    re_path(
        PIPELINE + r"/retry$", gitlab.PipelineRetryView.as_view(), name="gitlab-pipeline-retry"
    ),
    re_path(
        PIPELINE + r"/cancel$", gitlab.PipelineCancelView.as_view(), name="gitlab-pipeline-cancel"
    ),
    re_path(PIPELINE + r"$", gitlab.PipelineDetailView.as_view(), name="gitlab-pipeline"),
    re_path(PROJECT + r"/pipelines$", gitlab.PipelineListView.as_view(), name="gitlab-pipelines"),
    re_path(
        PROJECT + r"/pipeline$", gitlab.PipelineCreateView.as_view(), name="gitlab-pipeline-create"
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
        gitlab.ProjectDetailView.as_view(),
        name="gitlab-project",
    ),
]
