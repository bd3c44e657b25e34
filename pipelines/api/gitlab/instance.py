"""What a GitLab client asks of the instance itself: who am I, which version
(``lib/api/users.rb`` ``GET /user``, ``lib/api/version.rb``, ``lib/api/metadata.rb``).

python-gitlab's ``gl.auth()`` reads ``GET /user`` and ``gl.version()`` ``GET /version``;
glab and the GitLab tools check the version before they use an endpoint.
"""

from __future__ import annotations

from importlib import metadata

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from pipelines.api.gitlab import entities
from pipelines.api.gitlab.views import GitLabView, error_responses

# The GitLab release whose API and hook payloads this one follows.
GITLAB_COMPATIBLE_VERSION = "18.10.0"


def pipehook_version() -> str:
    try:
        return metadata.version("pipehook")
    except metadata.PackageNotFoundError:
        return "0.1.0"


def version_fields() -> dict:
    # GitLab's revision is its commit; Pipehook's names the product and its release.
    return {"version": GITLAB_COMPATIBLE_VERSION, "revision": f"pipehook-{pipehook_version()}"}


class VersionSerializer(serializers.Serializer):
    version = serializers.CharField()
    revision = serializers.CharField()


class KasSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    externalUrl = serializers.CharField(allow_null=True)  # noqa: N815 (GitLab's key)
    externalK8sProxyUrl = serializers.CharField(allow_null=True)  # noqa: N815
    version = serializers.CharField(allow_null=True)


class MetadataSerializer(VersionSerializer):
    kas = KasSerializer()
    enterprise = serializers.BooleanField()


class CurrentUserView(GitLabView):
    @extend_schema(
        operation_id="getCurrentUser",
        tags=["users"],
        responses={200: entities.UserPublicSerializer, **error_responses(401, 403)},
    )
    def get(self, request: Request) -> Response:
        """The user the token acts for (GitLab's `UserPublic`)."""
        return Response(entities.UserPublicSerializer(request.user).data)


class VersionView(GitLabView):
    @extend_schema(
        operation_id="getVersion",
        tags=["metadata"],
        responses={200: VersionSerializer, **error_responses(401, 403)},
    )
    def get(self, request: Request) -> Response:
        """The GitLab version this API follows, and Pipehook's release as the revision."""
        return Response(version_fields())


class MetadataView(GitLabView):
    @extend_schema(
        operation_id="getMetadata",
        tags=["metadata"],
        responses={200: MetadataSerializer, **error_responses(401, 403)},
    )
    def get(self, request: Request) -> Response:
        """GitLab's instance metadata: the version, no Kubernetes agent server, not EE."""
        kas = {"enabled": False, "externalUrl": None, "externalK8sProxyUrl": None, "version": None}
        return Response({**version_fields(), "kas": kas, "enterprise": False})
