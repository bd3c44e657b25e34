"""Pipeline definitions: the v4 REST endpoints, their checks, the admin and the permission model."""

import pytest
from django.contrib.auth.models import Group, Permission

from pipelines import auth
from pipelines.api.graphql.ids import definition_id
from pipelines.errors import ProjectHidden
from pipelines.models import GroupProjectPermission, PipelineDefinition
from tests.factories import ProjectFactory, UserFactory

VARIABLES = [
    {"name": "Environment", "type": "Environment", "required": True},
    {"name": "branch", "type": "Text", "required": False},
]


def permission(codename: str) -> Permission:
    return Permission.objects.get(content_type__app_label="pipelines", codename=codename)


def url(project, definition=None) -> str:
    base = f"/api/v4/projects/{project.pk}/pipeline_definitions"
    return f"{base}/{definition.pk}" if definition is not None else base


def auth_header(key: str) -> dict:
    return {"HTTP_PRIVATE_TOKEN": key}


@pytest.fixture
def key(make_token):
    return make_token(scopes=["api"])


def test_create_returns_the_definition_with_its_graphql_id(client, project, key):
    response = client.post(
        url(project),
        {
            "name": "K8s Rolling Deployment",
            "kind": "workflow",
            "description": "Rolls out",
            "variables": [
                {"name": "Environment", "type": "Environment", "required": True},
                {"name": "branch"},
            ],
        },
        content_type="application/json",
        **auth_header(key),
    )

    assert response.status_code == 201, response.content
    definition = PipelineDefinition.objects.get()
    body = response.json()
    assert body == {
        "id": definition.pk,
        "project_id": project.pk,
        "graphql_id": definition_id(definition),
        "name": "K8s Rolling Deployment",
        "kind": "workflow",
        "description": "Rolls out",
        "ref": "",
        "variables": VARIABLES,
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
    }
    assert body["created_at"].endswith("Z") and definition.variables == VARIABLES


def test_create_accepts_gitlab_form_encoding(client, project, key):
    response = client.post(
        url(project),
        "name=Deploy&variables[][name]=replicas&variables[][type]=Number"
        "&variables[][required]=true",
        content_type="application/x-www-form-urlencoded",
        **auth_header(key),
    )
    assert response.status_code == 201, response.content
    assert PipelineDefinition.objects.get().variables == [
        {"name": "replicas", "type": "Number", "required": True}
    ]


@pytest.mark.parametrize(
    ("body", "status", "answer"),
    [
        ({}, 400, {"error": "name is missing"}),
        (
            {"name": "x", "kind": "job"},
            400,
            {"error": "kind does not have a valid value (one of: pipeline, workflow)"},
        ),
        (
            {"name": "x", "variables": [{"name": "a", "type": "Colour"}]},
            400,
            {
                "error": "variables[0][type] does not have a valid value (one of: Text, Number,"
                " Email, Environment, Service, Infrastructure definition)"
            },
        ),
        (
            {"name": "x", "variables": [{"name": "a b"}]},
            400,
            {
                "message": {
                    "variables": ["variable 1: name must be 1-255 letters, digits or underscores"]
                }
            },
        ),
        (
            {"name": "x", "variables": [{"name": "a"}, {"name": "a"}]},
            400,
            {"message": {"variables": ["variable 'a' is declared more than once"]}},
        ),
    ],
)
def test_create_refuses_bad_input_and_writes_nothing(client, project, key, body, status, answer):
    response = client.post(url(project), body, content_type="application/json", **auth_header(key))
    assert (response.status_code, response.json()) == (status, answer)
    assert not PipelineDefinition.objects.exists()


def test_names_are_unique_per_kind_in_a_project(client, project, key):
    PipelineDefinition.objects.create(project=project, name="Deploy")
    taken = client.post(
        url(project), {"name": "Deploy"}, content_type="application/json", **auth_header(key)
    )
    assert (taken.status_code, taken.json()) == (
        400,
        {"message": {"name": ["has already been taken"]}},
    )

    workflow = client.post(
        url(project),
        {"name": "Deploy", "kind": "workflow"},
        content_type="application/json",
        **auth_header(key),
    )
    assert workflow.status_code == 201


def test_list_is_paginated_like_the_rest_of_v4(client, project, key):
    for number in range(3):
        PipelineDefinition.objects.create(project=project, name=f"P{number}")
    PipelineDefinition.objects.create(project=project, name="W", kind="workflow")
    PipelineDefinition.objects.create(project=ProjectFactory(), name="elsewhere")

    response = client.get(url(project), {"per_page": 2, "page": 2}, **auth_header(key))

    assert response.status_code == 200
    assert [d["name"] for d in response.json()] == ["P2", "W"]
    assert response["X-Total"] == "4"
    assert response["X-Total-Pages"] == "2"
    assert response["X-Page"] == "2"
    assert response["X-Prev-Page"] == "1"
    assert response["X-Next-Page"] == ""
    assert 'rel="first"' in response["Link"]

    workflows = client.get(url(project), {"kind": "workflow"}, **auth_header(key))
    assert [d["name"] for d in workflows.json()] == ["W"]


def test_project_may_be_named_by_its_path(client, project, key):
    PipelineDefinition.objects.create(project=project, name="Deploy")
    encoded = project.path_with_namespace.replace("/", "%2F")
    response = client.get(f"/api/v4/projects/{encoded}/pipeline_definitions", **auth_header(key))
    assert [d["name"] for d in response.json()] == ["Deploy"]


def test_get_edit_and_delete(client, project, key):
    definition = PipelineDefinition.objects.create(
        project=project, name="Deploy", variables=VARIABLES
    )

    got = client.get(url(project, definition), **auth_header(key))
    assert got.status_code == 200 and got.json()["variables"] == VARIABLES

    edited = client.put(
        url(project, definition),
        {"description": "Now with a ref", "ref": "release"},
        content_type="application/json",
        **auth_header(key),
    )
    assert edited.status_code == 200, edited.content
    definition.refresh_from_db()
    assert (definition.name, definition.description, definition.ref) == (
        "Deploy",
        "Now with a ref",
        "release",
    )
    assert definition.variables == VARIABLES  # fields not given stay

    deleted = client.delete(url(project, definition), **auth_header(key))
    assert deleted.status_code == 204
    assert not PipelineDefinition.objects.exists()


def test_unknown_projects_and_definitions_are_404(client, project, key):
    other = PipelineDefinition.objects.create(project=ProjectFactory(), name="Theirs")
    assert client.get(
        "/api/v4/projects/999999/pipeline_definitions", **auth_header(key)
    ).json() == {"message": "404 Project Not Found"}
    # A definition of another project is not reachable through this one.
    response = client.get(url(project, other), **auth_header(key))
    assert (response.status_code, response.json()) == (
        404,
        {"message": "404 Pipeline Definition Not Found"},
    )
    bad = client.get(f"{url(project)}/abc", **auth_header(key))
    assert (bad.status_code, bad.json()) == (400, {"error": "definition_id is invalid"})


def test_missing_token_is_401_and_read_only_token_cannot_write(client, project, make_token):
    assert client.get(url(project)).status_code == 401
    reader = make_token(scopes=["read_api"])
    assert client.get(url(project), **auth_header(reader)).status_code == 200
    refused = client.post(
        url(project), {"name": "x"}, content_type="application/json", **auth_header(reader)
    )
    assert refused.status_code == 403
    assert refused.json()["error"] == "insufficient_scope"
    assert not PipelineDefinition.objects.exists()


def test_group_scoped_keys_get_the_same_per_project_checks_as_graphql(client, make_token):
    mine, deploy_only, theirs = ProjectFactory(), ProjectFactory(), ProjectFactory()
    group = Group.objects.create(name="web-team")
    for codename in ("view_project", "change_project"):
        GroupProjectPermission.objects.create(
            group=group, project=mine, permission=permission(codename)
        )
    GroupProjectPermission.objects.create(
        group=group, project=deploy_only, permission=permission("start_execution")
    )
    key = make_token(scopes=["api"], groups=[group])

    assert client.get(url(mine), **auth_header(key)).status_code == 200
    created = client.post(
        url(mine), {"name": "Deploy"}, content_type="application/json", **auth_header(key)
    )
    assert created.status_code == 201

    # A project the key holds something on says what is missing...
    refused = client.get(url(deploy_only), **auth_header(key))
    assert refused.status_code == 403
    assert refused.json() == {
        "message": "403 Forbidden - the token's user groups do not grant the "
        f"'pipelines.view_project' permission on project {deploy_only.path_with_namespace}"
    }
    # ...one it holds nothing on is answered as if it did not exist.
    hidden = client.get(url(theirs), **auth_header(key))
    assert (hidden.status_code, hidden.json()) == (404, {"message": "404 Project Not Found"})


# --- The permission model --------------------------------------------------------------------


def test_project_grant_counts_on_its_project_only(db):
    mine, theirs = ProjectFactory(), ProjectFactory()
    group = Group.objects.create(name="deployers")
    GroupProjectPermission.objects.create(
        group=group, project=mine, permission=permission("start_execution")
    )
    member = UserFactory()
    member.groups.add(group)
    token, _ = auth.create_token(member, scopes=["api"], groups=[group])

    auth.check_access(token, None, auth.START, mine)
    with pytest.raises(ProjectHidden):
        auth.check_access(token, None, auth.START, theirs)
    # Without a project the question is "anywhere?", which a view then narrows down.
    assert auth.grants_of(token).may(auth.START)
    assert not auth.grants_of(token).may(auth.MANAGE_HOOKS)
    assert list(auth.permitted_projects(token, auth.START)) == [mine]
    assert list(auth.permitted_projects(token, auth.READ)) == []


def test_unscoped_key_uses_its_owners_group_grants(db):
    mine, theirs = ProjectFactory(), ProjectFactory()
    group = Group.objects.create(name="owners-team")
    GroupProjectPermission.objects.create(
        group=group, project=mine, permission=permission("view_project")
    )
    owner = UserFactory()
    owner.groups.add(group)
    token, _ = auth.create_token(owner, scopes=["api"])

    assert auth.grants_of(token).may(auth.READ, mine)
    assert not auth.grants_of(token).may(auth.READ, theirs)
    assert set(auth.permitted_projects(token, auth.READ)) == {mine}


def test_global_group_permission_reaches_every_project_but_the_tokens_limit(db):
    mine, _ = ProjectFactory(), ProjectFactory()
    group = Group.objects.create(name="readers")
    group.permissions.add(permission("view_project"))
    member = UserFactory()
    member.groups.add(group)
    token, _ = auth.create_token(member, scopes=["api"], groups=[group], projects=[mine])
    assert list(auth.permitted_projects(token, auth.READ)) == [mine]


# --- Admin ---------------------------------------------------------------------------------


def test_admin_creates_a_definition_and_refuses_bad_variables(admin_client, project):
    form = {
        "project": project.pk,
        "kind": "pipeline",
        "name": "Deploy",
        "description": "",
        "ref": "",
        "variables": '[{"name": "branch", "type": "Text"}]',
    }
    response = admin_client.post("/admin/pipelines/pipelinedefinition/add/", form)
    assert response.status_code == 302, response.content
    definition = PipelineDefinition.objects.get()
    assert definition.variables == [{"name": "branch", "type": "Text", "required": False}]

    page = admin_client.get(f"/admin/pipelines/pipelinedefinition/{definition.pk}/change/")
    assert definition_id(definition) in page.content.decode()

    bad = admin_client.post(
        "/admin/pipelines/pipelinedefinition/add/",
        {**form, "name": "Other", "variables": '[{"name": "x", "type": "Colour"}]'},
    )
    assert bad.status_code == 200
    assert "type &#x27;Colour&#x27; is not one of" in bad.content.decode()
    assert PipelineDefinition.objects.count() == 1


def test_admin_grants_a_group_a_permission_on_one_project(admin_client, project):
    group = Group.objects.create(name="deployers")
    response = admin_client.post(
        "/admin/pipelines/groupprojectpermission/add/",
        {"group": group.pk, "project": project.pk, "permission": permission("start_execution").pk},
    )
    assert response.status_code == 302, response.content
    grant = GroupProjectPermission.objects.get()
    assert (grant.group, grant.project, grant.permission.codename) == (
        group,
        project,
        "start_execution",
    )
