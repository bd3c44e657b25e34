"""The pipeline domain: projects, their pipelines and the jobs those pipelines are made of.

Rows here change only through ``pipelines.services``; these classes hold data and the
read-only rules GitLab attaches to it (status groups, URLs).
"""

import hashlib
import secrets

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.utils import timezone


class Status(models.TextChoices):
    """GitLab's CI status vocabulary, shared by pipelines and jobs."""

    CREATED = "created"
    WAITING_FOR_RESOURCE = "waiting_for_resource"
    PREPARING = "preparing"
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELING = "canceling"
    CANCELED = "canceled"
    SKIPPED = "skipped"
    MANUAL = "manual"
    SCHEDULED = "scheduled"


# GitLab's groups (Ci::HasStatus): "completed" statuses are final until a retry.
COMPLETED_STATUSES = frozenset({Status.SUCCESS, Status.FAILED, Status.CANCELED, Status.SKIPPED})
ACTIVE_STATUSES = frozenset(
    {
        Status.WAITING_FOR_RESOURCE,
        Status.PREPARING,
        Status.PENDING,
        Status.RUNNING,
        Status.CANCELING,
    }
)
CANCELABLE_STATUSES = ACTIVE_STATUSES - {Status.CANCELING} | {
    Status.CREATED,
    Status.MANUAL,
    Status.SCHEDULED,
}

# GitLab's "detailed_status" labels shown in hook payloads and the UI.
DETAILED_STATUS_LABELS = {
    Status.CREATED: "created",
    Status.WAITING_FOR_RESOURCE: "waiting for resource",
    Status.PREPARING: "preparing",
    Status.PENDING: "pending",
    Status.RUNNING: "running",
    Status.SUCCESS: "passed",
    Status.FAILED: "failed",
    Status.CANCELING: "canceling",
    Status.CANCELED: "canceled",
    Status.SKIPPED: "skipped",
    Status.MANUAL: "manual action",
    Status.SCHEDULED: "delayed",
}


class Project(models.Model):
    class Visibility(models.TextChoices):
        PRIVATE = "private"
        INTERNAL = "internal"
        PUBLIC = "public"

    VISIBILITY_LEVELS = {Visibility.PRIVATE: 0, Visibility.INTERNAL: 10, Visibility.PUBLIC: 20}

    name = models.CharField(max_length=255)
    path = models.SlugField(max_length=255)
    namespace = models.CharField(
        max_length=255, default="root", help_text="Group or user path the project lives under."
    )
    description = models.TextField(blank=True, default="")
    default_branch = models.CharField(max_length=255, default="main")
    visibility = models.CharField(
        max_length=16, choices=Visibility.choices, default=Visibility.PRIVATE
    )
    # Blank means "derive from PIPEHOOK_EXTERNAL_URL"; set it to point at a real forge.
    web_url = models.URLField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["namespace", "path"], name="project_unique_path")
        ]
        permissions = [
            ("start_execution", "Can start executions (pipeline runs) in a project"),
            ("manage_hooks", "Can manage a project's hooks"),
        ]

    def __str__(self) -> str:
        return self.path_with_namespace

    @property
    def path_with_namespace(self) -> str:
        return f"{self.namespace}/{self.path}"

    @property
    def visibility_level(self) -> int:
        return self.VISIBILITY_LEVELS[self.visibility]

    @property
    def resolved_web_url(self) -> str:
        return self.web_url or f"{settings.PIPEHOOK_EXTERNAL_URL}/{self.path_with_namespace}"


class Pipeline(models.Model):
    Status = Status

    class Source(models.TextChoices):
        PUSH = "push"
        WEB = "web"
        TRIGGER = "trigger"
        SCHEDULE = "schedule"
        API = "api"
        EXTERNAL = "external"
        PIPELINE = "pipeline"
        CHAT = "chat"
        MERGE_REQUEST_EVENT = "merge_request_event"
        EXTERNAL_PULL_REQUEST_EVENT = "external_pull_request_event"
        PARENT_PIPELINE = "parent_pipeline"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="pipelines")
    iid = models.PositiveIntegerField(help_text="Project-scoped number, as GitLab's iid.")
    name = models.CharField(max_length=255, blank=True, null=True)
    ref = models.CharField(max_length=255)
    tag = models.BooleanField(default=False)
    protected_ref = models.BooleanField(default=False)
    sha = models.CharField(max_length=64, db_index=True)
    before_sha = models.CharField(max_length=64, default="0" * 40)
    source = models.CharField(max_length=40, choices=Source.choices, default=Source.API)
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.CREATED)
    variables = models.JSONField(
        default=list, blank=True, help_text='[{"key": ..., "value": ..., "variable_type": ...}]'
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    commit_message = models.TextField(blank=True, default="")
    commit_title = models.CharField(max_length=255, blank=True, default="")
    # Null when the reporting CI did not say when the commit was made.
    commit_timestamp = models.DateTimeField(null=True, blank=True)
    commit_author_name = models.CharField(max_length=255, blank=True, default="")
    commit_author_email = models.CharField(max_length=255, blank=True, default="")
    # Upstream pipeline / merge request as GitLab's hook shows them; null when there is none.
    source_pipeline = models.JSONField(null=True, blank=True)
    merge_request = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Null until the pipeline first runs / until it completes.
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)
    duration = models.PositiveIntegerField(null=True, blank=True, help_text="Seconds.")
    queued_duration = models.PositiveIntegerField(null=True, blank=True, help_text="Seconds.")

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "iid"], name="pipeline_unique_iid")
        ]
        indexes = [models.Index(fields=["project", "sha", "ref"])]

    def __str__(self) -> str:
        return f"{self.project} #{self.iid} ({self.status})"

    @property
    def web_url(self) -> str:
        return f"{self.project.resolved_web_url}/-/pipelines/{self.pk}"

    @property
    def detailed_status(self) -> str:
        return DETAILED_STATUS_LABELS[self.status]

    @property
    def is_completed(self) -> bool:
        return self.status in COMPLETED_STATUSES

    def latest_jobs(self) -> models.QuerySet["Job"]:
        """The newest attempt of each job (GitLab's ``latest_builds``)."""
        return self.jobs.filter(retried=False).order_by("stage_idx", "id")

    def stage_names(self) -> list[str]:
        seen: dict[str, None] = {}
        for stage in self.latest_jobs().values_list("stage", flat=True):
            seen.setdefault(stage, None)
        return list(seen)


class Job(models.Model):
    Status = Status

    class When(models.TextChoices):
        ON_SUCCESS = "on_success"
        ON_FAILURE = "on_failure"
        ALWAYS = "always"
        MANUAL = "manual"
        DELAYED = "delayed"
        NEVER = "never"

    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="jobs")
    stage = models.CharField(max_length=255, default="test")
    # Order of stages; GitLab puts external commit statuses in a stage far after the others.
    stage_idx = models.IntegerField(default=0)
    name = models.CharField(max_length=255)
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.CREATED)
    when = models.CharField(max_length=16, choices=When.choices, default=When.ON_SUCCESS)
    manual = models.BooleanField(default=False)
    allow_failure = models.BooleanField(default=False)
    # Set only when the job failed (e.g. "script_failure", "api_failure", "job_execution_timeout").
    failure_reason = models.CharField(max_length=64, null=True, blank=True)
    # A retried job stays for history; its replacement is the latest attempt.
    retried = models.BooleanField(default=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(default=timezone.now)
    # Null until the job is queued / starts / completes.
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)
    duration = models.FloatField(null=True, blank=True, help_text="Seconds.")
    queued_duration = models.FloatField(null=True, blank=True, help_text="Seconds.")
    # {"id", "description", "runner_type", "active", "is_shared", "tags"}; null when unknown.
    runner = models.JSONField(null=True, blank=True)
    artifacts_filename = models.CharField(max_length=255, null=True, blank=True)
    artifacts_size = models.BigIntegerField(null=True, blank=True)
    # {"name", "action", "deployment_tier"}; null when the job deploys nowhere.
    environment = models.JSONField(null=True, blank=True)
    target_url = models.URLField(max_length=2000, blank=True, default="")
    description = models.TextField(blank=True, default="")
    coverage = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["pipeline", "name", "retried"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"

    @property
    def web_url(self) -> str:
        return f"{self.pipeline.project.resolved_web_url}/-/jobs/{self.pk}"


class AccessToken(models.Model):
    """An API key: random, shown once, stored as a SHA-256 hash.

    Scopes follow GitLab (``api`` reads and writes, ``read_api`` only reads). A token may be
    limited to some projects, and scoped to user groups whose Django permissions it then
    inherits instead of its owner's.
    """

    class Scope(models.TextChoices):
        API = "api"
        READ_API = "read_api"

    PREFIX = "phk_"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="access_tokens"
    )
    name = models.CharField(max_length=255, default="token")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    # First characters of the token, so people can tell their tokens apart in lists.
    token_prefix = models.CharField(max_length=12, editable=False)
    scopes = models.JSONField(default=list)
    projects = models.ManyToManyField(
        Project, blank=True, help_text="Leave empty to allow every project."
    )
    groups = models.ManyToManyField(
        Group,
        blank=True,
        help_text="When set, the token has exactly the permissions these groups grant.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    # Null: never expires / never used.
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.token_prefix}…)"

    @staticmethod
    def hash_token(raw: str) -> str:
        return hashlib.sha256(raw.encode()).hexdigest()

    @classmethod
    def generate(cls) -> str:
        return cls.PREFIX + secrets.token_urlsafe(30)

    @property
    def is_active(self) -> bool:
        return not self.revoked and (self.expires_at is None or self.expires_at > timezone.now())
