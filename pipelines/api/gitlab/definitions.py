"""Pipeline definitions over the v4 API: ``/projects/:id/pipeline_definitions``.

A project's named pipelines and workflows, with the variables they declare, are what the
GraphQL ``startExecution`` can start. Here they are listed, read, created, edited (``PUT``
changes only the fields given, as GitLab's edits do) and deleted, with the same tokens,
permission checks, error bodies and pagination headers as the rest of the v4 API: reading
needs ``read_api``/``view_project``, changing needs ``api``/``change_project`` on the project.
Each definition carries its ``graphql_id``, the ``entityId`` that starts it.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from pipelines import services
from pipelines.api.gitlab.entities import GitLabDateTimeField
from pipelines.api.gitlab.views import LIST_HEADERS, PROJECT_ID, GitLabView, error_responses
from pipelines.api.graphql.ids import definition_id
from pipelines.api.parsing import parse_id
from pipelines.errors import InvalidParameter, NotFound
from pipelines.models import PipelineDefinition, Project
from pipelines.variables import VariableType

DEFINITION_ID = OpenApiParameter(
    "definition_id",
    OpenApiTypes.INT,
    OpenApiParameter.PATH,
    description="The pipeline definition's id.",
)


ERRORS = error_responses(
    400,
    401,
    403,
    404,
    texts={
        400: "Bad parameter, or a name already taken",
        404: "Unknown project or pipeline definition",
    },
)


# --- Entities and parameters -------------------------------------------------------------


class VariableDeclarationSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    type = serializers.ChoiceField(choices=VariableType.values, default=VariableType.TEXT)
    required = serializers.BooleanField(default=False)


class PipelineDefinitionSerializer(serializers.ModelSerializer):
    project_id = serializers.IntegerField(read_only=True)
    graphql_id = serializers.SerializerMethodField(
        help_text="The entityId that starts it through GraphQL startExecution."
    )
    variables = VariableDeclarationSerializer(many=True)
    created_at = GitLabDateTimeField()
    updated_at = GitLabDateTimeField()

    class Meta:
        model = PipelineDefinition
        fields = (
            "id",
            "project_id",
            "graphql_id",
            "name",
            "kind",
            "description",
            "ref",
            "variables",
            "created_at",
            "updated_at",
        )

    def get_graphql_id(self, definition: PipelineDefinition) -> str:
        return definition_id(definition)


class DefinitionListParams(serializers.Serializer):
    kind = serializers.ChoiceField(choices=PipelineDefinition.Kind.choices, required=False)
    search = serializers.CharField(required=False, help_text="Part of the name.")


class DefinitionUpdateParams(serializers.Serializer):
    name = serializers.CharField(required=False, max_length=255)
    kind = serializers.ChoiceField(choices=PipelineDefinition.Kind.choices, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    ref = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=255,
        help_text="Branch or tag runs are created for (blank: the default branch).",
    )
    variables = serializers.ListField(child=VariableDeclarationSerializer(), required=False)


class DefinitionCreateParams(DefinitionUpdateParams):
    name = serializers.CharField(max_length=255)


# --- Views -------------------------------------------------------------------------------


class DefinitionListView(GitLabView):
    @extend_schema(
        operation_id="listPipelineDefinitions",
        tags=["pipeline definitions"],
        parameters=[PROJECT_ID, DefinitionListParams, *LIST_HEADERS],
        responses={200: PipelineDefinitionSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request, project_id: str) -> Response:
        project = self.get_project()
        params = self.query_params(DefinitionListParams)
        definitions = project.definitions.order_by("id")
        if kind := params.get("kind"):
            definitions = definitions.filter(kind=kind)
        if search := params.get("search"):
            definitions = definitions.filter(name__icontains=search)
        return self.paginated(definitions, PipelineDefinitionSerializer)

    @extend_schema(
        operation_id="createPipelineDefinition",
        tags=["pipeline definitions"],
        parameters=[PROJECT_ID],
        request=DefinitionCreateParams,
        responses={201: PipelineDefinitionSerializer, **ERRORS},
    )
    def post(self, request: Request, project_id: str) -> Response:
        project: Project = self.get_project()
        params = self.body_params(DefinitionCreateParams)
        params["variables"] = [dict(item) for item in params.get("variables", [])]
        definition = services.save_definition(PipelineDefinition(project=project), **params)
        return Response(
            PipelineDefinitionSerializer(definition).data, status=status.HTTP_201_CREATED
        )


class DefinitionDetailView(GitLabView):
    def get_definition(self, project: Project) -> PipelineDefinition:
        number = parse_id(self.kwargs["definition_id"])
        if number is None:
            raise InvalidParameter("definition_id is invalid")
        definition = project.definitions.filter(pk=number).first()
        if definition is None:
            raise NotFound("404 Pipeline Definition Not Found")
        return definition

    @extend_schema(
        operation_id="getPipelineDefinition",
        tags=["pipeline definitions"],
        parameters=[PROJECT_ID, DEFINITION_ID],
        responses={200: PipelineDefinitionSerializer, **ERRORS},
    )
    def get(self, request: Request, project_id: str, definition_id: str) -> Response:
        definition = self.get_definition(self.get_project())
        return Response(PipelineDefinitionSerializer(definition).data)

    @extend_schema(
        operation_id="editPipelineDefinition",
        tags=["pipeline definitions"],
        parameters=[PROJECT_ID, DEFINITION_ID],
        request=DefinitionUpdateParams,
        responses={200: PipelineDefinitionSerializer, **ERRORS},
    )
    def put(self, request: Request, project_id: str, definition_id: str) -> Response:
        definition = self.get_definition(self.get_project())
        params = self.body_params(DefinitionUpdateParams)
        if "variables" in params:
            params["variables"] = [dict(item) for item in params["variables"]]
        definition = services.save_definition(definition, **params)
        return Response(PipelineDefinitionSerializer(definition).data)

    @extend_schema(
        operation_id="patchPipelineDefinition",
        tags=["pipeline definitions"],
        parameters=[PROJECT_ID, DEFINITION_ID],
        request=DefinitionUpdateParams,
        responses={200: PipelineDefinitionSerializer, **ERRORS},
    )
    def patch(self, request: Request, project_id: str, definition_id: str) -> Response:
        return self.put(request, project_id, definition_id)

    @extend_schema(
        operation_id="deletePipelineDefinition",
        tags=["pipeline definitions"],
        parameters=[PROJECT_ID, DEFINITION_ID],
        responses={204: None, **ERRORS},
    )
    def delete(self, request: Request, project_id: str, definition_id: str) -> Response:
        definition = self.get_definition(self.get_project())
        services.delete_definition(definition)
        return Response(status=status.HTTP_204_NO_CONTENT)
