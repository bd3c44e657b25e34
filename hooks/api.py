"""GitLab's project hooks API: ``/api/v4/projects/:id/hooks``.

Field names, status codes and error bodies follow GitLab (``lib/api/project_hooks.rb``,
``lib/api/entities/project_hook.rb``, ``lib/api/hooks/*``), so GitLab clients
(python-gitlab, Terraform, scripts) manage Pipehook hooks unchanged. Pipehook sends
pipeline hooks only: GitLab's other ``*_events`` flags are accepted and always read false.

Secrets (``token``, ``signing_token``, custom header values) are write-only: responses say
only whether they are set, and the delivery log masks them again on the way out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from django.db import transaction
from django.db.models import Q
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from hooks import delivery as hook_delivery
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
from pipelines.api.errors import ParameterError
from pipelines.api.gitlab import MAX_ID, GitLabView
from pipelines.api.pagination import GitLabPagination
from pipelines.api.serializers import gitlab_time
from pipelines.auth import MANAGE_HOOKS, token_has_permission
from pipelines.models import Project

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


def hook_json(hook: Hook, *, with_custom_headers: bool = True) -> dict:
    """Entities::ProjectHook plus Pipehook's filters. Secrets only say whether they are set."""
    data = {
        "id": hook.pk,
        "url": hook.url,
        "name": hook.name,
        "description": hook.description,
        "created_at": gitlab_time(hook.created_at),
        "project_id": hook.project_id,
        "pipeline_events": hook.pipeline_events,
        "job_events": hook.job_events,
        **dict.fromkeys(UNSUPPORTED_EVENT_FLAGS, False),
        "enable_ssl_verification": hook.enable_ssl_verification,
        "alert_status": hook.alert_status,
        "disabled_until": gitlab_time(hook.disabled_until),
        "push_events_branch_filter": None,
        "branch_filter_strategy": "all_branches",
        "custom_webhook_template": None,
        "token_present": bool(hook.token),
        "signing_token_present": bool(hook.signing_token),
        "ref_filter_strategy": hook.ref_filter_strategy,
        "ref_filter": hook.ref_filter,
        "status_filter": list(hook.status_filter or []),
        "recent_failures": hook.recent_failures,
    }
    if with_custom_headers:
        # GitLab's entity shows the names only; values are never shown back.
        data["custom_headers"] = [{"key": name} for name in (hook.custom_headers or {})]
    return data


def redact_headers(headers: Mapping[str, str] | None, hook: Hook) -> dict[str, str]:
    """Mask secret header values again on the way out, whatever the log row holds."""
    secret_names = {"x-gitlab-token"} | {name.lower() for name in (hook.custom_headers or {})}
    return {
        name: ("[REDACTED]" if name.lower() in secret_names else value)
        for name, value in (headers or {}).items()
    }


def hook_event_json(attempt: DeliveryAttempt, hook: Hook) -> dict:
    """Entities::WebHookLog for one attempt, plus where it sits in Pipehook's outbox."""
    # A delivery's body is its event's; a test request keeps its own.
    body = attempt.delivery.event.body if attempt.delivery_id is not None else attempt.request_body
    try:
        request_data = json.loads(body) if body else None
    except ValueError:
        request_data = body
    return {
        "id": attempt.pk,
        "url": attempt.url,
        "trigger": "pipeline_hooks",
        "request_headers": redact_headers(attempt.request_headers, hook),
        "request_data": request_data,
        "response_headers": attempt.response_headers,
        "response_body": attempt.response_body,
        "execution_duration": round(attempt.duration_ms / 1000, 3),
        # GitLab logs a request that got no response as "internal error".
        "response_status": (
            str(attempt.response_status)
            if attempt.response_status is not None
            else "internal error"
        ),
        "created_at": gitlab_time(attempt.created_at),
        "internal_error_message": attempt.error or None,
        "response_body_truncated": attempt.response_body_truncated,
        "delivery_id": attempt.delivery_id,
        "attempt_number": attempt.attempt_number,
        "attempt_trigger": attempt.trigger,
        "succeeded": attempt.succeeded,
    }


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
        choices=Hook.RefFilterStrategy.values, required=False
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
        hook.url = check_url(data["url"])
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
        elif value.isdigit() and 100 <= int(value) <= 599:
            condition |= Q(response_status=int(value))
        else:
            raise ParameterError("status does not have a valid value")
    return condition


# --- Views ----------------------------------------------------------------------------


class HooksView(GitLabView):
    """Project lookup and token checks of the v4 API, plus the right to the project's hooks."""

    # Reading takes read_api (GitLab's read_web_hook); changing takes the api scope.
    write_action = MANAGE_HOOKS

    def get_project(self) -> Project:
        project = super().get_project()
        token = self.token
        # The read check above is about scopes; hooks also need the manage_hooks permission.
        if token is not None and not token_has_permission(token, MANAGE_HOOKS, project):
            raise PermissionDenied(
                "the token's user groups do not grant the 'pipelines.manage_hooks' permission"
                f" on project {project.path_with_namespace}"
            )
        return project

    def get_hook(self) -> Hook:
        project = self.get_project()
        raw = self.kwargs["hook_id"]
        if not raw.isdigit() or int(raw) > MAX_ID:
            raise ParameterError("hook_id is invalid")
        hook = Hook.objects.filter(project=project, pk=int(raw)).first()
        if hook is None:
            raise NotFound("404 Hook Not Found")
        return hook

    def save_from_request(self, hook: Hook, *, creating: bool) -> Response | None:
        """Validate and save; a Response when a setting is refused (nothing written then)."""
        data = self.body_params(HookCreateSerializer if creating else HookEditSerializer)
        for flag in UNSUPPORTED_EVENT_FLAGS:
            data.pop(flag, None)
        if not creating and not data:
            raise ParameterError("No parameters provided")
        try:
            apply_hook_input(hook, data)
        except HookSettingError as problem:
            return refused(problem)
        with transaction.atomic():
            hook.save()
        return None


class HookListView(HooksView):
    def get(self, request: Request, **kwargs) -> Response:
        project = self.get_project()
        paginator = GitLabPagination()
        page = paginator.paginate_queryset(Hook.objects.filter(project=project), request, self)
        # GitLab's list leaves custom headers out (with_custom_headers: false).
        return paginator.get_paginated_response(
            [hook_json(hook, with_custom_headers=False) for hook in page]
        )

    def post(self, request: Request, **kwargs) -> Response:
        project = self.get_project()
        hook = Hook(project=project)
        if refusal := self.save_from_request(hook, creating=True):
            return refusal
        logger.info("hook %s added to project %s", hook.pk, project.pk)
        return Response(hook_json(hook), status=status.HTTP_201_CREATED)


class HookDetailView(HooksView):
    def get(self, request: Request, **kwargs) -> Response:
        return Response(hook_json(self.get_hook()))

    def put(self, request: Request, **kwargs) -> Response:
        hook = self.get_hook()
        if refusal := self.save_from_request(hook, creating=False):
            return refusal
        return Response(hook_json(hook))

    def delete(self, request: Request, **kwargs) -> Response:
        hook = self.get_hook()
        hook_id, project_id = hook.pk, hook.project_id
        hook.delete()
        logger.info("hook %s removed from project %s", hook_id, project_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class HookCustomHeaderView(HooksView):
    """GitLab's ``PUT/DELETE .../hooks/:hook_id/custom_headers/:key``."""

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

    def delete(self, request: Request, key: str, **kwargs) -> Response:
        hook = self.get_hook()
        if key not in hook.custom_headers:
            raise NotFound("404 Custom header Not Found")
        hook.custom_headers = {name: v for name, v in hook.custom_headers.items() if name != key}
        hook.save(update_fields=["custom_headers", "updated_at"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class HookTestView(HooksView):
    """``POST .../hooks/:hook_id/test/:trigger``: send the newest pipeline now, synchronously."""

    def post(self, request: Request, trigger: str, **kwargs) -> Response:
        hook = self.get_hook()
        if trigger not in GITLAB_TEST_TRIGGERS:
            raise ParameterError("trigger does not have a valid value")
        if trigger != "pipeline_events":
            return Response(
                {"message": f"Pipehook sends pipeline events only; {trigger} cannot be tested."},
                status=422,
            )
        # NoPipelineError is a ServiceError: GitLab's 422 "Ensure the project has CI pipelines."
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

    def get(self, request: Request, **kwargs) -> Response:
        hook = self.get_hook()
        per_page = request.query_params.get("per_page")
        if per_page not in (None, "") and (
            not per_page.isdigit() or not 1 <= int(per_page) <= EVENTS_MAX_PER_PAGE
        ):
            raise ParameterError("per_page does not have a valid value")
        attempts = hook.attempts.select_related("delivery__event").order_by("-id")
        if condition := parse_status_filter(request):
            attempts = attempts.filter(condition)
        paginator = GitLabPagination()
        page = paginator.paginate_queryset(attempts, request, self)
        return paginator.get_paginated_response([hook_event_json(a, hook) for a in page])


class HookEventResendView(HooksView):
    """``POST .../hooks/:hook_id/events/:id/resend``: send that attempt's event again now."""

    def post(self, request: Request, event_id: str, **kwargs) -> Response:
        hook = self.get_hook()
        if not event_id.isdigit() or int(event_id) > MAX_ID:
            raise ParameterError("hook_log_id is invalid")
        attempt = hook.attempts.select_related("delivery").filter(pk=int(event_id)).first()
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
