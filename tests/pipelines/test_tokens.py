from io import StringIO

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import CommandError, call_command

from pipelines import auth, services
from pipelines.errors import InvalidInput
from pipelines.models import AccessToken
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


def test_create_token_needs_a_scope(db):
    with pytest.raises(InvalidInput):
        services.create_token(UserFactory(), scopes=[])


def test_revoked_or_unknown_tokens_are_not_found(db):
    token, raw = services.create_token(UserFactory(), scopes=["api"])
    assert auth.find_token(raw) == token
    assert auth.find_token(raw + "x") is None
    AccessToken.objects.filter(pk=token.pk).update(revoked=True)
    assert auth.find_token(raw) is None


def test_read_api_token_cannot_write(db):
    owner = grant_permissions(UserFactory(), "view_project", "change_project")
    token, _ = services.create_token(owner, scopes=["read_api"])
    auth.check_access(token, token.user, auth.READ)
    with pytest.raises(auth.AccessDenied, match="insufficient_scope"):
        auth.check_access(token, token.user, auth.WRITE)


def test_project_limited_token_reaches_only_its_projects(db):
    mine, other = ProjectFactory(), ProjectFactory()
    owner = grant_permissions(UserFactory(), "view_project", "change_project")
    token, _ = services.create_token(owner, scopes=["api"], projects=[mine])
    auth.check_access(token, token.user, auth.WRITE, mine)
    # Outside its projects it is told what a missing project is told.
    with pytest.raises(auth.ProjectHidden):
        auth.check_access(token, token.user, auth.READ, other)


def test_group_scoped_token_has_only_its_groups_permissions(db):
    readers = Group.objects.create(name="readers")
    readers.permissions.add(Permission.objects.get(codename="view_project"))
    member = grant_permissions(UserFactory(), "start_execution")
    member.groups.add(readers)
    token, _ = services.create_token(member, scopes=["api"], groups=[readers])
    auth.check_access(token, token.user, auth.READ)
    with pytest.raises(auth.AccessDenied, match="pipelines.start_execution"):
        auth.check_access(token, token.user, auth.START)
