from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from pipelines.api.graphql import graphql_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v4/", include("hooks.api_urls")),
    path("api/v4/", include("pipelines.api.urls")),
    path("api/graphql", graphql_view, name="graphql"),
    path("sei/api/v1/", include("pipelines.api.sei")),
    path("distelli/", include("pipelines.api.distelli")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("", include("pipelines.urls")),
]
