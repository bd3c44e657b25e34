import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from hooks.signing import (
    generate_signing_secret,
    signature_headers,
    verify_signature,
    verify_token,
)

BODY = b'{"object_kind":"pipeline","object_attributes":{"status":"success"}}'
MSG_ID = "6f1c3b0e-3f0a-4c53-9d55-2a4f8a3f2a10"


def test_generate_signing_secret_is_whsec_and_32_random_bytes():
    secret = generate_signing_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert secret != generate_signing_secret()


def test_signature_verifies_with_our_helper_and_the_standardwebhooks_library():
    secret = generate_signing_secret()
    headers = signature_headers(secret, MSG_ID, BODY)
    assert headers["webhook-id"] == MSG_ID
    assert headers["webhook-signature"].startswith("v1,")
    assert verify_signature(secret, headers, BODY)
    assert Webhook(secret).verify(BODY, headers) == {
        "object_kind": "pipeline",
        "object_attributes": {"status": "success"},
    }


def test_signature_matches_the_standard_webhooks_reference_signer():
    secret = generate_signing_secret()
    stamp = int(time.time())
    headers = signature_headers(secret, MSG_ID, BODY, timestamp=stamp)
    expected = Webhook(secret).sign(MSG_ID, datetime.fromtimestamp(stamp, UTC), BODY.decode())
    assert headers["webhook-signature"] == expected


def test_rotation_sends_one_signature_per_secret_and_either_verifies():
    old, new = generate_signing_secret(), generate_signing_secret()
    headers = signature_headers([new, old], MSG_ID, BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert verify_signature(old, headers, BODY)
    assert verify_signature(new, headers, BODY)
    assert Webhook(old).verify(BODY, headers)
    assert verify_signature([generate_signing_secret(), old], headers, BODY)


def test_verify_signature_refuses_tampering_wrong_secret_and_stale_timestamps():
    secret = generate_signing_secret()
    stamp = int(time.time())
    headers = signature_headers(secret, MSG_ID, BODY, timestamp=stamp)
    assert not verify_signature(secret, headers, BODY.replace(b"success", b"failed"))
    assert not verify_signature(generate_signing_secret(), headers, BODY)
    assert not verify_signature(secret, {**headers, "webhook-id": "other"}, BODY)
    assert not verify_signature(secret, headers, BODY, now=stamp + 301)
    assert not verify_signature(secret, headers, BODY, now=stamp - 301)
    assert verify_signature(secret, headers, BODY, now=stamp + 299)
    assert verify_signature(secret, headers, BODY, tolerance=3600, now=stamp + 1800)
    missing = {k: v for k, v in headers.items() if k != "webhook-timestamp"}
    assert not verify_signature(secret, missing, BODY)
    assert not verify_signature(secret, {**headers, "webhook-timestamp": "soon"}, BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"success", b"failed"), headers)


def test_verify_signature_reads_headers_in_any_case_and_str_bodies():
    secret = generate_signing_secret()
    headers = {k.title(): v for k, v in signature_headers(secret, MSG_ID, BODY).items()}
    assert verify_signature(secret, headers, BODY.decode())


def test_verify_token_compares_the_gitlab_token_header():
    assert verify_token({"X-Gitlab-Token": "s3cret"}, "s3cret")
    assert verify_token({"x-gitlab-token": "s3cret"}, "s3cret")
    assert not verify_token({"X-Gitlab-Token": "guess"}, "s3cret")
    assert not verify_token({}, "s3cret")
    assert not verify_token({"X-Gitlab-Token": ""}, "")
