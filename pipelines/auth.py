"""Access tokens on every inbound API: who is calling, with which scopes and permissions.

Tokens arrive the way GitLab's clients send them (``PRIVATE-TOKEN``, ``Authorization:
Bearer``, ``private_token``/``access_token`` query parameters) and the way the other
dialects send them (``Authorization: ApiKey``, ``x-api-key``, ``apiToken``). One rule set
decides what a token may do, and it never gives a token more than its owner holds:

- scope ``api`` reads and writes, ``read_api`` only reads;
- a token limited to projects reaches only those;
- rights are Django permissions (``pipelines.view_project``, ``pipelines.change_project``,
  ``pipelines.start_execution``, ``pipelines.manage_hooks``; ``pipelines.add_project`` to
  create projects). A token acts with exactly its owner's: a superuser holds every one, any
  other user those granted to it or to its groups, and a user granted nothing may do nothing.
  A token scoped to user groups holds only what those groups grant, and only groups its
  owner belongs to count, so scoping narrows a token and never widens it.

A group grants a permission on every project through ``Group.permissions`` (Django's own),
or on one project through a ``GroupProjectPermission`` row. Checks made without a project
ask whether the token may do it somewhere; views then check again with the project.

A project on which the caller holds nothing is answered as if it did not exist
(``ProjectHidden``), as GitLab answers 404 for a project one may not read: a refusal that
named it would let anyone probe which names exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework import authentication, exceptions, permissions

from pipelines import token_cache
from pipelines.errors import Forbidden, InvalidInput, ProjectHidden
from pipelines.models import AccessToken, GroupProjectPermission, Project

READ = "read"
WRITE = "write"
START = "start_execution"
MANAGE_HOOKS = "manage_hooks"
CREATE_PROJECT = "create_project"

# The Django permission each action needs.
PERMISSION_FOR_ACTION = {
    READ: "pipelines.view_project",
    WRITE: "pipelines.change_project",
    START: "pipelines.start_execution",
    MANAGE_HOOKS: "pipelines.manage_hooks",
    CREATE_PROJECT: "pipelines.add_project",
}
# Actions on an existing project; holding any of them makes the project visible to the caller.
PROJECT_ACTIONS = (READ, WRITE, START, MANAGE_HOOKS)
# Query-string names a token may come in; also what pagination links and logs leave out.
TOKEN_QUERY_PARAMETERS = ("private_token", "access_token", "apiToken")


@dataclass(frozen=True)
class Grants:
    """What one caller (a token, or a signed-in user) holds, read once (``load_grants``)."""

    everything: bool  # a superuser acting without a group scope
    everywhere: frozenset[str]  # "pipelines.<codename>" held on every project
    group_ids: tuple[int, ...]  # groups whose per-project grants count
    project_ids: frozenset[int]  # the token's project limit; empty = no limit
    holder: str  # who holds the rights, as refusals name it
    by_groups: bool  # a token scoped to user groups
    # (project id, "pipelines.<codename>") granted per project by the groups that count,
    # within the project limit.
    on_projects: frozenset[tuple[int, str]] = frozenset()

    def allows_project(self, project: Project) -> bool:
        return not self.project_ids or project.pk in self.project_ids

    def projects_granted(self, *actions: str) -> set[int]:
        """The projects on which the groups that count grant any of ``actions``."""
        wanted = {PERMISSION_FOR_ACTION[a] for a in actions}
        return {project_id for project_id, perm in self.on_projects if perm in wanted}

    def holds_everywhere(self, action: str) -> bool:
        return self.everything or PERMISSION_FOR_ACTION[action] in self.everywhere

    def may(self, action: str, project: Project | None = None) -> bool:
        """On ``project``; without one, on at least one project (creating: at all)."""
        if project is not None and not self.allows_project(project):
            return False
        if self.holds_everywhere(action):
            return True
        if action == CREATE_PROJECT:
            return False  # creating projects is never granted per project
        granted = self.projects_granted(action)
        return project.pk in granted if project is not None else bool(granted)

    def sees(self, project: Project) -> bool:
        """Whether the caller holds any right on the project at all."""
        if not self.allows_project(project):
            return False
        if any(self.holds_everywhere(action) for action in PROJECT_ACTIONS):
            return True
        return project.pk in self.projects_granted(*PROJECT_ACTIONS)

    def refusal(self, action: str, project: Project | None) -> str:
        where = f" on project {project.path_with_namespace}" if project is not None else ""
        verb = "do not grant" if self.by_groups else "does not hold"
        return f"{self.holder} {verb} the '{PERMISSION_FOR_ACTION[action]}' permission{where}"


def grants_of(token: AccessToken | None, user=None) -> Grants:
    """The rights of a token (acting for its owner) or, without one, of a signed-in user.

    A token's are read once and kept on it, so the checks of one request, and of every
    request that finds the token in the token cache, read nothing again.
    """
    if token is None:
        return load_grants(None, user)
    generation = token_cache.tokens.generation
    kept = token.__dict__.get("_grants")
    if kept is None or kept[0] != generation:
        kept = token.__dict__["_grants"] = (generation, load_grants(token, token.user))
    return kept[1]


def _rights_rows(token_id: int | None, user_id: int) -> list[tuple[str, int, int, str, str]]:
    """Everything a token's and a user's rights come from, in one query: rows of
    (kind, number, project id, app label, codename)."""
    user_model = get_user_model()
    token_groups = AccessToken.groups.through._meta.db_table
    token_projects = AccessToken.projects.through._meta.db_table
    user_groups = user_model.groups.through._meta.db_table
    user_perms = user_model.user_permissions.through._meta.db_table
    group_perms = Group.permissions.through._meta.db_table
    permission = Permission._meta.db_table
    content_type = ContentType._meta.db_table
    project_grants = GroupProjectPermission._meta.db_table
    groups_that_may_count = (
        f"SELECT group_id FROM {user_groups} WHERE user_id = %s"  # noqa: S608 - model tables
        f" UNION SELECT group_id FROM {token_groups} WHERE accesstoken_id = %s"
    )
    named = (
        f"JOIN {permission} p ON p.id = x.permission_id"
        f" JOIN {content_type} ct ON ct.id = p.content_type_id"
    )
    sql = f"""
        SELECT 'token_group', group_id, 0, '', '' FROM {token_groups} WHERE accesstoken_id = %s
        UNION ALL
        SELECT 'token_project', project_id, 0, '', '' FROM {token_projects}
            WHERE accesstoken_id = %s
        UNION ALL
        SELECT 'user_group', group_id, 0, '', '' FROM {user_groups} WHERE user_id = %s
        UNION ALL
        SELECT 'user_perm', 0, 0, ct.app_label, p.codename FROM {user_perms} x {named}
            WHERE x.user_id = %s
        UNION ALL
        SELECT 'group_perm', x.group_id, 0, ct.app_label, p.codename FROM {group_perms} x
            {named} WHERE x.group_id IN ({groups_that_may_count})
        UNION ALL
        SELECT 'project_grant', x.group_id, x.project_id, ct.app_label, p.codename
            FROM {project_grants} x {named} WHERE x.group_id IN ({groups_that_may_count})
    """  # noqa: S608 - table names from the models; every value is a parameter
    params = [token_id, token_id, user_id, user_id, user_id, token_id, user_id, token_id]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def load_grants(token: AccessToken | None, user) -> Grants:
    """Read a token's (or a signed-in user's) rights: one query, none for an inactive user."""
    holder = f"user {user.get_username()}"
    if not user.is_active:
        project_ids = frozenset(token.projects.values_list("pk", flat=True)) if token else ()
        return Grants(False, frozenset(), (), frozenset(project_ids), holder, by_groups=False)
    rows = _rights_rows(token.pk if token is not None else None, user.pk)
    of_kind: dict[str, list[tuple[int, int, str]]] = {}
    for kind, number, project_id, app_label, codename in rows:
        of_kind.setdefault(kind, []).append((number, project_id, f"{app_label}.{codename}"))
    project_ids = frozenset(number for number, _, _ in of_kind.get("token_project", ()))
    user_groups = {number for number, _, _ in of_kind.get("user_group", ())}
    scoped = sorted({number for number, _, _ in of_kind.get("token_group", ())})
    if scoped:
        # Only groups the owner is in count (every one for a superuser, who holds it all).
        counting = set(scoped) if user.is_superuser else set(scoped) & user_groups
        everywhere = {perm for group, _, perm in of_kind.get("group_perm", ()) if group in counting}
        holder, by_groups, everything = "the token's user groups", True, False
    else:
        counting = user_groups
        everywhere = set()
        if not user.is_superuser:
            # What Django's ModelBackend holds: the user's own and their groups' permissions.
            everywhere = {perm for _, _, perm in of_kind.get("user_perm", ())} | {
                perm for group, _, perm in of_kind.get("group_perm", ()) if group in user_groups
            }
        by_groups, everything = False, user.is_superuser
    on_projects = frozenset(
        (project_id, perm)
        for group, project_id, perm in of_kind.get("project_grant", ())
        if group in counting and (not project_ids or project_id in project_ids)
    )
    return Grants(
        everything=everything,
        everywhere=frozenset(everywhere),
        group_ids=tuple(sorted(counting)),
        project_ids=project_ids,
        holder=holder,
        by_groups=by_groups,
        on_projects=on_projects,
    )


def find_token(raw: str | None) -> AccessToken | None:
    """The active token for a raw value, or None. Marks it used (at most once a minute).

    A token found is kept for ``PIPEHOOK_TOKEN_CACHE_SECONDS`` (``pipelines.token_cache``).
    """
    if not raw:
        return None
    digest = AccessToken.hash_token(raw.strip())
    token = token_cache.tokens.get(digest)
    if token is None:
        token = AccessToken.objects.select_related("user").filter(token_hash=digest).first()
        if token is None or not token.user.is_active:
            return None
        token_cache.tokens.put(digest, token)
    if not token.is_active or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        token.last_used_at = now
        AccessToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


# --- Tokens ----------------------------------------------------------------------------------


def create_token(
    user,
    *,
    scopes: list[str],
    name: str = "token",
    projects: Iterable[Project] = (),
    groups: Iterable = (),
    expires_at: datetime | None = None,
) -> tuple[AccessToken, str]:
    """Create an access token; returns the row and the raw token, which is shown only once."""
    scopes = checked_scopes(scopes)
    groups = list(groups)
    check_token_groups(user, groups)
    token = AccessToken(user=user, name=name, scopes=scopes, expires_at=expires_at)
    with transaction.atomic():
        raw = issue_token(token)
        token.projects.set(projects)
        token.groups.set(groups)
    return token, raw


def issue_token(token: AccessToken) -> str:
    """Give a new token its secret and save it; returns the raw value, shown only once.

    The row keeps only the secret's hash and first characters. Its groups, set once it is
    saved, are to pass ``check_token_groups``.
    """
    raw = AccessToken.generate()
    token.scopes = checked_scopes(token.scopes)
    token.token_hash = AccessToken.hash_token(raw)
    token.token_prefix = raw[:10]
    with transaction.atomic():
        token.save()
    return raw


def checked_scopes(scopes: Iterable[str]) -> list[str]:
    """The scopes once each, all known, at least one."""
    scopes = list(dict.fromkeys(scopes))
    if not scopes:
        raise InvalidInput("at least one scope is needed")
    unknown = set(scopes) - set(AccessToken.Scope.values)
    if unknown:
        raise InvalidInput(
            f"unknown scopes: {', '.join(sorted(unknown))}"
            f" (use {', '.join(AccessToken.Scope.values)})"
        )
    return scopes


def check_token_groups(user, groups: Iterable) -> None:
    """A token may be scoped only to groups its owner is in: scoping narrows, never widens."""
    if user.is_superuser:
        return
    member_of = set(user.groups.values_list("pk", flat=True))
    foreign = sorted(group.name for group in groups if group.pk not in member_of)
    if foreign:
        raise InvalidInput(
            f"user {user.get_username()} is not in the group(s) {', '.join(foreign)}: a token"
            " can only be scoped to its owner's groups"
        )


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
    for name in TOKEN_QUERY_PARAMETERS:
        if value := params.get(name):
            return value
    return None


def permitted_projects(token: AccessToken | None, action: str, user=None):
    """The projects a token (or a signed-in user) may do ``action`` on, scopes aside."""
    grants = grants_of(token, user)
    projects = Project.objects.all()
    if grants.project_ids:
        projects = projects.filter(pk__in=grants.project_ids)
    if grants.holds_everywhere(action):
        return projects
    return projects.filter(pk__in=grants.projects_granted(action))


def users_holding(action: str, project: Project):
    """The active users who may do ``action`` on ``project`` in their own right (no token's
    narrowing): superusers, users granted the permission on every project themselves or
    through a group, and members of a group granted it on this project."""
    app_label, codename = PERMISSION_FOR_ACTION[action].split(".", 1)
    permission = Permission.objects.filter(content_type__app_label=app_label, codename=codename)
    granting_groups = Group.objects.filter(
        Q(permissions__in=permission)
        | Q(project_permissions__project=project, project_permissions__permission__in=permission)
    )
    return (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(
            Q(is_superuser=True)
            | Q(user_permissions__in=permission)
            | Q(groups__in=granting_groups)
        )
        .distinct()
    )


def describe_rights(token: AccessToken) -> str:
    """What a token can do, said to the person creating it."""
    grants = grants_of(token)
    holder = grants.holder[:1].upper() + grants.holder[1:]
    reads_only = AccessToken.Scope.API not in token.scopes
    scopes = ", ".join(token.scopes) + (" (reading only)" if reads_only else "")
    limit = ""
    if grants.project_ids:
        limited = Project.objects.filter(pk__in=grants.project_ids)
        limit = " (limited to " + ", ".join(p.path_with_namespace for p in limited) + ")"
    if grants.everything:
        return (
            f"Scopes {scopes}. {holder} is a superuser: the token has every right"
            f" on every project{limit}."
        )
    lines = []
    for action in (READ,) if reads_only else (*PROJECT_ACTIONS, CREATE_PROJECT):
        permission = PERMISSION_FOR_ACTION[action]
        if grants.holds_everywhere(action):
            lines.append(f"  {permission} on every project{limit}")
        elif action != CREATE_PROJECT and grants.group_ids:
            projects = permitted_projects(token, action)
            if projects:
                names = ", ".join(p.path_with_namespace for p in projects)
                lines.append(f"  {permission} on {names}")
    if not lines:
        return (
            f"Scopes {scopes}. {holder} holds no permission here{limit}, so the token"
            " can do nothing yet: grant pipelines permissions (view_project, change_project,"
            " start_execution, manage_hooks, add_project) to the user or one of its groups in"
            " the admin."
        )
    source = "the token's user groups grant" if grants.by_groups else f"{grants.holder} holds"
    return f"Scopes {scopes}. The token acts with what {source}:\n" + "\n".join(lines)


def check_access(token: AccessToken | None, user, action: str, project: Project | None = None):
    """Raise ``Forbidden`` saying which scope or permission is missing, or
    ``ProjectHidden`` when the caller holds nothing on ``project``."""
    if token is None:
        if user is None or not user.is_authenticated:
            raise Forbidden("a valid access token is needed")
    else:
        needed_scope = AccessToken.Scope.READ_API if action == READ else AccessToken.Scope.API
        scopes = set(token.scopes)
        if AccessToken.Scope.API not in scopes and needed_scope not in scopes:
            raise Forbidden(
                f"insufficient_scope: this request needs the '{AccessToken.Scope.API}' scope"
                f" and the token has {', '.join(sorted(scopes)) or 'none'}"
            )
    grants = grants_of(token, user)
    if project is not None and not grants.sees(project):
        raise ProjectHidden()
    if not grants.may(action, project):
        raise Forbidden(grants.refusal(action, project))


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
        check_access(token, request.user, action)  # Forbidden: a 403 saying what is missing
        return True
