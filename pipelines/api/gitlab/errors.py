"""GitLab's error bodies for every error of the v4 API: ``{"message": ...}`` or ``{"error": ...}``.

GitLab answers 401 with ``{"message": "401 Unauthorized"}``, 404 with
``{"message": "404 Project Not Found"}``, a refused parameter with
``{"error": "ref is missing"}`` and validation failures with ``{"message": {field: [...]}}``
(``render_validation_error!``, always a 400, a name already taken included).
"""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

from pipelines.errors import DomainError, Forbidden, InvalidParameter, MalformedInput


def gitlab_exception_handler(exc, context):
    """DRF's exception handler for the v4 API: the domain's refusals, and DRF's own."""
    if isinstance(exc, DomainError):
        return refusal_response(exc)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "404 Not Found")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or "403 Forbidden")
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: let Django log it and answer 500

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
        return forbidden_response(str(exc.detail))
    if isinstance(exc, exceptions.ParseError):
        return Response({"error": f"400 Bad request - {exc.detail}"}, status=400)
    if isinstance(exc, exceptions.ValidationError):
        return Response({"message": exc.detail}, status=400)
    if isinstance(exc, exceptions.NotFound):
        detail = str(exc.detail)
        return Response(
            {"message": detail if detail.startswith("404") else f"404 {detail}"},
            status=404,
        )
    if isinstance(exc, exceptions.MethodNotAllowed):
        return Response({"message": "405 Method Not Allowed"}, status=405)
    return Response({"message": str(exc.detail)}, status=exc.status_code, headers=headers)


def refusal_response(refusal: DomainError) -> Response:
    if refusal.fields is not None:
        return Response({"message": refusal.fields}, status=400)
    if isinstance(refusal, Forbidden):
        return forbidden_response(refusal.message)
    if isinstance(refusal, (InvalidParameter, MalformedInput)):
        return Response({"error": refusal.message}, status=400)
    return Response({"message": refusal.message}, status=refusal.status_code)


def forbidden_response(detail: str) -> Response:
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
    return Response({"message": f"403 Forbidden - {detail}"}, status=403)
