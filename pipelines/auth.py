"""Access tokens on every inbound API: who is calling, with which scopes and permissions.

Tokens arrive the way GitLab's clients send them (``PRIVATE-TOKEN``, ``Authorization:
Bearer``, ``private_token``/``access_token`` query parameters) and the way the other
dialects send them (``Authorization: ApiKey``, ``x-api-key``, ``apiToken``). One rule set
decides what a token may do:

- scope ``api`` reads and writes, ``read_api`` only reads;
- a token limited to projects reaches only those;
- a token scoped to user groups has exactly the Django permissions those groups grant
  (``pipelines.view_project``, ``pipelines.change_project``, ``pipelines.start_execution``,
  ``pipelines.manage_hooks``); an unscoped token has its owner's.

A group grants a permission on every project through ``Group.permissions`` (Django's own),
or on one project through a ``GroupProjectPermission`` row. Checks made without a project
ask whether the token may do it somewhere; views then check again with the project.
"""

from __future__ import annotations

from django.contrib.auth.models import Permission
from django.utils import timezone
from rest_framework import authentication, exceptions, permissions

from pipelines.models import AccessToken, GroupProjectPermission, Project

READ = "read"
WRITE = "write"
START = "start_execution"
MANAGE_HOOKS = "manage_hooks"

# The Django permission each action needs (for group-scoped tokens and for session users).
PERMISSION_FOR_ACTION = {
    READ: "pipelines.view_project",
    WRITE: "pipelines.change_project",
    START: "pipelines.start_execution",
    MANAGE_HOOKS: "pipelines.manage_hooks",
}


class AccessDenied(Exception):
    """The caller is known but may not do this; ``message`` says why."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def find_token(raw: str | None) -> AccessToken | None:
    """The active token for a raw value, or None. Marks it used (at most once a minute)."""
    if not raw:
        return None
    token = (
        AccessToken.objects.select_related("user")
        .filter(token_hash=AccessToken.hash_token(raw.strip()))
        .first()
    )
    if token is None or not token.is_active or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        AccessToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def raw_token_from_request(request) -> str | None:
    """The token in whichever of the supported places the client put it."""
    meta = request.META
    if value := meta.get("HTTP_PRIVATE_TOKEN"):
        return value
    auth = meta.get("HTTP_AUTHORIZATION", "")
    scheme, _, credentials = auth.partition(" ")
    if scheme.lower() in ("bearer", "apikey", "token") and credentials.strip():
        return credentials.strip()
    if value := meta.get("HTTP_X_API_KEY"):
        return value
    params = request.GET
    for name in ("private_token", "access_token", "apiToken"):
        if value := params.get(name):
            return value
    return None


def _granting_groups(token: AccessToken, action: str) -> tuple[bool, list[int]]:
    """(granted on every project, groups whose per-project grants count) for a token."""
    codename = PERMISSION_FOR_ACTION[action].split(".", 1)[1]
    group_ids = list(token.groups.values_list("pk", flat=True))
    if not group_ids:
        user = token.user
        # An unscoped token acts as its owner; owners without explicit permissions (the
        # usual case for people using tokens) may do what the token's scopes allow.
        if user.is_superuser or not user.user_permissions.exists() and not user.groups.exists():
            return True, []
        if user.has_perm(PERMISSION_FOR_ACTION[action]):
            return True, []
        return False, list(user.groups.values_list("pk", flat=True))
    everywhere = Permission.objects.filter(
        group__pk__in=group_ids, content_type__app_label="pipelines", codename=codename
    ).exists()
    return everywhere, group_ids


def _project_grants(group_ids: list[int], action: str):
    codename = PERMISSION_FOR_ACTION[action].split(".", 1)[1]
    return GroupProjectPermission.objects.filter(
        group__pk__in=group_ids,
        permission__content_type__app_label="pipelines",
        permission__codename=codename,
    )


def token_has_permission(token: AccessToken, action: str, project: Project | None = None) -> bool:
    """Whether a token's groups (or, unscoped, its owner) grant the action's permission.

    With a project: on that project. Without: on at least one project.
    """
    everywhere, group_ids = _granting_groups(token, action)
    if everywhere:
        return True
    grants = _project_grants(group_ids, action)
    if project is not None:
        grants = grants.filter(project=project)
    return grants.exists()


def permitted_projects(token: AccessToken, action: str):
    """The projects a token may do ``action`` on (scopes aside), for lists."""
    everywhere, group_ids = _granting_groups(token, action)
    projects = Project.objects.all()
    if not everywhere:
        projects = projects.filter(pk__in=_project_grants(group_ids, action).values("project_id"))
    if token.projects.exists():
        projects = projects.filter(pk__in=token.projects.values("pk"))
    return projects


def check_access(token: AccessToken | None, user, action: str, project: Project | None = None):
    """Raise ``AccessDenied`` with a message that says which permission is missing."""
    if token is None:
        if user is not None and user.is_authenticated and user.is_staff:
            return  # a signed-in admin using the browsable API
        raise AccessDenied("a valid access token is needed")
    needed_scope = AccessToken.Scope.READ_API if action == READ else AccessToken.Scope.API
    scopes = set(token.scopes)
    if AccessToken.Scope.API not in scopes and needed_scope not in scopes:
        raise AccessDenied(
            f"insufficient_scope: this request needs the '{AccessToken.Scope.API}' scope"
            f" and the token has {', '.join(sorted(scopes)) or 'none'}"
        )
    if (
        project is not None
        and token.projects.exists()
        and not token.projects.filter(pk=project.pk).exists()
    ):
        raise AccessDenied(f"this token is not allowed to access project {project.pk}")
    if not token_has_permission(token, action, project):
        where = f" on project {project.path_with_namespace}" if project is not None else ""
        raise AccessDenied(
            f"the token's user groups do not grant the '{PERMISSION_FOR_ACTION[action]}'"
            f" permission{where}"
        )


class TokenAuthentication(authentication.BaseAuthentication):
    """DRF authentication for the GitLab-compatible API; ``request.auth`` is the token."""

    def authenticate(self, request):
        raw = raw_token_from_request(request)
        if raw is None:
            return None
        token = find_token(raw)
        if token is None:
            raise exceptions.AuthenticationFailed("401 Unauthorized")
        return (token.user, token)

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class HasTokenScope(permissions.BasePermission):
    """Scope check for every API view; project-level checks happen in the views."""

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            raise exceptions.NotAuthenticated("401 Unauthorized")
        token = request.auth if isinstance(request.auth, AccessToken) else None
        action = READ if request.method in permissions.SAFE_METHODS else WRITE
        action = getattr(view, "required_action", None) or action
        try:
            check_access(token, request.user, action)
        except AccessDenied as denied:
            raise exceptions.PermissionDenied(denied.message) from None
        return True
