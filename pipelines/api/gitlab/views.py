"""What every view of the GitLab v4-compatible API shares, and how the schema shows it.

Thin edges over the commands: each view reads GitLab's parameters (``params``), checks the
token against the project, calls a command and answers with GitLab's entity
(``entities``), status code and error body (``errors``). Tools written for GitLab's API
(python-gitlab, glab, CI integrations posting commit statuses) work unchanged; where GitLab
needs a git repository there is none, so ``:id`` is the numeric id or the URL-encoded
``namespace/path``.
"""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from pipelines import auth
from pipelines.api.gitlab.pagination import GitLabPagination, pagination_header_parameters
from pipelines.api.gitlab.params import check_path_value, plain_params, validate_params
from pipelines.api.parsing import FormParser, JSONParser, check_request_text, is_digits, parse_id
from pipelines.errors import InvalidParameter, NotFound, ProjectHidden
from pipelines.models import AccessToken, Pipeline, Project
from pipelines.prepared import PreparedQuery


def find_project(project_id: str) -> Project | None:
    """A project by numeric id or by ``namespace/path`` (case-insensitive, as GitLab)."""
    if is_digits(project_id):
        number = parse_id(project_id)
        if number is None:
            return None
        found = PROJECT_BY_ID(number)
        return found[0] if found else None
    namespace, _, path = project_id.rpartition("/")
    if not namespace or not path:
        return None
    return Project.objects.filter(namespace__iexact=namespace, path__iexact=path).first()


# Every request naming a project by id reads it: its SQL built once (pipelines.prepared).
PROJECT_BY_ID = PreparedQuery(lambda pk: Project.objects.filter(pk=pk))


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
        return validate_params(serializer_class, plain_params(self.request.query_params))

    def body_params(self, serializer_class: type[serializers.Serializer]) -> dict:
        """Query string and body together, the body winning, as Grape merges them."""
        params = plain_params(self.request.query_params)
        body = self.request.data
        if hasattr(body, "lists"):
            params.update(plain_params(body))
        elif isinstance(body, dict):
            params.update(body)
        else:
            raise InvalidParameter("the request body must be a JSON object")
        return validate_params(serializer_class, params)

    def get_project(self) -> Project:
        project_id = check_path_value("id", self.kwargs["project_id"])
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
        pipelines = project.pipelines.select_related("project", "user")
        return self.get_by_id(pipelines, "pipeline_id")

    def get_by_id(self, queryset: QuerySet, name: str):
        """The row of ``queryset`` the path's ``name`` (an id) names: 400 if it is not an
        id, GitLab's 404 if there is none."""
        raw = self.kwargs[name]
        if not is_digits(raw):
            raise InvalidParameter(f"{name} is invalid")
        number = parse_id(raw)  # None: too large to be any row's id
        found = queryset.filter(pk=number).first() if number is not None else None
        if found is None:
            raise NotFound("404 Not found")
        return found

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
