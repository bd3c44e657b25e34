"""Hook secrets sealed at rest (hooks/sealing.py): what is stored, when it is opened, how the
keys are kept and rotated, and the migration that sealed what was stored before."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import stat
import subprocess
import sys
from importlib import import_module

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from hooks import sealing
from hooks.delivery import deliver_batch
from hooks.models import Delivery, Hook
from hooks.sealing import Sealed, SecretUnreadable, revealed
from hooks.services import send_test_event
from hooks.signing import generate_signing_secret
from pipelines import services
from tests.factories import HookFactory, ProjectFactory, UserFactory
from tests.test_serve import ROOT

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()
SHA = "c" * 40
TOKEN = "sealed-token-value"
HEADER_VALUE = "sealed-header-value"
PASSWORD = "sealed-url-password"


@pytest.fixture
def keys(settings):
    """Set PIPEHOOK_ENCRYPTION_KEYS for the rest of the test: keys("new", "old")."""

    def use(*chosen: str) -> None:
        settings.PIPEHOOK_ENCRYPTION_KEYS = list(chosen)

    use(OLD_KEY)
    return use


SECRET_COLUMNS = ("url", "token", "signing_token", "custom_headers")


def stored_row(hook_id: int, columns: tuple[str, ...] = (*SECRET_COLUMNS, "masked_url")) -> dict:
    """The hook's columns exactly as the database holds them (JSON as its text)."""
    table = connection.ops.quote_name(Hook._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(columns)} FROM {table} WHERE id = %s",  # noqa: S608
            [hook_id],
        )
        return dict(zip(columns, cursor.fetchone(), strict=True))


def secret_hook(project, receiver, number: int = 0) -> Hook:
    return HookFactory(
        project=project,
        url=receiver.url.replace("http://", f"http://ops:{PASSWORD}{number}@") + "?team=ci",
        token=f"{TOKEN}{number}",
        signing_token=generate_signing_secret(),
        custom_headers={"X-Deploy-Key": f"{HEADER_VALUE}{number}"},
    )


def deliver_all() -> None:
    deliver_batch(list(Delivery.objects.filter(status="pending").values_list("pk", flat=True)))


def assert_sent_right(request, hook: Hook, number: int) -> None:
    """X-Gitlab-Token, the custom header, the URL's credentials and a signature that the
    Standard Webhooks library verifies."""
    assert request.header("X-Gitlab-Token") == f"{TOKEN}{number}"
    assert request.header("X-Deploy-Key") == f"{HEADER_VALUE}{number}"
    basic = base64.b64encode(f"ops:{PASSWORD}{number}".encode()).decode()
    assert request.header("Authorization") == f"Basic {basic}"
    secret = hook.signing_token.reveal()
    assert Webhook(secret).verify(request.body, request.headers)["object_kind"] == "pipeline"


# --- The value in memory ---------------------------------------------------------------------


def test_a_sealed_value_never_shows_its_secret(keys):
    sealed = Sealed.of(TOKEN)
    assert TOKEN not in repr(sealed) and TOKEN not in str(sealed) and TOKEN not in f"{sealed}"
    assert sealed.stored.startswith("gAAAAA")  # a Fernet token
    assert sealed.reveal() == TOKEN
    assert bool(sealed) and not Sealed() and Sealed() == ""
    # Equal only to the same stored text; never to a text, which would need opening it.
    assert sealed == Sealed(sealed.stored) and sealed != Sealed.of(TOKEN) and sealed != TOKEN


def test_assigning_plain_text_seals_it_at_once(project, keys):
    hook = Hook(project=project, url=f"https://ci:{PASSWORD}@example.com/h?token=t&a=1")
    hook.token = TOKEN
    hook.custom_headers = {"X-Deploy-Key": HEADER_VALUE}
    # Nothing of the instance holds the plain text; the URL's shown copy is masked.
    assert PASSWORD not in repr(vars(hook)) and TOKEN not in repr(vars(hook))
    assert HEADER_VALUE not in repr(vars(hook))
    assert hook.masked_url == "https://*****:*****@example.com/h?token=[FILTERED]&a=1"
    assert hook.redacted_url == hook.masked_url
    hook.save()

    row = stored_row(hook.pk)
    assert PASSWORD not in str(row) and TOKEN not in str(row) and HEADER_VALUE not in str(row)
    assert row["signing_token"] == ""  # unset stays empty: token_present tells it anyway
    hook.refresh_from_db()
    assert hook.url.reveal() == f"https://ci:{PASSWORD}@example.com/h?token=t&a=1"
    assert (hook.token.reveal(), revealed(hook.custom_headers)) == (
        TOKEN,
        {"X-Deploy-Key": HEADER_VALUE},
    )
    with pytest.raises(TypeError):
        Hook.objects.filter(pk=hook.pk).update(token=TOKEN)  # plain text is never stored


def test_reading_and_editing_hooks_opens_no_secret(project, keys, monkeypatch, receiver):
    """Only sending opens a secret: lists, pages and edits that keep the URL do not."""
    user = UserFactory(is_superuser=True, is_staff=True)
    hook = secret_hook(project, receiver)
    opened: list[str] = []
    real_unseal = sealing.unseal
    monkeypatch.setattr(sealing, "unseal", lambda *a: opened.append("x") or real_unseal(*a))
    api = APIClient()
    api.force_authenticate(user)
    base = f"/api/v4/projects/{project.pk}/hooks"
    assert api.get(base).status_code == 200
    assert api.get(f"{base}/{hook.pk}").status_code == 200
    edited = api.put(f"{base}/{hook.pk}", {"description": "edited"}, format="json")
    assert edited.status_code == 200, edited.content
    assert opened == []
    # Sent back as read (masked): the stored URL is opened to complete it, and once more to
    # tell whether it changed (GitLab's url_changed?, which clears the receiver's secrets).
    shown = edited.json()["url"]
    assert api.put(f"{base}/{hook.pk}", {"url": shown}, format="json").status_code == 200
    assert len(opened) == 2
    opened.clear()
    admin = Client()
    admin.force_login(user)
    assert admin.get(f"/admin/hooks/hook/{hook.pk}/change/").status_code == 200
    assert admin.get("/admin/hooks/hook/").status_code == 200
    assert opened == []

    services.create_pipeline(project, ref="main", sha=SHA)
    deliver_all()
    assert opened, "sending opens the secrets"
    [request] = receiver.requests
    hook.refresh_from_db()
    assert_sent_right(request, hook, 0)


# --- Keys ---------------------------------------------------------------------------------


def settings_keys(env: dict) -> str:
    script = "from django.conf import settings; print(','.join(settings.PIPEHOOK_ENCRYPTION_KEYS))"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env | {"DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_a_missing_key_is_generated_once_into_var_readable_by_its_owner_only(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PIPEHOOK_ENCRYPTION_KEYS"}
    env["PIPEHOOK_VAR_DIR"] = str(tmp_path / "var")
    first = settings_keys(env)
    kept = tmp_path / "var" / "encryption_key"
    assert kept.read_text() == first and Fernet(first)
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert settings_keys(env) == first  # the next start reads it back
    assert [p.name for p in kept.parent.iterdir() if p.name.startswith(".")] == []
    # Given, the setting wins and nothing is generated.
    given = f" {NEW_KEY} , {OLD_KEY} "
    assert settings_keys(env | {"PIPEHOOK_ENCRYPTION_KEYS": given}) == f"{NEW_KEY},{OLD_KEY}"


def test_a_key_that_is_not_a_fernet_key_is_refused_without_being_shown(keys):
    keys(NEW_KEY, "not-a-key-at-all")
    with pytest.raises(ImproperlyConfigured) as refused:
        Sealed.of(TOKEN)
    assert "key 2 is not a Fernet key" in str(refused.value)
    assert "not-a-key-at-all" not in str(refused.value)


# --- Rotation -------------------------------------------------------------------------------


def rotate(*args: str) -> str:
    out = io.StringIO()
    call_command("rotate_encryption_key", *args, stdout=out)
    return out.getvalue()


def test_a_rotation_leaves_every_hook_working(project, keys, receiver):
    hooks = [secret_hook(project, receiver, number) for number in range(3)]
    services.create_pipeline(project, ref="main", sha=SHA)
    deliver_all()
    assert len(receiver.requests) == 3

    # Step 2: the new key first, the old one still there. Both open what is stored.
    keys(NEW_KEY, OLD_KEY)
    services.create_pipeline(project, ref="main", sha="d" * 40)
    deliver_all()
    assert len(receiver.requests) == 6

    # Step 3: everything sealed again under the new key, in batches, with progress.
    output = rotate("--batch-size", "2")
    assert "hooks.Hook: 2/3 rows looked at" in output
    # Four a hook: its URL, token, signing secret and header value.
    assert "hooks.Hook: 3/3 rows looked at, 12 secret(s) re-sealed" in output
    assert "Next: remove the other 1 key(s) from PIPEHOOK_ENCRYPTION_KEYS" in output
    new_only = Fernet(NEW_KEY)
    for hook in hooks:
        row = stored_row(hook.pk)
        for column in ("url", "token", "signing_token"):
            assert new_only.decrypt(row[column].encode())
        assert HEADER_VALUE not in str(row["custom_headers"])
    # Again: nothing left to do.
    assert "(0 re-sealed)" in rotate()

    # Step 4: the old key removed. Every hook still delivers, right token, right signature.
    keys(NEW_KEY)
    receiver.requests.clear()
    services.create_pipeline(project, ref="main", sha="e" * 40)
    deliver_all()
    by_token = {request.header("X-Gitlab-Token"): request for request in receiver.requests}
    assert len(by_token) == 3
    for number, hook in enumerate(hooks):
        hook.refresh_from_db()
        assert_sent_right(by_token[f"{TOKEN}{number}"], hook, number)
    assert "holds one key" in rotate()


def test_new_key_prints_a_fernet_key():
    assert Fernet(rotate("--new-key").strip())


# --- A secret no key opens ------------------------------------------------------------------


def seal_under_a_lost_key(hook: Hook, field: str = "token") -> None:
    lost = Fernet(Fernet.generate_key()).encrypt(b"whatever").decode()
    Hook.objects.filter(pk=hook.pk).update(**{field: Sealed(lost)})


def test_a_secret_no_key_opens_fails_its_delivery_alone_and_says_why(
    project, keys, receiver, caplog
):
    good, bad = secret_hook(project, receiver, 0), secret_hook(project, receiver, 1)
    seal_under_a_lost_key(bad)
    services.create_pipeline(project, ref="main", sha=SHA)

    with caplog.at_level(logging.ERROR):
        deliver_all()

    [request] = receiver.requests
    assert_sent_right(request, good, 0)
    failed = bad.deliveries.get()
    assert (failed.status, failed.attempt_count) == ("pending", 1)  # retried as any failure
    assert "cannot be decrypted with any key in PIPEHOOK_ENCRYPTION_KEYS" in failed.last_error
    attempt = failed.attempts.get()
    assert not attempt.succeeded and "PIPEHOOK_ENCRYPTION_KEYS" in attempt.error
    assert any(f"(hook {bad.pk})" in record.getMessage() for record in caplog.records)
    assert good.deliveries.get().status == "succeeded"

    # A URL no key opens: the same, from the transport's side.
    seal_under_a_lost_key(good, "url")
    services.create_pipeline(project, ref="main", sha="d" * 40)
    with caplog.at_level(logging.ERROR):
        deliver_all()
    assert len(receiver.requests) == 1
    assert "PIPEHOOK_ENCRYPTION_KEYS" in good.deliveries.order_by("-pk").first().last_error
    assert any(f"Hook {good.pk}:" in record.getMessage() for record in caplog.records)

    # The rotation names it and fails, so nobody removes a key it still needs.
    with pytest.raises(CommandError) as refused:
        rotate()
    assert f"hooks.Hook {bad.pk} token" in str(refused.value)
    assert f"hooks.Hook {good.pk} url" in str(refused.value)


def test_a_test_event_with_a_secret_no_key_opens_is_refused_clearly(project, keys, receiver):
    user = UserFactory(is_superuser=True, is_staff=True)
    hook = secret_hook(project, receiver)
    services.create_pipeline(project, ref="main", sha=SHA)
    seal_under_a_lost_key(hook, "signing_token")
    hook.refresh_from_db()
    with pytest.raises(SecretUnreadable):
        send_test_event(hook)

    api = APIClient()
    api.force_authenticate(user)
    answer = api.post(f"/api/v4/projects/{project.pk}/hooks/{hook.pk}/test/pipeline_events")
    assert answer.status_code == 422
    assert "PIPEHOOK_ENCRYPTION_KEYS" in answer.json()["message"]

    admin = Client()
    admin.force_login(user)
    page = admin.post(f"/admin/hooks/hook/{hook.pk}/test/", follow=True)
    assert page.status_code == 200
    assert "No test event sent: a stored secret cannot be decrypted" in page.content.decode()
    assert receiver.requests == []


# --- The migration --------------------------------------------------------------------------

BEFORE = ("hooks", "0006_job_events_sequence_required")
SEALED = ("hooks", "0007_hook_secrets_sealed")


@pytest.fixture
def migrator(transactional_db):
    executor = MigrationExecutor(connection)
    yield executor
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_the_migration_seals_what_was_stored_in_batches_and_its_reverse_opens_it(
    migrator, keys, monkeypatch
):
    monkeypatch.setattr(import_module("hooks.migrations.0007_hook_secrets_sealed"), "BATCH_SIZE", 2)
    migrator.migrate([BEFORE])
    old = migrator.loader.project_state([BEFORE]).apps
    project = ProjectFactory()
    plain = []
    for number in range(3):
        plain.append(
            {
                "url": f"https://ci:{PASSWORD}{number}@example.com/h?token=t{number}",
                "token": f"{TOKEN}{number}" if number else "",
                "signing_token": f"whsec_{number}",
                "custom_headers": {"X-Deploy-Key": f"{HEADER_VALUE}{number}"},
            }
        )
        old.get_model("hooks", "Hook").objects.create(project_id=project.pk, **plain[-1])
    ids = list(old.get_model("hooks", "Hook").objects.order_by("pk").values_list("pk", flat=True))

    migrator.loader.build_graph()
    migrator.migrate([SEALED])
    # The hook as it was then: later migrations add columns this state has not got yet.
    sealed = migrator.loader.project_state([SEALED]).apps.get_model("hooks", "Hook")
    for pk, values in zip(ids, plain, strict=True):
        row = stored_row(pk)
        assert PASSWORD not in str(row) and HEADER_VALUE not in str(row)
        assert TOKEN not in row["token"] and "whsec_" not in row["signing_token"]
        assert row["masked_url"].startswith("https://*****:*****@example.com/h?token=[FILTERED]")
        hook = sealed.objects.get(pk=pk)
        assert hook.url.reveal() == values["url"] and hook.token.reveal() == values["token"]
        assert hook.signing_token.reveal() == values["signing_token"]
        assert revealed(hook.custom_headers) == values["custom_headers"]
    assert stored_row(ids[0])["token"] == ""

    migrator.loader.build_graph()
    migrator.migrate([BEFORE])
    for pk, values in zip(ids, plain, strict=True):
        row = stored_row(pk, SECRET_COLUMNS)
        assert {**row, "custom_headers": json.loads(row["custom_headers"])} == values


def test_an_attempts_url_digest_follows_the_keys_that_open_the_url(keys, project):
    """The digest of a sealed URL is kept per stored text and keys: the same under the same
    keys, none once no key in force opens the URL, and the URL's again when its key is back."""
    from hooks.claims import digest_of_url
    from hooks.signing import url_digest

    hook = HookFactory(project=project, url="https://user:pw@hooks.example.com/in?x=1")
    loaded = Hook.objects.get(pk=hook.pk)
    expected = url_digest("https://user:pw@hooks.example.com/in?x=1")

    assert digest_of_url(loaded) == digest_of_url(loaded) == expected
    keys(NEW_KEY)
    assert digest_of_url(loaded) is None
    keys(NEW_KEY, OLD_KEY)
    assert digest_of_url(loaded) == expected
