"""Admin for people who run Pipehook: projects, pipelines with their jobs, access tokens.

Pipelines and jobs are read-only here: their state changes only through the service layer
(the APIs), so the admin can never skip a hook. Tokens are created here and shown once.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.html import format_html

from pipelines import auth
from pipelines.api.graphql.ids import definition_id
from pipelines.errors import DomainError
from pipelines.models import (
    AccessToken,
    CicdInstance,
    CicdRun,
    DistelliEvent,
    Execution,
    GroupProjectPermission,
    Job,
    Pipeline,
    PipelineDefinition,
    Project,
)

STATUS_COLOURS = {
    "success": "#1f7a3d",
    "failed": "#c0392b",
    "running": "#1f6fb2",
    "pending": "#b7791f",
    "canceled": "#555",
    "canceling": "#555",
    "skipped": "#777",
}


def status_badge(status: str) -> str:
    colour = STATUS_COLOURS.get(status, "#666")
    return format_html(
        '<span style="color:#fff;background:{};padding:2px 8px;border-radius:9px">{}</span>',
        colour,
        status,
    )


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class PipelineInline(ReadOnlyInline):
    model = Pipeline
    fields = ("iid", "ref", "sha", "status", "source", "created_at")
    readonly_fields = fields
    show_change_link = True
    max_num = 0
    ordering = ("-id",)

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("-id")


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("path_with_namespace", "name", "default_branch", "visibility", "created_at")
    search_fields = ("name", "path", "namespace")
    list_filter = ("visibility", "namespace")
    fields = ("name", "path", "namespace", "description", "default_branch", "visibility", "web_url")
    prepopulated_fields = {"path": ("name",)}
    inlines = [PipelineInline]


class JobInline(ReadOnlyInline):
    model = Job
    fields = (
        "stage",
        "name",
        "status",
        "allow_failure",
        "failure_reason",
        "started_at",
        "finished_at",
        "duration",
        "retried",
    )
    readonly_fields = fields
    max_num = 0


@admin.register(Pipeline)
class PipelineAdmin(admin.ModelAdmin):
    list_display = ("__str__", "project", "ref", "short_sha", "badge", "source", "created_at")
    list_filter = ("status", "source", "project")
    search_fields = ("sha", "ref", "project__path", "project__name")
    date_hierarchy = "created_at"
    inlines = [JobInline]
    list_select_related = ("project",)

    fieldsets = (
        (None, {"fields": ("project", "iid", "badge", "ref", "sha", "source", "name")}),
        (
            "Times",
            {"fields": ("created_at", "started_at", "finished_at", "duration", "queued_duration")},
        ),
        (
            "Commit",
            {
                "fields": (
                    "commit_title",
                    "commit_message",
                    "commit_author_name",
                    "commit_author_email",
                    "commit_timestamp",
                    "before_sha",
                )
            },
        ),
        (
            "More",
            {
                "classes": ("collapse",),
                "fields": (
                    "tag",
                    "protected_ref",
                    "variables",
                    "user",
                    "source_pipeline",
                    "merge_request",
                    "updated_at",
                ),
            },
        ),
    )

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Pipeline._meta.fields] + ["badge"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="sha")
    def short_sha(self, obj: Pipeline) -> str:
        return obj.sha[:8]

    @admin.display(description="status", ordering="status")
    def badge(self, obj: Pipeline) -> str:
        return status_badge(obj.status)


class AccessTokenForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=AccessToken.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[AccessToken.Scope.API],
        help_text="api: read and write. read_api: read only.",
    )

    class Meta:
        model = AccessToken
        fields = ("name", "user", "scopes", "projects", "groups", "expires_at", "revoked")

    def clean(self) -> dict:
        data = super().clean()
        if data.get("user") is not None and data.get("groups") is not None:
            try:
                auth.check_token_groups(data["user"], data["groups"])
            except DomainError as refused:
                self.add_error("groups", refused.message)
        return data


@admin.register(AccessToken)
class AccessTokenAdmin(admin.ModelAdmin):
    """Tokens act with their owner's rights, so only a superuser may make or see tokens of
    other users; everyone else manages their own, scoped to their own groups."""

    form = AccessTokenForm
    list_display = ("name", "user", "token_prefix", "scopes", "state", "last_used_at")
    list_filter = ("revoked",)
    search_fields = ("name", "user__username", "token_prefix")
    filter_horizontal = ("projects", "groups")
    readonly_fields = ("token_prefix", "created_at", "last_used_at")

    def get_queryset(self, request):
        tokens = super().get_queryset(request)
        return tokens if request.user.is_superuser else tokens.filter(user=request.user)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user" and not request.user.is_superuser:
            kwargs["queryset"] = get_user_model().objects.filter(pk=request.user.pk)
            kwargs["initial"] = request.user.pk
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "groups" and not request.user.is_superuser:
            kwargs["queryset"] = request.user.groups.all()
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    @admin.display(description="state")
    def state(self, obj: AccessToken) -> str:
        if obj.revoked:
            return "revoked"
        if obj.expires_at and obj.expires_at <= timezone.now():
            return "expired"
        return "active"

    def save_model(self, request, obj: AccessToken, form, change) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        # A new token gets its secret from the service; the raw value is shown exactly once.
        raw = auth.issue_token(obj)
        messages.warning(
            request,
            f"New token (copy it now, it will not be shown again): {raw}",
        )

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        # Said once its projects and groups are saved, which is what the rights depend on.
        messages.info(request, auth.describe_rights(form.instance))


# --- Pipeline definitions, executions and per-project group permissions ---------------------


@admin.register(PipelineDefinition)
class PipelineDefinitionAdmin(admin.ModelAdmin):
    list_display = ("name", "project", "kind", "variable_names", "ref", "updated_at")
    list_filter = ("kind", "project")
    search_fields = ("name", "project__name", "project__path")
    list_select_related = ("project",)
    fields = ("project", "kind", "name", "description", "ref", "variables", "entity_id")
    readonly_fields = ("entity_id",)

    @admin.display(description="variables")
    def variable_names(self, obj: PipelineDefinition) -> str:
        return ", ".join(
            item["name"] + ("*" if item.get("required") else "") for item in obj.variables
        )

    @admin.display(description="GraphQL entityId")
    def entity_id(self, obj: PipelineDefinition) -> str:
        return definition_id(obj) if obj.pk else "-"


@admin.register(GroupProjectPermission)
class GroupProjectPermissionAdmin(admin.ModelAdmin):
    """What a user group (and every API key scoped to it) may do on one project."""

    list_display = ("group", "project", "permission")
    list_filter = ("group", "permission", "project")
    list_select_related = ("group", "project", "permission")


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    """Executions started through the API; read-only, their pipelines carry the state."""

    list_display = ("pipeline", "definition", "kind", "notes", "token", "created_at")
    list_filter = ("kind",)
    list_select_related = ("pipeline__project", "definition__project", "token")

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Execution._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


# --- Inbound dialect records -------------------------------------------------------------


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records a dialect wrote; their state changes only through that dialect's API."""

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(CicdInstance)
class CicdInstanceAdmin(admin.ModelAdmin):
    """SEI CI/CD instances: runs must carry one of these GUIDs."""

    list_display = ("name", "type", "project", "guid", "created_at")
    list_filter = ("type", "project")
    search_fields = ("name", "guid")
    fields = ("project", "name", "type", "guid", "created_by", "created_at")
    readonly_fields = ("guid", "created_by", "created_at")


@admin.register(CicdRun)
class CicdRunAdmin(ReadOnlyAdmin):
    list_display = ("job_full_name", "instance", "execution_id", "build_number", "pipeline")
    list_filter = ("instance",)
    search_fields = ("job_full_name", "execution_id", "identity")
    list_select_related = ("instance", "pipeline__project")


@admin.register(DistelliEvent)
class DistelliEventAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "event_type", "build_status", "branch", "pipeline", "created_at")
    list_filter = ("event_type", "build_status", "project")
    search_fields = ("build_id", "commit_id", "branch")
    list_select_related = ("project", "pipeline")
