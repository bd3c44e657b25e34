"""The hooks API's views: GitLab's routes, status codes and error bodies."""

from __future__ import annotations

import logging

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from hooks import limits, services
from hooks.api.entities import (
    HookEventSerializer,
    ProjectHookListItemSerializer,
    ProjectHookSerializer,
    ResendResultSerializer,
    RotatedSigningTokenSerializer,
    TestResultSerializer,
)
from hooks.api.params import (
    EVENTS_MAX_PER_PAGE,
    UNSUPPORTED_EVENT_FLAGS,
    CustomHeaderValueSerializer,
    HookCreateSerializer,
    HookEditSerializer,
    apply_hook_input,
    parse_status_filter,
)
from hooks.log_pages import StatusFilteredLog
from hooks.models import DeliveryAttempt, Event, Hook
from hooks.validators import (
    HookSettingError,
    check_custom_headers,
)
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

logger = logging.getLogger(__name__)

# GitLab's test triggers (ProjectHook.triggers); pipeline and job events exist here.
GITLAB_TEST_TRIGGERS = frozenset({"job_events", "pipeline_events", *UNSUPPORTED_EVENT_FLAGS}) - {
    "repository_update_events"
}
TESTED_KINDS = {"pipeline_events": Event.Kind.PIPELINE, "job_events": Event.Kind.BUILD}


# GitLab's wording for a refused setting, by field (API::Helpers::WebHooksHelpers#save_hook).
REFUSAL_PREFIX = {
    "url": "Invalid url given",
    "custom_headers": "Custom headers validation failed",
    "ref_filter": "Invalid ref filter given",
    "custom_webhook_template": "Invalid custom webhook template given",
    "url_variables": "Invalid url variables given",
}


def rate_limited(wait: int) -> Response:
    """GitLab's 429 (API::Helpers::RateLimiter), with the seconds until the count resets."""
    return Response(
        {"message": {"error": limits.RATE_LIMITED_MESSAGE}},
        status=status.HTTP_429_TOO_MANY_REQUESTS,
        headers={"Retry-After": str(wait)},
    )


def hook_refusal(problem: Exception) -> Response | None:
    """The hooks API's translator for the hooks' own refusals, in GitLab's words; None for
    the others, which the v4 API's handler answers."""
    if isinstance(problem, HookSettingError):
        prefix = REFUSAL_PREFIX.get(problem.field, "Invalid hook settings")
        return Response({"message": f"{prefix}: {problem.message}"}, status=422)
    if isinstance(problem, limits.HookLimitReached):
        # GitLab: render_validation_error!(hook, 422) of Limitable's base error.
        return Response({"message": {"base": [problem.message]}}, status=422)
    return None


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
    description="GitLab's test triggers; pipeline_events (the newest pipeline) and job_events"
    " (the newest job not in created) have something to send here.",
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

    def handle_exception(self, exc: Exception) -> Response:
        if (response := hook_refusal(exc)) is not None:
            return response
        return super().handle_exception(exc)

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

    def save_from_request(self, hook: Hook, *, creating: bool) -> None:
        """Validate and save; a refused setting raises (nothing written then)."""
        data = self.body_params(HookCreateSerializer if creating else HookEditSerializer)
        for flag in UNSUPPORTED_EVENT_FLAGS:
            data.pop(flag, None)
        if not creating and not data:
            raise InvalidParameter("No parameters provided")
        apply_hook_input(hook, data)
        services.save_hook(hook, given=data.keys())


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
        self.save_from_request(hook, creating=True)
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
        self.save_from_request(hook, creating=False)
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
        hook.custom_headers = check_custom_headers(headers)
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
    """``POST .../hooks/:hook_id/test/:trigger``: send the newest pipeline (``pipeline_events``)
    or job (``job_events``) now, synchronously."""

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
        if trigger not in TESTED_KINDS:
            return Response(
                {
                    "message": "Pipehook sends pipeline and job events only;"
                    f" {trigger} cannot be tested."
                },
                status=422,
            )
        # NoPipelineError is a DomainError: GitLab's 422 "Ensure the project has CI pipelines."
        # (or "CI jobs.").
        attempt = services.send_test_event(
            hook, user=request.user, object_kind=TESTED_KINDS[trigger]
        )
        if attempt.succeeded:
            return Response({"message": "201 Created"}, status=status.HTTP_201_CREATED)
        return Response({"message": describe_failure(attempt)}, status=422)


class HookSigningTokenRotateView(HooksView):
    """``POST .../hooks/:hook_id/signing_token/rotate`` (Pipehook's; GitLab has none): a new
    signing secret, returned once. The replaced one goes on signing every delivery beside it
    for HOOKS_SIGNING_SECRET_GRACE_SECONDS, so receivers can switch without missing one."""

    @extend_schema(
        operation_id="rotateProjectHookSigningToken",
        tags=TAGS,
        parameters=[PROJECT_ID, HOOK_ID],
        request=None,
        responses={201: RotatedSigningTokenSerializer, **errors(400, 401, 403, 404, 429)},
    )
    def post(self, request: Request, **kwargs) -> Response:
        hook = self.get_hook()
        if wait := limits.rate_limit_wait(limits.ROTATE, hook.project_id, request.user, request):
            return rate_limited(wait)
        rotated = services.rotate_signing_token(hook)
        return Response(
            RotatedSigningTokenSerializer(rotated).data,
            status=status.HTTP_201_CREATED,
            # The one response holding a secret: no cache or proxy keeps it.
            headers={"Cache-Control": "no-store"},
        )


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
        if selection := parse_status_filter(request):
            # Read through the (hook, status, id) index, however few or many match.
            attempts = StatusFilteredLog(attempts, selection)
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
        # Sent now, synchronously; DeliveryInProgress (a worker holds it) is a 409, and
        # HookURLChanged (GitLab's url_current?) a 422.
        resent = services.resend_delivery(attempt.delivery, user=request.user, log_entry=attempt)
        if resent.response_status is None:
            # GitLab: any HTTP answer is a completed resend; no answer at all is a 422.
            return Response({"message": resent.error or "the request got no response"}, status=422)
        return Response(
            {"response_status": resent.response_status, "id": resent.pk},
            status=status.HTTP_201_CREATED,
        )
