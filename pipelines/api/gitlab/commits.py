"""GitLab's ``GET /projects/:id/repository/commits/:sha`` (``lib/api/commits.rb``).

There is no repository here: a commit is what the CIs reported of it. ``:sha`` is a commit
a pipeline was reported for (its sha, or 7 characters or more of it), a branch or tag
(its newest pipeline's commit), or else any full-length hex sha: python-gitlab's
documented ``project.commits.get(sha).statuses.create(...)`` reports the first status of a
commit this way, as it would to GitLab, whose repository knows the commit already.
Anything else is GitLab's ``404 Commit Not Found``.
"""

from __future__ import annotations

import re

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from pipelines.api.gitlab import entities
from pipelines.api.gitlab.params import check_path_value
from pipelines.api.gitlab.views import PROJECT_ID, SHA, GitLabView, error_responses
from pipelines.errors import NotFound
from pipelines.models import Pipeline, Project

FULL_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
SHORT_SHA = re.compile(r"^[0-9a-f]{7,64}$")


def find_commit(project: Project, name: str) -> Pipeline | None:
    """The newest pipeline of the commit ``name`` names, an unsaved one for a full sha that
    nothing was reported for, or None."""
    pipelines = project.pipelines.select_related("project").order_by("-id")
    lowered = name.lower()
    if SHORT_SHA.match(lowered):
        known = pipelines.filter(sha__startswith=lowered).first()
        if known is not None:
            return known
    on_ref = pipelines.filter(ref=name).first()
    if on_ref is not None:
        return on_ref
    if FULL_SHA.match(lowered):
        return Pipeline(project=project, sha=lowered)
    return None


class CommitDetailView(GitLabView):
    @extend_schema(
        operation_id="getCommit",
        tags=["commits"],
        parameters=[PROJECT_ID, SHA],
        responses={200: entities.CommitDetailSerializer, **error_responses(400, 401, 403, 404)},
    )
    def get(self, request: Request, project_id: str, sha: str) -> Response:
        """A commit as the CIs reported it, with its newest pipeline."""
        project = self.get_project()
        pipeline = find_commit(project, check_path_value("sha", sha, max_length=255))
        if pipeline is None:
            raise NotFound("404 Commit Not Found")
        return Response(entities.CommitDetailSerializer(pipeline).data)
