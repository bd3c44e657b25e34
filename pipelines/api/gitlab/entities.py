"""GitLab v4 entities, field for field: what each endpoint of the v4 API answers with.

Output serializers reproduce GitLab's Grape entities (``API::Entities::*``): the same keys,
JSON types and time format (``pipelines.api.times``). Fields GitLab exposes that have no
meaning here (artifacts, runner managers, yaml errors...) are ``ConstantField``s with
GitLab's empty value, so clients that read them keep working.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from pipelines.api.gitlab.rendering import FieldsBuiltOnce
from pipelines.api.gitlab.user_entities import (  # noqa: F401 (re-exported)
    NULLABLE_INTEGER,
    NULLABLE_OBJECT,
    NULLABLE_STRING,
    NULLABLE_URI,
    ConstantField,
    GitLabDateTimeField,
    UserBasicSerializer,
    UserPublicSerializer,
    UserSerializer,
)
from pipelines.api.times import commit_time
from pipelines.detailed_status import detailed_status_of
from pipelines.models import Job, Pipeline, Project, Status
from pipelines.status import job_durations


def blank_to_none(value: str | None) -> str | None:
    return value or None


# --- Users: ``user_entities`` (re-exported here, where every entity is looked up) -------

# --- Projects ----------------------------------------------------------------------------


class NamespaceSerializer(FieldsBuiltOnce, serializers.Serializer):
    """``API::Entities::NamespaceBasic``. Namespaces are plain paths here, so no numeric id."""

    id = ConstantField(None, NULLABLE_INTEGER)
    name = serializers.SerializerMethodField()
    path = serializers.SerializerMethodField()
    kind = ConstantField("group")
    full_path = serializers.SerializerMethodField()
    parent_id = ConstantField(None, NULLABLE_INTEGER)
    avatar_url = ConstantField(None, NULLABLE_URI)
    web_url = serializers.SerializerMethodField()

    def get_name(self, project: Project) -> str:
        return project.namespace.rsplit("/", 1)[-1]

    def get_path(self, project: Project) -> str:
        return project.namespace.rsplit("/", 1)[-1]

    def get_full_path(self, project: Project) -> str:
        return project.namespace

    def get_web_url(self, project: Project) -> str:
        return f"{settings.PIPEHOOK_EXTERNAL_URL}/groups/{project.namespace}"


class ProjectLinksSerializer(FieldsBuiltOnce, serializers.Serializer):
    self = serializers.SerializerMethodField()

    def get_self(self, project: Project) -> str:
        return f"{settings.PIPEHOOK_EXTERNAL_URL}/api/v4/projects/{project.pk}"


class ProjectSerializer(FieldsBuiltOnce, serializers.ModelSerializer):
    """``API::Entities::Project``: identity, basic details and the settings that apply here."""

    name_with_namespace = serializers.SerializerMethodField()
    path_with_namespace = serializers.CharField()
    created_at = GitLabDateTimeField()
    updated_at = GitLabDateTimeField()
    last_activity_at = GitLabDateTimeField(source="updated_at")
    tag_list = ConstantField([])
    topics = ConstantField([])
    ssh_url_to_repo = serializers.SerializerMethodField()
    http_url_to_repo = serializers.SerializerMethodField()
    web_url = serializers.CharField(source="resolved_web_url")
    readme_url = ConstantField(None, NULLABLE_URI)
    avatar_url = ConstantField(None, NULLABLE_URI)
    forks_count = ConstantField(0)
    star_count = ConstantField(0)
    namespace = NamespaceSerializer(source="*")
    _links = ProjectLinksSerializer(source="*")
    # The repository lives in the CI system that reports here; it is not empty there.
    empty_repo = ConstantField(False)
    archived = ConstantField(False)
    jobs_enabled = ConstantField(True)
    creator_id = ConstantField(None, NULLABLE_INTEGER)
    public_jobs = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = [
            "id",
            "description",
            "name",
            "name_with_namespace",
            "path",
            "path_with_namespace",
            "created_at",
            "default_branch",
            "tag_list",
            "topics",
            "ssh_url_to_repo",
            "http_url_to_repo",
            "web_url",
            "readme_url",
            "forks_count",
            "avatar_url",
            "star_count",
            "last_activity_at",
            "namespace",
            "_links",
            "empty_repo",
            "archived",
            "visibility",
            "jobs_enabled",
            "creator_id",
            "public_jobs",
            "updated_at",
        ]

    def get_name_with_namespace(self, project: Project) -> str:
        return " / ".join([*project.namespace.split("/"), project.name])

    def get_ssh_url_to_repo(self, project: Project) -> str:
        host = urlsplit(project.resolved_web_url).hostname or "localhost"
        return f"git@{host}:{project.path_with_namespace}.git"

    def get_http_url_to_repo(self, project: Project) -> str:
        return f"{project.resolved_web_url}.git"

    def get_public_jobs(self, project: Project) -> bool:
        return project.visibility == Project.Visibility.PUBLIC


# --- Pipelines ---------------------------------------------------------------------------


class DetailedStatusSerializer(FieldsBuiltOnce, serializers.Serializer):
    """``DetailedStatusEntity`` of a pipeline."""

    icon = serializers.CharField()
    text = serializers.CharField()
    label = serializers.CharField()
    group = serializers.CharField()
    tooltip = serializers.CharField()
    has_details = serializers.BooleanField()
    details_path = serializers.CharField()
    illustration = serializers.JSONField(allow_null=True)
    favicon = serializers.CharField()

    def to_representation(self, pipeline: Pipeline) -> dict:
        status = detailed_status_of(pipeline)
        return {
            "icon": status.icon,
            "text": status.text,
            "label": status.label,
            "group": status.group,
            "tooltip": status.label,
            "has_details": True,
            "details_path": f"/{pipeline.project.path_with_namespace}/-/pipelines/{pipeline.pk}",
            "illustration": None,
            # GitLab's asset path; its digest suffix is its own build's.
            "favicon": f"/assets/ci_favicons/{status.favicon}.png",
        }


class PipelineBasicSerializer(FieldsBuiltOnce, serializers.ModelSerializer):
    """``API::Entities::Ci::PipelineBasic``: what pipeline lists show."""

    created_at = GitLabDateTimeField()
    updated_at = GitLabDateTimeField()
    web_url = serializers.CharField()

    class Meta:
        model = Pipeline
        fields = [
            "id",
            "iid",
            "project_id",
            "sha",
            "ref",
            "status",
            "source",
            "created_at",
            "updated_at",
            "web_url",
            "name",
        ]


class PipelineSerializer(PipelineBasicSerializer):
    """``API::Entities::Ci::Pipeline``: one pipeline with its user, times and status."""

    yaml_errors = ConstantField(None, NULLABLE_STRING)
    user = UserBasicSerializer(allow_null=True)
    started_at = GitLabDateTimeField(allow_null=True)
    finished_at = GitLabDateTimeField(allow_null=True)
    committed_at = GitLabDateTimeField(source="commit_timestamp", allow_null=True)
    coverage = serializers.SerializerMethodField()
    detailed_status = DetailedStatusSerializer(source="*")
    archived = ConstantField(False)

    class Meta(PipelineBasicSerializer.Meta):
        fields = [
            *PipelineBasicSerializer.Meta.fields,
            "before_sha",
            "tag",
            "yaml_errors",
            "user",
            "started_at",
            "finished_at",
            "committed_at",
            "duration",
            "queued_duration",
            "coverage",
            "detailed_status",
            "archived",
        ]

    def get_coverage(self, pipeline: Pipeline) -> str | None:
        """The mean coverage of the latest jobs that report one, as GitLab computes it, and
        as ``Ci::PipelinePresenter#coverage`` writes it: a string with two decimals
        (go-gitlab declares ``Coverage string``). A job's coverage stays a number."""
        coverage = pipeline.latest_coverage()
        return None if coverage is None else f"{coverage:.2f}"


class PipelineVariableSerializer(FieldsBuiltOnce, serializers.Serializer):
    """``API::Entities::Ci::Variable`` as pipeline variables show."""

    key = serializers.CharField()
    variable_type = serializers.CharField()
    value = serializers.CharField()


# --- Jobs and commit statuses ------------------------------------------------------------


class CommitSerializer(FieldsBuiltOnce, serializers.Serializer):
    """``API::Entities::Commit``, from what the reporting CI told us about the commit."""

    id = serializers.CharField(source="sha")
    short_id = serializers.SerializerMethodField()
    created_at = serializers.SerializerMethodField()
    parent_ids = serializers.SerializerMethodField()
    title = serializers.CharField(source="resolved_commit_title")
    message = serializers.CharField(source="commit_message")
    author_name = serializers.CharField(source="commit_author_name")
    author_email = serializers.CharField(source="commit_author_email")
    authored_date = serializers.SerializerMethodField()
    committer_name = serializers.CharField(source="commit_author_name")
    committer_email = serializers.CharField(source="commit_author_email")
    committed_date = serializers.SerializerMethodField()
    web_url = serializers.SerializerMethodField()

    def get_short_id(self, pipeline: Pipeline) -> str:
        return pipeline.sha[:8]

    def get_created_at(self, pipeline: Pipeline) -> str | None:
        return commit_time(pipeline.commit_timestamp)

    def get_parent_ids(self, pipeline: Pipeline) -> list[str]:
        return [pipeline.before_sha] if pipeline.before_sha.strip("0") else []

    def get_authored_date(self, pipeline: Pipeline) -> str | None:
        return commit_time(pipeline.commit_timestamp)

    def get_committed_date(self, pipeline: Pipeline) -> str | None:
        return commit_time(pipeline.commit_timestamp)

    def get_web_url(self, pipeline: Pipeline) -> str:
        return f"{pipeline.project.resolved_web_url}/-/commit/{pipeline.sha}"


class CommitDetailSerializer(CommitSerializer):
    """``API::Entities::CommitDetail`` of ``GET /repository/commits/:sha``.

    The instance is the commit's newest pipeline, or an unsaved one for a commit nothing
    was reported for yet. The repository lives in the reporting CI, so there are no
    ``stats`` (null) and no trailers.
    """

    trailers = ConstantField({}, {"type": "object"})
    extended_trailers = ConstantField({}, {"type": "object"})
    stats = ConstantField(None, NULLABLE_OBJECT)
    status = serializers.SerializerMethodField()
    project_id = serializers.IntegerField()
    last_pipeline = serializers.SerializerMethodField()

    def get_status(self, pipeline: Pipeline) -> str | None:
        return pipeline.status if pipeline.pk else None

    @extend_schema_field(PipelineBasicSerializer(allow_null=True))
    def get_last_pipeline(self, pipeline: Pipeline) -> dict | None:
        return PipelineBasicSerializer(pipeline).data if pipeline.pk else None


class JobProjectSerializer(FieldsBuiltOnce, serializers.Serializer):
    ci_job_token_scope_enabled = ConstantField(False)


class ArtifactsFileSerializer(FieldsBuiltOnce, serializers.Serializer):
    filename = serializers.CharField(source="artifacts_filename")
    size = serializers.IntegerField(source="artifacts_size", allow_null=True)


class RunnerSerializer(FieldsBuiltOnce, serializers.Serializer):
    """``API::Entities::Ci::Runner`` from the runner details a CI reported (null if none)."""

    id = serializers.IntegerField(allow_null=True)
    description = serializers.CharField(allow_null=True)
    ip_address = serializers.CharField(allow_null=True)
    active = serializers.BooleanField()
    paused = serializers.BooleanField()
    is_shared = serializers.BooleanField()
    runner_type = serializers.CharField(allow_null=True)
    name = serializers.CharField(allow_null=True)
    online = serializers.BooleanField(allow_null=True)
    status = serializers.CharField(allow_null=True)

    def to_representation(self, runner: dict) -> dict:
        active = bool(runner.get("active", True))
        return {
            "id": runner.get("id"),
            "description": runner.get("description", ""),
            "ip_address": runner.get("ip_address"),
            "active": active,
            "paused": not active,
            "is_shared": bool(runner.get("is_shared", False)),
            "runner_type": runner.get("runner_type"),
            "name": runner.get("name"),
            "online": runner.get("online"),
            "status": runner.get("status"),
        }


class JobSerializer(FieldsBuiltOnce, serializers.ModelSerializer):
    """``API::Entities::Ci::Job``: the jobs of a pipeline."""

    duration = serializers.SerializerMethodField()
    queued_duration = serializers.SerializerMethodField()

    ref = serializers.CharField(source="pipeline.ref")
    tag = serializers.BooleanField(source="pipeline.tag")
    source = serializers.CharField(source="pipeline.source")
    created_at = GitLabDateTimeField()
    started_at = GitLabDateTimeField(allow_null=True)
    finished_at = GitLabDateTimeField(allow_null=True)
    erased_at = ConstantField(None, NULLABLE_STRING)
    user = UserSerializer(allow_null=True)
    commit = CommitSerializer(source="pipeline")
    pipeline = PipelineBasicSerializer()
    failure_reason = serializers.CharField(required=False, help_text="Only for failed jobs.")
    web_url = serializers.CharField()
    project = JobProjectSerializer(source="*")
    artifacts_file = ArtifactsFileSerializer(
        source="*", required=False, help_text="Only when the job has artifacts."
    )
    artifacts = serializers.SerializerMethodField()
    runner = RunnerSerializer(allow_null=True)
    runner_manager = ConstantField(None, NULLABLE_OBJECT)
    artifacts_expire_at = ConstantField(None, NULLABLE_STRING)
    archived = ConstantField(False)
    tag_list = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "status",
            "stage",
            "name",
            "ref",
            "tag",
            "coverage",
            "allow_failure",
            "source",
            "created_at",
            "started_at",
            "finished_at",
            "erased_at",
            "duration",
            "queued_duration",
            "user",
            "commit",
            "pipeline",
            "failure_reason",
            "web_url",
            "project",
            "artifacts_file",
            "artifacts",
            "runner",
            "runner_manager",
            "artifacts_expire_at",
            "archived",
            "tag_list",
        ]

    def to_representation(self, job: Job) -> dict:
        data = super().to_representation(job)
        # GitLab exposes these only when they apply.
        if job.status != Status.FAILED:
            data.pop("failure_reason")
        if not job.artifacts_filename:
            data.pop("artifacts_file")
        return data

    def get_duration(self, job: Job) -> float | None:
        """Live for a running job, as GitLab's ``calculate_duration``."""
        return job_durations(job, timezone.now())[0]

    def get_queued_duration(self, job: Job) -> float | None:
        return job_durations(job, timezone.now())[1]

    def get_artifacts(self, job: Job) -> list[dict]:
        if not job.artifacts_filename:
            return []
        return [
            {
                "file_type": "archive",
                "size": job.artifacts_size,
                "filename": job.artifacts_filename,
                "file_format": "zip",
            }
        ]

    def get_tag_list(self, job: Job) -> list[str]:
        return list((job.runner or {}).get("tags") or [])


class CommitStatusSerializer(FieldsBuiltOnce, serializers.ModelSerializer):
    """``API::Entities::CommitStatus``: a job as the commit status API shows it."""

    sha = serializers.CharField(source="pipeline.sha")
    ref = serializers.CharField(source="pipeline.ref")
    target_url = serializers.SerializerMethodField()
    description = serializers.SerializerMethodField()
    created_at = GitLabDateTimeField()
    started_at = GitLabDateTimeField(allow_null=True)
    finished_at = GitLabDateTimeField(allow_null=True)
    author = UserBasicSerializer(source="user", allow_null=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "sha",
            "ref",
            "status",
            "name",
            "target_url",
            "description",
            "created_at",
            "started_at",
            "finished_at",
            "allow_failure",
            "coverage",
            "pipeline_id",
            "author",
        ]

    def get_target_url(self, job: Job) -> str | None:
        return blank_to_none(job.target_url)

    def get_description(self, job: Job) -> str | None:
        return blank_to_none(job.description)
