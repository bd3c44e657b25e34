"""The admin's front page: the delivery dashboard and the signed-in user's hook notices.

The notices are the hook state changes (a hook resting, disabled, back) of the projects the
user maintains (``hooks.notices``), listed above the apps until dismissed; "Hook notices"
in the app list keeps them all, dismissed or not. The index keeps Django's own page
(``admin.site.index``) and adds this context and ``admin/hooks/index.html``.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from hooks import stats
from hooks.admin.charts import stacked_bars
from hooks.admin.common import (
    HooksMedia,
    badge,
    count_up_to,
    holds_manage_hooks,
    shown_count,
)
from hooks.models import Delivery, Hook, HookNotice

NOTICES_SHOWN = 20
DASHBOARD_HOURS = 24


def notices_of(request: HttpRequest) -> list[HookNotice]:
    return list(
        HookNotice.objects.filter(user=request.user, dismissed_at__isnull=True)
        .select_related("change__hook__project")
        .order_by("-id")[:NOTICES_SHOWN]
    )


def dashboard_context(request: HttpRequest) -> dict:
    context = {"hook_notices": [notice_row(notice) for notice in notices_of(request)]}
    if holds_manage_hooks(request) or request.user.has_perm("hooks.view_delivery"):
        context["delivery_dashboard"] = delivery_dashboard()
    return context


def delivery_dashboard() -> dict:
    """The last day of deliveries from the rollup (``hooks.stats``), and the backlog from
    the deliveries' status index, each count bounded."""
    now = timezone.now()
    since = now - timezone.timedelta(hours=DASHBOARD_HOURS)
    periods = stats.periods(since, now)
    latency = stats.latency_percentiles(since)
    pending = Delivery.objects.filter(status=Delivery.Status.PENDING).order_by()
    due = pending.filter(next_attempt_at__lte=now)
    oldest_due = due.order_by("next_attempt_at").values_list("next_attempt_at", flat=True).first()
    failing = stats.failing_most(since)
    hooks = Hook.objects.select_related("project").in_bulk([hook_id for hook_id, *_ in failing])
    return {
        "chart": stacked_bars(periods, chart_id="delivery-chart"),
        "succeeded": sum(period.succeeded for period in periods),
        "failed": sum(period.failed for period in periods),
        "p50": latency_text(latency, 0.5),
        "p99": latency_text(latency, 0.99),
        "pending": shown_count(count_up_to(pending)),
        "due": shown_count(count_up_to(due)),
        "sending": shown_count(
            count_up_to(Delivery.objects.filter(status=Delivery.Status.SENDING).order_by())
        ),
        "oldest_due": oldest_due,
        "held_back": [
            (value, badge(value), Hook.objects.with_alert_status(value, now).count())
            for value in (Hook.AlertStatus.TEMPORARILY_DISABLED, Hook.AlertStatus.DISABLED)
        ],
        "failing": [
            {
                "hook": hooks[hook_id],
                "url": reverse("admin:hooks_hook_change", args=[hook_id]),
                "badge": badge(hooks[hook_id].alert_status),
                "failed": failed,
                "rate": f"{100 * succeeded / (succeeded + failed):.1f} %",
            }
            for hook_id, failed, succeeded in failing
            if hook_id in hooks
        ],
    }


def latency_text(latency: dict, quantile: float) -> str:
    if quantile not in latency:
        return "—"
    bound = latency[quantile]
    if bound is None:
        return f"over {stats.LATENCY_BANDS_MS[-1]:,} ms"
    return f"≤ {bound:,} ms"


def notice_row(notice: HookNotice) -> dict:
    change = notice.change
    return {
        "obj": notice,
        "hook": change.hook,
        "hook_url": reverse("admin:hooks_hook_change", args=[change.hook_id]),
        "from_badge": badge(change.from_state),
        "to_badge": badge(change.to_state),
        "dismiss_url": reverse("admin:hooks_hooknotice_dismiss", args=[notice.pk]),
    }


@admin.register(HookNotice)
class HookNoticeAdmin(admin.ModelAdmin):
    """Each user's own notices; dismissed from the front page, never edited."""

    Media = HooksMedia
    list_display = ("created_at", "hook", "state_change", "reason", "dismissed_at")
    list_select_related = ("change__hook",)

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).filter(user=request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.has_module_permission(request) and (obj is None or obj.user == request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="hook")
    def hook(self, notice: HookNotice) -> str:
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:hooks_hook_change", args=[notice.change.hook_id]),
            notice.change.hook,
        )

    @admin.display(description="change")
    def state_change(self, notice: HookNotice) -> str:
        return format_html(
            "{} → {}", badge(notice.change.from_state), badge(notice.change.to_state)
        )

    @admin.display(description="reason")
    def reason(self, notice: HookNotice) -> str:
        return notice.change.reason

    def get_urls(self):
        own = [
            path(
                "<int:notice_id>/dismiss/",
                self.admin_site.admin_view(self.dismiss_view),
                name="hooks_hooknotice_dismiss",
            ),
            path(
                "dismiss-all/",
                self.admin_site.admin_view(self.dismiss_all_view),
                name="hooks_hooknotice_dismiss_all",
            ),
        ]
        return own + super().get_urls()

    def dismiss_view(self, request: HttpRequest, notice_id: int) -> HttpResponse:
        if request.method == "POST":
            dismissed = HookNotice.objects.filter(
                pk=notice_id, user=request.user, dismissed_at__isnull=True
            ).update(dismissed_at=timezone.now())
            # Another user's notice is not there for this one.
            if (
                not dismissed
                and not HookNotice.objects.filter(pk=notice_id, user=request.user).exists()
            ):
                raise Http404("No such notice")
        return HttpResponseRedirect(reverse("admin:index"))

    def dismiss_all_view(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST":
            HookNotice.objects.filter(user=request.user, dismissed_at__isnull=True).update(
                dismissed_at=timezone.now()
            )
        return HttpResponseRedirect(reverse("admin:index"))


def install_front_page(site: admin.AdminSite) -> None:
    """Django's index with the dashboard's context and template on top."""
    django_index = site.index

    def index(request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        return django_index(request, {**dashboard_context(request), **(extra_context or {})})

    site.index = index
    site.index_template = "admin/hooks/index.html"


install_front_page(admin.site)
