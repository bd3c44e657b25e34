"""What every delivery request carries: GitLab's headers, the hook's own, and how the log
keeps them.

``RESERVED_HEADERS`` is the one list of names a custom header may not have: the ones every
request sets itself, and the hop-by-hop ones a custom value would break.
"""

from __future__ import annotations

import uuid
from importlib import metadata

from django.conf import settings

from hooks import signing, transport
from hooks.models import Hook


def _pipehook_version() -> str:
    try:
        return metadata.version("pipehook")
    except metadata.PackageNotFoundError:
        return "0.1.0"


# Receivers written for GitLab look for "GitLab/"; the second product says who really sent it.
GITLAB_COMPATIBLE_VERSION = "18.10.0"
USER_AGENT = f"GitLab/{GITLAB_COMPATIBLE_VERSION} Pipehook/{_pipehook_version()}"
EVENT_HEADER = "Pipeline Hook"
REDACTED = "[REDACTED]"

# Headers every request sets itself (and hop-by-hop ones a custom header would break): the
# API and the admin refuse a custom header with one of these names (hooks.validators), and
# one in a row edited by hand is left out when sending.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "user-agent",
        "connection",
        "transfer-encoding",
        "idempotency-key",
        "x-gitlab-event",
        "x-gitlab-token",
        "x-gitlab-instance",
        "x-gitlab-webhook-uuid",
        "x-gitlab-event-uuid",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)
SECRET_HEADERS = frozenset({"x-gitlab-token", "webhook-signature", "authorization"})


def build_headers(hook: Hook, *, body: bytes, idempotency_key: str, event_uuid: str) -> dict:
    """GitLab's delivery headers (plus Standard Webhooks' when the hook has a signing
    secret) over the hook's custom headers, which can never replace them."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Gitlab-Event": EVENT_HEADER,
        "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
        "X-Gitlab-Instance": settings.PIPEHOOK_EXTERNAL_URL,
        "X-Gitlab-Event-UUID": event_uuid,
        "Idempotency-Key": idempotency_key,
    }
    if hook.token:
        # GitLab strips line breaks, which would otherwise start a new header.
        headers["X-Gitlab-Token"] = hook.token.replace("\r", "").replace("\n", "")
    if hook.signing_token:
        headers.update(signing.signature_headers(hook.signing_token, idempotency_key, body))
    custom = {
        name: value
        for name, value in _custom_headers(hook).items()
        if isinstance(name, str)
        and isinstance(value, str)
        and name.lower() not in RESERVED_HEADERS
        and not any(c in name + value for c in "\r\n\0")
    }
    return {**custom, **headers}


def _custom_headers(hook: Hook) -> dict:
    # Saved through the form or API it is always {name: value}; a hand-edited row may not be.
    return hook.custom_headers if isinstance(hook.custom_headers, dict) else {}


def redact_headers(headers: dict[str, str], hook: Hook) -> dict[str, str]:
    """The request headers as the log keeps them: secrets and custom values masked."""
    custom = {name.lower() for name in _custom_headers(hook)}
    return {
        name: REDACTED if name.lower() in SECRET_HEADERS or name.lower() in custom else value
        for name, value in headers.items()
    }


def request_for(hook: Hook, body: str, headers: dict[str, str]) -> transport.Outgoing:
    """The request that carries ``body`` with ``headers`` to ``hook``."""
    return transport.Outgoing(
        url=hook.url,
        body=body.encode(),
        headers=headers,
        verify_ssl=hook.enable_ssl_verification,
        hook_id=hook.pk,
    )
