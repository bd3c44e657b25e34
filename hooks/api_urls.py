"""Routes of the project hooks API, mounted at /api/v4/ next to the pipelines API.

``:id`` is a numeric id or the URL-encoded ``namespace/path`` (Django decodes ``%2F`` before
routing, hence the lazy ``.+?``).
"""

from django.urls import re_path

from hooks import api

PROJECT = r"^projects/(?P<project_id>.+?)/hooks"
HOOK = PROJECT + r"/(?P<hook_id>[^/]+)"

urlpatterns = [
    re_path(PROJECT + r"$", api.HookListView.as_view(), name="api-hooks"),
    re_path(HOOK + r"$", api.HookDetailView.as_view(), name="api-hook"),
    re_path(
        HOOK + r"/custom_headers/(?P<key>[^/]+)$",
        api.HookCustomHeaderView.as_view(),
        name="api-hook-custom-header",
    ),
    re_path(HOOK + r"/test/(?P<trigger>[^/]+)$", api.HookTestView.as_view(), name="api-hook-test"),
    re_path(HOOK + r"/events$", api.HookEventListView.as_view(), name="api-hook-events"),
    re_path(
        HOOK + r"/events/(?P<event_id>[^/]+)/resend$",
        api.HookEventResendView.as_view(),
        name="api-hook-event-resend",
    ),
]
