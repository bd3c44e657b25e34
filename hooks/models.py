"""Project hooks and the transactional outbox that feeds them.

Hook        a URL registered on a project, its secrets, filters and health.
Event       one pipeline change, its payload rendered once (a snapshot of that status).
Delivery    one Event for one Hook: its state, next attempt time and idempotency key.
DeliveryAttempt   one HTTP request of a delivery (or of a test), as the log shows it.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone

from pipelines.models import Pipeline, Project
from pipelines.redaction import redact_url


class HookQuerySet(models.QuerySet):
    """Hooks by health. The rule "the hook may be sent to now" is ``executable``; the claim's
    raw SQL (``hooks.claims``) states it once more, and a test holds the two together."""

    def executable(self, now: datetime) -> HookQuerySet:
        """GitLab's ``executable?``: neither disabled nor resting. With HOOKS_AUTO_DISABLE
        off the health is kept but not acted on: every hook."""
        if not settings.HOOKS_AUTO_DISABLE:
            return self.all()
        return self.filter(_executable(now))

    def without_probe_out(self, now: datetime) -> HookQuerySet:
        """No probe of the hook is out (one goes out alone after a rest); with
        HOOKS_AUTO_DISABLE off there are no probes."""
        if not settings.HOOKS_AUTO_DISABLE:
            return self.all()
        return self.filter(models.Q(probe_until__isnull=True) | models.Q(probe_until__lte=now))

    def with_alert_status(self, alert_status: str, now: datetime) -> HookQuerySet:
        """The hooks whose ``alert_status`` is this one."""
        if alert_status == Hook.AlertStatus.EXECUTABLE:
            return self.executable(now)
        if not settings.HOOKS_AUTO_DISABLE:
            return self.none()
        if alert_status == Hook.AlertStatus.DISABLED:
            return self.filter(permanently_disabled=True)
        return self.exclude(_executable(now)).filter(permanently_disabled=False)


def _executable(now: datetime) -> models.Q:
    return models.Q(permanently_disabled=False) & (
        models.Q(disabled_until__isnull=True) | models.Q(disabled_until__lte=now)
    )


class Hook(models.Model):
    class RefFilterStrategy(models.TextChoices):
        ALL = "all_branches"
        WILDCARD = "wildcard"
        REGEX = "regex"

    class AlertStatus(models.TextChoices):
        EXECUTABLE = "executable"
        TEMPORARILY_DISABLED = "temporarily_disabled"
        DISABLED = "disabled"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="hooks")
    # May hold credentials (user:password@, ?token=): shown only as ``redacted_url``.
    # Checked by hooks.validators.check_url, which reads it as the sender does; Django's
    # URLValidator would refuse URLs the sender reaches (a single-label host such as
    # http://receiver:8080/) and make the admin disagree with the API.
    url = models.CharField(max_length=2000)
    name = models.CharField(max_length=255, blank=True, default="")
    description = models.TextField(blank=True, default="")
    # Sent verbatim as X-Gitlab-Token; never shown back after it is set, never logged.
    token = models.CharField(max_length=255, blank=True, default="")
    # Standard Webhooks secret ("whsec_" + base64); empty = no webhook-signature header.
    signing_token = models.CharField(max_length=255, blank=True, default="")
    # {"Header-Name": "value"}; never override the delivery headers, values masked in logs.
    custom_headers = models.JSONField(default=dict, blank=True)
    pipeline_events = models.BooleanField(default=True)
    job_events = models.BooleanField(default=False)
    enable_ssl_verification = models.BooleanField(default=True)
    ref_filter_strategy = models.CharField(
        max_length=16, choices=RefFilterStrategy.choices, default=RefFilterStrategy.ALL
    )
    ref_filter = models.CharField(max_length=255, blank=True, default="")
    # Pipeline statuses this hook wants, e.g. ["failed"]; empty = every status.
    status_filter = models.JSONField(default=list, blank=True)
    # Health, GitLab's auto-disable rules: consecutive failures and the backoff they earned.
    recent_failures = models.PositiveIntegerField(default=0)
    # Null when the hook is not temporarily disabled.
    disabled_until = models.DateTimeField(null=True, blank=True)
    permanently_disabled = models.BooleanField(default=False)
    # After a rest, one delivery goes out alone to see whether the receiver is back (the
    # probe); the others wait for its answer. Both null when no probe is out. A plain id,
    # not a foreign key: it only ever names which delivery a worker may claim until
    # probe_until, and a stale one matches nothing once that time has passed.
    probe_delivery_id = models.BigIntegerField(null=True, blank=True)
    probe_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = HookQuerySet.as_manager()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name or self.redacted_url

    @property
    def redacted_url(self) -> str:
        """The URL as responses, pages and logs show it (``pipelines.redaction``)."""
        return redact_url(self.url)

    @property
    def alert_status(self) -> str:
        if not settings.HOOKS_AUTO_DISABLE:
            return self.AlertStatus.EXECUTABLE  # the health is kept but not acted on
        if self.permanently_disabled:
            return self.AlertStatus.DISABLED
        if self.disabled_until and self.disabled_until > timezone.now():
            return self.AlertStatus.TEMPORARILY_DISABLED
        return self.AlertStatus.EXECUTABLE


class Event(models.Model):
    """One pipeline change with its payload, rendered once in the changing transaction."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="hook_events")
    # Null once the pipeline is deleted; the snapshot stays deliverable.
    pipeline = models.ForeignKey(
        Pipeline, null=True, blank=True, on_delete=models.SET_NULL, related_name="hook_events"
    )
    object_kind = models.CharField(max_length=32, default="pipeline")
    change = models.CharField(max_length=32)  # pipelines.signals.PipelineChange
    status = models.CharField(max_length=32)
    # Null for the creation event.
    previous_status = models.CharField(max_length=32, null=True, blank=True)
    # The exact request body, serialized once, so every attempt and signature uses the same bytes.
    body = models.TextField()
    uuid = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.object_kind} {self.status} (pipeline {self.pipeline_id})"


class DeliveryQuerySet(models.QuerySet):
    def first_in_line(self) -> DeliveryQuerySet:
        """Deliveries that no earlier unfinished delivery of their (hook, pipeline) waits in
        front of: deliveries of one pipeline to one hook go out in id order. The claim's raw
        SQL (``hooks.claims``) states this once more, and a test holds the two together."""
        earlier_unfinished = Delivery.objects.filter(
            hook_id=models.OuterRef("hook_id"),
            order_key=models.OuterRef("order_key"),
            pk__lt=models.OuterRef("pk"),
            status__in=Delivery.UNFINISHED,
        )
        return self.filter(~models.Exists(earlier_unfinished))


class Delivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"  # waiting for its next attempt (or for an earlier delivery)
        SENDING = "sending"  # claimed by a worker
        SUCCEEDED = "succeeded"
        FAILED = "failed"  # gave up after the last scheduled attempt; can be resent

    UNFINISHED = (Status.PENDING, Status.SENDING)
    FINISHED = (Status.SUCCEEDED, Status.FAILED)

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    hook = models.ForeignKey(Hook, on_delete=models.CASCADE, related_name="deliveries")
    # The pipeline's id, a plain number so it outlives the pipeline: deliveries sharing
    # (hook, order_key) go out in id order ("N+1 waits for N").
    order_key = models.BigIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # Idempotency-Key and webhook-id: fixed per (event, hook) across retries and resends.
    idempotency_key = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)
    attempt_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # Set while a worker holds the delivery; a claim older than the lease is taken back.
    claimed_until = models.DateTimeField(null=True, blank=True)
    # Set while a task message for this pending delivery is believed to be queued; the sweeper
    # sends another only after it passes (a lost message costs one lease, never the event).
    queued_until = models.DateTimeField(null=True, blank=True)
    # A person asked to redeliver this failed delivery: one attempt, not retried on failure.
    manual_redelivery = models.BooleanField(default=False)
    # A failure of this delivery has counted against its hook's health: its later failures
    # (retries of the same event) never count again.
    failure_counted = models.BooleanField(default=False)
    last_response_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    # Null until the delivery succeeded or was given up.
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"]),
            models.Index(fields=["hook", "order_key", "status"]),
        ]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"delivery {self.pk} of event {self.event_id} to hook {self.hook_id}"


class DeliveryAttempt(models.Model):
    """One HTTP request: the delivery log row. Secrets in headers are redacted."""

    class Trigger(models.TextChoices):
        SCHEDULED = "scheduled"
        MANUAL = "manual"  # a resend asked for by a person
        TEST = "test"

    hook = models.ForeignKey(Hook, on_delete=models.CASCADE, related_name="attempts")
    # Null for test requests, which belong to no delivery.
    delivery = models.ForeignKey(
        Delivery, null=True, blank=True, on_delete=models.CASCADE, related_name="attempts"
    )
    attempt_number = models.PositiveIntegerField(default=1)
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.SCHEDULED)
    # Who asked for a manual resend or a test; null for scheduled attempts.
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # Written redacted (``Hook.redacted_url``); shown redacted again, for rows of older rules.
    url = models.URLField(max_length=2000)
    request_headers = models.JSONField(default=dict)
    # The body sent, kept only for test requests: a delivery's body is its event's.
    request_body = models.TextField(blank=True, default="")
    # Null when no response came back (timeout, refused connection, blocked address).
    response_status = models.PositiveIntegerField(null=True, blank=True)
    response_headers = models.JSONField(default=dict)
    response_body = models.TextField(blank=True, default="")
    response_body_truncated = models.BooleanField(default=False)
    duration_ms = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    succeeded = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"attempt {self.attempt_number} of delivery {self.delivery_id}"

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url)
