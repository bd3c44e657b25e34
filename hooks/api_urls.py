"""Routes of the project hooks API, mounted at /api/v4/ next to the pipelines API.

``:id`` is a numeric id or the URL-encoded ``namespace/path``, matched as the pipelines API
matches it (line breaks included, so an id no project has is a 404, not a 405).
"""

from django.urls import re_path

from hooks import api
from pipelines.api.gitlab.urls import PROJECT as PROJECT_ID

PROJECT = PROJECT_ID + r"/hooks"
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
