"""Plumbing shared by the SEI and Distelli dialects: their JSON, their errors, their keys.

Both dialects answer every refusal (a ``pipelines.errors.DomainError``, or DRF's own) with
``{"message": "..."}`` and its 4xx, having written nothing (each write is one service's
transaction), and take the service's own access tokens in the places their documentation
shows (``Authorization: ApiKey|Bearer``, ``?apiToken=``).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from pipelines.api.parsing import (
    JSONParser,
    check_request_text,
    find_nul_parameter,
    load_json,
    validation_problems,
)
from pipelines.auth import find_token, raw_token_from_request
from pipelines.errors import DomainError, InvalidInput, MalformedInput, NotAuthenticated
from pipelines.models import AccessToken

# What may end a JSON value, so a string starting right after it lacks a comma.
_VALUE_END = frozenset('"0123456789el}]')


def repair_json_slips(text: str) -> str:
    """Mend the slips the dialects' own documentation makes, and nothing else.

    Only called on text that is not valid JSON, and every mended spot is invalid JSON as it
    stands, so no valid body is ever changed:

    - a comma before a closing ``}`` or ``]`` is dropped (``{"name": "x",}``);
    - a missing comma between a value and the next string is added
      (``"cfr_status": true`` newline ``"themes": [...]``);
    - raw line breaks inside a string are removed: the examples wrap long lines in the middle
      of strings (``"http`` newline ``s://github...``), and JSON forbids raw control
      characters in strings.
    """
    out: list[str] = []
    in_string = escaped = False
    last = ""  # the last significant character outside strings
    length = len(text)
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
                last = '"'
            elif char in "\r\n":
                continue
            out.append(char)
        elif char == '"':
            if last in _VALUE_END:
                out.append(",")
            out.append(char)
            in_string = True
        elif char == ",":
            following = index + 1
            while following < length and text[following].isspace():
                following += 1
            if following < length and text[following] in "}]":
                continue
            out.append(char)
            last = char
        else:
            out.append(char)
            if not char.isspace():
                last = char
    return "".join(out)


def parse_json_text(text: str) -> Any:
    """Parse JSON, forgiving only what ``repair_json_slips`` mends; else a clear 400."""
    return load_json(text, mend=repair_json_slips)


class LenientJSONParser(JSONParser):
    """``application/json`` parsed by ``parse_json_text``."""

    def load(self, text: str) -> Any:
        return load_json(text, mend=repair_json_slips)

    def describe(self, refused: MalformedInput) -> str:
        return str(refused)


class Text(serializers.CharField):
    """A string and only a string: numbers and booleans are refused, not turned into text."""

    default_error_messages = {"not_text": "must be a string"}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_text")
        return super().to_internal_value(data)


def optional_text(max_length: int = 255) -> Text:
    """A ``Text`` the client may leave out, send as null or send empty."""
    return Text(required=False, allow_null=True, allow_blank=True, max_length=max_length)


def optional_list(child: serializers.Field) -> serializers.ListField:
    """A list the client may leave out or send as null, whose items may not be null.

    (``Serializer(many=True, allow_null=True)`` would let ``[null]`` through: DRF hands
    ``allow_null`` to the items too.)"""
    return serializers.ListField(child=child, required=False, allow_null=True)


class RefusalSerializer(serializers.Serializer):
    message = serializers.CharField(help_text="What is wrong, in a sentence.")


def refusals(texts: dict[int, str]) -> dict[int, OpenApiResponse]:
    """The OpenAPI responses of a dialect's refusals: ``{"message": ...}`` for each code."""
    return {code: OpenApiResponse(RefusalSerializer, text) for code, text in texts.items()}


def describe_errors(errors: Any) -> list[str]:
    """DRF validation errors as ``field: problem`` lines, with paths into lists
    (``job_run.stages[0].displayName: must be a string``)."""
    lines = []
    for path, problem, _ in validation_problems(errors):
        where = ""
        for part in path:
            if isinstance(part, int):
                where += f"[{part}]"
            elif part != "non_field_errors":
                where += f".{part}" if where else part
        lines.append(f"{where}: {problem}" if where else str(problem))
    return lines


def validated(serializer: serializers.Serializer) -> dict:
    if not serializer.is_valid():
        raise InvalidInput("; ".join(describe_errors(serializer.errors)))
    return serializer.validated_data


def token_from_request(request, *, how: str) -> AccessToken:
    """The caller's active access token, or a 401 that says how to send one."""
    raw = raw_token_from_request(request)
    if raw is None:
        raise NotAuthenticated(f"an access token is needed: {how}")
    token = find_token(raw)
    if token is None:
        raise NotAuthenticated("the access token is not valid: it is unknown, revoked or expired")
    return token


def dialect_exception_handler(exc: Exception, context: dict) -> Response | None:
    """Every refusal as ``{"message": ...}``; anything unforeseen stays a logged 500."""
    if isinstance(exc, DomainError):
        status, message = exc.status_code, exc.message
    elif isinstance(exc, exceptions.UnsupportedMediaType):
        status = 415
        message = "the body must be JSON, sent with Content-Type: application/json"
    elif isinstance(exc, exceptions.MethodNotAllowed):
        allowed = ", ".join(m for m in context["view"].allowed_methods if m != "OPTIONS")
        status = 405
        message = f"{context['request'].method} is not allowed here; use {allowed}"
    elif isinstance(exc, exceptions.APIException):
        status, message = exc.status_code, str(exc.detail)
    else:
        return None
    return Response({"message": message}, status=status)


class DialectView(APIView):
    """A view that checks keys itself (so refusals read clearly) and answers in ``message``."""

    authentication_classes: list = []
    permission_classes: list = []
    parser_classes = [LenientJSONParser]

    def get_exception_handler(self):
        return dialect_exception_handler

    def initial(self, request, *args, **kwargs) -> None:
        check_request_text(request._request)
        super().initial(request, *args, **kwargs)
        query = ((name, value) for name, values in request.query_params.lists() for value in values)
        name = find_nul_parameter([*kwargs.items(), *query])
        if name is not None:
            raise MalformedInput(
                f"{name} contains a NUL character (%00), which no name or value has"
            )

    def json_object(self, request) -> dict:
        """The body, which must be a JSON object."""
        data = request.data
        if not isinstance(data, dict):
            raise InvalidInput("the body must be a JSON object")
        return data
