"""The pipeline domain: projects, their pipelines and the jobs those pipelines are made of.

These classes hold data and the read-only rules GitLab attaches to it (status groups,
URLs). Rows change only through the commands, each in its own transaction:
``pipelines.services`` (projects, pipelines, jobs, definitions), ``pipelines.reports`` (runs a
CI reports whole, and the SEI and Distelli records), ``pipelines.executions`` (runs started
by API) and ``pipelines.auth`` (tokens). The admin edits configuration with Django's own
forms (projects, definitions, CI/CD instances, group grants, a token's settings); pipelines,
jobs, executions and the dialects' records it only shows, or deletes.
"""

import contextlib
import hashlib
import secrets
import uuid

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from pipelines.command_memory import CommandMemory
from pipelines.commits import commit_title
from pipelines.variables import normalize_variable_declarations, validate_variable_declarations


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


# GitLab's groups (Ci::HasStatus): "completed" statuses are final until a retry; "finished"
# ones (the scope, and what sets ``finished_at``) leave skipped out.
COMPLETED_STATUSES = frozenset({Status.SUCCESS, Status.FAILED, Status.CANCELED, Status.SKIPPED})
FINISHED_STATUSES = frozenset({Status.SUCCESS, Status.FAILED, Status.CANCELED})
ACTIVE_STATUSES = frozenset(
    {
        Status.WAITING_FOR_RESOURCE,
        Status.PREPARING,
        Status.PENDING,
        Status.RUNNING,
        Status.CANCELING,
    }
)
# What canceling a pipeline cancels (GitLab's ``CANCELABLE_STATUSES``): not manual jobs.
CANCELABLE_STATUSES = ACTIVE_STATUSES - {Status.CANCELING} | {Status.CREATED, Status.SCHEDULED}


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


# GitLab's unknown commit (before_sha of a new branch, a run that named no commit).
UNKNOWN_SHA = "0" * 40


class Pipeline(CommandMemory, models.Model):
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
    before_sha = models.CharField(max_length=64, default=UNKNOWN_SHA)
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
    def resolved_commit_title(self) -> str:  # the CI's title, else GitLab's of the message
        return self.commit_title or commit_title(self.commit_message)

    def has_warnings(self) -> bool:
        """Whether a latest job that may fail failed or was canceled (GitLab's warnings)."""
        if (jobs := self.loaded_latest_jobs()) is not None:
            return any(
                j.allow_failure and j.status in (Status.FAILED, Status.CANCELED) for j in jobs
            )
        return (
            self.latest_jobs()
            .filter(allow_failure=True, status__in=(Status.FAILED, Status.CANCELED))
            .exists()
        )

    def latest_jobs(self) -> models.QuerySet["Job"]:
        """The newest attempt of each job (GitLab's ``latest_builds``)."""
        return self.jobs.filter(retried=False).order_by("stage_idx", "id")

    def keep_coverage(self) -> None:
        """Keep the latest jobs' coverage as it is now, for the command's answer: called inside
        the command's transaction, so that rendering the answer reads nothing once it has
        committed (a read then can fail after the work is done, telling the client 503)."""
        jobs = self.loaded_latest_jobs()
        if jobs is None:
            values = list(
                self.latest_jobs().exclude(coverage=None).values_list("coverage", flat=True)
            )
        else:
            values = [job.coverage for job in jobs if job.coverage is not None]
        self.__dict__["_kept_coverage"] = sum(values) / len(values) if values else None

    def latest_coverage(self) -> float | None:
        """The mean coverage of the latest jobs that report one (GitLab's
        ``Ci::Pipeline#coverage``): what the command that returned this instance kept, else
        read now."""
        if "_kept_coverage" in self.__dict__:
            return self.__dict__["_kept_coverage"]
        values = list(self.latest_jobs().exclude(coverage=None).values_list("coverage", flat=True))
        return sum(values) / len(values) if values else None

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

    Scopes follow GitLab (``api`` reads and writes, ``read_api`` only reads). A token acts
    with its owner's permissions; it may be limited to some projects, and scoped to user
    groups of its owner, whose permissions it then holds instead (``pipelines.auth``).
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


# --- Pipeline definitions ------------------------------------------------------------------
# What the API may start: a project's named pipeline and workflow definitions, the variables
# they declare, the executions started from them, and the per-project permissions of groups
# that decide which API keys may start them.


class PipelineDefinition(models.Model):
    """A named pipeline or workflow of a project that the API can start, with its variables."""

    class Kind(models.TextChoices):
        PIPELINE = "pipeline"
        WORKFLOW = "workflow"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="definitions")
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.PIPELINE)
    description = models.TextField(blank=True, default="")
    variables = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_variable_declarations],
        help_text='[{"name": "branch", "type": "Text", "required": false}, ...]',
    )
    # Blank means the project's default branch at the moment a run starts.
    ref = models.CharField(
        max_length=255, blank=True, default="", help_text="Branch or tag runs are created for."
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "kind", "name"], name="definition_unique_name"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.name!r} of {self.project}"

    def clean(self) -> None:
        # A bad declaration list is left as it is: the field's validator reports it.
        with contextlib.suppress(ValidationError):
            self.variables = normalize_variable_declarations(self.variables)
        self.name = self.name.strip()
        if not self.name:
            raise ValidationError({"name": "name is missing"})


class GroupProjectPermission(models.Model):
    """A permission a user group holds on one project only.

    ``Group.permissions`` grants a permission on every project; a row here grants it on
    ``project`` alone. API keys scoped to the group inherit both.
    """

    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="project_permissions")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="group_permissions")
    permission = models.ForeignKey(
        "auth.Permission",
        on_delete=models.CASCADE,
        limit_choices_to={"content_type__app_label": "pipelines", "content_type__model": "project"},
    )

    class Meta:
        ordering = ["group", "project", "permission"]
        constraints = [
            models.UniqueConstraint(
                fields=["group", "project", "permission"], name="group_project_permission_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.group} may {self.permission.codename} on {self.project}"


class Execution(models.Model):
    """A run of a definition started through the API: its pipeline and what started it."""

    pipeline = models.OneToOneField(Pipeline, on_delete=models.CASCADE, related_name="execution")
    # Null once the definition is deleted; the run and its history stay.
    definition = models.ForeignKey(
        PipelineDefinition,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="executions",
    )
    # The definition's kind when it started: the run stays a pipeline or workflow execution
    # after its definition is deleted.
    kind = models.CharField(max_length=16, choices=PipelineDefinition.Kind.choices)
    notes = models.TextField(blank=True, default="")
    # [{"name", "artifactSourceName", "buildNumber"}] as the caller gave them.
    service_inputs = models.JSONField(default=list, blank=True)
    # The key that started it; null once that key is deleted (rotated).
    token = models.ForeignKey(AccessToken, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} execution of pipeline {self.pipeline_id}"


# --- Inbound dialect records
# What the Harness SEI and Puppet Pipelines (Distelli) dialects need to remember beyond the
# pipeline itself: which CI instance reports, which pipeline a re-posted run is, and the
# Distelli events with their links, written by ``pipelines.reports``.


class CicdInstance(models.Model):
    """A CI/CD system registered to report runs (SEI's "CI/CD instance"), minted by GUID.

    Runs posted with this GUID belong to ``project`` (SEI's ``integration_id``).
    """

    guid = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="cicd_instances")
    name = models.CharField(max_length=255)
    # SEI's instance type as the client gave it (jenkins, azure_devops, custom...).
    type = models.CharField(max_length=64, default="custom")
    # Null once the user who registered it is deleted.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.guid})"


class CicdRun(models.Model):
    """An SEI-reported run: the identity that makes a re-post update the same pipeline.

    ``identity`` is ``execution:<execution_id>`` when the client sent one, otherwise
    ``build:<job_full_name>#<build_number>``, otherwise ``start:<job_full_name>@<start_time>``.
    """

    instance = models.ForeignKey(CicdInstance, on_delete=models.CASCADE, related_name="runs")
    identity = models.CharField(max_length=600)
    pipeline = models.OneToOneField(Pipeline, on_delete=models.CASCADE, related_name="cicd_run")
    job_full_name = models.CharField(max_length=255)
    # Null when the client did not send them.
    execution_id = models.CharField(max_length=255, null=True, blank=True)
    build_number = models.BigIntegerField(null=True, blank=True)
    # The latest accepted report as the client sent it (aliases resolved), for the fields
    # the pipeline has no column for: user_id, repo_url, artifacts, trigger_chain, themes...
    report = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["instance", "identity"], name="cicd_run_unique_identity"
            )
        ]

    def __str__(self) -> str:
        return f"{self.job_full_name} ({self.identity})"


class DistelliEvent(models.Model):
    """A Puppet Pipelines (Distelli) event of an app (a project): build, push or pull request.

    Every reported field is nullable: null means the client did not send it, and the events
    listing shows it as null, as Distelli does.
    """

    class Type(models.TextChoices):
        BUILD = "BUILD"
        PUSH = "PUSH"
        PULL_REQUEST = "PULL_REQUEST"

    class BuildStatus(models.TextChoices):
        WAITING = "Waiting"
        QUEUED = "Queued"
        RUNNING = "Running"
        SUCCESS = "Success"
        FAILED = "Failed"
        TIMED_OUT = "TimedOut"
        CANCELLED = "Cancelled"

    # Once a build reaches one of these it is an immutable historical object.
    TERMINAL_BUILD_STATUSES = frozenset(
        {BuildStatus.SUCCESS, BuildStatus.FAILED, BuildStatus.TIMED_OUT, BuildStatus.CANCELLED}
    )

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="distelli_events")
    event_type = models.CharField(max_length=16, choices=Type.choices)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    # The push or pull request that triggered a build; null when none was given.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    # The pipeline a build event is shown as; null for push and pull request events, and once
    # the pipeline is deleted.
    pipeline = models.OneToOneField(
        Pipeline,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="distelli_event",
    )
    build_status = models.CharField(
        max_length=16, choices=BuildStatus.choices, null=True, blank=True
    )
    build_start = models.DateTimeField(null=True, blank=True)
    build_end = models.DateTimeField(null=True, blank=True)
    auto_build = models.BooleanField(null=True, blank=True)
    build_id = models.CharField(max_length=255, null=True, blank=True)
    build_provider = models.CharField(max_length=255, null=True, blank=True)
    build_url = models.CharField(max_length=2000, null=True, blank=True)
    repo_url = models.CharField(max_length=2000, null=True, blank=True)
    commit_url = models.CharField(max_length=2000, null=True, blank=True)
    repo_owner = models.CharField(max_length=255, null=True, blank=True)
    repo_name = models.CharField(max_length=255, null=True, blank=True)
    repo_provider = models.CharField(max_length=64, null=True, blank=True)
    author_username = models.CharField(max_length=255, null=True, blank=True)
    author_name = models.CharField(max_length=255, null=True, blank=True)
    commit_msg = models.TextField(null=True, blank=True)
    commit_id = models.CharField(max_length=64, null=True, blank=True)
    branch = models.CharField(max_length=255, null=True, blank=True)
    release_version = models.CharField(max_length=255, null=True, blank=True)
    # Only Distelli's deploy events have an environment, and none are recorded here; kept so
    # the Env filters of the events listing select by it exactly as Distelli does.
    env_name = models.CharField(max_length=255, null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["project", "event_type", "id"]),
            models.Index(fields=["project", "branch", "id"]),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} event {self.pk} of {self.project}"

    @property
    def is_terminal(self) -> bool:
        return self.build_status in self.TERMINAL_BUILD_STATUSES
