"""What of a URL is never shown: credentials and token-like query values.

One rule for every place a URL or a request line appears: hook URLs in the API and the admin,
the delivery log, the access log and every other log line.

- A URL's userinfo (``https://user:password@host/``) is masked whole, user included, as
  GitLab's ``UrlSanitizer#masked_url`` does: ``https://*****:*****@host/``. A user name is
  often a token itself (``https://<token>@host``).
- A query parameter whose name says it holds a secret has its value replaced by
  ``[FILTERED]``: GitLab's ``filter_parameters`` rule (names ending in ``token`` or ``key``,
  names holding ``password`` or ``secret``), read case-insensitively so Distelli's
  ``apiToken`` and ``X-Api-Key`` count too, plus signature parameters (``sig``,
  ``signature``) and Azure Functions' ``code``.
- In log text, the product's own secrets (``phk_…`` tokens, ``whsec_…`` signing secrets) are
  masked wherever they appear.

A URL shown masked can be sent back unchanged (a form saved as it was, a client that reads
a hook and writes it again): ``restore_masked`` puts the stored parts back, and only for the
same scheme and host, so credentials never follow a URL to another receiver.

Pure functions of strings: no Django, no parsing library, so they never fail on a URL a
parser would refuse (and a refused URL is no reason to show its password).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

URL_CREDENTIALS_MASK = "*****"
QUERY_VALUE_MASK = "[FILTERED]"

_SECRET_NAME = re.compile(r"(token|key)$|passw|secret|signature|^(sig|code|pwd|auth)$", re.I)
# The authority ends at the first of these (as in urllib3's and the WHATWG parsers for http).
_AUTHORITY_END = re.compile(r"[/\\?#]")
# In free text: "scheme://userinfo@" and "?name=value" / "&name=value".
_TEXT_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)([^/\\?#\s@\"'<>]+)@")
_TEXT_PARAMETER = re.compile(r"([?&;])([^=&;?#\s\"'<>]+)=([^&;#\s\"'<>]*)")
_PRODUCT_SECRET = re.compile(r"\b(phk_|whsec_)[A-Za-z0-9_\-+/=]{8,}")


def is_secret_parameter(name: str) -> bool:
    """Whether a query (or form) parameter of this name holds a secret."""
    return bool(_SECRET_NAME.search(unquote_plus(name).strip()))


def redact_query(query: str) -> str:
    """A query string with the values of secret parameters masked, the rest as it was."""
    if not query:
        return query
    parts = []
    for part in query.split("&"):
        name, equals, value = part.partition("=")
        if equals and value and is_secret_parameter(name):
            value = QUERY_VALUE_MASK
        parts.append(f"{name}{equals}{value}")
    return "&".join(parts)


def _split(url: str) -> tuple[str, str | None, str, str, str | None, str]:
    """(scheme://, userinfo or None, host[:port], path, query or None, #fragment)."""
    scheme_end = url.find("://")
    if scheme_end < 0:
        prefix, authority, rest = "", "", url
    else:
        prefix, after = url[: scheme_end + 3], url[scheme_end + 3 :]
        end = _AUTHORITY_END.search(after)
        authority, rest = (after[: end.start()], after[end.start() :]) if end else (after, "")
    userinfo, at, host = authority.rpartition("@")
    rest, hash_mark, fragment = rest.partition("#")
    path, question, query = rest.partition("?")
    return (
        prefix,
        userinfo if at else None,
        host,
        path,
        query if question else None,
        hash_mark + fragment,
    )


def _join(prefix, userinfo, host, path, query, fragment) -> str:
    authority = f"{userinfo}@{host}" if userinfo is not None else host
    return f"{prefix}{authority}{path}" + (f"?{query}" if query is not None else "") + fragment


def _masked_userinfo(userinfo: str) -> str:
    user, colon, password = userinfo.partition(":")
    masked = URL_CREDENTIALS_MASK if user else ""
    return masked + (f":{URL_CREDENTIALS_MASK}" if colon and password else colon)


def redact_url(url: str) -> str:
    """The URL as it may be shown: credentials and secret query values masked."""
    prefix, userinfo, host, path, query, fragment = _split(url)
    if userinfo is not None:
        userinfo = _masked_userinfo(userinfo)
    if query is not None:
        query = redact_query(query)
    return _join(prefix, userinfo, host, path, query, fragment)


def is_redacted(url: str) -> bool:
    """Whether a URL still holds a mask where a credential or secret value belongs."""
    _, userinfo, _, _, query, _ = _split(url)
    if userinfo is not None and URL_CREDENTIALS_MASK in userinfo:
        return True
    return any(part.partition("=")[2] == QUERY_VALUE_MASK for part in (query or "").split("&"))


def same_origin(url: str, other: str) -> bool:
    """Whether two URLs reach the same receiver: same scheme and host[:port]."""
    first, second = _split(url), _split(other)
    return (first[0].lower(), first[2].lower()) == (second[0].lower(), second[2].lower())


def restore_masked(submitted: str, stored: str) -> str:
    """``submitted`` with masked parts taken back from ``stored``, when both are for the same
    scheme and host; otherwise ``submitted`` as it is (still masked: see ``is_redacted``)."""
    if not same_origin(submitted, stored):
        return submitted
    new, old = _split(submitted), _split(stored)
    prefix, userinfo, host, path, query, fragment = new
    if userinfo is not None and old[1] is not None and userinfo == _masked_userinfo(old[1]):
        userinfo = old[1]
    if query:
        stored_values: dict[str, list[str]] = {}
        for part in (old[4] or "").split("&"):
            name, _, value = part.partition("=")
            stored_values.setdefault(name, []).append(value)
        parts = []
        for part in query.split("&"):
            name, equals, value = part.partition("=")
            if value == QUERY_VALUE_MASK and stored_values.get(name):
                value = stored_values[name].pop(0)
            parts.append(f"{name}{equals}{value}")
        query = "&".join(parts)
    return _join(prefix, userinfo, host, path, query, fragment)


def redact_text(text: str) -> str:
    """A log line with credentials in URLs, secret query values and product secrets masked."""
    text = _TEXT_USERINFO.sub(lambda m: m.group(1) + _masked_userinfo(m.group(2)) + "@", text)
    text = _TEXT_PARAMETER.sub(
        lambda m: (
            f"{m.group(1)}{m.group(2)}={QUERY_VALUE_MASK}"
            if m.group(3) and is_secret_parameter(m.group(2))
            else m.group(0)
        ),
        text,
    )
    return _PRODUCT_SECRET.sub(lambda m: m.group(1) + QUERY_VALUE_MASK, text)


class RedactSecretsFilter(logging.Filter):
    """A logging filter that passes every record with ``redact_text`` applied to its message.

    Set on handlers (Django's ``LOGGING``, gunicorn's access and error logs), so it sees
    records of every logger, the request lines of servers included.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
