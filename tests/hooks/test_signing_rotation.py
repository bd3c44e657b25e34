"""Rotating a hook's signing secret: the new secret is shown once; the replaced one keeps
signing every delivery beside it for HOOKS_SIGNING_SECRET_GRACE_SECONDS, so receivers that
hold either verify deliveries (with the Standard Webhooks library), then only the new one.

Real deliveries to real receivers on 127.0.0.1. Time moves by storing an expiry in the past
(what the grace's end looks like to the sender), never by sleeping."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command
from django.urls import reverse
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from hooks import delivery, sweeper
from hooks.models import Delivery, Hook
from hooks.sealing import Sealed
from hooks.services import rotate_signing_token
from hooks.signing import generate_signing_secret
from pipelines import services
from tests.clients import api_client_with
from tests.factories import HookFactory, UserFactory
from tests.hooks.test_admin import form_data, messages_of
from tests.hooks.test_limits import GITLAB_429
from tests.hooks.test_sealing import NEW_KEY, OLD_KEY, stored_row

OLD = generate_signing_secret()


class VerifyingReceiver:
    """A receiver that holds one signing secret and checks each delivery with the Standard
    Webhooks library: 204 when it verifies, 401 when not."""

    def __init__(self, secret: str):
        verifier = Webhook(secret)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    verifier.verify(body, dict(self.headers))
                    self.send_response(204)
                except WebhookVerificationError:
                    self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    started: list[VerifyingReceiver] = []

    def start(secret: str) -> VerifyingReceiver:
        started.append(VerifyingReceiver(secret))
        return started[-1]

    yield start
    for receiver in started:
        receiver.stop()


def rotate_url(hook: Hook) -> str:
    return f"/api/v4/projects/{hook.project_id}/hooks/{hook.pk}/signing_token/rotate"


def delivered_status(hook: Hook, sha: str) -> int | None:
    """Report a pipeline and send its first delivery to ``hook``: the receiver's answer."""
    services.create_pipeline(hook.project, ref="main", sha=sha)
    first = Delivery.objects.filter(hook=hook, status=Delivery.Status.PENDING).earliest("pk")
    attempt = delivery.deliver(first.pk)
    Delivery.objects.filter(hook=hook, status=Delivery.Status.PENDING).delete()  # done with it
    return attempt.response_status


def end_the_grace(hook: Hook) -> None:
    """Move every earlier secret's expiry into the past, as time passing would."""
    hook.refresh_from_db()
    past = time.time() - 1
    hook.previous_signing_tokens = [
        {**entry, "expires_at": past} for entry in hook.previous_signing_tokens
    ]
    hook.save(update_fields=["previous_signing_tokens"])


def test_receivers_with_the_old_or_the_new_secret_both_accept_until_the_grace_ends(
    project, api_client, receivers
):
    hook = HookFactory(project=project, signing_token=OLD)

    rotated = api_client.post(rotate_url(hook))

    assert rotated.status_code == 201, rotated.content
    assert rotated["Cache-Control"] == "no-store"
    new = rotated.json()["signing_token"]
    assert new.startswith("whsec_") and new != OLD
    expires = rotated.json()["previous_signing_token_expires_at"]
    hook.refresh_from_db()
    assert hook.signing_token.reveal() == new
    [previous] = hook.previous_signing_tokens
    assert previous["secret"].reveal() == OLD
    assert abs(previous["expires_at"] - (time.time() + 86400)) < 5  # Svix's 24 hours
    assert expires.startswith(time.strftime("%Y-%m-%d", time.gmtime(previous["expires_at"])))

    with_old, with_new = receivers(OLD), receivers(new)
    for number, receiver in enumerate((with_old, with_new)):
        Hook.objects.filter(pk=hook.pk).update(url=Sealed.of(receiver.url))
        assert delivered_status(hook, sha=f"{number}" * 40) == 204

    end_the_grace(hook)
    for number, (receiver, status) in enumerate(((with_old, 401), (with_new, 204))):
        Hook.objects.filter(pk=hook.pk).update(url=Sealed.of(receiver.url))
        assert delivered_status(hook, sha=f"{number + 5}" * 40) == status


def test_a_delivery_in_the_grace_carries_one_signature_per_valid_secret(project, receiver):
    hook = HookFactory(project=project, url=receiver.url, signing_token=OLD)
    first = services_rotate(hook)
    second = services_rotate(hook)
    end_the_grace_of_the_oldest(hook)

    assert delivered_status(hook, sha="a" * 40) == 200

    [request] = receiver.requests
    signatures = request.header("webhook-signature").split(" ")
    assert len(signatures) == 2 and all(part.startswith("v1,") for part in signatures)
    for secret in (second, first):
        assert Webhook(secret).verify(request.body, request.headers)["object_kind"] == "pipeline"
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD).verify(request.body, request.headers)


def services_rotate(hook: Hook) -> str:
    return rotate_signing_token(hook).secret


def end_the_grace_of_the_oldest(hook: Hook) -> None:
    hook.refresh_from_db()
    *kept, oldest = hook.previous_signing_tokens
    hook.previous_signing_tokens = [*kept, {**oldest, "expires_at": time.time() - 1}]
    hook.save(update_fields=["previous_signing_tokens"])


def test_no_grace_drops_the_old_secret_at_once(project, api_client, receivers, settings):
    settings.HOOKS_SIGNING_SECRET_GRACE_SECONDS = 0
    hook = HookFactory(project=project, signing_token=OLD)

    rotated = api_client.post(rotate_url(hook)).json()

    assert rotated["previous_signing_token_expires_at"] is None
    hook.refresh_from_db()
    assert hook.previous_signing_tokens == []
    Hook.objects.filter(pk=hook.pk).update(url=Sealed.of(receivers(OLD).url))
    assert delivered_status(hook, sha="b" * 40) == 401


def test_rotating_a_hook_without_a_secret_gives_it_one(project, api_client, receivers):
    hook = HookFactory(project=project)

    rotated = api_client.post(rotate_url(hook)).json()

    assert rotated["previous_signing_token_expires_at"] is None
    hook.refresh_from_db()
    assert hook.previous_signing_tokens == []
    Hook.objects.filter(pk=hook.pk).update(url=Sealed.of(receivers(rotated["signing_token"]).url))
    assert delivered_status(hook, sha="c" * 40) == 204
    # The hook as the API shows it says a secret is set, and holds none of it.
    shown = api_client.get(f"/api/v4/projects/{project.pk}/hooks/{hook.pk}").json()
    assert shown["signing_token_present"] is True
    assert rotated["signing_token"] not in str(shown)


def test_setting_or_removing_the_secret_directly_ends_every_grace(project, api_client):
    hook = HookFactory(project=project, signing_token=OLD)
    api_client.post(rotate_url(hook))
    edit = f"/api/v4/projects/{project.pk}/hooks/{hook.pk}"

    replaced = generate_signing_secret()
    assert api_client.put(edit, {"signing_token": replaced}).status_code == 200
    hook.refresh_from_db()
    assert [s.reveal() for s in hook.signing_secrets()] == [replaced]

    api_client.post(rotate_url(hook))
    assert api_client.put(edit, {"signing_token": ""}).status_code == 200
    hook.refresh_from_db()
    assert (hook.signing_token, hook.previous_signing_tokens, hook.signing_secrets()) == (
        "",
        [],
        [],
    )

    # An edit that leaves the secret alone leaves the grace alone.
    api_client.post(rotate_url(hook))
    api_client.post(rotate_url(hook))
    assert api_client.put(edit, {"name": "renamed"}).status_code == 200
    hook.refresh_from_db()
    assert len(hook.signing_secrets()) == 2


def test_the_rotate_route_refuses_clearly(project, api_client, make_token):
    hook = HookFactory(project=project, signing_token=OLD)
    url = rotate_url(hook)

    missing = api_client.post(f"/api/v4/projects/{project.pk}/hooks/999999/signing_token/rotate")
    assert (missing.status_code, missing.json()) == (404, {"message": "404 Hook Not Found"})
    malformed = api_client.post(f"/api/v4/projects/{project.pk}/hooks/x/signing_token/rotate")
    assert malformed.status_code == 400
    assert api_client.get(url).status_code == 405
    reader = make_token(scopes=["read_api"])
    assert api_client_with(reader).post(url).status_code == 403
    hook.refresh_from_db()
    assert hook.signing_token.reveal() == OLD and hook.previous_signing_tokens == []


def test_rotations_are_rate_limited_like_tests_and_resends(project, api_client):
    hook = HookFactory(project=project, signing_token=OLD)
    for _ in range(5):
        assert api_client.post(rotate_url(hook)).status_code == 201
    hook.refresh_from_db()
    before = (hook.signing_token, hook.previous_signing_tokens)

    refused = api_client.post(rotate_url(hook))

    assert (refused.status_code, refused.json()) == (429, GITLAB_429)
    assert 1 <= int(refused["Retry-After"]) <= 60
    hook.refresh_from_db()
    assert (hook.signing_token, hook.previous_signing_tokens) == before


# --- The admin ----------------------------------------------------------------------------


def test_the_admin_rotates_and_shows_the_new_secret_once(admin_client, project, receivers):
    hook = HookFactory(project=project, signing_token=OLD)
    page = reverse("admin:hooks_hook_change", args=[hook.pk])
    assert 'id="rotate-signing-secret"' in admin_client.get(page).content.decode()

    rotated = admin_client.post(
        reverse("admin:hooks_hook_rotate_signing_token", args=[hook.pk]), follow=True
    )

    hook.refresh_from_db()
    new = hook.signing_token.reveal()
    [message] = [m for m in messages_of(rotated) if "New signing secret" in m]
    assert new in message and "The previous secret still signs every delivery" in message
    assert OLD not in rotated.content.decode()
    again = admin_client.get(page).content.decode()
    assert new not in again and OLD not in again
    assert "1 earlier one(s), valid until" in again
    Hook.objects.filter(pk=hook.pk).update(url=Sealed.of(receivers(OLD).url))
    assert delivered_status(hook, sha="d" * 40) == 204

    # Saving the page unchanged keeps the grace; generating a secret there ends it.
    data = form_data(admin_client.get(page))
    assert admin_client.post(page, data).status_code == 302
    hook.refresh_from_db()
    assert len(hook.signing_secrets()) == 2
    admin_client.post(page, {**data, "generate_signing_token": "on"})
    hook.refresh_from_db()
    assert len(hook.signing_secrets()) == 1 and hook.signing_token.reveal() != new


def test_the_admin_rotate_button_is_rate_limited_and_post_only(admin_client, project):
    hook = HookFactory(project=project, signing_token=OLD)
    url = reverse("admin:hooks_hook_rotate_signing_token", args=[hook.pk])
    assert admin_client.get(url).status_code == 302
    hook.refresh_from_db()
    assert hook.previous_signing_tokens == []

    for _ in range(5):
        assert admin_client.post(url).status_code == 302
    refused = admin_client.post(url)

    assert refused.status_code == 429
    assert "At most 5 signing secret rotations a minute" in refused.content.decode()


def test_the_rotate_button_needs_the_right_to_manage_hooks(client, project):
    hook = HookFactory(project=project, signing_token=OLD)
    viewer = UserFactory(is_staff=True)
    client.force_login(viewer)

    response = client.post(reverse("admin:hooks_hook_rotate_signing_token", args=[hook.pk]))

    assert response.status_code in (403, 404)
    hook.refresh_from_db()
    assert hook.signing_token.reveal() == OLD and hook.previous_signing_tokens == []


# --- Expired secrets are forgotten ----------------------------------------------------------


def test_the_sweeper_drops_expired_secrets_and_a_rotation_prunes_them(project):
    hook = HookFactory(project=project, signing_token=OLD)
    untouched = HookFactory(project=project, signing_token=generate_signing_secret())
    services_rotate(hook)
    services_rotate(hook)
    end_the_grace_of_the_oldest(hook)

    assert sweeper.drop_expired_signing_secrets() == 1
    hook.refresh_from_db()
    assert len(hook.previous_signing_tokens) == 1
    assert sweeper.drop_expired_signing_secrets() == 0
    untouched.refresh_from_db()
    assert untouched.previous_signing_tokens == []

    end_the_grace(hook)
    services_rotate(hook)
    hook.refresh_from_db()
    assert len(hook.previous_signing_tokens) == 1  # the expired one gone, the replaced one in


def test_a_rotation_is_logged_without_any_secret(project, caplog):
    hook = HookFactory(project=project, signing_token=OLD)
    with caplog.at_level(logging.DEBUG):
        new = services_rotate(hook)
    assert f"Hook {hook.pk}: signing secret rotated" in caplog.text
    assert OLD not in caplog.text and new not in caplog.text


def test_earlier_secrets_are_sealed_and_follow_an_encryption_key_rotation(
    project, receiver, settings
):
    settings.PIPEHOOK_ENCRYPTION_KEYS = [OLD_KEY]
    hook = HookFactory(project=project, url=receiver.url, signing_token=OLD)
    new = rotate_signing_token(hook).secret

    [stored] = json.loads(
        stored_row(hook.pk, ("previous_signing_tokens",))["previous_signing_tokens"]
    )
    assert OLD.removeprefix("whsec_") not in json.dumps(stored)
    assert isinstance(stored["expires_at"], int)  # plain: pruning needs no key

    settings.PIPEHOOK_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    call_command("rotate_encryption_key", stdout=io.StringIO())
    settings.PIPEHOOK_ENCRYPTION_KEYS = [NEW_KEY]
    assert delivered_status(hook, sha="e" * 40) == 200
    [request] = receiver.requests
    for secret in (new, OLD):
        assert Webhook(secret).verify(request.body, request.headers)
