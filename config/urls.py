from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config import health, metrics
from pipelines.api.graphql.view import graphql_view

admin.site.site_header = "Pipehook"
admin.site.site_title = "Pipehook admin"
admin.site.index_title = "Projects, pipelines and hooks"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v4/", include("hooks.api_urls")),
    path("api/v4/", include("pipelines.api.gitlab.urls")),
    path("api/graphql", graphql_view, name="graphql"),
    path("sei/api/v1/", include("pipelines.api.sei")),
    path("distelli/", include("pipelines.api.distelli")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("", include("pipelines.urls")),
]


handler404 = "config.errors.handle_not_found"
handler500 = "config.errors.handle_server_error"
