"""The hook pages: a hook's settings, health, recent deliveries and buttons; a project's
page with its hooks."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

import pipelines.admin as pipelines_admin
from hooks import limits, services
from hooks.admin.common import (
    BADGE_LABELS,
    HooksMedia,
    ManageHooksPermissions,
    badge,
    holds_manage_hooks,
    http_badge,
    may_manage_hooks,
    rate_limited_page,
)
from hooks.forms import HookForm, HookFormSet, RedeliverForm
from hooks.models import Delivery, DeliveryAttempt, Hook
from pipelines.models import Project

RECENT_DELIVERIES = 20


def with_latest_delivery(hooks: QuerySet) -> QuerySet:
    """Each hook with its latest delivery's id and status, read in the list's own query
    rather than one query a row."""
    latest = Delivery.objects.filter(hook=OuterRef("pk")).order_by("-id")
    return hooks.annotate(
        latest_delivery_id=Subquery(latest.values("pk")[:1]),
        latest_delivery_status=Subquery(latest.values("status")[:1]),
    )


class AlertStatusFilter(admin.SimpleListFilter):
    title = "health"
    parameter_name = "health"

    def lookups(self, request, model_admin):
        return [(value, BADGE_LABELS[value]) for value in Hook.AlertStatus.values]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() in Hook.AlertStatus.values:
            return queryset.with_alert_status(self.value(), timezone.now())
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

    @admin.display(description="url", ordering="url")
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

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return with_latest_delivery(super().get_queryset(request))

    @admin.display(description="last delivery")
    def last_delivery(self, hook: Hook) -> str:
        if hook.latest_delivery_id is None:
            return "—"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:hooks_delivery_change", args=[hook.latest_delivery_id]),
            badge(hook.latest_delivery_status),
        )

    def save_model(self, request: HttpRequest, obj: Hook, form: HookForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        announce_generated_secret(request, form, obj)

    @admin.action(description="Re-enable selected hooks")
    def reenable_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = 0
        for hook in queryset:
            services.reenable_hook(hook)
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
            attempt = services.send_test_event(hook, user=request.user)
        except services.NoPipelineError:
            messages.error(
                request,
                "No test event sent: this project has no pipeline yet. A test sends the "
                "newest pipeline; report one first.",
            )
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
        services.reenable_hook(hook)
        messages.success(request, f"Hook “{hook}” is enabled again; waiting deliveries resume.")
        return self._back_to(hook)

    def redeliver_view(self, request: HttpRequest, hook_id: int) -> HttpResponse:
        hook = self._hook_for_action(request, hook_id)
        if request.method == "POST":
            form = RedeliverForm(request.POST)
            if form.is_valid():
                since = form.cleaned_data["since"]
                count = services.redeliver_failed_since(hook, since)
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

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return with_latest_delivery(super().get_queryset(request))

    @admin.display(description="health")
    def health_summary(self, hook: Hook) -> str:
        if hook.pk is None:
            return "—"
        status = getattr(hook, "latest_delivery_status", None)
        return format_html(
            '{} {} consecutive failure(s) · last delivery: {} · <a href="{}">deliveries, '
            "tests and health</a>",
            badge(hook.alert_status),
            hook.recent_failures,
            badge(status) if status else "none yet",
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
