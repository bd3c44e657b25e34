"""What the hooks admin pages share: badges, the rate-limit page, JSON shown readably, and
who may use the hooks admin and its buttons."""

from __future__ import annotations

import json

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html

import pipelines.admin as pipelines_admin
from hooks import limits
from hooks.models import Hook
from hooks.policy import RESPONSE_CLASSES

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
    if status in RESPONSE_CLASSES["successful"]:
        colour = "#1f7a3d"
    elif 300 <= status < 500:
        colour = "#b7791f"
    else:
        colour = "#c0392b"
    return badge(str(status), colour)


def rate_limited_page(request: HttpRequest, hook: Hook, action: str, wait: int) -> HttpResponse:
    """GitLab's 429 for a button pressed too often, as an admin page with a way back."""
    what = {
        limits.TEST: "test events",
        limits.RESEND: "resends",
        limits.ROTATE: "signing secret rotations",
    }[action]
    per_minute = limits.limit_per_minute(action)
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


# --- Lists of millions of rows -------------------------------------------------------------
#
# The log grows to millions of rows (docs/benchmarks.md): no page counts a whole table or a
# hook's whole history. Counts stop at COUNT_LIMIT, as GitLab's API stops at 10,000; a list
# says "more than 10,000" and offers the pages up to there (filters narrow it further).

COUNT_LIMIT = 10_000


def count_up_to(queryset: QuerySet) -> int:
    """How many rows, counting no further than COUNT_LIMIT + 1: a COUNT over a LIMITed
    subquery, in the queryset's own order, so it walks the same index as the page does (or
    the list's own ``count_up_to``: hooks.log_pages)."""
    if hasattr(queryset, "count_up_to"):
        return queryset.count_up_to(COUNT_LIMIT + 1)
    return queryset[: COUNT_LIMIT + 1].count()


def shown_count(count: int) -> str:
    return f"more than {COUNT_LIMIT:,}" if count > COUNT_LIMIT else f"{count:,}"


class BoundedPaginator(Paginator):
    """Django's paginator with the count stopped at COUNT_LIMIT + 1 rows."""

    @cached_property
    def count(self) -> int:
        return count_up_to(self.object_list)

    @property
    def capped(self) -> bool:
        return self.count > COUNT_LIMIT

    @property
    def shown_count(self) -> str:
        return shown_count(self.count)


class LargeListAdmin:
    """A list of a table that grows without bound: counted up to a limit, never in full
    (``admin/hooks/pagination.html`` says so). Nor dated: a date hierarchy reads the
    distinct dates of every row, and a date filter makes the database sort every row of
    the range by id; the filters offered (hook, status, response) each have an index that
    returns the rows newest first."""

    paginator = BoundedPaginator
    show_full_result_count = False
    # The database's part of a page is a few ms at any size; rendering the rows is the rest
    # (a few ms a row on a busy machine): 50 keeps the page well under 300 ms.
    list_per_page = 50


# --- Deliveries and their attempts --------------------------------------------------------


class ReadOnlyAdmin(LargeListAdmin, ManageHooksPermissions, pipelines_admin.ReadOnlyAdmin):
    """Rows only the delivery code writes: shown, never added, changed or deleted here."""

    Media = HooksMedia

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
