"""Site-wide request plumbing that runs before any view."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)


class RequestBodyLimitMiddleware:
    """Refuse a request whose body is larger than ``PIPEHOOK_MAX_REQUEST_BODY_BYTES`` with
    GitLab's 413 (``file_too_large!``), before anything reads it.

    The declared length is the one the body is read by: Django (like any WSGI application)
    reads at most ``CONTENT_LENGTH`` bytes, so a body longer than it declares is never read
    past that. A chunked body without a length reaches the application with one: the
    embedded server (config/webserver.py) and a buffering proxy count it as it arrives and
    refuse it there once it passes the limit.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.PIPEHOOK_MAX_REQUEST_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0  # Django reads such a body as empty, so nothing is read
        if length > limit:
            logger.warning(
                "refused a %d-byte body for %s %s (limit %d)",
                length,
                request.method,
                request.path,
                limit,
            )
            return JsonResponse(
                {
                    "message": "413 Request Entity Too Large: "
                    f"the request body may be at most {limit} bytes"
                },
                status=413,
            )
        return self.get_response(request)
