"""The GraphQL API's HTTP view: Strawberry's Django view with the API key in its context,
the input every API refuses refused first (``pipelines.api.parsing``), and JSON bodies for
every refusal made before an operation runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cross_web import HTTPException
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from strawberry.django.views import GraphQLView

from pipelines import auth
from pipelines.api.graphql.schema import schema
from pipelines.api.parsing import check_request_text, load_json
from pipelines.errors import InvalidJSON, MalformedInput, NotAuthenticated
from pipelines.models import AccessToken


@dataclass
class ApiContext:
    """Per-request context; the API key is looked up on first use, so introspection needs none."""

    request: HttpRequest
    response: HttpResponse
    _token: AccessToken | None = field(default=None, init=False)
    # Set when a resolver could not reach the database: the view then answers 503, not 200
    # with "Unexpected error.".
    database_error: DatabaseError | None = field(default=None, init=False)

    def token(self) -> AccessToken:
        if self._token is None:
            raw = auth.raw_token_from_request(self.request)
            if raw is None:
                raise NotAuthenticated("Not authenticated: send an API key in the x-api-key header")
            token = auth.find_token(raw)
            if token is None:
                raise NotAuthenticated("Invalid API key: it is unknown, revoked or expired")
            self._token = token
        return self._token


def _check_request(request: HttpRequest) -> None:
    """Refuse, with a 400 (``MalformedInput``), what every API refuses
    (``check_request_text``, ``load_json``) and the bodies Strawberry would fail on with a 500
    (not an object, not UTF-8)."""
    check_request_text(request)
    if request.method != "POST" or "application/json" not in (request.content_type or ""):
        return
    try:
        data = _load_json(request.body)
    except UnicodeDecodeError:
        raise MalformedInput("the body is not UTF-8 text") from None
    if not isinstance(data, dict):
        raise MalformedInput('the body must be a JSON object: {"query": "...", "variables": {...}}')


def _load_json(data: str | bytes) -> object:
    try:
        return load_json(data.decode() if isinstance(data, bytes) else data)
    except InvalidJSON:
        raise InvalidJSON(UNPARSABLE) from None  # in Strawberry's own words


UNPARSABLE = "Unable to parse request body as JSON"


class PipehookGraphQLView(GraphQLView):
    """Strawberry's Django view with API-key context and JSON bodies for HTTP-level errors."""

    context: ApiContext | None = None

    def get_context(self, request: HttpRequest, response: HttpResponse) -> ApiContext:
        # Django makes a view instance per request, so this is the request's own context.
        self.context = ApiContext(request=request, response=response)
        return self.context

    def decode_json(self, data: str | bytes) -> object:
        # GET's variables and extensions parameters; POST bodies passed _check_request.
        try:
            return _load_json(data)
        except UnicodeDecodeError as undecodable:
            raise MalformedInput(str(undecodable)) from None

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            _check_request(request)
            response = self.run(request=request)
        except HTTPException as refused:  # Strawberry's own refusals
            return _refusal(refused.status_code, refused.reason)
        except MalformedInput as refused:
            return _refusal(400, refused.message)
        if self.context is not None and self.context.database_error is not None:
            raise self.context.database_error  # answered 503 like every API's
        return response


def _refusal(status: int, message: str) -> JsonResponse:
    """A request refused before any operation ran, in GraphQL's error shape."""
    return JsonResponse({"data": None, "errors": [{"message": message}]}, status=status)


# Only API keys authenticate here (never the session cookie), so cross-site requests carry
# no credentials and the CSRF check has nothing to protect.
graphql_view = csrf_exempt(PipehookGraphQLView.as_view(schema=schema, graphql_ide="graphiql"))
