"""Answers for when no view answers: an unknown route, the database unreachable, or a bug.

While the database is down (restarting, unreachable, SQLite's write lock held past its busy
timeout) every request answers 503 with ``Retry-After`` at once, in the shape its API speaks:
``{"message": ...}`` for the GitLab API and the dialects, GraphQL's ``errors`` for
``/api/graphql``, plain text for pages. Clients written for GitLab retry a 503. The broker being
down fails no request: the rows are written and the sweeper queues them later.
"""

from __future__ import annotations

import logging
import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found, server_error

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
API_PREFIXES = ("/api/", "/sei/", "/distelli/")
GRAPHQL_PATH = "/api/graphql"
UNAVAILABLE = (
    "503 Service Unavailable - the database cannot be reached; "
    f"try again in {RETRY_AFTER_SECONDS} seconds"
)


def database_unavailable(error: BaseException | None) -> bool:
    # OperationalError: refused, lost, timed out, locked; InterfaceError: used after closing.
    return isinstance(error, (OperationalError, InterfaceError))


def service_unavailable(request: HttpRequest) -> HttpResponse:
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if request.path.startswith(GRAPHQL_PATH):
        body = {
            "data": None,
            "errors": [{"message": UNAVAILABLE, "extensions": {"code": "SERVICE_UNAVAILABLE"}}],
        }
        return JsonResponse(body, status=503, headers=headers)
    if request.path.startswith(API_PREFIXES):
        return JsonResponse({"message": UNAVAILABLE}, status=503, headers=headers)
    return HttpResponse(UNAVAILABLE, status=503, content_type="text/plain", headers=headers)


class DatabaseUnavailableMiddleware:
    """A view that could not reach the database answers 503, logged in one line (not a
    traceback per request for as long as the outage lasts)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not database_unavailable(exception):
            return None
        logger.warning("%s %s: database unavailable: %s", request.method, request.path, exception)
        return service_unavailable(request)


def handle_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler404``: API clients get GitLab's JSON 404 for unknown routes; people get the
    HTML page."""
    if request.path.startswith(API_PREFIXES):
        return JsonResponse({"message": "404 Not Found"}, status=404)
    return page_not_found(request, exception)


def handle_server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: what escaped the views and the middleware. Django calls it while
    handling the exception, so ``sys.exc_info`` names it (a database error raised by a
    middleware, say a session saved after the database went away, is still a 503). API
    clients get JSON, never the HTML page."""
    if database_unavailable(sys.exc_info()[1]):
        return service_unavailable(request)
    if request.path.startswith(GRAPHQL_PATH):
        body = {"data": None, "errors": [{"message": "Unexpected error."}]}
        return JsonResponse(body, status=500)
    if request.path.startswith(API_PREFIXES):
        return JsonResponse({"message": "500 Internal Server Error"}, status=500)
    return server_error(request)
