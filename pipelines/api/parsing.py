"""Input checks every inbound API shares: ids, text, and JSON bodies.

Each dialect words its own refusals; what is refused is decided here, once:

- an id in a path, query string or body is ASCII digits that fit a database id.
  ``str.isdigit`` also takes ``²`` (which ``int()`` then refuses) and ``٣`` (which it reads
  as 3), so it cannot be the test;
- a query string or form body is UTF-8 once its %-escapes are decoded, as Rails requires of
  GitLab's parameters. Django would put U+FFFD in place of what is not, and so store text
  the client never sent; a lone surrogate arrives this way (``%ED%A0%80``);
- a JSON body is text in the request's charset holding JSON, nested at most
  ``MAX_JSON_DEPTH`` deep, with every number finite and no NUL character or lone surrogate
  (``"\\ud800"``, half of a UTF-16 pair) in any key or string. PostgreSQL stores neither NUL
  nor a lone surrogate in text, nor ``Infinity`` in jsonb, and SQLite keeps a surrogate as
  bytes that are not UTF-8: taking them would end in a 500, on PostgreSQL after part of the
  request had run.
"""

from __future__ import annotations

import codecs
import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import unquote_to_bytes

from django.conf import settings
from django.core.handlers.wsgi import get_bytes_from_wsgi
from django.http import HttpRequest, QueryDict
from rest_framework import exceptions, parsers, serializers

from pipelines.errors import InvalidJSON, MalformedInput

logger = logging.getLogger(__name__)

# The largest id a database column holds; bigger numbers can name nothing.
MAX_ID = 2**63 - 1
_ID = re.compile(r"[0-9]{1,19}")

# Deeper than any real report; shallow enough that nothing reading the body recurses too far.
MAX_JSON_DEPTH = 64

# What no text column stores: NUL, and lone surrogates (Python keeps a "\ud800" escape that
# has no other half as such; a whole pair is read as the one character it encodes).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def is_digits(value: str) -> bool:
    """Whether ``value`` is ASCII digits, however many."""
    return value.isascii() and value.isdigit()


def parse_id(value: object) -> int | None:
    """The id ``value`` (text) names, or None when it cannot name one."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        return None
    number = int(value)
    return number if number <= MAX_ID else None


def _refuse_constant(name: str) -> Any:
    raise InvalidJSON(f"the body is not valid JSON: {name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise MalformedInput(f"the body holds the number {text[:40]}, which is too large")
    return value


def load_json(text: str, *, mend: Callable[[str], str] | None = None) -> Any:
    """Parse a JSON body; ``MalformedInput`` says why it is refused.

    ``mend``, when given, rewrites text that is not valid JSON as it stands (a dialect's
    documented slips); the mended text is taken only if it then parses.
    """
    try:
        data = _decode(text)
    except json.JSONDecodeError as error:
        mended = mend(text) if mend else text
        if mended == text:
            raise _syntax_error(error) from None
        try:
            data = _decode(mended)
        except json.JSONDecodeError:
            raise _syntax_error(error) from None
        logger.info("Accepted a JSON body after mending its commas or line breaks")
    check_json_value(data)
    return data


def _decode(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (json.JSONDecodeError, MalformedInput):
        raise
    except RecursionError:
        raise MalformedInput(f"the body nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as error:  # an integer of thousands of digits, for one
        raise InvalidJSON(f"the body is not valid JSON: {error}") from None


def _syntax_error(error: json.JSONDecodeError) -> InvalidJSON:
    return InvalidJSON(
        f"the body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
    )


def check_json_value(data: Any, what: str = "the body") -> None:
    """Refuse NUL characters, lone surrogates and excessive nesting anywhere in parsed JSON."""
    pending: list[tuple[Any, str, int]] = [(data, "", 1)]
    while pending:
        value, path, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            raise MalformedInput(f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(value, str):
            _check_storable(value, what, path)
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_storable(key, what, f"{path} (in a key)")
                pending.append((item, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(value, list):
            pending.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))


def _check_storable(text: str, what: str, path: str) -> None:
    found = _UNSTORABLE.search(text)
    if found is None:
        return
    where = f"{what} at {path}" if path else what
    if found.group() == "\x00":
        raise MalformedInput(f"{where} contains a NUL character (\\u0000), which cannot be stored")
    raise MalformedInput(
        f"{where} contains a lone surrogate (\\u{ord(found.group()):04x}), half of a UTF-16"
        " pair, which is not text"
    )


def find_nul_parameter(pairs: Iterable[tuple[str, str]]) -> str | None:
    """The name of the first path or query parameter holding a NUL character, if any."""
    return next((name for name, value in pairs if "\x00" in name or "\x00" in value), None)


def is_utf8_once_unescaped(raw: bytes) -> bool:
    """Whether %-escaped ``raw`` (a query string or form body) is UTF-8 once decoded."""
    try:
        unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def check_request_text(request: HttpRequest) -> None:
    """Refuse a query string that is not UTF-8 once unescaped (``MalformedInput``). Each API
    calls it before reading any parameter.

    A path needs no such check: Django itself escapes again the bytes of a path that are not
    UTF-8 (``%ED%A0%80`` reaches a view as those nine characters), so a path parameter is
    always text; NUL characters in it are each API's to refuse.
    """
    if not is_utf8_once_unescaped(get_bytes_from_wsgi(request.META, "QUERY_STRING", "")):
        raise MalformedInput(_NOT_UTF8.format(what="the query string"))


_NOT_UTF8 = (
    "{what} is not UTF-8 text once its %-escapes are decoded (a lone surrogate, such as"
    " %ED%A0%80, is not text)"
)


class FormParser(parsers.FormParser):
    """``application/x-www-form-urlencoded``, refused with a 400 unless it is UTF-8 once
    unescaped (Django would read what is not as U+FFFD)."""

    def parse(self, stream, media_type=None, parser_context=None) -> QueryDict:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            charset = codecs.lookup(encoding).name
        except LookupError:
            unknown = f"the body's charset {encoding[:40]!r} is unknown"
            raise exceptions.ParseError(unknown) from None
        raw = stream.read()
        if charset == "utf-8" and not is_utf8_once_unescaped(raw):
            raise exceptions.ParseError(_NOT_UTF8.format(what="the form body"))
        return QueryDict(raw, encoding=encoding)


class JSONParser(parsers.JSONParser):
    """``application/json`` read by ``load_json``; what it refuses is a 400 saying why."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding)
        except (UnicodeDecodeError, LookupError):
            raise exceptions.ParseError(f"the body is not {encoding} text") from None
        try:
            return self.load(text)
        except MalformedInput as refused:
            raise exceptions.ParseError(self.describe(refused)) from None

    def load(self, text: str) -> Any:
        return load_json(text)

    def describe(self, refused: MalformedInput) -> str:
        # DRF's own wording, which GitLab clients of this API have seen from the start.
        return f"JSON parse error - {refused}"


def validation_problems(
    errors: Any, field: serializers.Field | None = None, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], serializers.ErrorDetail, serializers.Field | None]]:
    """Each field's first problem in DRF's validation ``errors``, for each API to word.

    Yields ``(path, problem, field)``: the keys and list positions that lead to the problem,
    the problem (an ``ErrorDetail`` with its ``code``) and, when ``field`` (the serializer)
    is given, the serializer field it is about.
    """
    if isinstance(errors, dict):
        for key, nested in errors.items():
            child = None
            if isinstance(field, serializers.Serializer):
                child = field.fields.get(key)
            elif isinstance(field, serializers.ListField):
                child = field.child
            yield from validation_problems(nested, child, (*path, key))
    elif isinstance(errors, list):
        if errors and all(isinstance(item, str) for item in errors):
            yield path, errors[0], field
            return
        for index, nested in enumerate(errors):
            yield from validation_problems(nested, getattr(field, "child", None), (*path, index))
    else:
        yield path, errors, field
