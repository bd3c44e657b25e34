from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views.defaults import page_not_found
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

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
    path("", include("pipelines.urls")),
]


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """API clients get GitLab's JSON 404 for unknown routes; people get the HTML page."""
    if request.path.startswith(("/api/", "/sei/", "/distelli/")):
        return JsonResponse({"message": "404 Not Found"}, status=404)
    return page_not_found(request, exception)


handler404 = not_found
handler500 = "config.errors.handle_server_error"
