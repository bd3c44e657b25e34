"""GitLab's error bodies for every API error: ``{"message": ...}`` or ``{"error": ...}``.

GitLab answers 401 with ``{"message": "401 Unauthorized"}``, 404 with
``{"message": "404 Project Not Found"}``, a missing parameter with
``{"error": "ref is missing"}`` and validation failures with ``{"message": {field: [...]}}``.
"""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from pipelines.errors import ServiceError


class ParameterError(exceptions.APIException):
    """A parameter GitLab's Grape layer refuses: ``{"error": "ref is missing"}``."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_parameter"


def gitlab_exception_handler(exc, context):
    if isinstance(exc, ServiceError):
        set_rollback()
        return Response({"message": exc.message}, status=exc.status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "404 Not Found")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or "403 Forbidden")
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: let Django log it and answer 500

    set_rollback()
    headers = {}
    if auth_header := getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = auth_header
    if wait := getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(wait))

    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        return Response(
            {"message": "401 Unauthorized"}, status=status.HTTP_401_UNAUTHORIZED, headers=headers
        )
    if isinstance(exc, exceptions.PermissionDenied):
        detail = str(exc.detail)
        if detail.startswith("insufficient_scope"):
            return Response(
                {
                    "error": "insufficient_scope",
                    "error_description": "The request requires higher privileges than "
                    "provided by the access token.",
                    "scope": "api",
                    "message": f"403 Forbidden - {detail}",
                },
                status=status.HTTP_403_FORBIDDEN,
            )
        return Response({"message": f"403 Forbidden - {detail}"}, status=403, headers=headers)
    if isinstance(exc, ParameterError):
        return Response({"error": str(exc.detail)}, status=400)
    if isinstance(exc, exceptions.ParseError):
        return Response({"error": f"400 Bad request - {exc.detail}"}, status=400)
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        if isinstance(detail, dict) and len(detail) == 1:
            field, problems = next(iter(detail.items()))
            if isinstance(problems, list) and problems and "required" in str(problems[0]):
                return Response({"error": f"{field} is missing"}, status=400)
        return Response({"message": detail}, status=400)
    if isinstance(exc, exceptions.NotFound):
        detail = str(exc.detail)
        return Response(
            {"message": detail if detail.startswith("404") else f"404 {detail}"},
            status=404,
        )
    if isinstance(exc, exceptions.MethodNotAllowed):
        return Response({"message": "405 Method Not Allowed"}, status=405)
    return Response({"message": str(exc.detail)}, status=exc.status_code, headers=headers)
