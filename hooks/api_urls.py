"""Routes of the project hooks API, mounted at /api/v4/ next to the pipelines API.

``:id`` is a numeric id or the URL-encoded ``namespace/path``, read by the pipelines API's
own converter (line breaks included, so an id no project has is a 404, not a 405).
"""

from django.urls import path

from hooks.api import views as api
from pipelines.api.gitlab.converters import PROJECT

HOOKS = PROJECT + "/hooks"
HOOK = HOOKS + "/<str:hook_id>"

urlpatterns = [
    path(HOOKS, api.HookListView.as_view(), name="api-hooks"),
    path(HOOK, api.HookDetailView.as_view(), name="api-hook"),
    path(
        HOOK + "/custom_headers/<str:key>",
        api.HookCustomHeaderView.as_view(),
        name="api-hook-custom-header",
    ),
    path(HOOK + "/test/<str:trigger>", api.HookTestView.as_view(), name="api-hook-test"),
    path(HOOK + "/events", api.HookEventListView.as_view(), name="api-hook-events"),
    path(
        HOOK + "/events/<str:event_id>/resend",
        api.HookEventResendView.as_view(),
        name="api-hook-event-resend",
    ),
]
