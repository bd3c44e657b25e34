"""What the hooks API reads: GitLab's hook parameters, and the delivery log's filters."""

from __future__ import annotations

from drf_spectacular.utils import (
    extend_schema_field,
)
from rest_framework import serializers
from rest_framework.request import Request

from hooks.log_pages import StatusSelection
from hooks.models import Hook
from hooks.services import url_changed
from hooks.validators import (
    HookSettingError,
    check_branch_filter,
    check_custom_headers,
    check_custom_webhook_template,
    check_ref_filter,
    check_secret_token,
    check_signing_token,
    check_status_filter,
    check_url,
)
from pipelines.api.parsing import is_digits
from pipelines.errors import InvalidParameter

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
    "successful": StatusSelection.of_class("successful"),
    "client_failure": StatusSelection.of_class("client_failure"),
    # GitLab counts "internal error" (no response at all) as a server failure.
    "server_failure": StatusSelection.of_class("server_failure")
    | StatusSelection(no_response=True),
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
    pipeline_events = serializers.BooleanField(
        required=False, help_text="Send Pipeline Hooks (object_kind pipeline)."
    )
    job_events = serializers.BooleanField(
        required=False,
        help_text="Send Job Hooks (object_kind build): a job's creation, pending, running and"
        " finish, in one order with the pipeline's events.",
    )
    enable_ssl_verification = serializers.BooleanField(required=False)
    custom_headers = CustomHeaderSerializer(many=True, required=False)
    ref_filter_strategy = serializers.ChoiceField(
        choices=Hook.RefFilterStrategy.choices, required=False
    )
    ref_filter = serializers.CharField(
        max_length=255, allow_blank=True, trim_whitespace=False, required=False
    )
    status_filter = StringListField(required=False)
    custom_webhook_template = serializers.CharField(
        allow_blank=True, allow_null=True, trim_whitespace=False, required=False
    )
    push_events_branch_filter = serializers.CharField(
        allow_blank=True, allow_null=True, trim_whitespace=False, required=False
    )
    branch_filter_strategy = serializers.ChoiceField(
        choices=Hook.RefFilterStrategy.choices, required=False
    )
    # GitLab's {var} placeholders in the URL: not supported; an empty list (what a GitLab
    # client reads back and sends again) is accepted.
    url_variables = serializers.ListField(
        child=serializers.DictField(), allow_empty=True, allow_null=True, required=False
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for flag in UNSUPPORTED_EVENT_FLAGS:
            # Still type-checked, so a malformed value is an error; then ignored.
            self.fields[flag] = serializers.BooleanField(required=False)


class HookCreateSerializer(HookEditSerializer):
    url = serializers.CharField(max_length=2000)


def apply_hook_input(hook: Hook, data: dict) -> None:
    """Copy validated input onto an unsaved hook. Raises HookSettingError; saves nothing."""
    moved = False
    if "url" in data:
        url = check_url(data["url"], stored=hook.url if hook.pk else "")
        # The secrets not given again are cleared by services.save_hook; the custom headers
        # given are the only ones the new URL gets.
        moved = url_changed(hook, url)
        if moved or not hook.pk:  # the same URL keeps its sealed form: nothing to open later
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
        # Given (or emptied) here, it replaces the secret at once, earlier ones included;
        # POST .../signing_token/rotate keeps the current one valid a while instead.
        hook.replace_signing_token(check_signing_token(value) if value else "")
    if "custom_headers" in data:
        # GitLab merges on edit; DELETE .../custom_headers/:key removes one.
        merged = {} if moved else dict(hook.custom_headers or {})
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
    if data.get("url_variables"):
        raise HookSettingError(
            "url_variables",
            "url_variables are not supported by Pipehook; put the values in the url",
        )
    if "custom_webhook_template" in data:
        hook.custom_webhook_template = check_custom_webhook_template(
            data["custom_webhook_template"] or ""
        )
    if "branch_filter_strategy" in data:
        hook.branch_filter_strategy = data["branch_filter_strategy"]
    if "push_events_branch_filter" in data:
        hook.push_events_branch_filter = data["push_events_branch_filter"] or ""
    hook.push_events_branch_filter = check_branch_filter(
        hook.branch_filter_strategy, hook.push_events_branch_filter
    )


def parse_status_filter(request: Request) -> StatusSelection | None:
    """``status=500,client_failure`` (or repeated / ``status[]``): the statuses of any."""
    raw = request.query_params.getlist("status") + request.query_params.getlist("status[]")
    values = [part.strip() for item in raw for part in item.split(",") if part.strip()]
    if not values:
        return None
    selection = StatusSelection()
    for value in values:
        if value in EVENT_STATUS_CLASSES:
            selection |= EVENT_STATUS_CLASSES[value]
        elif is_digits(value) and len(value) == 3 and 100 <= int(value) <= 599:
            selection |= StatusSelection.of([range(int(value), int(value) + 1)])
        else:
            raise InvalidParameter("status does not have a valid value")
    return selection
