"""What the hooks API shows: GitLab's ``Entities::ProjectHook`` and ``Entities::WebHookLog``."""

from __future__ import annotations

import json

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    extend_schema_field,
)
from rest_framework import serializers

from hooks.headers import redact_headers
from hooks.models import DeliveryAttempt, Hook
from pipelines.api.gitlab.entities import GitLabDateTimeField

# --- Output ---------------------------------------------------------------------------


class NeverSentField(serializers.BooleanField):
    """One of GitLab's event flags for events Pipehook never sends: always false."""

    def __init__(self):
        super().__init__(source="*", read_only=True, help_text="Always false in Pipehook.")

    def to_representation(self, value) -> bool:
        return False


@extend_schema_field({"type": "string", "nullable": True})
class ConstantField(serializers.Field):
    """A GitLab field with no meaning here, present with GitLab's empty value."""

    def __init__(self, value, **kwargs):
        super().__init__(source="*", read_only=True, **kwargs)
        self.value = value

    def to_representation(self, instance):
        return self.value


@extend_schema_field(OpenApiTypes.BOOL)
class IsSetField(serializers.Field):
    """Whether a secret is set; the secret itself never leaves."""

    def __init__(self, **kwargs):
        super().__init__(read_only=True, **kwargs)

    def to_representation(self, value) -> bool:
        return bool(value)


class ProjectHookListItemSerializer(serializers.Serializer):
    """Entities::ProjectHook as GitLab lists it (without custom headers), plus Pipehook's
    filters and health. Secrets only say whether they are set."""

    id = serializers.IntegerField(read_only=True)
    url = serializers.CharField(
        source="redacted_url",
        read_only=True,
        help_text="Credentials and secret query values masked (*****, [FILTERED]); sent back"
        " unchanged, the stored ones are kept.",
    )
    name = serializers.CharField(read_only=True)
    description = serializers.CharField(read_only=True)
    created_at = GitLabDateTimeField(read_only=True)
    project_id = serializers.IntegerField(read_only=True)
    pipeline_events = serializers.BooleanField(read_only=True)
    job_events = serializers.BooleanField(read_only=True)
    push_events = NeverSentField()
    tag_push_events = NeverSentField()
    merge_requests_events = NeverSentField()
    repository_update_events = NeverSentField()
    issues_events = NeverSentField()
    confidential_issues_events = NeverSentField()
    note_events = NeverSentField()
    confidential_note_events = NeverSentField()
    wiki_page_events = NeverSentField()
    deployment_events = NeverSentField()
    feature_flag_events = NeverSentField()
    releases_events = NeverSentField()
    milestone_events = NeverSentField()
    emoji_events = NeverSentField()
    resource_access_token_events = NeverSentField()
    resource_deploy_token_events = NeverSentField()
    vulnerability_events = NeverSentField()
    enable_ssl_verification = serializers.BooleanField(read_only=True)
    alert_status = serializers.ChoiceField(choices=Hook.AlertStatus.choices, read_only=True)
    disabled_until = GitLabDateTimeField(
        read_only=True, allow_null=True, help_text="Null unless the hook is resting."
    )
    push_events_branch_filter = ConstantField(None, help_text="Pipehook has no push events.")
    branch_filter_strategy = ConstantField("all_branches", help_text="See ref_filter_strategy.")
    custom_webhook_template = ConstantField(None, help_text="Payloads are GitLab's, unchanged.")
    token_present = IsSetField(source="token")
    signing_token_present = IsSetField(source="signing_token")
    ref_filter_strategy = serializers.ChoiceField(
        choices=Hook.RefFilterStrategy.choices, read_only=True
    )
    ref_filter = serializers.CharField(read_only=True)
    status_filter = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="Pipeline statuses delivered; empty means every status.",
    )
    recent_failures = serializers.IntegerField(read_only=True)


class CustomHeaderNameSerializer(serializers.Serializer):
    key = serializers.CharField(read_only=True)


class ProjectHookSerializer(ProjectHookListItemSerializer):
    """Entities::ProjectHook for one hook: with custom header names, never their values."""

    custom_headers = serializers.SerializerMethodField()

    @extend_schema_field(CustomHeaderNameSerializer(many=True))
    def get_custom_headers(self, hook: Hook) -> list[dict]:
        return [{"key": name} for name in (hook.custom_headers or {})]


class HookEventSerializer(serializers.Serializer):
    """Entities::WebHookLog for one attempt, plus where it sits in Pipehook's outbox."""

    id = serializers.IntegerField(read_only=True)
    url = serializers.CharField(source="redacted_url", read_only=True)
    trigger = ConstantField("pipeline_hooks")
    request_headers = serializers.SerializerMethodField()
    request_data = serializers.SerializerMethodField()
    response_headers = serializers.DictField(child=serializers.CharField(), read_only=True)
    response_body = serializers.CharField(read_only=True)
    execution_duration = serializers.SerializerMethodField(help_text="Seconds.")
    response_status = serializers.SerializerMethodField(
        help_text='The HTTP status as a string, or "internal error" when none came back.'
    )
    created_at = GitLabDateTimeField(read_only=True)
    internal_error_message = serializers.SerializerMethodField()
    response_body_truncated = serializers.BooleanField(read_only=True)
    delivery_id = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="Null for a test request."
    )
    attempt_number = serializers.IntegerField(read_only=True)
    attempt_trigger = serializers.CharField(source="trigger", read_only=True)
    succeeded = serializers.BooleanField(read_only=True)

    @extend_schema_field(serializers.DictField(child=serializers.CharField()))
    def get_request_headers(self, attempt: DeliveryAttempt) -> dict[str, str]:
        # Masked again on the way out (the delivery code's rule), whatever the row holds.
        return redact_headers(attempt.request_headers or {}, attempt.hook)

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_request_data(self, attempt: DeliveryAttempt):
        # A delivery's body is its event's; a test request keeps its own.
        body = attempt.delivery.event.body if attempt.delivery_id else attempt.request_body
        try:
            return json.loads(body) if body else None
        except ValueError:
            return body

    def get_execution_duration(self, attempt: DeliveryAttempt) -> float:
        return round(attempt.duration_ms / 1000, 3)

    def get_response_status(self, attempt: DeliveryAttempt) -> str:
        # GitLab logs a request that got no response as "internal error".
        status_code = attempt.response_status
        return str(status_code) if status_code is not None else "internal error"

    def get_internal_error_message(self, attempt: DeliveryAttempt) -> str | None:
        return attempt.error or None


class TestResultSerializer(serializers.Serializer):
    message = serializers.CharField(help_text='"201 Created"')


class ResendResultSerializer(serializers.Serializer):
    response_status = serializers.IntegerField(help_text="What the receiver answered.")
    id = serializers.IntegerField(help_text="The new event (attempt) in the delivery log.")
