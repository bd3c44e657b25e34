"""GitLab's project hooks API: ``/api/v4/projects/:id/hooks``.

Field names, status codes and error bodies follow GitLab (``lib/api/project_hooks.rb``,
``lib/api/entities/project_hook.rb``, ``lib/api/hooks/*``), so GitLab clients
(python-gitlab, Terraform, scripts) manage Pipehook hooks unchanged. Pipehook sends
pipeline hooks only: GitLab's other ``*_events`` flags are accepted and always read false.

Secrets (``token``, ``signing_token``, custom header values) are write-only: responses say
only whether they are set, and the delivery log masks them again on the way out. The URL is
shown with its credentials and secret query values masked (``pipelines.redaction``).
"""

from __future__ import annotations

import json
import logging

from django.db import transaction
from django.db.models import Q
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from hooks import delivery as hook_delivery
from hooks import limits
from hooks.models import DeliveryAttempt, Hook
from hooks.validators import (
    HookSettingError,
    check_custom_headers,
    check_ref_filter,
    check_secret_token,
    check_signing_token,
    check_status_filter,
    check_url,
)
from pipelines.api.gitlab.entities import GitLabDateTimeField
from pipelines.api.gitlab.pagination import GitLabPagination
from pipelines.api.gitlab.views import (
    LIST_HEADERS,
    PROJECT_ID,
    GitLabErrorSerializer,
    GitLabView,
)
from pipelines.api.parsing import is_digits, parse_id
from pipelines.auth import MANAGE_HOOKS, grants_of
from pipelines.errors import InvalidParameter
from pipelines.models import Project
from pipelines.redaction import same_origin

logger = logging.getLogger(__name__)

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

# GitLab's test triggers (ProjectHook.triggers); only pipeline events exist here.
GITLAB_TEST_TRIGGERS = frozenset({"job_events", "pipeline_events", *UNSUPPORTED_EVENT_FLAGS}) - {
    "repository_update_events"
}

# The delivery log's status filters, as GitLab's WebHookLogsFinder reads them.
EVENT_STATUS_CLASSES = {
    "successful": Q(response_status__gte=200, response_status__lt=300),
    "client_failure": Q(response_status__gte=400, response_status__lt=500),
    # GitLab counts "internal error" (no response at all) as a server failure.
    "server_failure": Q(response_status__gte=500, response_status__lt=600)
    | Q(response_status__isnull=True),
}
EVENTS_MAX_PER_PAGE = 20  # GitLab: per_page 1..20 on the events endpoint

# GitLab's wording for a refused setting, by field (API::Helpers::WebHooksHelpers#save_hook).
REFUSAL_PREFIX = {
    "url": "Invalid url given",
    "custom_headers": "Custom headers validation failed",
    "ref_filter": "Invalid ref filter given",
}


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
        return hook_delivery.redact_headers(attempt.request_headers or {}, attempt.hook)

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
        if hook.pk and not same_origin(url, hook.redacted_url):
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


def rate_limited(wait: int) -> Response:
    """GitLab's 429 (API::Helpers::RateLimiter), with the seconds until the count resets."""
    return Response(
        {"message": {"error": limits.RATE_LIMITED_MESSAGE}},
        status=status.HTTP_429_TOO_MANY_REQUESTS,
        headers={"Retry-After": str(wait)},
    )


def refused(problem: HookSettingError) -> Response:
    prefix = REFUSAL_PREFIX.get(problem.field, "Invalid hook settings")
    return Response({"message": f"{prefix}: {problem.message}"}, status=422)


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


# --- Views ----------------------------------------------------------------------------

HOOK_ID = OpenApiParameter(
    "hook_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Hook id."
)
HEADER_KEY = OpenApiParameter(
    "key", OpenApiTypes.STR, OpenApiParameter.PATH, description="Custom header name."
)
TRIGGER = OpenApiParameter(
    "trigger",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    enum=sorted(GITLAB_TEST_TRIGGERS),
    description="GitLab's test triggers; only pipeline_events has something to send here.",
)
EVENT_ID = OpenApiParameter(
    "event_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Delivery log entry id."
)
EVENT_STATUS = OpenApiParameter(
    "status",
    OpenApiTypes.STR,
    description="Comma-separated HTTP status codes and/or successful, client_failure, "
    "server_failure (no response counts as a server failure).",
)
PAGE_PARAMETERS = [
    OpenApiParameter("page", OpenApiTypes.INT, description="Page number (default 1)."),
    OpenApiParameter("per_page", OpenApiTypes.INT, description="Items per page (default 20)."),
]
TAGS = ["project hooks"]
ERROR_TEXT = {
    400: "Malformed parameter or body",
    401: "Missing or unknown token",
    403: "The token lacks the scope, the manage_hooks permission or the project",
    404: "Unknown project, hook or event",
    409: "A worker is sending this delivery right now",
    422: "A setting is refused (URL, secret, header, filter), the project has as many "
    "hooks as it may have, or the request failed",
    429: "More than the limit of requests a minute by this user on this project; "
    "Retry-After says when to try again",
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: OpenApiResponse(GitLabErrorSerializer, ERROR_TEXT[code]) for code in codes}


class HooksView(GitLabView):
    """Project lookup and token checks of the v4 API, plus the right to the project's hooks."""

    # Reading takes read_api (GitLab's read_web_hook); changing takes the api scope.
    write_action = MANAGE_HOOKS

    def get_project(self) -> Project:
        project = super().get_project()
        # Reading hooks takes the read_api scope (checked above) and, as changing them does,
        # the manage_hooks permission (GitLab's read_web_hook is a maintainer's).
        grants = grants_of(self.token, self.request.user)
        if not grants.may(MANAGE_HOOKS, project):
            raise PermissionDenied(grants.refusal(MANAGE_HOOKS, project))
        return project

    def get_hook(self) -> Hook:
        project = self.get_project()
        raw = self.kwargs["hook_id"]
        hook_id = parse_id(raw)
        if hook_id is None:
            raise InvalidParameter("hook_id is invalid")
        hook = Hook.objects.filter(project=project, pk=hook_id).first()
        if hook is None:
            raise NotFound("404 Hook Not Found")
        return hook

    def save_from_request(self, hook: Hook, *, creating: bool) -> Response | None:
        """Validate and save; a Response when a setting is refused (nothing written then)."""
        data = self.body_params(HookCreateSerializer if creating else HookEditSerializer)
        for flag in UNSUPPORTED_EVENT_FLAGS:
            data.pop(flag, None)
        if not creating and not data:
            raise InvalidParameter("No parameters provided")
        try:
            apply_hook_input(hook, data)
        except HookSettingError as problem:
            return refused(problem)
        with transaction.atomic():
            if creating:
                try:
                    limits.check_room_for_hooks(hook.project_id)
                except limits.HookLimitReached as full:
                    # GitLab: render_validation_error!(hook, 422) of Limitable's base error.
                    return Response({"message": {"base": [full.message]}}, status=422)
            hook.save()
        return None


class HookListView(HooksView):
    @extend_schema(
        operation_id="listProjectHooks",
        tags=TAGS,
        parameters=[PROJECT_ID, *PAGE_PARAMETERS, *LIST_HEADERS],
        responses={200: ProjectHookListItemSerializer(many=True), **errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, **kwargs) -> Response:
        project = self.get_project()
        paginator = GitLabPagination()
        page = paginator.paginate_queryset(Hook.objects.filter(project=project), request, self)
        # GitLab's list leaves custom headers out (with_custom_headers: false).
        return paginator.get_paginated_response(ProjectHookListItemSerializer(page, many=True).data)

    @extend_schema(
        operation_id="createProjectHook",
        tags=TAGS,
        parameters=[PROJECT_ID],
        request=HookCreateSerializer,
        responses={201: ProjectHookSerializer, **errors(400, 401, 403, 404, 422)},
    )
    def post(self, request: Request, **kwargs) -> Response:
        project = self.get_project()
        hook = Hook(project=project)
        if refusal := self.save_from_request(hook, creating=True):
            return refusal
        logger.info("hook %s added to project %s", hook.pk, project.pk)
        return Response(ProjectHookSerializer(hook).data, status=status.HTTP_201_CREATED)


class HookDetailView(HooksView):
    @extend_schema(
        operation_id="getProjectHook",
        tags=TAGS,
        parameters=[PROJECT_ID, HOOK_ID],
        responses={200: ProjectHookSerializer, **errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, **kwargs) -> Response:
        return Response(ProjectHookSerializer(self.get_hook()).data)

    @extend_schema(
        operation_id="editProjectHook",
        tags=TAGS,
        parameters=[PROJECT_ID, HOOK_ID],
        request=HookEditSerializer,
        responses={200: ProjectHookSerializer, **errors(400, 401, 403, 404, 422)},
    )
    def put(self, request: Request, **kwargs) -> Response:
        hook = self.get_hook()
        if refusal := self.save_from_request(hook, creating=False):
            return refusal
        return Response(ProjectHookSerializer(hook).data)

    @extend_schema(
        operation_id="deleteProjectHook",
        tags=TAGS,
        parameters=[PROJECT_ID, HOOK_ID],
        responses={204: None, **errors(400, 401, 403, 404)},
    )
    def delete(self, request: Request, **kwargs) -> Response:
        hook = self.get_hook()
        hook_id, project_id = hook.pk, hook.project_id
        hook.delete()
        logger.info("hook %s removed from project %s", hook_id, project_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class HookCustomHeaderView(HooksView):
    """GitLab's ``PUT/DELETE .../hooks/:hook_id/custom_headers/:key``."""

    @extend_schema(
        operation_id="setProjectHookCustomHeader",
        tags=TAGS,
        parameters=[PROJECT_ID, HOOK_ID, HEADER_KEY],
        request=CustomHeaderValueSerializer,
        responses={204: None, **errors(400, 401, 403, 404, 422)},
    )
    def put(self, request: Request, key: str, **kwargs) -> Response:
        hook = self.get_hook()
        value = self.body_params(CustomHeaderValueSerializer)["value"]
        headers = {
            name: v for name, v in hook.custom_headers.items() if name.lower() != key.lower()
        }
        headers[key] = value
        try:
            hook.custom_headers = check_custom_headers(headers)
        except HookSettingError as problem:
            return refused(problem)
        hook.save(update_fields=["custom_headers", "updated_at"])
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        operation_id="deleteProjectHookCustomHeader",
        tags=TAGS,
        parameters=[PROJECT_ID, HOOK_ID, HEADER_KEY],
        responses={204: None, **errors(400, 401, 403, 404)},
    )
    def delete(self, request: Request, key: str, **kwargs) -> Response:
        hook = self.get_hook()
        if key not in hook.custom_headers:
            raise NotFound("404 Custom header Not Found")
        hook.custom_headers = {name: v for name, v in hook.custom_headers.items() if name != key}
        hook.save(update_fields=["custom_headers", "updated_at"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class HookTestView(HooksView):
    """``POST .../hooks/:hook_id/test/:trigger``: send the newest pipeline now, synchronously."""

    @extend_schema(
        operation_id="triggerProjectHookTest",
        tags=TAGS,
        parameters=[PROJECT_ID, HOOK_ID, TRIGGER],
        request=None,
        responses={201: TestResultSerializer, **errors(400, 401, 403, 404, 422, 429)},
    )
    def post(self, request: Request, trigger: str, **kwargs) -> Response:
        hook = self.get_hook()
        # Counted before anything else is checked, as GitLab's check_rate_limit! is.
        if wait := limits.rate_limit_wait(limits.TEST, hook.project_id, request.user, request):
            return rate_limited(wait)
        if trigger not in GITLAB_TEST_TRIGGERS:
            raise InvalidParameter("trigger does not have a valid value")
        if trigger != "pipeline_events":
            return Response(
                {"message": f"Pipehook sends pipeline events only; {trigger} cannot be tested."},
                status=422,
            )
        # NoPipelineError is a DomainError: GitLab's 422 "Ensure the project has CI pipelines."
        attempt = hook_delivery.send_test_event(hook, user=request.user)
        if attempt.succeeded:
            return Response({"message": "201 Created"}, status=status.HTTP_201_CREATED)
        return Response({"message": describe_failure(attempt)}, status=422)


def describe_failure(attempt: DeliveryAttempt) -> str:
    """GitLab answers a failed test with what the receiver said, or the connection error."""
    if attempt.response_status is None:
        return attempt.error or "the request got no response"
    body = attempt.response_body.strip()
    summary = f"Hook executed with HTTP {attempt.response_status}"
    return f"{summary}: {body[:500]}" if body else summary


class HookEventListView(HooksView):
    """``GET .../hooks/:hook_id/events``: the delivery log, one entry per attempt."""

    @extend_schema(
        operation_id="listProjectHookEvents",
        tags=TAGS,
        parameters=[PROJECT_ID, HOOK_ID, EVENT_STATUS, *PAGE_PARAMETERS, *LIST_HEADERS],
        responses={200: HookEventSerializer(many=True), **errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, **kwargs) -> Response:
        hook = self.get_hook()
        per_page = request.query_params.get("per_page")
        if per_page not in (None, "") and (
            not is_digits(per_page)
            or len(per_page) > 3
            or not 1 <= int(per_page) <= EVENTS_MAX_PER_PAGE
        ):
            raise InvalidParameter("per_page does not have a valid value")
        attempts = hook.attempts.select_related("hook", "delivery__event").order_by("-id")
        if condition := parse_status_filter(request):
            attempts = attempts.filter(condition)
        paginator = GitLabPagination()
        page = paginator.paginate_queryset(attempts, request, self)
        return paginator.get_paginated_response(HookEventSerializer(page, many=True).data)


class HookEventResendView(HooksView):
    """``POST .../hooks/:hook_id/events/:id/resend``: send that attempt's event again now."""

    @extend_schema(
        operation_id="resendProjectHookEvent",
        tags=TAGS,
        parameters=[PROJECT_ID, HOOK_ID, EVENT_ID],
        request=None,
        responses={201: ResendResultSerializer, **errors(400, 401, 403, 404, 409, 422, 429)},
    )
    def post(self, request: Request, event_id: str, **kwargs) -> Response:
        hook = self.get_hook()
        if wait := limits.rate_limit_wait(limits.RESEND, hook.project_id, request.user, request):
            return rate_limited(wait)
        attempt_id = parse_id(event_id)
        if attempt_id is None:
            raise InvalidParameter("hook_log_id is invalid")
        attempt = hook.attempts.select_related("delivery").filter(pk=attempt_id).first()
        if attempt is None:
            raise NotFound("404 Hook event Not Found")
        if attempt.delivery is None:
            return Response(
                {"message": "A test request cannot be resent; send a new test event instead."},
                status=422,
            )
        # Sent now, synchronously; DeliveryInProgress (a worker holds it) is a 409.
        resent = hook_delivery.resend_delivery(attempt.delivery, user=request.user)
        if resent.response_status is None:
            # GitLab: any HTTP answer is a completed resend; no answer at all is a 422.
            return Response({"message": resent.error or "the request got no response"}, status=422)
        return Response(
            {"response_status": resent.response_status, "id": resent.pk},
            status=status.HTTP_201_CREATED,
        )
