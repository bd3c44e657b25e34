"""Standard Webhooks signatures for deliveries, and checks for the people who receive them.

Sending: ``signature_headers`` gives ``webhook-id`` (the delivery's Idempotency-Key),
``webhook-timestamp`` (Unix seconds of this attempt) and ``webhook-signature``:
``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``, one per secret, space-separated,
so a secret can be rotated while receivers still hold the old one.

Receiving (no Django needed, only this module)::

    from hooks.signing import verify_signature, verify_token

    def receive(request):
        body = request.body  # the raw bytes, before any JSON parsing
        if not verify_signature(SIGNING_SECRET, request.headers, body):
            return 401
        ...

``verify_token`` checks the plain ``X-Gitlab-Token`` GitLab sends; the signature also covers
the body and the time, so a captured request cannot be changed or replayed later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_SECONDS = 300  # Standard Webhooks' five minutes, too old or too new


def generate_signing_secret() -> str:
    """A new secret in GitLab's and Standard Webhooks' format: whsec_ + base64(32 bytes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str | bytes) -> bytes:
    """The HMAC key of a ``whsec_`` secret (raw bytes are taken as the key itself)."""
    if isinstance(secret, bytes):
        return secret
    encoded = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a signing secret is 'whsec_' followed by base64") from None
    if not key:
        raise ValueError("the signing secret is empty")
    return key


def sign(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of ``{msg_id}.{timestamp}.{body}``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signature_headers(
    secrets_: str | Iterable[str], msg_id: str, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with every secret given."""
    if isinstance(secrets_, str):
        secrets_ = [secrets_]
    timestamp = int(time.time()) if timestamp is None else timestamp
    signatures = " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets_)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
    }


# --- For receivers ---------------------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Header lookup that ignores case, for plain dicts as well as request.headers."""
    value = headers.get(name)
    if value is None:
        wanted = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    return value


def verify_token(headers: Mapping[str, str], expected: str) -> bool:
    """Whether ``X-Gitlab-Token`` equals ``expected`` (compared in constant time)."""
    received = _header(headers, "X-Gitlab-Token")
    if received is None or not expected:
        return False
    return hmac.compare_digest(received.encode(), expected.encode())


def verify_signature(
    secret: str | bytes | Iterable[str],
    headers: Mapping[str, str],
    body: bytes | str,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    *,
    now: float | None = None,
) -> bool:
    """Whether the Standard Webhooks headers sign ``body`` with ``secret`` (or any of several
    secrets, while you rotate) and the timestamp is within ``tolerance`` seconds of now.

    ``body`` must be the raw request body: re-serialized JSON does not match.
    """
    msg_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    if not (msg_id and stamp and signatures):
        return False
    try:
        timestamp = int(stamp)
    except ValueError:
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        return False
    if isinstance(body, str):
        body = body.encode()
    candidates = [secret] if isinstance(secret, str | bytes) else list(secret)
    offered = [
        part.split(",", 1)[1]
        for part in signatures.split()
        if part.startswith(f"{SIGNATURE_VERSION},")
    ]
    for candidate in candidates:
        try:
            expected = sign(candidate, msg_id, timestamp, body).split(",", 1)[1]
        except ValueError:
            continue
        if any(hmac.compare_digest(expected.encode(), given.encode()) for given in offered):
            return True
    return False


def url_digest(url: str, key: str | None = None) -> str:
    """A keyed digest of a hook URL (HMAC-SHA256 with SECRET_KEY), kept on each attempt so a
    resend can tell the URL changed since (GitLab's ``WebHookLog#url_hash``) without the
    URL's credentials or secret query values ever being stored in clear."""
    if key is None:
        from django.conf import settings

        key = settings.SECRET_KEY
    return hmac.new(key.encode(), url.encode(), hashlib.sha256).hexdigest()
