from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from pipelines import auth, token_cache
from pipelines.errors import Forbidden, InvalidInput, ProjectHidden
from pipelines.models import AccessToken, GroupProjectPermission
from tests.factories import ProjectFactory, UserFactory, grant_permissions


def test_createtoken_prints_only_a_working_token(db):
    out = StringIO()
    call_command("createtoken", "--user", "deployer", "--scopes", "read_api", stdout=out)
    raw = out.getvalue().strip()
    assert "\n" not in raw and raw.startswith(AccessToken.PREFIX)
    token = auth.find_token(raw)
    assert token.user.username == "deployer"
    assert token.scopes == ["read_api"]
    # Stored hashed: the raw value is nowhere in the row.
    assert raw not in (token.token_hash, token.token_prefix)


def test_createtoken_refuses_unknown_scope_and_writes_nothing(db):
    with pytest.raises(CommandError, match="unknown scopes: write_everything"):
        call_command("createtoken", "--user", "x", "--scopes", "write_everything")
    assert AccessToken.objects.count() == 0
    assert not get_user_model().objects.filter(username="x").exists()


def test_create_token_needs_a_scope(db):
    with pytest.raises(InvalidInput):
        auth.create_token(UserFactory(), scopes=[])


def test_revoked_or_unknown_tokens_are_not_found(db):
    token, raw = auth.create_token(UserFactory(), scopes=["api"])
    assert auth.find_token(raw) == token
    assert auth.find_token(raw + "x") is None
    token.revoked = True
    token.save()  # as the admin revokes: at once in this process, although it was cached
    assert auth.find_token(raw) is None


def test_a_found_token_is_kept_for_the_cache_time_then_read_again(db, settings, monkeypatch):
    """Another process's change (here a raw UPDATE, which sends no signal) is seen once the
    entry runs out; until then the token and its rights cost no query."""
    settings.PIPEHOOK_TOKEN_CACHE_SECONDS = 5
    clock = [1000.0]
    monkeypatch.setattr(token_cache.time, "monotonic", lambda: clock[0])
    token, raw = auth.create_token(grant_permissions(UserFactory(), "view_project"), scopes=["api"])
    found = auth.find_token(raw)
    auth.grants_of(found)
    AccessToken.objects.filter(pk=token.pk).update(revoked=True)
    clock[0] += 4.9
    with CaptureQueriesContext(connection) as queries:
        again = auth.find_token(raw)
        assert auth.grants_of(again).holds_everywhere(auth.READ)
    assert again == token and len(queries) == 0
    clock[0] += 0.2
    assert auth.find_token(raw) is None


def test_no_token_is_kept_with_a_cache_time_of_zero(db, settings):
    settings.PIPEHOOK_TOKEN_CACHE_SECONDS = 0
    token, raw = auth.create_token(UserFactory(), scopes=["api"])
    assert auth.find_token(raw) == token
    AccessToken.objects.filter(pk=token.pk).update(revoked=True)
    assert auth.find_token(raw) is None


def test_a_right_taken_away_in_this_process_counts_at_once(db):
    owner = grant_permissions(UserFactory(), "view_project", "change_project")
    _, raw = auth.create_token(owner, scopes=["api"])
    assert auth.grants_of(auth.find_token(raw)).holds_everywhere(auth.WRITE)
    owner.user_permissions.remove(Permission.objects.get(codename="change_project"))
    assert not auth.grants_of(auth.find_token(raw)).holds_everywhere(auth.WRITE)
    owner.is_active = False
    owner.save()
    assert auth.find_token(raw) is None


def test_read_api_token_cannot_write(db):
    owner = grant_permissions(UserFactory(), "view_project", "change_project")
    token, _ = auth.create_token(owner, scopes=["read_api"])
    auth.check_access(token, token.user, auth.READ)
    with pytest.raises(Forbidden, match="insufficient_scope"):
        auth.check_access(token, token.user, auth.WRITE)


def test_project_limited_token_reaches_only_its_projects(db):
    mine, other = ProjectFactory(), ProjectFactory()
    owner = grant_permissions(UserFactory(), "view_project", "change_project")
    token, _ = auth.create_token(owner, scopes=["api"], projects=[mine])
    auth.check_access(token, token.user, auth.WRITE, mine)
    # Outside its projects it is told what a missing project is told.
    with pytest.raises(ProjectHidden):
        auth.check_access(token, token.user, auth.READ, other)


def test_group_scoped_token_has_only_its_groups_permissions(db):
    readers = Group.objects.create(name="readers")
    readers.permissions.add(Permission.objects.get(codename="view_project"))
    member = grant_permissions(UserFactory(), "start_execution")
    member.groups.add(readers)
    token, _ = auth.create_token(member, scopes=["api"], groups=[readers])
    auth.check_access(token, token.user, auth.READ)
    with pytest.raises(Forbidden, match="pipelines.start_execution"):
        auth.check_access(token, token.user, auth.START)


# --- A token acts with exactly its owner's rights ------------------------------------------


def test_token_of_a_user_granted_nothing_can_do_nothing(db):
    project = ProjectFactory()
    token, _ = auth.create_token(UserFactory(username="fresh"), scopes=["api"])
    for action in (auth.READ, auth.WRITE, auth.START, auth.MANAGE_HOOKS, auth.CREATE_PROJECT):
        with pytest.raises(Forbidden, match="user fresh does not hold"):
            auth.check_access(token, None, action)
        assert not auth.grants_of(token).may(action, project)
    with pytest.raises(ProjectHidden):
        auth.check_access(token, None, auth.READ, project)
    assert list(auth.permitted_projects(token, auth.READ)) == []


def test_token_acts_with_its_owners_permissions_and_no_more(db):
    project = ProjectFactory()
    owner = grant_permissions(UserFactory(), "view_project")
    token, _ = auth.create_token(owner, scopes=["api"])
    auth.check_access(token, None, auth.READ, project)
    with pytest.raises(Forbidden, match="'pipelines.change_project' permission on"):
        auth.check_access(token, None, auth.WRITE, project)
    # Creating projects is its own right, held on no project in particular.
    with pytest.raises(Forbidden, match="pipelines.add_project"):
        auth.check_access(token, None, auth.CREATE_PROJECT)
    grant_permissions(owner, "add_project")
    token.user = owner
    auth.check_access(token, None, auth.CREATE_PROJECT)


def test_superusers_token_may_do_anything_unless_scoped_to_groups(db):
    project = ProjectFactory()
    root = UserFactory(is_superuser=True)
    token, _ = auth.create_token(root, scopes=["api"])
    for action in (auth.READ, auth.WRITE, auth.START, auth.MANAGE_HOOKS):
        auth.check_access(token, None, action, project)
    auth.check_access(token, None, auth.CREATE_PROJECT)
    readers = Group.objects.create(name="readers")  # root need not be in it
    readers.permissions.add(Permission.objects.get(codename="view_project"))
    scoped, _ = auth.create_token(root, scopes=["api"], groups=[readers])
    auth.check_access(scoped, None, auth.READ, project)
    with pytest.raises(Forbidden, match="user groups do not grant"):
        auth.check_access(scoped, None, auth.WRITE, project)


def test_group_scope_counts_only_groups_the_owner_is_in(db):
    project = ProjectFactory()
    writers = Group.objects.create(name="writers")
    writers.permissions.add(Permission.objects.get(codename="change_project"))
    owner = UserFactory(username="dev")
    with pytest.raises(InvalidInput, match="user dev is not in the group"):
        auth.create_token(owner, scopes=["api"], groups=[writers])
    assert AccessToken.objects.count() == 0

    owner.groups.add(writers)
    token, _ = auth.create_token(owner, scopes=["api"], groups=[writers])
    auth.check_access(token, None, auth.WRITE, project)
    owner.groups.remove(writers)  # leaving the group takes the token's rights with it
    with pytest.raises(ProjectHidden):
        auth.check_access(token, None, auth.WRITE, project)


def test_signed_in_user_acts_with_its_own_permissions(db):
    project = ProjectFactory()
    staff = UserFactory(is_staff=True)
    with pytest.raises(ProjectHidden):
        auth.check_access(None, staff, auth.READ, project)
    grant_permissions(staff, "view_project")
    staff = type(staff).objects.get(pk=staff.pk)
    auth.check_access(None, staff, auth.READ, project)
    with pytest.raises(Forbidden, match="pipelines.manage_hooks"):
        auth.check_access(None, staff, auth.MANAGE_HOOKS, project)


def test_createtoken_says_what_the_token_may_do(db):
    out, err = StringIO(), StringIO()
    call_command("createtoken", "--user", "newcomer", stdout=out, stderr=err)
    assert out.getvalue().strip().startswith(AccessToken.PREFIX)  # the token, alone
    said = err.getvalue()
    assert "Created user newcomer." in said
    assert "holds no permission here, so the token can do nothing yet" in said

    project = ProjectFactory(namespace="acme", path="web")
    deployers = Group.objects.create(name="deployers")
    GroupProjectPermission.objects.create(
        group=deployers,
        project=project,
        permission=Permission.objects.get(codename="start_execution"),
    )
    deployers.permissions.add(Permission.objects.get(codename="view_project"))
    user = UserFactory(username="deployer")
    user.groups.add(deployers)
    err = StringIO()
    call_command(
        "createtoken", "--user", "deployer", "--group", "deployers", stdout=StringIO(), stderr=err
    )
    assert err.getvalue().splitlines() == [
        "Scopes api. The token acts with what the token's user groups grant:",
        "  pipelines.view_project on every project",
        "  pipelines.start_execution on acme/web",
    ]

    UserFactory(username="admin", is_superuser=True)
    err = StringIO()
    call_command(
        "createtoken", "--user", "admin", "--scopes", "read_api", stdout=StringIO(), stderr=err
    )
    assert err.getvalue().strip() == (
        "Scopes read_api (reading only). User admin is a superuser: the token has every right"
        " on every project."
    )


def test_createtoken_refuses_a_group_the_user_is_not_in(db):
    Group.objects.create(name="ops")
    with pytest.raises(CommandError, match="not in the group"):
        call_command("createtoken", "--user", "x", "--group", "ops", stdout=StringIO())
    assert AccessToken.objects.count() == 0
    assert not get_user_model().objects.filter(username="x").exists()


@pytest.mark.parametrize("project_id", ["999", "web", "99999999999999999999"])
def test_createtoken_refuses_an_unknown_project_and_creates_no_user(db, project_id):
    with pytest.raises(CommandError, match=f"No project with id {project_id}"):
        call_command("createtoken", "--user", "x", "--project", project_id, stdout=StringIO())
    assert not get_user_model().objects.filter(username="x").exists()


# --- Tokens in the admin ----------------------------------------------------------------------


def token_admin_form(user_pk: int, **fields) -> dict:
    return {"name": "from admin", "user": str(user_pk), "scopes": ["api"], **fields}


def test_admin_shows_a_new_token_once_and_says_what_it_may_do(admin_client, admin_user):
    response = admin_client.post(
        reverse("admin:pipelines_accesstoken_add"), token_admin_form(admin_user.pk), follow=True
    )
    said = [str(message) for message in response.context["messages"]]
    token = AccessToken.objects.get()
    [shown] = [text for text in said if text.startswith("New token")]
    raw = shown.rsplit(" ", 1)[1]
    assert auth.find_token(raw) == token
    assert any("is a superuser: the token has every right" in text for text in said)
    page = admin_client.get(reverse("admin:pipelines_accesstoken_change", args=[token.pk]))
    assert raw not in page.content.decode()


def test_admin_saves_a_new_token_as_the_form_says(admin_client, admin_user):
    project = ProjectFactory()
    response = admin_client.post(
        reverse("admin:pipelines_accesstoken_add"),
        token_admin_form(
            admin_user.pk, scopes=["read_api"], projects=[str(project.pk)], revoked="on"
        ),
        follow=True,
    )
    assert response.status_code == 200
    token = AccessToken.objects.get()
    assert (token.name, token.scopes, token.revoked) == ("from admin", ["read_api"], True)
    assert list(token.projects.all()) == [project]
    [shown] = [str(m) for m in response.context["messages"] if str(m).startswith("New token")]
    assert AccessToken.hash_token(shown.rsplit(" ", 1)[1]) == token.token_hash
    assert auth.find_token(shown.rsplit(" ", 1)[1]) is None  # revoked from the start


def test_staff_manage_only_their_own_tokens_within_their_own_groups(client, db):
    root = UserFactory(username="root", is_superuser=True)
    auth.create_token(root, scopes=["api"])
    mine, theirs = Group.objects.create(name="mine"), Group.objects.create(name="theirs")
    staff = UserFactory(username="staff", is_staff=True)
    staff.groups.add(mine)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_accesstoken", "view_accesstoken"])
    )
    client.force_login(staff)

    listing = client.get(reverse("admin:pipelines_accesstoken_changelist"))
    assert listing.context["cl"].result_count == 0  # root's token is not its to see
    form = client.get(reverse("admin:pipelines_accesstoken_add")).context["adminform"].form
    assert list(form.fields["user"].queryset) == [staff]
    assert list(form.fields["groups"].queryset) == [mine]

    # A token for root would carry root's rights: refused, nothing made.
    as_root = client.post(reverse("admin:pipelines_accesstoken_add"), token_admin_form(root.pk))
    assert as_root.status_code == 200 and as_root.context["adminform"].form.errors["user"]
    foreign = client.post(
        reverse("admin:pipelines_accesstoken_add"),
        token_admin_form(staff.pk, groups=[str(theirs.pk)]),
    )
    assert foreign.context["adminform"].form.errors["groups"]
    assert AccessToken.objects.filter(user=staff).count() == 0

    made = client.post(
        reverse("admin:pipelines_accesstoken_add"),
        token_admin_form(staff.pk, groups=[str(mine.pk)]),
        follow=True,
    )
    assert made.status_code == 200
    assert list(AccessToken.objects.get(user=staff).groups.all()) == [mine]


@pytest.mark.parametrize(
    ("superuser", "granted", "in_granting_group"),
    [(s, g, m) for s in (False, True) for g in (False, True) for m in (False, True)],
)
def test_a_tokens_right_is_its_owners_in_every_combination(
    superuser, granted, in_granting_group, db
):
    """The rule's truth table: a token may read a project when its owner is a superuser, OR
    holds the permission, OR is in a group that grants it. No row of nothing grants anything
    (a user granted nothing once held every right)."""
    project = ProjectFactory()
    owner = UserFactory(is_superuser=superuser)
    if granted:
        grant_permissions(owner, "view_project")
    if in_granting_group:
        readers = Group.objects.create(name="readers")
        readers.permissions.add(Permission.objects.get(codename="view_project"))
        owner.groups.add(readers)
    token, _ = auth.create_token(owner, scopes=["read_api"])

    allowed = superuser or granted or in_granting_group
    assert auth.grants_of(token).may(auth.READ, project) is allowed
    assert auth.grants_of(token).sees(project) is allowed
    if not allowed:
        with pytest.raises(ProjectHidden):
            auth.check_access(token, None, auth.READ, project)


@pytest.mark.parametrize("superuser", [False, True])
def test_an_inactive_owners_token_may_do_nothing_whatever_it_held(superuser, db):
    owner = grant_permissions(UserFactory(is_superuser=superuser), "view_project")
    token, _ = auth.create_token(owner, scopes=["api"])
    get_user_model().objects.filter(pk=owner.pk).update(is_active=False)
    token.refresh_from_db()

    assert auth.grants_of(token).may(auth.READ, ProjectFactory()) is False
