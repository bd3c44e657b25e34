"""Telling a project's maintainers that one of its hooks rests, is disabled or is back.

Where a hook's health is written (``hooks.results``, ``hooks.services``), the change of its
``owners_state`` is recorded as a ``HookStateChange`` in the same transaction; once that
commits, a task message (by name, as ``hooks.queue`` sends deliveries) asks a worker to tell
the maintainers: an admin notice for each (the admin's front page lists them until
dismissed) and a mail through Django's mail settings. The worker's batch never waits for
a mail server. Telling claims the change first (``notified_at``), so a change is told at
most once however many messages ask; a message lost with the broker is sent again by the
sweeper (``publish_untold``).

The maintainers are the users who may manage the project's hooks
(``pipelines.auth.users_holding``): superusers, holders of ``pipelines.manage_hooks`` on
every project (their own or a group's), members of a group granted it on this project.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial, update_wrapper

from celery import signature
from django.conf import settings
from django.core import mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from hooks.models import Hook, HookNotice, HookStateChange
from pipelines import auth

logger = logging.getLogger(__name__)

TELL_MAINTAINERS_TASK = "hooks.tasks.tell_maintainers"
# A change still untold this long after it was recorded had its message lost: send another.
UNTOLD_GRACE = timedelta(minutes=1)
STATE_WORDS = {
    Hook.AlertStatus.EXECUTABLE: "active",
    Hook.AlertStatus.TEMPORARILY_DISABLED: "resting",
    Hook.AlertStatus.DISABLED: "disabled",
}


def record_state_change(
    hook_id: int, from_state: str, to_state: str, reason: str
) -> HookStateChange | None:
    """In the caller's transaction: the hook went from one state to another (nothing when
    they are the same); its maintainers are told once the transaction commits."""
    if from_state == to_state:
        return None
    change = HookStateChange.objects.create(
        hook_id=hook_id, from_state=from_state, to_state=to_state, reason=reason
    )
    logger.info("Hook %s: %s -> %s (%s)", hook_id, from_state, to_state, reason)
    send = update_wrapper(partial(publish, [change.pk]), publish)
    transaction.on_commit(send, robust=True)
    return change


def publish(change_ids: list[int]) -> None:
    """One task message asking a worker to tell these changes' maintainers."""
    try:
        signature(TELL_MAINTAINERS_TASK, args=(change_ids,)).delay()
    except Exception as error:
        logger.warning(
            "Could not queue the notices of hook state changes %s (%s); the sweeper will",
            change_ids,
            error,
        )


def publish_untold(now: datetime) -> int:
    """The sweeper's part: changes recorded a while ago and still untold get a message again
    (telling claims each, so one told meanwhile is not told twice). Returns how many."""
    untold = list(
        HookStateChange.objects.filter(notified_at__isnull=True, at__lt=now - UNTOLD_GRACE)
        .order_by("at")
        .values_list("pk", flat=True)[:100]
    )
    if untold:
        publish(untold)
    return len(untold)


def tell_maintainers(change_ids: list[int]) -> int:
    """The task: for each change not told yet, an admin notice for every maintainer of its
    project and a mail to each that has an address. Returns how many changes it told."""
    told = 0
    for change_id in change_ids:
        now = timezone.now()
        claimed = HookStateChange.objects.filter(pk=change_id, notified_at__isnull=True).update(
            notified_at=now
        )
        if not claimed:
            continue  # told already (or the hook is gone)
        change = HookStateChange.objects.select_related("hook__project").get(pk=change_id)
        maintainers = list(auth.users_holding(auth.MANAGE_HOOKS, change.hook.project))
        HookNotice.objects.bulk_create(
            [HookNotice(user=user, change=change, created_at=now) for user in maintainers],
            ignore_conflicts=True,
        )
        send_mails(change, [user.email for user in maintainers if user.email])
        told += 1
    return told


def send_mails(change: HookStateChange, addresses: list[str]) -> None:
    """One mail per maintainer (no one sees the others' addresses). A mail server that
    refuses is logged: the change stays told, the notices stand."""
    if not addresses:
        return
    subject, body = mail_text(change)
    messages = [
        mail.EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [address])
        for address in sorted(set(addresses))
    ]
    try:
        with mail.get_connection() as connection:
            connection.send_messages(messages)
    except Exception:
        logger.exception("Could not mail the maintainers of hook %s", change.hook_id)


def mail_text(change: HookStateChange) -> tuple[str, str]:
    hook = change.hook
    project = hook.project
    state = STATE_WORDS.get(change.to_state, change.to_state)
    headline = {
        Hook.AlertStatus.EXECUTABLE: "is active again",
        Hook.AlertStatus.TEMPORARILY_DISABLED: "is resting after failures",
        Hook.AlertStatus.DISABLED: "is disabled",
    }.get(change.to_state, f"is {state}")
    # str(hook) is its name or its URL with credentials redacted: never a secret.
    subject = f"[Pipehook] Hook “{hook}” of {project.path_with_namespace} {headline}"
    link = settings.PIPEHOOK_EXTERNAL_URL + reverse("admin:hooks_hook_change", args=[hook.pk])
    body = (
        f"The hook “{hook}” of project {project.path_with_namespace} went from "
        f"{STATE_WORDS.get(change.from_state, change.from_state)} to {state} "
        f"at {change.at:%Y-%m-%d %H:%M:%S} UTC.\n\n{change.reason}\n\n"
        f"URL: {hook.redacted_url}\nIts page, with its deliveries and state history: {link}\n\n"
        "You get this mail because you may manage this project's hooks.\n"
    )
    return subject, body
