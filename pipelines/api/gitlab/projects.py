"""GitLab's projects API: list, create and get projects (``lib/api/projects.rb``)."""

from __future__ import annotations

from django.db.models import Q
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from pipelines import auth, services
from pipelines.api.gitlab import entities
from pipelines.api.gitlab.pagination import GitLabPagination
from pipelines.api.gitlab.params import ProjectCreateParams, ProjectListParams
from pipelines.api.gitlab.views import (
    LIST_HEADERS,
    PROJECT_ID,
    GitLabView,
    error_responses,
)
from pipelines.errors import Forbidden, InvalidParameter


class ProjectListView(GitLabView):
    pagination_class = GitLabPagination
    write_action = auth.CREATE_PROJECT

    @extend_schema(
        operation_id="listProjects",
        tags=["projects"],
        parameters=[ProjectListParams, *LIST_HEADERS],
        responses={200: entities.ProjectSerializer(many=True), **error_responses(400, 401, 403)},
    )
    def get(self, request: Request) -> Response:
        """List the projects the caller may read."""
        params = self.query_params(ProjectListParams)
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
        request=ProjectCreateParams,
        responses={201: entities.ProjectSerializer, **error_responses(400, 401, 403)},
    )
    def post(self, request: Request) -> Response:
        """Create a project from `name` and/or `path` (one is needed)."""
        if self.token is not None and self.token.projects.exists():
            raise Forbidden("this token is limited to some projects and cannot create new ones")
        params = self.body_params(ProjectCreateParams)
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
