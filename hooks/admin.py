"""Admin for people who register hooks.

A project's page lists and edits its hooks; a hook's page shows its health and recent
deliveries, with "Send test event", "Re-enable" and "Redeliver all failed since …"; a
delivery's page shows the payload and every attempt's request and response, with "Resend".
Secrets are never rendered back. Deliveries and attempts are read-only: only the delivery
code changes them.

The project page is extended from here (re-registering ``ProjectAdmin`` with a hooks
inline) so that ``pipelines`` never imports ``hooks``.
"""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme

import pipelines.admin as pipelines_admin
from hooks import delivery as hook_delivery
from hooks import limits
from hooks.forms import HookForm, HookFormSet, RedeliverForm
from hooks.models import Delivery, DeliveryAttempt, Event, Hook
from hooks.sealing import SecretUnreadable
from pipelines.models import Project

logger = logging.getLogger(__name__)

RECENT_DELIVERIES = 20
MANAGE_HOOKS_PERMISSION = "pipelines.manage_hooks"

BADGE_COLOURS = {
    # Delivery.Status
    "pending": "#b7791f",
    "sending": "#1f6fb2",
    "succeeded": "#1f7a3d",
    "failed": "#c0392b",
    # Hook.AlertStatus
    "executable": "#1f7a3d",
    "temporarily_disabled": "#b7791f",
    "disabled": "#c0392b",
}
BADGE_LABELS = {
    "executable": "active",
    "temporarily_disabled": "temporarily disabled",
    "disabled": "disabled",
}


BADGE_STYLE = (
    "color:#fff;padding:1px 9px;border-radius:9px;font-size:0.75rem;font-weight:600;"
    "white-space:nowrap;display:inline-block"
)


def badge(value: str, colour: str | None = None, title: str = "") -> str:
    # Styled inline: badges also show on pages this app's stylesheet is not on.
    colour = colour or BADGE_COLOURS.get(value, "#666")
    return format_html(
        '<span class="hook-badge" style="background:{};{}" title="{}">{}</span>',
        colour,
        BADGE_STYLE,
        title,
        BADGE_LABELS.get(value, value),
    )


def http_badge(status: int | None, error: str = "") -> str:
    """A response status as a badge; no status means no response came back."""
    if status is None:
        return badge("no response", "#7b341e", title=error[:200])
    if 200 <= status < 300:
        colour = "#1f7a3d"
    elif 300 <= status < 500:
        colour = "#b7791f"
    else:
        colour = "#c0392b"
    return badge(str(status), colour)


def rate_limited_page(request: HttpRequest, hook: Hook, action: str, wait: int) -> HttpResponse:
    """GitLab's 429 for a button pressed too often, as an admin page with a way back."""
    what = "test events" if action == limits.TEST else "resends"
    per_minute = (
        settings.HOOKS_TEST_LIMIT_PER_MINUTE
        if action == limits.TEST
        else settings.HOOKS_RESEND_LIMIT_PER_MINUTE
    )
    context = {
        **admin.site.each_context(request),
        "title": "Too many requests",
        "message": limits.RATE_LIMITED_MESSAGE,
        "explanation": f"At most {per_minute} {what} a minute per person and project; "
        f"try again in {wait} s.",
        "hook_obj": hook,
        "back_url": reverse("admin:hooks_hook_change", args=[hook.pk]),
    }
    return TemplateResponse(
        request,
        "admin/hooks/rate_limited.html",
        context,
        status=429,
        headers={"Retry-After": str(wait)},
    )


def pretty_json(value) -> str:
    """Readable JSON for the page; a string that is JSON is parsed first."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False)


def holds_manage_hooks(request: HttpRequest) -> bool:
    """The project-level right API tokens need; in the admin it stands for the hooks models'
    add, change, delete and view rights."""
    return request.user.has_perm(MANAGE_HOOKS_PERMISSION)


def may_manage_hooks(request: HttpRequest) -> bool:
    """Whether the buttons (test, resend, re-enable, redeliver) may be used."""
    return holds_manage_hooks(request) or request.user.has_perm("hooks.change_hook")


class HooksMedia:
    css = {"all": ["hooks/admin.css"]}


class ManageHooksPermissions:
    """Holders of ``pipelines.manage_hooks`` may do in the admin what their tokens may do."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return holds_manage_hooks(request) or super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return holds_manage_hooks(request) or super().has_view_permission(request, obj)


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
        field = self.field
        conditions = {
            "successful": Q(**{f"{field}__gte": 200, f"{field}__lt": 300}),
            "client_failure": Q(**{f"{field}__gte": 400, f"{field}__lt": 500}),
            "server_failure": Q(**{f"{field}__gte": 500, f"{field}__lt": 600}),
            "no_response": Q(**{f"{field}__isnull": True}),
        }
        if self.value() in conditions:
            return queryset.filter(conditions[self.value()])
        return queryset


class LastResponseClassFilter(ResponseClassFilter):
    title = "last response"
    field = "last_response_status"

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() == "no_response":
            # A delivery that has not been tried yet is not a "no response".
            return queryset.filter(last_response_status__isnull=True, attempt_count__gt=0)
        return super().queryset(request, queryset)


class AlertStatusFilter(admin.SimpleListFilter):
    title = "health"
    parameter_name = "health"

    def lookups(self, request, model_admin):
        return [(value, BADGE_LABELS[value]) for value in Hook.AlertStatus.values]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        now = timezone.now()
        if self.value() == Hook.AlertStatus.DISABLED:
            return queryset.filter(permanently_disabled=True)
        if self.value() == Hook.AlertStatus.TEMPORARILY_DISABLED:
            return queryset.filter(permanently_disabled=False, disabled_until__gt=now)
        if self.value() == Hook.AlertStatus.EXECUTABLE:
            return queryset.filter(permanently_disabled=False).filter(
                Q(disabled_until__isnull=True) | Q(disabled_until__lte=now)
            )
        return queryset


# --- Hooks ------------------------------------------------------------------------------

SETTINGS_FIELDSETS = [
    (None, {"fields": ("project", "name", "url", "description")}),
    (
        "Which events",
        {
            "fields": (
                ("pipeline_events", "job_events"),
                ("ref_filter_strategy", "ref_filter"),
                "status_filter",
            )
        },
    ),
    (
        "Security",
        {
            "fields": (
                "enable_ssl_verification",
                ("token", "remove_token"),
                ("signing_token", "generate_signing_token", "remove_signing_token"),
                "custom_headers",
            )
        },
    ),
]


def announce_generated_secret(request: HttpRequest, form: HookForm, hook: Hook) -> None:
    if form.generated_signing_token:
        messages.warning(
            request,
            f"New signing secret for hook “{hook}” (copy it now, it will not be shown "
            f"again): {form.generated_signing_token}",
        )


@admin.register(Hook)
class HookAdmin(ManageHooksPermissions, admin.ModelAdmin):
    Media = HooksMedia
    form = HookForm
    fieldsets = SETTINGS_FIELDSETS
    list_display = (
        "__str__",
        "project",
        "shown_url",
        "events",
        "health",
        "recent_failures",
        "last_delivery",
        "created_at",
    )
    list_display_links = ("__str__",)
    list_filter = (AlertStatusFilter, "pipeline_events", "project")
    # Not the URL: a search would tell, letter by letter, the credentials it hides.
    search_fields = ("name", "description", "project__path", "project__name")
    list_select_related = ("project",)
    change_form_template = "admin/hooks/hook/change_form.html"
    actions = ["reenable_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return holds_manage_hooks(request) or super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return holds_manage_hooks(request) or super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return holds_manage_hooks(request) or super().has_delete_permission(request, obj)

    @admin.display(description="url", ordering="masked_url")
    def shown_url(self, hook: Hook) -> str:
        return hook.redacted_url

    @admin.display(description="events")
    def events(self, hook: Hook) -> str:
        wanted = []
        if hook.pipeline_events:
            statuses = ", ".join(hook.status_filter or []) or "every status"
            wanted.append(f"pipeline ({statuses})")
        if hook.job_events:
            wanted.append("job")
        if hook.ref_filter_strategy != Hook.RefFilterStrategy.ALL and hook.ref_filter:
            wanted.append(f"refs {hook.ref_filter_strategy} {hook.ref_filter}")
        return "; ".join(wanted) or "nothing"

    @admin.display(description="health")
    def health(self, hook: Hook) -> str:
        title = ""
        if hook.alert_status == Hook.AlertStatus.TEMPORARILY_DISABLED:
            title = f"until {hook.disabled_until:%Y-%m-%d %H:%M:%S} UTC"
        return badge(hook.alert_status, title=title)

    @admin.display(description="last delivery")
    def last_delivery(self, hook: Hook) -> str:
        latest = hook.deliveries.order_by("-id").first()
        if latest is None:
            return "—"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:hooks_delivery_change", args=[latest.pk]),
            badge(latest.status),
        )

    def save_model(self, request: HttpRequest, obj: Hook, form: HookForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        announce_generated_secret(request, form, obj)

    @admin.action(description="Re-enable selected hooks")
    def reenable_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = 0
        for hook in queryset:
            hook_delivery.reenable_hook(hook)
            count += 1
        self.message_user(request, f"Re-enabled {count} hook(s).", messages.SUCCESS)

    # --- The hook page: health, recent deliveries and the buttons ----------------------

    def get_urls(self):
        own = [
            path(
                "<int:hook_id>/test/",
                self.admin_site.admin_view(self.send_test_view),
                name="hooks_hook_test",
            ),
            path(
                "<int:hook_id>/reenable/",
                self.admin_site.admin_view(self.reenable_view),
                name="hooks_hook_reenable",
            ),
            path(
                "<int:hook_id>/redeliver/",
                self.admin_site.admin_view(self.redeliver_view),
                name="hooks_hook_redeliver",
            ),
        ]
        return own + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        hook = self.get_object(request, object_id)
        if hook is not None:
            extra_context = {
                **(extra_context or {}),
                **self.hook_page_context(hook),
                "can_manage": may_manage_hooks(request),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def hook_page_context(self, hook: Hook) -> dict:
        deliveries = list(
            hook.deliveries.select_related("event", "event__pipeline").order_by("-id")[
                :RECENT_DELIVERIES
            ]
        )
        counts = dict(
            hook.deliveries.values_list("status").annotate(n=Count("id")).values_list("status", "n")
        )
        tests = list(hook.attempts.filter(trigger=DeliveryAttempt.Trigger.TEST).order_by("-id")[:5])
        return {
            "hook_obj": hook,
            "health_badge": badge(hook.alert_status),
            "recent_deliveries": [delivery_row(delivery) for delivery in deliveries],
            "recent_tests": [attempt_row(attempt) for attempt in tests],
            "delivery_counts": [
                (value, counts.get(value, 0), badge(value)) for value in Delivery.Status.values
            ],
            "deliveries_url": reverse("admin:hooks_delivery_changelist")
            + f"?hook__id__exact={hook.pk}",
        }

    def _hook_for_action(self, request: HttpRequest, hook_id: int) -> Hook:
        hook = get_object_or_404(Hook, pk=hook_id)
        if not self.has_change_permission(request, hook):
            raise PermissionDenied
        return hook

    def _back_to(self, hook: Hook) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:hooks_hook_change", args=[hook.pk]))

    def send_test_view(self, request: HttpRequest, hook_id: int) -> HttpResponse:
        if request.method != "POST":
            return self._back_to(get_object_or_404(Hook, pk=hook_id))
        hook = self._hook_for_action(request, hook_id)
        if wait := limits.rate_limit_wait(limits.TEST, hook.project_id, request.user, request):
            return rate_limited_page(request, hook, limits.TEST, wait)
        try:
            attempt = hook_delivery.send_test_event(hook, user=request.user)
        except hook_delivery.NoPipelineError:
            messages.error(
                request,
                "No test event sent: this project has no pipeline yet. A test sends the "
                "newest pipeline; report one first.",
            )
            return self._back_to(hook)
        except SecretUnreadable as unreadable:
            messages.error(request, f"No test event sent: {unreadable.message}")
            return self._back_to(hook)
        link = reverse("admin:hooks_deliveryattempt_change", args=[attempt.pk])
        if attempt.succeeded:
            messages.success(
                request,
                format_html(
                    'Test event delivered: HTTP {} in {} ms. <a href="{}">See the request</a>.',
                    attempt.response_status,
                    attempt.duration_ms,
                    link,
                ),
            )
        else:
            outcome = (
                f"HTTP {attempt.response_status}"
                if attempt.response_status is not None
                else attempt.error or "no response"
            )
            messages.error(
                request,
                format_html(
                    'Test event failed: {}. <a href="{}">See the request and response</a>.',
                    outcome,
                    link,
                ),
            )
        return self._back_to(hook)

    def reenable_view(self, request: HttpRequest, hook_id: int) -> HttpResponse:
        if request.method != "POST":
            return self._back_to(get_object_or_404(Hook, pk=hook_id))
        hook = self._hook_for_action(request, hook_id)
        hook_delivery.reenable_hook(hook)
        messages.success(request, f"Hook “{hook}” is enabled again; waiting deliveries resume.")
        return self._back_to(hook)

    def redeliver_view(self, request: HttpRequest, hook_id: int) -> HttpResponse:
        hook = self._hook_for_action(request, hook_id)
        if request.method == "POST":
            form = RedeliverForm(request.POST)
            if form.is_valid():
                since = form.cleaned_data["since"]
                count = hook_delivery.redeliver_failed_since(hook, since)
                messages.success(
                    request,
                    f"{count} failed deliver{'y' if count == 1 else 'ies'} since "
                    f"{since:%Y-%m-%d %H:%M} UTC queued again.",
                )
                return self._back_to(hook)
        else:
            form = RedeliverForm(initial={"since": timezone.now() - timezone.timedelta(days=1)})
        failed = hook.deliveries.filter(status=Delivery.Status.FAILED).count()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "hook_obj": hook,
            "original": hook,
            "form": form,
            "failed_count": failed,
            "title": f"Redeliver failed deliveries of {hook}",
        }
        return TemplateResponse(request, "admin/hooks/hook/redeliver.html", context)


def delivery_row(delivery: Delivery) -> dict:
    event = delivery.event
    took = None
    if delivery.finished_at:
        took = delivery.finished_at - delivery.created_at
    return {
        "obj": delivery,
        "url": reverse("admin:hooks_delivery_change", args=[delivery.pk]),
        "resend_url": reverse("admin:hooks_delivery_resend", args=[delivery.pk]),
        "badge": badge(delivery.status),
        "http": http_badge(delivery.last_response_status, delivery.last_error)
        if delivery.attempt_count
        else "—",
        "event": f"pipeline #{event.pipeline_id or '(deleted)'} → {event.status}",
        "change": event.change,
        "took": took,
    }


def attempt_row(attempt: DeliveryAttempt) -> dict:
    return {
        "obj": attempt,
        "url": reverse("admin:hooks_deliveryattempt_change", args=[attempt.pk]),
        "http": http_badge(attempt.response_status, attempt.error),
    }


# --- The project page: its hooks ---------------------------------------------------------


class HookInline(admin.StackedInline):
    """Add and edit a project's hooks on its page; health and deliveries on the hook's page."""

    model = Hook
    form = HookForm
    formset = HookFormSet
    Media = HooksMedia
    extra = 0
    show_change_link = True
    verbose_name = "hook"
    verbose_name_plural = "hooks (pipeline events are delivered to these URLs)"
    fieldsets = [
        (None, {"fields": ("health_summary", "name", "url", "description")}),
        (
            "Which events",
            {
                "fields": (
                    "pipeline_events",
                    ("ref_filter_strategy", "ref_filter"),
                    "status_filter",
                )
            },
        ),
        (
            "Security",
            {
                "classes": ("collapse",),
                "fields": (
                    "enable_ssl_verification",
                    ("token", "remove_token"),
                    ("signing_token", "generate_signing_token", "remove_signing_token"),
                    "custom_headers",
                ),
            },
        ),
    ]
    readonly_fields = ("health_summary",)

    def has_add_permission(self, request, obj=None) -> bool:
        return holds_manage_hooks(request) or super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None) -> bool:
        return holds_manage_hooks(request) or super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return holds_manage_hooks(request) or super().has_delete_permission(request, obj)

    def has_view_permission(self, request, obj=None) -> bool:
        return holds_manage_hooks(request) or super().has_view_permission(request, obj)

    @admin.display(description="health")
    def health_summary(self, hook: Hook) -> str:
        if hook.pk is None:
            return "—"
        latest = hook.deliveries.order_by("-id").first()
        return format_html(
            '{} {} consecutive failure(s) · last delivery: {} · <a href="{}">deliveries, '
            "tests and health</a>",
            badge(hook.alert_status),
            hook.recent_failures,
            badge(latest.status) if latest else "none yet",
            reverse("admin:hooks_hook_change", args=[hook.pk]),
        )


admin.site.unregister(Project)


@admin.register(Project)
class ProjectAdmin(pipelines_admin.ProjectAdmin):
    inlines = [*pipelines_admin.ProjectAdmin.inlines, HookInline]

    def save_formset(self, request, form, formset, change) -> None:
        super().save_formset(request, form, formset, change)
        if formset.model is Hook:
            for hook_form in formset.forms:
                if hook_form.has_changed() and hook_form.instance.pk:
                    announce_generated_secret(request, hook_form, hook_form.instance)


# --- Deliveries and their attempts --------------------------------------------------------


class ReadOnlyAdmin(ManageHooksPermissions, admin.ModelAdmin):
    Media = HooksMedia

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "hook",
        "pipeline_event",
        "status_badge",
        "attempt_count",
        "last_response",
        "created_at",
        "next_attempt_at",
        "finished_at",
    )
    list_display_links = ("id", "pipeline_event")
    list_filter = ("status", LastResponseClassFilter, "hook__project", "hook")
    search_fields = ("hook__name", "idempotency_key", "event__uuid")
    list_select_related = ("hook", "event")
    date_hierarchy = "created_at"
    ordering = ("-id",)
    actions = ["resend_selected"]
    change_form_template = "admin/hooks/delivery/change_form.html"

    @admin.display(description="event")
    def pipeline_event(self, delivery: Delivery) -> str:
        event = delivery.event
        previous = f"{event.previous_status} → " if event.previous_status else ""
        return f"pipeline {event.pipeline_id or '(deleted)'}: {previous}{event.status}"

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
            attempt = hook_delivery.resend_delivery(delivery, user=request.user)
        except (hook_delivery.DeliveryInProgress, SecretUnreadable) as busy:
            messages.warning(request, busy.message)
            return HttpResponseRedirect(back)
        report_resend(request, delivery, attempt)
        return HttpResponseRedirect(back)

    @admin.action(description="Resend selected deliveries")
    def resend_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        if not may_manage_hooks(request):
            raise PermissionDenied
        refused: list[int] = []
        longest_wait = 0
        for delivery in queryset.select_related("hook").order_by("pk"):
            project_id = delivery.hook.project_id
            if wait := limits.rate_limit_wait(limits.RESEND, project_id, request.user, request):
                refused.append(delivery.pk)
                longest_wait = max(longest_wait, wait)
                continue
            try:
                attempt = hook_delivery.resend_delivery(delivery, user=request.user)
            except (hook_delivery.DeliveryInProgress, SecretUnreadable) as busy:
                messages.warning(request, f"Delivery {delivery.pk}: {busy.message}")
                continue
            report_resend(request, delivery, attempt)
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
        "request_headers": hook_delivery.redact_headers(attempt.request_headers or {}, hook),
        "response_headers": attempt.response_headers or {},
        "response_body": pretty_json(attempt.response_body) if attempt.response_body else "",
    }


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
    list_filter = (ResponseClassFilter, "trigger", "succeeded", "hook__project", "hook")
    # The attempt's own URL is stored redacted; the hook's is not searched (see HookAdmin).
    search_fields = ("url", "error", "hook__name")
    list_select_related = ("hook",)
    date_hierarchy = "created_at"
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

    def change_view(self, request, object_id, form_url="", extra_context=None):
        attempt = self.get_object(request, object_id)
        if attempt is not None:
            detail = attempt_detail(attempt, attempt.hook)
            body = attempt.delivery.event.body if attempt.delivery_id else attempt.request_body
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

    list_display = ("id", "project", "pipeline_id", "change", "transition", "created_at")
    list_filter = ("change", "status", "project")
    date_hierarchy = "created_at"
    readonly_fields = ("payload",)
    fields = (
        "project",
        "pipeline",
        "object_kind",
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
