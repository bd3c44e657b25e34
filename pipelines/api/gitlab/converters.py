"""How a route of the v4 API reads a project's ``:id``, for the pipelines and the hooks API.

``:id`` may be the URL-encoded path (``acme%2Fweb``), which arrives decoded (``acme/web``).
So ``<project_id:...>`` matches lazily, any character, line breaks included, up to the fixed
rest of its route (the most specific routes come first): an id no project has is a 404 from
the view, not a 405 from a neighbouring route that a pattern stopping at a line break would
leave it to. A route that ends with the id (``GET /projects/:id``) takes
``<bare_project_id:...>``, path segments that are not empty, so ``projects/acme/`` stays an
unknown route.
"""

from django.urls import register_converter


class ProjectIdConverter:
    regex = r"[\s\S]+?"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class BareProjectIdConverter(ProjectIdConverter):
    regex = r"[^/]+(?:/[^/]+)*"


register_converter(ProjectIdConverter, "project_id")
register_converter(BareProjectIdConverter, "bare_project_id")

# The start of every route about one project.
PROJECT = "projects/<project_id:project_id>"
