"""Project hooks and the transactional outbox that feeds them.

Hook        a URL registered on a project, its secrets, filters and health.
Event       one pipeline or job change, its payload rendered once (a snapshot of that status).
Delivery    one Event for one Hook: its state, next attempt time, idempotency key and its
            place in the (hook, pipeline) stream.
DeliveryAttempt   one HTTP request of a delivery (or of a test), as the log shows it.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone

from hooks.sealing import Sealed, SealedJSONField, SealedTextField
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
    # The URL with its credentials and secret query values masked (``pipelines.redaction``),
    # written whenever ``url`` is set: what pages and responses show, with no key needed.
    # Declared before ``url``, which sets it (``SealedTextField``'s ``masked_copy``).
    masked_url = models.CharField(max_length=2000, blank=True, default="", editable=False)
    # May hold credentials (user:password@, ?token=): sealed (``hooks.sealing``), opened
    # only to connect, shown only as ``redacted_url``. Checked by hooks.validators.check_url,
    # which reads it as the sender does; Django's URLValidator would refuse URLs the sender
    # reaches (a single-label host such as http://receiver:8080/) and make the admin
    # disagree with the API.
    url = SealedTextField(masked_copy=("masked_url", redact_url))
    name = models.CharField(max_length=255, blank=True, default="")
    description = models.TextField(blank=True, default="")
    # Sent verbatim as X-Gitlab-Token; sealed, never shown back after it is set, never logged.
    token = SealedTextField(blank=True, default="")
    # Standard Webhooks secret ("whsec_" + base64), sealed; empty = no webhook-signature header.
    signing_token = SealedTextField(blank=True, default="")
    # Earlier signing secrets still valid after a rotation, newest first, each sealed with
    # its expiry in Unix seconds: [{"secret": Sealed, "expires_at": 1767225600}]. Until it
    # expires each one signs every delivery beside the current secret; setting or removing
    # the secret directly empties the list (``hooks.services.rotate_signing_token``).
    previous_signing_tokens = SealedJSONField(default=list, blank=True, editable=False)
    # {"Header-Name": "value"}, each value sealed; never override the delivery headers,
    # values masked in logs.
    custom_headers = SealedJSONField(default=dict, blank=True)
    pipeline_events = models.BooleanField(default=True)
    job_events = models.BooleanField(default=False)
    enable_ssl_verification = models.BooleanField(default=True)
    ref_filter_strategy = models.CharField(
        max_length=16, choices=RefFilterStrategy.choices, default=RefFilterStrategy.ALL
    )
    ref_filter = models.CharField(max_length=255, blank=True, default="")
    # Pipeline statuses this hook wants, e.g. ["failed"]; empty = every status.
    status_filter = models.JSONField(default=list, blank=True)
    # GitLab's custom webhook template (hooks.body_templates); empty = the payload as built.
    custom_webhook_template = models.TextField(
        blank=True,
        default="",
        help_text="Sent instead of the payload: JSON with {{path.to.field}} placeholders, e.g. "
        '{"text": "{{project.name}}: {{object_attributes.status}}"}. Empty: the payload.',
    )
    # GitLab's push-event branch filter: stored and shown back for GitLab clients, inert here
    # (there are no push events); ref_filter_strategy / ref_filter filter pipelines.
    push_events_branch_filter = models.TextField(blank=True, default="")
    branch_filter_strategy = models.CharField(
        max_length=16, choices=RefFilterStrategy.choices, default=RefFilterStrategy.WILDCARD
    )
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
        """The URL as responses, pages and logs show it (``pipelines.redaction``): the copy
        masked when it was set, masked again in case the rules have grown since."""
        return redact_url(self.masked_url)

    def previous_signing_secrets(self, now: float | None = None) -> list[dict]:
        """The earlier signing secrets not yet expired at ``now`` (Unix seconds), newest
        first, as stored: ``{"secret": Sealed, "expires_at": seconds}``. An entry a hand
        edit left malformed counts as expired."""
        now = time.time() if now is None else now
        entries = self.previous_signing_tokens
        return [
            entry
            for entry in (entries if isinstance(entries, list) else [])
            if isinstance(entry, dict)
            and isinstance(entry.get("secret"), Sealed)
            and entry["secret"]
            and isinstance(entry.get("expires_at"), int | float)
            and entry["expires_at"] > now
        ]

    def signing_secrets(self, now: float | None = None) -> list[Sealed]:
        """What a delivery is signed with now: the current secret, then each earlier one
        still valid; none without a current secret."""
        if not self.signing_token:
            return []
        return [self.signing_token, *(e["secret"] for e in self.previous_signing_secrets(now))]

    def replace_signing_token(self, value: str | Sealed) -> None:
        """Set (or, empty, remove) the signing secret at once: earlier ones stop being valid
        with it. A rotation keeps the current one valid a while instead."""
        self.signing_token = value
        self.previous_signing_tokens = []

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
    """One pipeline change (a Pipeline Hook) or job change (a Job Hook) with its payload,
    rendered once in the changing transaction."""

    class Kind(models.TextChoices):
        """GitLab's ``object_kind``, and the ``X-Gitlab-Event`` and log trigger it goes with."""

        PIPELINE = "pipeline", "Pipeline Hook"
        BUILD = "build", "Job Hook"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="hook_events")
    # Null once the pipeline is deleted; the snapshot stays deliverable.
    pipeline = models.ForeignKey(
        Pipeline, null=True, blank=True, on_delete=models.SET_NULL, related_name="hook_events"
    )
    object_kind = models.CharField(max_length=32, choices=Kind.choices, default=Kind.PIPELINE)
    # The job of a Job Hook (null for a pipeline's event): a plain number, as the event
    # outlives the job.
    job_id = models.BigIntegerField(null=True, blank=True)
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

    @property
    def subject(self) -> str:
        """What changed, as the admin lists it: "pipeline #7" or "job #31 of pipeline #7"."""
        pipeline = f"pipeline #{self.pipeline_id or '(deleted)'}"
        if self.object_kind == self.Kind.BUILD:
            return f"job #{self.job_id} of {pipeline}"
        return pipeline


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
    # Indexed by the composite indexes below, which all start with it.
    hook = models.ForeignKey(
        Hook, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    # The pipeline's id, a plain number so it outlives the pipeline: deliveries sharing
    # (hook, order_key) go out in id order ("N+1 waits for N"), job and pipeline events alike.
    order_key = models.BigIntegerField()
    # Place in the (hook, order_key) stream, 1, 2, 3… with no gap, in id order; fixed when
    # the outbox row is written, so every retry and resend carries the same number
    # (X-Pipehook-Sequence).
    sequence = models.PositiveIntegerField()
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
            # The pages at millions of rows (docs/benchmarks.md): a hook's newest deliveries
            # and the newest of one status in id order, and a hook's deliveries of one status
            # counted (up to a bound).
            models.Index(fields=["hook", "id"], name="hooks_deliv_hook_id_idx"),
            models.Index(fields=["status", "id"], name="hooks_deliv_status_id_idx"),
            models.Index(fields=["hook", "status"], name="hooks_deliv_hook_status_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["hook", "order_key", "sequence"], name="delivery_unique_sequence"
            )
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

    # Indexed by the composite indexes below, which start with it.
    hook = models.ForeignKey(
        Hook, on_delete=models.CASCADE, related_name="attempts", db_index=False
    )
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
    # hooks.signing.url_digest of the full URL sent to; null on rows older than it. A resend
    # is refused when the hook's URL no longer has this digest (GitLab's url_current?).
    url_digest = models.CharField(max_length=64, null=True, blank=True)
    request_headers = models.JSONField(default=dict)
    # The body sent, kept for test requests and hooks with a custom template: otherwise a
    # delivery's body is its event's (``sent_body``).
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
        indexes = [
            # A hook's log newest first (its page, the events API, the filtered admin list),
            # and its few test requests without walking its deliveries' attempts.
            models.Index(fields=["hook", "id"], name="hooks_attempt_hook_id_idx"),
            models.Index(
                fields=["hook", "id"],
                name="hooks_attempt_hook_tests_idx",
                condition=models.Q(trigger="test"),
            ),
            # A hook's log by response status (the events API's status filter): counted
            # along one range, each status newest first (hooks.log_pages).
            models.Index(
                fields=["hook", "response_status", "id"], name="hooks_attempt_hook_status_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"attempt {self.attempt_number} of delivery {self.delivery_id}"

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url)

    @property
    def sent_body(self) -> str:
        """The body this request carried."""
        if self.request_body or not self.delivery_id:
            return self.request_body
        return self.delivery.event.body


class HookStateChange(models.Model):
    """A hook's health moving between active, resting and disabled (``Hook.AlertStatus``;
    a hook probing after a rest still counts as resting until a delivery succeeds): the
    hook page's history, and what the project's maintainers are told, once."""

    hook = models.ForeignKey(Hook, on_delete=models.CASCADE, related_name="state_changes")
    from_state = models.CharField(max_length=32, choices=Hook.AlertStatus.choices)
    to_state = models.CharField(max_length=32, choices=Hook.AlertStatus.choices)
    at = models.DateTimeField(default=timezone.now)
    reason = models.TextField()
    # When the maintainers were told (notices and mails); null until then. Whoever sets it
    # first tells them, so they are told at most once.
    notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(
                fields=["at"],
                name="hooks_change_untold_idx",
                condition=models.Q(notified_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return f"hook {self.hook_id}: {self.from_state} → {self.to_state}"


class HookNotice(models.Model):
    """A state change shown to one maintainer on the admin's front page until dismissed."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="hook_notices"
    )
    change = models.ForeignKey(HookStateChange, on_delete=models.CASCADE, related_name="notices")
    created_at = models.DateTimeField(default=timezone.now)
    dismissed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "change"], name="hook_notice_once_per_user")
        ]

    def __str__(self) -> str:
        return f"notice of {self.change} for user {self.user_id}"


class DeliveryStat(models.Model):
    """The delivery log rolled up: attempts by hook, half hour and latency band, counted as
    they are recorded (``hooks.stats``). The dashboard and the hook page's chart read these
    few rows, never the log."""

    # Indexed by the unique constraint, which starts with it.
    hook = models.ForeignKey(Hook, on_delete=models.CASCADE, related_name="stats", db_index=False)
    period_start = models.DateTimeField()
    # hooks.stats.LATENCY_BANDS_MS: the first band whose bound the duration is within.
    latency_band = models.PositiveSmallIntegerField()
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["period_start"]
        constraints = [
            models.UniqueConstraint(
                fields=["hook", "period_start", "latency_band"], name="delivery_stat_unique"
            )
        ]
        indexes = [models.Index(fields=["period_start"], name="hooks_stat_period_idx")]

    def __str__(self) -> str:
        return f"hook {self.hook_id} from {self.period_start:%Y-%m-%d %H:%M}"
