"""GET /projects, GET /projects/:id, POST /projects."""

import re

import pytest

from pipelines.models import Project
from tests.clients import api_client_with
from tests.factories import ProjectFactory

GITLAB_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_get_project_by_id_has_gitlab_fields(api_client, db):
    project = ProjectFactory(
        name="Web", path="web", namespace="acme", description="Shop front", visibility="public"
    )
    response = api_client.get(f"/api/v4/projects/{project.pk}")
    assert response.status_code == 200
    body = response.json()
    assert {
        key: body[key]
        for key in (
            "id",
            "name",
            "name_with_namespace",
            "path",
            "path_with_namespace",
            "description",
            "default_branch",
            "visibility",
            "web_url",
            "http_url_to_repo",
            "ssh_url_to_repo",
            "namespace",
            "_links",
            "archived",
            "tag_list",
        )
    } == {
        "id": project.pk,
        "name": "Web",
        "name_with_namespace": "acme / Web",
        "path": "web",
        "path_with_namespace": "acme/web",
        "description": "Shop front",
        "default_branch": "main",
        "visibility": "public",
        "web_url": "http://127.0.0.1:8000/acme/web",
        "http_url_to_repo": "http://127.0.0.1:8000/acme/web.git",
        "ssh_url_to_repo": "git@127.0.0.1:acme/web.git",
        "namespace": {
            "id": None,
            "name": "acme",
            "path": "acme",
            "kind": "group",
            "full_path": "acme",
            "parent_id": None,
            "avatar_url": None,
            "web_url": "http://127.0.0.1:8000/groups/acme",
        },
        "_links": {"self": f"http://127.0.0.1:8000/api/v4/projects/{project.pk}"},
        "archived": False,
        "tag_list": [],
    }
    assert GITLAB_TIME.match(body["created_at"]) and GITLAB_TIME.match(body["last_activity_at"])


@pytest.mark.parametrize("ref", ["acme%2Fweb", "ACME%2FWeb", "acme/web"])
def test_get_project_by_url_encoded_path(api_client, db, ref):
    project = ProjectFactory(path="web", namespace="acme")
    response = api_client.get(f"/api/v4/projects/{ref}")
    assert response.status_code == 200
    assert response.json()["id"] == project.pk


def test_get_project_in_nested_namespace_by_path(api_client, db):
    project = ProjectFactory(path="api", namespace="acme/platform")
    response = api_client.get("/api/v4/projects/acme%2Fplatform%2Fapi")
    assert response.json()["id"] == project.pk
    assert response.json()["name_with_namespace"] == f"acme / platform / {project.name}"


@pytest.mark.parametrize("ref", ["999", "nobody%2Fnothing", "justaname", str(10**30)])
def test_unknown_project_is_404(api_client, db, ref):
    response = api_client.get(f"/api/v4/projects/{ref}")
    assert response.status_code == 404
    assert response.json() == {"message": "404 Project Not Found"}


def test_list_projects_newest_first_with_filters(api_client, db):
    old = ProjectFactory(name="Alpha", path="alpha", visibility="public")
    new = ProjectFactory(name="Beta", path="beta-tools")
    assert [p["id"] for p in api_client.get("/api/v4/projects").json()] == [new.pk, old.pk]
    assert [p["id"] for p in api_client.get("/api/v4/projects?sort=asc").json()] == [old.pk, new.pk]
    assert [p["id"] for p in api_client.get("/api/v4/projects?search=tools").json()] == [new.pk]
    assert [p["id"] for p in api_client.get("/api/v4/projects?visibility=public").json()] == [
        old.pk
    ]
    by_name = api_client.get("/api/v4/projects?order_by=name&sort=asc").json()
    assert [p["name"] for p in by_name] == ["Alpha", "Beta"]


def test_list_projects_shows_only_the_projects_a_limited_token_reaches(make_token, db):
    allowed, _ = ProjectFactory(), ProjectFactory()
    response = api_client_with(make_token(projects=[allowed])).get("/api/v4/projects")
    assert [p["id"] for p in response.json()] == [allowed.pk]
    assert response["X-Total"] == "1"


def test_create_project(api_client, db):
    response = api_client.post(
        "/api/v4/projects",
        {
            "name": "Payments API",
            "namespace": "acme",
            "description": "Takes money",
            "default_branch": "trunk",
            "visibility": "internal",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    project = Project.objects.get()
    assert (project.name, project.path, project.namespace) == (
        "Payments API",
        "payments-api",
        "acme",
    )
    assert (project.description, project.default_branch, project.visibility) == (
        "Takes money",
        "trunk",
        "internal",
    )
    assert response.json()["path_with_namespace"] == "acme/payments-api"


def test_create_project_from_path_only_under_root(api_client, db):
    response = api_client.post("/api/v4/projects", {"path": "tools"}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["path_with_namespace"] == "root/tools"
    assert response.json()["name"] == "tools"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, {"error": "name, path are missing, at least one parameter must be provided"}),
        (
            {"name": "x", "visibility": "secret"},
            {"error": "visibility does not have a valid value (one of: private, internal, public)"},
        ),
        (
            {"name": "x", "path": "has space"},
            {
                "error": "path can contain only letters, digits, '_', '-' and '.', "
                "and cannot start with '-' or '.'"
            },
        ),
        ({"name": "x" * 300}, None),
    ],
)
def test_create_project_bad_input_is_400_and_creates_nothing(api_client, db, data, expected):
    response = api_client.post("/api/v4/projects", data, format="json")
    assert response.status_code == 400
    if expected:
        assert response.json() == expected
    else:
        assert response.json()["error"].startswith("name is invalid")
    assert not Project.objects.exists()


def test_create_project_with_taken_path_is_400(api_client, db):
    ProjectFactory(path="web", namespace="acme")
    response = api_client.post(
        "/api/v4/projects", {"name": "Web", "path": "web", "namespace": "acme"}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"message": "path acme/web has already been taken"}
    assert Project.objects.count() == 1


def test_project_limited_token_cannot_create_projects(make_token, db):
    limited = api_client_with(make_token(projects=[ProjectFactory()]))
    response = limited.post("/api/v4/projects", {"name": "New"}, format="json")
    assert response.status_code == 403
    assert response.json() == {
        "message": "403 Forbidden - this token is limited to some projects and cannot create "
        "new ones"
    }
    assert Project.objects.count() == 1


@pytest.mark.parametrize("namespace", ["a b", "acme/-x", "acme//x?y", "y9{z]", "../etc"])
def test_create_project_in_a_namespace_that_is_no_group_path_is_400(api_client, db, namespace):
    response = api_client.post(
        "/api/v4/projects", {"name": "x", "namespace": namespace}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("namespace is a group path: groups of letters")
    assert not Project.objects.exists()


def test_create_project_in_a_nested_namespace_trims_its_slashes(api_client, db):
    response = api_client.post(
        "/api/v4/projects", {"name": "api", "namespace": "/acme/platform/"}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["path_with_namespace"] == "acme/platform/api"
