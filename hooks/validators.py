"""Rules for a hook's settings, shared by the admin form and the hooks API.

Each check raises ``HookSettingError`` with a message a person can act on; the API turns it
into GitLab's 422 body and the form into a field error. Nothing here touches the database.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping

from hooks.destinations import InvalidHookURL, validate_hook_url
from hooks.headers import RESERVED_HEADERS
from hooks.signing import SECRET_PREFIX
from pipelines.models import Status
from pipelines.redaction import (
    QUERY_VALUE_MASK,
    URL_CREDENTIALS_MASK,
    is_redacted,
    restore_masked,
)

# GitLab's WebHook::SECRET_MASK: what a form shows instead of a stored custom header value.
SECRET_MASK = "************"

MAX_CUSTOM_HEADERS = 20  # GitLab's limit per hook
MAX_HEADER_NAME_LENGTH = 255
MAX_HEADER_VALUE_LENGTH = 2000
HEADER_NAME = re.compile(r"^[A-Za-z0-9._-]+$")  # GitLab: letters, digits, '.', '-', '_'

# Standard Webhooks secrets are 24 to 64 random bytes; GitLab generates 32.
SIGNING_KEY_MIN_BYTES = 24
SIGNING_KEY_MAX_BYTES = 64

PIPELINE_STATUSES = tuple(Status.values)


class HookSettingError(ValueError):
    """A hook setting is not acceptable: ``field`` names it, ``message`` says why."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def check_secret_token(token: str) -> str:
    """The X-Gitlab-Token value; a line break would let it inject other headers."""
    if "\r" in token or "\n" in token:
        raise HookSettingError("token", "token may not contain line breaks")
    if len(token) > 255:
        raise HookSettingError("token", "token is longer than 255 characters")
    return token


def check_signing_token(value: str) -> str:
    """A Standard Webhooks secret: ``whsec_`` followed by base64 of 24 to 64 bytes."""
    value = value.strip()
    if not value.startswith(SECRET_PREFIX):
        raise HookSettingError(
            "signing_token",
            "signing_token must start with 'whsec_' followed by base64 (e.g. whsec_ and 32 "
            "random bytes in base64)",
        )
    encoded = value[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise HookSettingError(
            "signing_token", "signing_token is not valid base64 after 'whsec_'"
        ) from None
    if not SIGNING_KEY_MIN_BYTES <= len(key) <= SIGNING_KEY_MAX_BYTES:
        raise HookSettingError(
            "signing_token",
            f"signing_token must encode {SIGNING_KEY_MIN_BYTES} to {SIGNING_KEY_MAX_BYTES}"
            f" bytes, this one encodes {len(key)}",
        )
    return value


def check_custom_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Custom headers as stored: ``{name: value}``, at most 20, never a delivery header."""
    if len(headers) > MAX_CUSTOM_HEADERS:
        raise HookSettingError(
            "custom_headers", f"at most {MAX_CUSTOM_HEADERS} custom headers are allowed"
        )
    checked: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in headers.items():
        if not isinstance(name, str) or not HEADER_NAME.match(name):
            raise HookSettingError(
                "custom_headers",
                f"header name {name!r} may contain only letters, digits, '.', '-' and '_'",
            )
        if len(name) > MAX_HEADER_NAME_LENGTH:
            raise HookSettingError("custom_headers", f"header name {name[:40]!r}… is too long")
        if name.lower() in RESERVED_HEADERS:
            raise HookSettingError(
                "custom_headers",
                f"{name} is set by every delivery and cannot be replaced by a custom header",
            )
        if name.lower() in seen:
            raise HookSettingError("custom_headers", f"header {name} is given twice")
        if not isinstance(value, str):
            raise HookSettingError("custom_headers", f"the value of header {name} must be a string")
        if "\r" in value or "\n" in value or "\0" in value:
            raise HookSettingError(
                "custom_headers", f"the value of header {name} may not contain line breaks"
            )
        if len(value) > MAX_HEADER_VALUE_LENGTH:
            raise HookSettingError("custom_headers", f"the value of header {name} is too long")
        seen.add(name.lower())
        checked[name] = value
    return checked


def check_ref_filter(strategy: str, ref_filter: str) -> str:
    """A regex filter must compile; wildcard and all_branches accept any text."""
    if strategy == "regex" and ref_filter:
        try:
            re.compile(ref_filter)
        except re.error as exc:
            raise HookSettingError(
                "ref_filter", f"ref_filter is not a valid regular expression: {exc}"
            ) from None
    if len(ref_filter) > 255:
        raise HookSettingError("ref_filter", "ref_filter is longer than 255 characters")
    return ref_filter


def check_status_filter(statuses: Iterable[str]) -> list[str]:
    """Pipeline statuses in GitLab's vocabulary, deduplicated, in a stable order."""
    wanted = []
    for status in statuses:
        status = str(status).strip()
        if not status:
            continue
        if status not in PIPELINE_STATUSES:
            raise HookSettingError(
                "status_filter",
                f"status_filter: {status!r} is not a pipeline status"
                f" (one of {', '.join(PIPELINE_STATUSES)})",
            )
        if status not in wanted:
            wanted.append(status)
    return wanted


def check_url(url: str, stored: str = "") -> str:
    """An http(s) URL whose host is allowed by the SSRF rule (HOOKS_ALLOWED_NETWORKS).

    The URL may be the stored one as it is shown, masked (``pipelines.redaction``): its
    hidden parts are then taken back from ``stored``, for the same scheme and host only.
    """
    url = url.strip()
    if not url:
        raise HookSettingError("url", "url is empty")
    if stored:
        url = restore_masked(url, stored)
    if is_redacted(url):
        raise HookSettingError(
            "url",
            f"url holds masked parts ({URL_CREDENTIALS_MASK} or {QUERY_VALUE_MASK}) that can"
            " be kept only for the same scheme and host: give the credentials or values in full",
        )
    if len(url) > 2000:
        raise HookSettingError("url", "url is longer than 2000 characters")
    try:
        validate_hook_url(url)
    except InvalidHookURL as invalid:
        raise HookSettingError("url", invalid.message) from None
    return url
