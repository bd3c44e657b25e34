"""Owners told: a hook that rests, is disabled or comes back has the change recorded where its
health is written, and the project's maintainers get an admin notice and a mail, once.

Deliveries go to a real receiver on 127.0.0.1; mail goes to Django's test outbox (the
locmem backend pytest-django sets) or, for a mail server that is down, to a closed port.
"""

import logging
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from hooks import notices
from hooks.delivery import deliver_batch
from hooks.models import Delivery, HookNotice, HookStateChange
from hooks.services import reenable_hook, resend_delivery, send_test_event
from hooks.sweeper import requeue_due_deliveries
from pipelines import auth, services
from pipelines.models import GroupProjectPermission
from tests.factories import HookFactory, ProjectFactory, UserFactory, grant_permissions
from tests.hooks.receiver import Reply

ACTIVE, RESTING, DISABLED = "executable", "temporarily_disabled", "disabled"


@pytest.fixture(autouse=True)
def predictable_retries(settings):
    settings.HOOKS_RETRY_SCHEDULE = [0, 5, 300]
    settings.HOOKS_RETRY_JITTER = 0


@pytest.fixture
def maintainers(project):
    """Who may manage the project's hooks, each way it can be granted, and who may not."""
    manage = Permission.objects.get(content_type__app_label="pipelines", codename="manage_hooks")
    on_this_project = Group.objects.create(name="web team")
    GroupProjectPermission.objects.create(group=on_this_project, project=project, permission=manage)
    on_another_project = Group.objects.create(name="other team")
    GroupProjectPermission.objects.create(
        group=on_another_project, project=ProjectFactory(), permission=manage
    )
    everywhere = Group.objects.create(name="platform")
    everywhere.permissions.add(manage)

    people = {
        "root": UserFactory(username="root", is_superuser=True, is_staff=True),
        "own-right": grant_permissions(UserFactory(username="own-right"), "manage_hooks"),
        "web-team": UserFactory(username="web-team"),
        "platform": UserFactory(username="platform", email=""),
        "other-team": UserFactory(username="other-team"),
        "reader": grant_permissions(UserFactory(username="reader"), "view_project"),
        "gone": grant_permissions(UserFactory(username="gone", is_active=False), "manage_hooks"),
    }
    people["web-team"].groups.add(on_this_project)
    people["platform"].groups.add(everywhere)
    people["other-team"].groups.add(on_another_project)
    return people


TOLD = {"root", "own-right", "web-team", "platform"}


def failing_hook(project, receiver, failures: int = 4):
    """A hook whose receiver answered 500 to ``failures`` pipelines' first deliveries."""
    hook = HookFactory(project=project, url=receiver.url, name="deploy bot")
    for number in range(failures):
        services.create_pipeline(project, ref="main", sha=f"{number:040x}")
    receiver.default = Reply(500)
    deliver_batch(list(hook.deliveries.order_by("pk").values_list("pk", flat=True)))
    hook.refresh_from_db()
    return hook


def test_the_maintainers_are_who_may_manage_the_projects_hooks(project, maintainers):
    names = set(auth.users_holding(auth.MANAGE_HOOKS, project).values_list("username", flat=True))
    assert names == TOLD


def test_a_hook_that_rests_is_recorded_in_the_batch_and_told_on_commit(
    project, receiver, maintainers, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        hook = failing_hook(project, receiver, failures=3)
        assert not hook.state_changes.exists()  # three failures: still active
        services.create_pipeline(project, ref="main", sha="f" * 40)
        fourth = hook.deliveries.order_by("-pk").first()
        deliver_batch([fourth.pk])
    hook.refresh_from_db()
    assert hook.alert_status == RESTING
    (change,) = hook.state_changes.all()
    assert (change.from_state, change.to_state) == (ACTIVE, RESTING)
    assert change.reason.startswith("4 failures in a row; resting until ")
    assert change.notified_at is None
    # Told by a task message sent once the batch committed, never inside the batch.
    told = [c for c in callbacks if getattr(c, "func", None) is notices.publish]
    assert [c.args for c in told] == [([change.pk],)]

    assert notices.tell_maintainers([change.pk]) == 1
    change.refresh_from_db()
    assert change.notified_at is not None
    noticed = set(HookNotice.objects.values_list("user__username", flat=True))
    assert noticed == TOLD
    # A mail each to those with an address, none showing the others'.
    assert sorted(message.to[0] for message in mail.outbox) == sorted(
        f"{name}@example.com" for name in TOLD - {"platform"}
    )
    assert all(len(message.to) == 1 for message in mail.outbox)
    message = mail.outbox[0]
    assert "deploy bot" in message.subject and "resting" in message.subject
    assert "4 failures in a row" in message.body
    assert f"/admin/hooks/hook/{hook.pk}/change/" in message.body

    # At most once: another message for the same change tells nobody again.
    assert notices.tell_maintainers([change.pk]) == 0
    assert len(mail.outbox) == 3 and HookNotice.objects.count() == 4


def test_rests_while_probing_are_one_change_and_a_success_is_the_way_back(
    project, receiver, maintainers
):
    hook = failing_hook(project, receiver)
    # The rest runs out; the probe fails: it rests again, which is the same rest going on.
    Delivery.objects.filter(hook=hook).update(next_attempt_at=timezone.now())
    hook.__class__.objects.filter(pk=hook.pk).update(disabled_until=timezone.now())
    probe = hook.deliveries.order_by("pk").first()
    deliver_batch([probe.pk])
    hook.refresh_from_db()
    assert hook.disabled_until > timezone.now()
    assert hook.state_changes.count() == 1

    hook.__class__.objects.filter(pk=hook.pk).update(disabled_until=timezone.now())
    Delivery.objects.filter(hook=hook).update(next_attempt_at=timezone.now())
    receiver.default = Reply(200)
    deliver_batch([probe.pk])
    back = hook.state_changes.order_by("-id").first()
    assert (back.from_state, back.to_state) == (RESTING, ACTIVE)
    assert back.reason == "A delivery succeeded; what waited is being sent."
    notices.tell_maintainers([back.pk])
    assert any("is active again" in message.subject for message in mail.outbox)


def test_a_410_disables_and_a_resend_brings_it_back(project, receiver, maintainers, settings):
    settings.HOOKS_DISABLE_ON_GONE = True
    hook = HookFactory(project=project, url=receiver.url)
    services.create_pipeline(project, ref="main", sha="a" * 40)
    delivery = hook.deliveries.get()
    receiver.default = Reply(410)
    deliver_batch([delivery.pk])
    (disabled,) = hook.state_changes.all()
    assert (disabled.from_state, disabled.to_state) == (ACTIVE, DISABLED)
    assert "410 Gone" in disabled.reason

    receiver.default = Reply(200)
    resend_delivery(delivery, user=maintainers["own-right"])
    back = hook.state_changes.order_by("-id").first()
    assert (back.from_state, back.to_state) == (DISABLED, ACTIVE)
    assert back.reason == "A resend by own-right succeeded (HTTP 200)."


def test_a_test_event_and_a_re_enable_record_the_way_back(project, receiver, maintainers):
    hook = failing_hook(project, receiver)
    receiver.default = Reply(200)
    send_test_event(hook, user=maintainers["root"])
    assert hook.state_changes.order_by("-id").first().reason == (
        "A test event by root succeeded (HTTP 200)."
    )
    # Re-enabling a hook that is active already changes nothing to tell.
    reenable_hook(hook, user=maintainers["root"])
    assert hook.state_changes.count() == 2

    hook.__class__.objects.filter(pk=hook.pk).update(permanently_disabled=True)
    reenable_hook(hook, user=maintainers["root"])
    again = hook.state_changes.order_by("-id").first()
    assert (again.from_state, again.to_state, again.reason) == (
        DISABLED,
        ACTIVE,
        "Re-enabled by root.",
    )


def test_the_task_is_sent_by_name_and_run_by_a_worker(
    project, receiver, maintainers, settings, django_capture_on_commit_callbacks
):
    # Celery runs the named task in this process: the name resolves to the real task.
    settings.CELERY_TASK_ALWAYS_EAGER = True
    with django_capture_on_commit_callbacks(execute=True):
        hook = failing_hook(project, receiver)
    change = hook.state_changes.get()
    change.refresh_from_db()
    assert change.notified_at is not None
    assert HookNotice.objects.filter(change=change).count() == len(TOLD)


def test_a_lost_message_is_sent_again_by_the_sweeper(
    project, receiver, maintainers, django_capture_on_commit_callbacks
):
    hook = failing_hook(project, receiver)  # its message went nowhere (no broker here)
    change = hook.state_changes.get()
    with django_capture_on_commit_callbacks() as callbacks:
        requeue_due_deliveries()
    assert callbacks == []  # recorded just now: its own message may still be on its way
    published = []
    notices_publish = notices.publish
    try:
        notices.publish = published.append
        requeue_due_deliveries(timezone.now() + timedelta(minutes=2))
    finally:
        notices.publish = notices_publish
    assert published == [[change.pk]]


def test_a_mail_server_that_is_down_leaves_the_notices(
    project, receiver, maintainers, settings, closed_port, caplog
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", closed_port, 2
    hook = failing_hook(project, receiver)
    change = hook.state_changes.get()
    with caplog.at_level(logging.ERROR, logger="hooks.notices"):
        assert notices.tell_maintainers([change.pk]) == 1
    assert "Could not mail the maintainers" in caplog.text
    assert HookNotice.objects.filter(change=change).count() == len(TOLD)
    assert notices.tell_maintainers([change.pk]) == 0  # told, though the mail failed


def test_hook_page_history_and_front_page_notices_with_dismiss(
    client, project, receiver, maintainers
):
    hook = failing_hook(project, receiver)
    change = hook.state_changes.get()
    notices.tell_maintainers([change.pk])
    root = maintainers["root"]
    client.force_login(root)

    page = client.get(reverse("admin:hooks_hook_change", args=[hook.pk])).content.decode()
    assert 'id="state-history"' in page and "4 failures in a row; resting until" in page

    front = client.get(reverse("admin:index")).content.decode()
    assert 'id="hook-notices"' in front and "deploy bot" in front
    mine = HookNotice.objects.get(user=root)
    # Someone else's notice cannot be dismissed from here.
    theirs = HookNotice.objects.get(user=maintainers["own-right"])
    refused = client.post(reverse("admin:hooks_hooknotice_dismiss", args=[theirs.pk]))
    assert refused.status_code == 404
    theirs.refresh_from_db()
    assert theirs.dismissed_at is None
    # A GET changes nothing; a POST dismisses.
    client.get(reverse("admin:hooks_hooknotice_dismiss", args=[mine.pk]))
    mine.refresh_from_db()
    assert mine.dismissed_at is None
    response = client.post(reverse("admin:hooks_hooknotice_dismiss", args=[mine.pk]))
    assert response.status_code == 302 and response.url == reverse("admin:index")
    mine.refresh_from_db()
    assert mine.dismissed_at is not None
    assert 'id="hook-notices"' not in client.get(reverse("admin:index")).content.decode()
    # The notices page keeps them, one's own only.
    listed = client.get(reverse("admin:hooks_hooknotice_changelist"))
    assert [notice.pk for notice in listed.context["cl"].result_list] == [mine.pk]


def test_the_admin_re_enable_button_records_who(admin_client, project, receiver, admin_user):
    hook = failing_hook(project, receiver)
    response = admin_client.post(reverse("admin:hooks_hook_reenable", args=[hook.pk]))
    assert response.status_code == 302
    latest = HookStateChange.objects.filter(hook=hook).order_by("-id").first()
    assert (latest.to_state, latest.reason) == (ACTIVE, f"Re-enabled by {admin_user.username}.")


def test_mails_and_notices_never_show_the_hooks_secrets(project, receiver, maintainers):
    hook = HookFactory(
        project=project,
        url=receiver.url.replace("http://", "http://deploy:url-password@") + "?token=q-secret",
        token="header-secret",
    )
    for number in range(4):
        services.create_pipeline(project, ref="main", sha=f"{number:040x}")
    receiver.default = Reply(500)
    deliver_batch(list(hook.deliveries.values_list("pk", flat=True)))
    notices.tell_maintainers(list(hook.state_changes.values_list("pk", flat=True)))
    assert mail.outbox
    for message in mail.outbox:
        text = message.subject + message.body
        for secret in ("url-password", "q-secret", "header-secret"):
            assert secret not in text
