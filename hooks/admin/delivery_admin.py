"""The outbox's pages: deliveries with their resend button, the attempts' log, events."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.core.paginator import InvalidPage
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme

from hooks import limits, services
from hooks.admin.common import (
    ReadOnlyAdmin,
    badge,
    http_badge,
    may_manage_hooks,
    pretty_json,
    rate_limited_page,
)
from hooks.headers import redact_headers
from hooks.log_pages import StatusFilteredLog, StatusSelection
from hooks.models import Delivery, DeliveryAttempt, Event, Hook
from hooks.policy import NO_RESPONSE, RESPONSE_CLASSES, response_class
from hooks.queue import queue_resends_on_commit
from hooks.sealing import SecretUnreadable
from pipelines.api.parsing import is_digits

# --- Filters ----------------------------------------------------------------------------


class ResponseClassFilter(admin.SimpleListFilter):
    """GitLab's delivery log filters: successful, client failure, server failure."""

    title = "response"
    parameter_name = "response"
    field = "response_status"

    def lookups(self, request, model_admin):
        return [
            ("successful", "2xx successful"),
            ("client_failure", "4xx client failure"),
            ("server_failure", "5xx server failure"),
            ("no_response", "no response (timeout, refused, blocked)"),
        ]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() in (*RESPONSE_CLASSES, NO_RESPONSE):
            return queryset.filter(response_class(self.value(), self.field))
        return queryset

    @classmethod
    def selection(cls, value: str | None) -> StatusSelection | None:
        """The statuses ``value`` (the filter's parameter) selects, or None for all."""
        if value in RESPONSE_CLASSES:
            return StatusSelection.of_class(value)
        if value == NO_RESPONSE:
            return StatusSelection(no_response=True)
        return None


class LastResponseClassFilter(ResponseClassFilter):
    title = "last response"
    field = "last_response_status"

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() == "no_response":
            # A delivery that has not been tried yet is not a "no response".
            return queryset.filter(last_response_status__isnull=True, attempt_count__gt=0)
        return super().queryset(request, queryset)


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "hook",
        "pipeline_event",
        "sequence",
        "status_badge",
        "attempt_count",
        "last_response",
        "created_at",
        "next_attempt_at",
        "finished_at",
    )
    list_display_links = ("id", "pipeline_event")
    list_filter = (
        "status",
        "event__object_kind",
        LastResponseClassFilter,
        "hook__project",
        "hook",
    )
    search_fields = ("hook__name", "idempotency_key", "event__uuid")
    list_select_related = ("hook", "event")
    ordering = ("-id",)
    actions = ["resend_selected"]
    change_form_template = "admin/hooks/delivery/change_form.html"

    @admin.display(description="event")
    def pipeline_event(self, delivery: Delivery) -> str:
        event = delivery.event
        previous = f"{event.previous_status} → " if event.previous_status else ""
        return f"{event.subject}: {previous}{event.status}"

    @admin.display(description="status", ordering="status")
    def status_badge(self, delivery: Delivery) -> str:
        return badge(delivery.status)

    @admin.display(description="last response", ordering="last_response_status")
    def last_response(self, delivery: Delivery) -> str:
        if not delivery.attempt_count:
            return "—"
        return http_badge(delivery.last_response_status, delivery.last_error)

    def get_urls(self):
        own = [
            path(
                "<int:delivery_id>/resend/",
                self.admin_site.admin_view(self.resend_view),
                name="hooks_delivery_resend",
            )
        ]
        return own + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        delivery = self.get_object(request, object_id)
        if delivery is not None:
            hook = delivery.hook
            attempts = list(delivery.attempts.order_by("id"))
            extra_context = {
                **(extra_context or {}),
                "delivery": delivery,
                "hook_obj": hook,
                "status_badge": badge(delivery.status),
                "payload": pretty_json(delivery.event.body),
                "attempts": [attempt_detail(attempt, hook) for attempt in attempts],
                "can_manage": may_manage_hooks(request),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def resend_view(self, request: HttpRequest, delivery_id: int) -> HttpResponse:
        delivery = get_object_or_404(Delivery.objects.select_related("hook"), pk=delivery_id)
        back = request.POST.get("next", "")
        # Only a page of this site: "//elsewhere.example/" starts with "/" too.
        if not url_has_allowed_host_and_scheme(
            back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            back = reverse("admin:hooks_delivery_change", args=[delivery.pk])
        if request.method != "POST":
            return HttpResponseRedirect(back)
        if not may_manage_hooks(request):
            raise PermissionDenied
        hook = delivery.hook
        if wait := limits.rate_limit_wait(limits.RESEND, hook.project_id, request.user, request):
            return rate_limited_page(request, hook, limits.RESEND, wait)
        try:
            attempt = services.resend_delivery(delivery, user=request.user)
        except (
            services.DeliveryInProgress,
            services.HookURLChanged,
            services.TemplateRenderFailed,
            SecretUnreadable,
        ) as refusal:
            messages.warning(request, refusal.message)
            return HttpResponseRedirect(back)
        report_resend(request, delivery, attempt)
        return HttpResponseRedirect(back)

    @admin.action(description="Resend selected deliveries")
    def resend_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        if not may_manage_hooks(request):
            raise PermissionDenied
        refused: list[int] = []
        longest_wait = 0
        queued: list[int] = []
        for delivery in queryset.select_related("hook").order_by("pk"):
            project_id = delivery.hook.project_id
            # Counted when queued: the 5-a-minute limit is on what a person asks for.
            if wait := limits.rate_limit_wait(limits.RESEND, project_id, request.user, request):
                refused.append(delivery.pk)
                longest_wait = max(longest_wait, wait)
                continue
            latest = delivery.attempts.order_by("-id").first()
            if not services.url_current(latest, delivery.hook):
                messages.warning(request, f"Delivery {delivery.pk}: {services.HookURLChanged()}")
                continue
            queued.append(delivery.pk)
        # Sent by a worker, not in this request: N receivers' answers could take N timeouts.
        queue_resends_on_commit(queued, request.user.pk)
        if queued:
            messages.info(
                request,
                f"Queued {len(queued)} resend(s): deliver{'y' if len(queued) == 1 else 'ies'} "
                f"{', '.join(map(str, queued))}. Each one's new attempt appears on its page "
                "in a moment.",
            )
        if refused:
            messages.error(
                request,
                f"Not resent: deliver{'y' if len(refused) == 1 else 'ies'} "
                f"{', '.join(map(str, refused))}. {limits.RATE_LIMITED_MESSAGE} "
                f"(at most {settings.HOOKS_RESEND_LIMIT_PER_MINUTE} resends a minute per person "
                f"and project; try again in {longest_wait} s)",
            )


def report_resend(request: HttpRequest, delivery: Delivery, attempt: DeliveryAttempt) -> None:
    """Say how a resend went, with a link to the request and response."""
    link = reverse("admin:hooks_deliveryattempt_change", args=[attempt.pk])
    if attempt.succeeded:
        messages.success(
            request,
            format_html(
                'Delivery {} resent: HTTP {} in {} ms. <a href="{}">See the request</a>.',
                delivery.pk,
                attempt.response_status,
                attempt.duration_ms,
                link,
            ),
        )
        return
    outcome = (
        f"HTTP {attempt.response_status}"
        if attempt.response_status is not None
        else attempt.error or "no response"
    )
    messages.error(
        request,
        format_html(
            'Delivery {} resent and failed again: {}. <a href="{}">See the response</a>.',
            delivery.pk,
            outcome,
            link,
        ),
    )


def attempt_detail(attempt: DeliveryAttempt, hook: Hook) -> dict:
    return {
        "obj": attempt,
        "url": reverse("admin:hooks_deliveryattempt_change", args=[attempt.pk]),
        "http": http_badge(attempt.response_status, attempt.error),
        "request_headers": redact_headers(attempt.request_headers or {}, hook),
        "response_headers": attempt.response_headers or {},
        "response_body": pretty_json(attempt.response_body) if attempt.response_body else "",
    }


class AttemptChangeList(ChangeList):
    """The attempts' list. One hook's attempts of one response class are counted and paged
    along the (hook, status, id) index (hooks.log_pages), rather than by walking the hook's
    whole log for them or sorting them all: the same rows, in the same order."""

    def get_results(self, request):
        selection = ResponseClassFilter.selection(
            request.GET.get(ResponseClassFilter.parameter_name)
        )
        if not (selection and is_digits(request.GET.get("hook__id__exact", ""))):
            return super().get_results(request)
        # Read without the class's own range, which would stand in the way of each status's
        # (the planner takes the range); the log applies the class itself.
        log = StatusFilteredLog(
            self.get_queryset(request, exclude_parameters=[ResponseClassFilter.parameter_name]),
            selection,
        )
        paginator = self.model_admin.get_paginator(request, log, self.list_per_page)
        self.result_count = paginator.count
        self.show_full_result_count = False  # LargeListAdmin's: never a full count
        self.full_result_count = None
        self.show_admin_actions = True
        self.can_show_all = self.result_count <= self.list_max_show_all
        self.multi_page = self.result_count > self.list_per_page
        if (self.show_all and self.can_show_all) or not self.multi_page:
            self.result_list = log[: self.result_count]
        else:
            try:
                self.result_list = paginator.page(self.page_num).object_list
            except InvalidPage:
                raise IncorrectLookupParameters from None
        self.paginator = paginator


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(ReadOnlyAdmin):
    """The delivery log: one row per HTTP request, tests included."""

    list_display = (
        "created_at",
        "hook",
        "delivery_link",
        "attempt_number",
        "trigger",
        "response",
        "duration_ms",
        "short_error",
    )
    list_filter = (
        ResponseClassFilter,
        "trigger",
        "succeeded",
        "hook__project",
        "hook",
    )
    # The attempt's own URL is stored redacted; the hook's is not searched (see HookAdmin).
    search_fields = ("url", "error", "hook__name")
    list_select_related = ("hook",)
    change_form_template = "admin/hooks/deliveryattempt/change_form.html"

    @admin.display(description="delivery")
    def delivery_link(self, attempt: DeliveryAttempt) -> str:
        if attempt.delivery_id is None:
            return "test"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:hooks_delivery_change", args=[attempt.delivery_id]),
            attempt.delivery_id,
        )

    @admin.display(description="response", ordering="response_status")
    def response(self, attempt: DeliveryAttempt) -> str:
        return http_badge(attempt.response_status, attempt.error)

    @admin.display(description="error")
    def short_error(self, attempt: DeliveryAttempt) -> str:
        return (attempt.error[:80] + "…") if len(attempt.error) > 80 else attempt.error

    def get_changelist(self, request, **kwargs):
        return AttemptChangeList

    def change_view(self, request, object_id, form_url="", extra_context=None):
        attempt = self.get_object(request, object_id)
        if attempt is not None:
            detail = attempt_detail(attempt, attempt.hook)
            body = attempt.sent_body
            extra_context = {
                **(extra_context or {}),
                "attempt": detail,
                "hook_obj": attempt.hook,
                "request_body": pretty_json(body) if body else "",
            }
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    """The outbox's events: what happened, rendered once; each has a delivery per hook."""

    list_display = (
        "id",
        "project",
        "object_kind",
        "pipeline_id",
        "job_id",
        "change",
        "transition",
        "created_at",
    )
    list_filter = ("object_kind", "change", "status", "project")
    readonly_fields = ("payload",)
    fields = (
        "project",
        "pipeline",
        "object_kind",
        "job_id",
        "change",
        "previous_status",
        "status",
        "uuid",
        "created_at",
        "payload",
    )

    @admin.display(description="status")
    def transition(self, event: Event) -> str:
        return (
            f"{event.previous_status} → {event.status}" if event.previous_status else event.status
        )

    @admin.display(description="payload")
    def payload(self, event: Event) -> str:
        return format_html('<pre class="hook-json">{}</pre>', pretty_json(event.body))
