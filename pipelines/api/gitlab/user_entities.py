"""The GitLab v4 entities of users, and the fields every entity is built of.

``GitLabDateTimeField`` writes GitLab's API times; ``ConstantField`` is a field GitLab
exposes that has no meaning here, always with GitLab's empty value.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers

from pipelines.api.gitlab.rendering import FieldsBuiltOnce
from pipelines.api.times import gitlab_time


class GitLabDateTimeField(serializers.DateTimeField):
    def to_representation(self, value):
        return gitlab_time(value)


# Schemas of constants that are null (a link GitLab shows as null when there is none...).
NULLABLE_STRING = {"type": "string", "nullable": True}
NULLABLE_INTEGER = {"type": "integer", "nullable": True}
NULLABLE_OBJECT = {"type": "object", "nullable": True}
NULLABLE_URI = {"type": "string", "format": "uri", "nullable": True}


class ConstantField(serializers.Field):
    """A field GitLab exposes that means nothing here, always with GitLab's empty value.

    Its schema follows the value (a boolean, an integer, a string, a list of strings); a
    null constant names its own (``NULLABLE_STRING``...).
    """

    def __init__(self, value: Any, schema: dict | None = None, **kwargs):
        super().__init__(source="*", read_only=True, **kwargs)
        self.value = value
        self.schema = schema or _schema_of(value)

    def to_representation(self, instance) -> Any:
        return self.value


def _schema_of(value: Any) -> dict:
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, list):
        return {"type": "array", "items": {"type": "string"}}
    raise TypeError(f"a constant {value!r} needs its schema")


class ConstantFieldSchema(OpenApiSerializerFieldExtension):
    """How the OpenAPI schema shows a ``ConstantField``: the schema of its value."""

    target_class = ConstantField

    def map_serializer_field(self, auto_schema, direction) -> dict:
        return dict(self.target.schema)


# --- Users -------------------------------------------------------------------------------


class UserBasicSerializer(FieldsBuiltOnce, serializers.ModelSerializer):
    """``API::Entities::UserBasic``."""

    name = serializers.SerializerMethodField()
    state = serializers.SerializerMethodField()
    locked = ConstantField(False)
    avatar_url = ConstantField(None, NULLABLE_URI)
    web_url = serializers.SerializerMethodField()

    class Meta:
        model = get_user_model()
        fields = ["id", "username", "name", "state", "locked", "avatar_url", "web_url"]

    def get_name(self, user) -> str:
        return user.get_full_name() or user.get_username()

    def get_state(self, user) -> str:
        return "active" if user.is_active else "blocked"

    def get_web_url(self, user) -> str:
        return f"{settings.PIPEHOOK_EXTERNAL_URL}/{user.get_username()}"


class UserSerializer(UserBasicSerializer):
    """``API::Entities::User``, as jobs show their user."""

    created_at = GitLabDateTimeField(source="date_joined")
    bio = ConstantField(None, NULLABLE_STRING)
    location = ConstantField(None, NULLABLE_STRING)
    public_email = ConstantField("")
    linkedin = ConstantField("")
    twitter = ConstantField("")
    website_url = ConstantField("")
    organization = ConstantField("")

    class Meta(UserBasicSerializer.Meta):
        fields = [
            *UserBasicSerializer.Meta.fields,
            "created_at",
            "bio",
            "location",
            "public_email",
            "linkedin",
            "twitter",
            "website_url",
            "organization",
        ]


class UserPublicSerializer(UserSerializer):
    """``API::Entities::UserPublic``: what ``GET /user`` shows the user the token acts for.

    Pipehook keeps no sign-in history, themes or identities; those are GitLab's empty
    values. ``is_admin`` is shown (as GitLab's ``UserWithAdmin`` does) for a superuser.
    """

    bot = ConstantField(False)
    job_title = ConstantField("")
    pronouns = ConstantField(None, NULLABLE_STRING)
    work_information = ConstantField(None, NULLABLE_STRING)
    last_sign_in_at = GitLabDateTimeField(source="last_login", allow_null=True)
    confirmed_at = GitLabDateTimeField(source="date_joined")
    last_activity_on = serializers.SerializerMethodField()
    email = serializers.EmailField()
    theme_id = ConstantField(1)
    color_scheme_id = ConstantField(1)
    projects_limit = ConstantField(0)
    current_sign_in_at = GitLabDateTimeField(source="last_login", allow_null=True)
    identities = ConstantField([])
    can_create_group = ConstantField(False)
    can_create_project = serializers.SerializerMethodField()
    two_factor_enabled = ConstantField(False)
    external = ConstantField(False)
    private_profile = ConstantField(False)
    commit_email = serializers.EmailField(source="email")
    is_admin = serializers.BooleanField(source="is_superuser")

    class Meta(UserSerializer.Meta):
        fields = [
            *UserSerializer.Meta.fields,
            "bot",
            "job_title",
            "pronouns",
            "work_information",
            "last_sign_in_at",
            "confirmed_at",
            "last_activity_on",
            "email",
            "theme_id",
            "color_scheme_id",
            "projects_limit",
            "current_sign_in_at",
            "identities",
            "can_create_group",
            "can_create_project",
            "two_factor_enabled",
            "external",
            "private_profile",
            "commit_email",
            "is_admin",
        ]

    def get_last_activity_on(self, user) -> str | None:
        """A date, as GitLab's (``2024-05-01``)."""
        return user.last_login.date().isoformat() if user.last_login else None

    def get_can_create_project(self, user) -> bool:
        return user.has_perm("pipelines.add_project")
