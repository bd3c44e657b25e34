"""What the hooks API reads: GitLab's hook parameters, and the delivery log's filters."""

from __future__ import annotations

from django.db.models import Q
from drf_spectacular.utils import (
    extend_schema_field,
)
from rest_framework import serializers
from rest_framework.request import Request

from hooks.models import Hook
from hooks.policy import NO_RESPONSE, response_class
from hooks.validators import (
    HookSettingError,
    check_custom_headers,
    check_ref_filter,
    check_secret_token,
    check_signing_token,
    check_status_filter,
    check_url,
)
from pipelines.api.parsing import is_digits
from pipelines.errors import InvalidParameter
from pipelines.redaction import same_origin

# GitLab's event flags that Pipehook never sends: accepted on input, always false on output.
UNSUPPORTED_EVENT_FLAGS = (
    "push_events",
    "tag_push_events",
    "merge_requests_events",
    "repository_update_events",
    "issues_events",
    "confidential_issues_events",
    "note_events",
    "confidential_note_events",
    "wiki_page_events",
    "deployment_events",
    "feature_flag_events",
    "releases_events",
    "milestone_events",
    "emoji_events",
    "resource_access_token_events",
    "resource_deploy_token_events",
    "vulnerability_events",
)


# The delivery log's status filters, as GitLab's WebHookLogsFinder reads them.
EVENT_STATUS_CLASSES = {
    "successful": response_class("successful"),
    "client_failure": response_class("client_failure"),
    # GitLab counts "internal error" (no response at all) as a server failure.
    "server_failure": response_class("server_failure") | response_class(NO_RESPONSE),
}
EVENTS_MAX_PER_PAGE = 20  # GitLab: per_page 1..20 on the events endpoint


# --- Input ----------------------------------------------------------------------------


class CustomHeaderSerializer(serializers.Serializer):
    key = serializers.CharField(max_length=255)
    # Optional, unlike GitLab: a client that read the hook back ([{"key": ...}]) and sends it
    # again unchanged (python-gitlab's save() does) keeps the stored value.
    value = serializers.CharField(
        allow_blank=True, trim_whitespace=False, max_length=2000, required=False
    )


class CustomHeaderValueSerializer(serializers.Serializer):
    value = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=2000)


@extend_schema_field({"type": "array", "items": {"type": "string"}})
class StringListField(serializers.Field):
    """A list of strings, or a comma-separated string as form-encoded clients send one."""

    def to_internal_value(self, data):
        if isinstance(data, str):
            return [part.strip() for part in data.split(",") if part.strip()]
        if isinstance(data, list) and all(isinstance(item, str) for item in data):
            return data
        raise serializers.ValidationError("must be a list of strings or a comma-separated string")

    def to_representation(self, value):
        return value


class HookEditSerializer(serializers.Serializer):
    """GitLab's ``common_hook_parameters`` that mean something here, plus Pipehook's filters."""

    url = serializers.CharField(max_length=2000, required=False)
    name = serializers.CharField(max_length=255, allow_blank=True, required=False)
    description = serializers.CharField(allow_blank=True, trim_whitespace=False, required=False)
    token = serializers.CharField(
        max_length=255, allow_blank=True, trim_whitespace=False, required=False
    )
    signing_token = serializers.CharField(max_length=255, allow_blank=True, required=False)
    pipeline_events = serializers.BooleanField(required=False)
    job_events = serializers.BooleanField(required=False)
    enable_ssl_verification = serializers.BooleanField(required=False)
    custom_headers = CustomHeaderSerializer(many=True, required=False)
    ref_filter_strategy = serializers.ChoiceField(
        choices=Hook.RefFilterStrategy.choices, required=False
    )
    ref_filter = serializers.CharField(
        max_length=255, allow_blank=True, trim_whitespace=False, required=False
    )
    status_filter = StringListField(required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for flag in UNSUPPORTED_EVENT_FLAGS:
            # Still type-checked, so a malformed value is an error; then ignored.
            self.fields[flag] = serializers.BooleanField(required=False)


class HookCreateSerializer(HookEditSerializer):
    url = serializers.CharField(max_length=2000)


def apply_hook_input(hook: Hook, data: dict) -> None:
    """Copy validated input onto an unsaved hook. Raises HookSettingError; saves nothing."""
    if "url" in data:
        url = check_url(data["url"], stored=hook.url if hook.pk else "")
        if hook.pk and not same_origin(url, hook.url):
            # GitLab's reset_token / reset_custom_headers: secrets set for one receiver are
            # never sent to another one unless given again.
            hook.token = ""
            hook.custom_headers = {}
        hook.url = url
    for plain in ("name", "description", "pipeline_events", "job_events"):
        if plain in data:
            setattr(hook, plain, data[plain])
    if "enable_ssl_verification" in data:
        hook.enable_ssl_verification = data["enable_ssl_verification"]
    if "token" in data:
        hook.token = check_secret_token(data["token"])  # empty removes it, as in GitLab
    if "signing_token" in data:
        value = data["signing_token"]
        hook.signing_token = check_signing_token(value) if value else ""
    if "custom_headers" in data:
        # GitLab merges on edit; DELETE .../custom_headers/:key removes one.
        merged = dict(hook.custom_headers or {})
        for header in data["custom_headers"]:
            key = header["key"]
            same = [name for name in merged if name.lower() == key.lower()]
            if "value" in header:
                value = header["value"]
            elif same:
                value = merged[same[0]]
            else:
                raise HookSettingError("custom_headers", f"header {key} needs a value")
            for name in same:
                del merged[name]
            merged[key] = value
        hook.custom_headers = check_custom_headers(merged)
    if "ref_filter_strategy" in data:
        hook.ref_filter_strategy = data["ref_filter_strategy"]
    if "ref_filter" in data:
        hook.ref_filter = data["ref_filter"]
    hook.ref_filter = check_ref_filter(hook.ref_filter_strategy, hook.ref_filter)
    if "status_filter" in data:
        hook.status_filter = check_status_filter(data["status_filter"])


def parse_status_filter(request: Request) -> Q | None:
    """``status=500,client_failure`` (or repeated / ``status[]``) as one OR'd condition."""
    raw = request.query_params.getlist("status") + request.query_params.getlist("status[]")
    values = [part.strip() for item in raw for part in item.split(",") if part.strip()]
    if not values:
        return None
    condition = Q(pk__in=[])
    for value in values:
        if value in EVENT_STATUS_CLASSES:
            condition |= EVENT_STATUS_CLASSES[value]
        elif is_digits(value) and len(value) == 3 and 100 <= int(value) <= 599:
            condition |= Q(response_status=int(value))
        else:
            raise InvalidParameter("status does not have a valid value")
    return condition
