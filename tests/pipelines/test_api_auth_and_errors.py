"""Tokens, scopes, project limits and bad input on the GitLab API: the right 4xx, a message
that says what is wrong, and nothing changed in the database."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.utils import timezone
from rest_framework.test import APIClient

from pipelines import services
from pipelines.models import AccessToken, Job, Pipeline, Project
from tests.clients import api_client_with
from tests.factories import ProjectFactory

SHA = "a" * 40


@pytest.fixture
def existing(project):
    """A pipeline with a running job, so refused writes have something to leave alone."""
    pipeline = services.create_pipeline(project, ref="main", sha=SHA)
    services.create_job(pipeline, name="build", status="running")
    return pipeline


@pytest.fixture
def unchanged(db):
    """Asserts, after the test, that no project, pipeline or job row changed."""

    def snapshot():
        return (
            list(Project.objects.order_by("pk").values()),
            list(Pipeline.objects.order_by("pk").values()),
            list(Job.objects.order_by("pk").values()),
        )

    holder = {}
    yield lambda: holder.setdefault("before", snapshot())
    assert "before" in holder, "the test never took its snapshot"
    assert snapshot() == holder["before"]


def write_requests(project, pipeline):
    base = f"/api/v4/projects/{project.pk}"
    return [
        ("post", "/api/v4/projects", {"name": "Sneaky"}),
        ("post", f"{base}/statuses/{SHA}", {"state": "success", "name": "build"}),
        ("post", f"{base}/pipeline", {"ref": "main", "sha": SHA}),
        ("post", f"{base}/pipelines/{pipeline.pk}/retry", None),
        ("post", f"{base}/pipelines/{pipeline.pk}/cancel", None),
        ("delete", f"{base}/pipelines/{pipeline.pk}", None),
    ]


def send(api, method, path, data):
    return getattr(api, method)(path, data, format="json")


# --- Authentication -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "credentials",
    [
        {},
        {"HTTP_PRIVATE_TOKEN": "phk_not-a-real-token"},
        {"HTTP_AUTHORIZATION": "Bearer phk_not-a-real-token"},
        {"HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz"},
    ],
)
def test_missing_or_wrong_token_is_401(project, existing, unchanged, credentials):
    unchanged()
    api = api_client_with(**credentials)
    for method, path, data in [
        ("get", f"/api/v4/projects/{project.pk}/pipelines", None),
        *write_requests(project, existing),
    ]:
        response = send(api, method, path, data)
        assert response.status_code == 401, (method, path)
        assert response.json() == {"message": "401 Unauthorized"}
        assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_revoked_and_expired_tokens_are_401(make_token, project):
    revoked, expired = make_token(), make_token()
    AccessToken.objects.filter(token_hash=AccessToken.hash_token(revoked)).update(revoked=True)
    AccessToken.objects.filter(token_hash=AccessToken.hash_token(expired)).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    for raw in (revoked, expired):
        response = api_client_with(raw).get(f"/api/v4/projects/{project.pk}")
        assert response.status_code == 401


@pytest.mark.parametrize("where", ["private-token", "bearer", "query"])
def test_token_is_accepted_where_gitlab_clients_send_it(make_token, project, where):
    raw = make_token(scopes=["read_api"])
    path = f"/api/v4/projects/{project.pk}"
    if where == "private-token":
        response = api_client_with(raw).get(path)
    elif where == "bearer":
        response = api_client_with(HTTP_AUTHORIZATION=f"Bearer {raw}").get(path)
    else:
        response = APIClient().get(f"{path}?private_token={raw}")
    assert response.status_code == 200
    assert response.json()["id"] == project.pk


# --- Scopes, project limits, permissions ----------------------------------------------------


def test_read_api_token_reads_but_cannot_write(make_token, project, existing, unchanged):
    api = api_client_with(make_token(scopes=["read_api"]))
    assert api.get(f"/api/v4/projects/{project.pk}/pipelines").status_code == 200
    unchanged()
    for method, path, data in write_requests(project, existing):
        response = send(api, method, path, data)
        assert response.status_code == 403, (method, path)
        assert response.json() == {
            "error": "insufficient_scope",
            "error_description": "The request requires higher privileges than provided by "
            "the access token.",
            "scope": "api",
            "message": "403 Forbidden - insufficient_scope: this request needs the 'api' scope "
            "and the token has read_api",
        }


def test_project_limited_token_gets_404_on_other_projects(make_token, project, existing, unchanged):
    # GitLab's answer to a project one may not reach: the same 404 as a project that does
    # not exist, so ids and paths cannot be probed.
    other = ProjectFactory()
    api = api_client_with(make_token(projects=[other]))
    unchanged()
    message = {"message": "404 Project Not Found"}
    assert api.get("/api/v4/projects/999999").json() == message
    reads = [
        f"/api/v4/projects/{project.pk}",
        f"/api/v4/projects/{project.namespace}%2F{project.path}/pipelines",
        f"/api/v4/projects/{project.pk}/pipelines/{existing.pk}",
        f"/api/v4/projects/{project.pk}/pipelines/{existing.pk}/jobs",
        f"/api/v4/projects/{project.pk}/repository/commits/{SHA}/statuses",
    ]
    for path in reads:
        response = api.get(path)
        assert (response.status_code, response.json()) == (404, message), path
    for method, path, data in write_requests(project, existing)[1:]:
        response = send(api, method, path, data)
        assert (response.status_code, response.json()) == (404, message), (method, path)
    # The project it is limited to works.
    assert api.get(f"/api/v4/projects/{other.pk}").status_code == 200


def test_group_scoped_token_without_change_permission_cannot_write(
    make_token, project, existing, unchanged
):
    readers = Group.objects.create(name="readers")
    readers.permissions.add(Permission.objects.get(codename="view_project"))
    api = api_client_with(make_token(groups=[readers]))
    assert api.get(f"/api/v4/projects/{project.pk}/pipelines/{existing.pk}").status_code == 200
    unchanged()
    response = api.post(
        f"/api/v4/projects/{project.pk}/statuses/{SHA}", {"state": "success"}, format="json"
    )
    assert response.status_code == 403
    assert "pipelines.change_project" in response.json()["message"]
    response = api.post(
        f"/api/v4/projects/{project.pk}/pipeline", {"ref": "main", "sha": SHA}, format="json"
    )
    assert response.status_code == 403
    assert "pipelines.start_execution" in response.json()["message"]


# --- Bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/api/v4/projects", "/api/v4/projects/{id}/statuses/" + SHA, "/api/v4/projects/{id}/pipeline"],
)
def test_malformed_json_is_400_and_changes_nothing(api_client, project, existing, unchanged, path):
    unchanged()
    response = api_client.post(
        path.format(id=project.pk), '{"state": "success",', content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("400 Bad request - JSON parse error")


@pytest.mark.parametrize("body", ["[1, 2]", '"success"', "NaN"])
def test_json_that_is_not_an_object_is_400(api_client, project, existing, unchanged, body):
    unchanged()
    response = api_client.post(
        f"/api/v4/projects/{project.pk}/statuses/{SHA}", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert "error" in response.json()


def test_unsupported_content_type_is_415(api_client, project, existing, unchanged):
    unchanged()
    response = api_client.post(
        f"/api/v4/projects/{project.pk}/statuses/{SHA}", "state=success", content_type="text/plain"
    )
    assert response.status_code == 415
    assert "text/plain" in response.json()["message"]


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("post", "/api/v4/projects/{id}/statuses/" + SHA, {"state": "success", "ref": "ma\x00in"}),
        ("post", "/api/v4/projects/{id}/statuses/ab%00cd", {"state": "success"}),
        ("get", "/api/v4/projects/{id}/pipelines?ref=ma%00in", None),
        ("get", "/api/v4/projects/ac%00me%2Fweb", None),
        ("post", "/api/v4/projects", {"name": "x\x00y"}),
    ],
)
def test_nul_characters_are_400_not_500(
    api_client, project, existing, unchanged, method, path, data
):
    unchanged()
    response = send(api_client, method, path.format(id=project.pk), data)
    assert response.status_code == 400
    assert "NUL" in response.json()["error"] or "null" in response.json()["error"].lower()


def test_refused_job_transition_is_400_with_gitlabs_wording(
    api_client, project, existing, unchanged
):
    unchanged()
    response = api_client.post(
        f"/api/v4/projects/{project.pk}/statuses/{SHA}",
        {"state": "running", "name": "build", "ref": "main"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {"message": "Cannot transition status via :run from :running"}


def test_unknown_project_on_every_endpoint_is_404(api_client, db):
    for method, path, data in [
        ("get", "/api/v4/projects/4040", None),
        ("get", "/api/v4/projects/4040/pipelines", None),
        ("get", "/api/v4/projects/4040/pipelines/1", None),
        ("get", "/api/v4/projects/4040/pipelines/1/jobs", None),
        ("get", f"/api/v4/projects/4040/repository/commits/{SHA}/statuses", None),
        ("post", f"/api/v4/projects/4040/statuses/{SHA}", {"state": "success"}),
        ("post", "/api/v4/projects/4040/pipeline", {"ref": "main"}),
        ("post", "/api/v4/projects/4040/pipelines/1/retry", None),
        ("post", "/api/v4/projects/4040/pipelines/1/cancel", None),
        ("delete", "/api/v4/projects/4040/pipelines/1", None),
    ]:
        response = send(api_client, method, path, data)
        assert response.status_code == 404, (method, path)
        assert response.json() == {"message": "404 Project Not Found"}
    assert not Pipeline.objects.exists()


def test_wrong_method_is_405(api_client, project):
    response = api_client.put(f"/api/v4/projects/{project.pk}/pipelines", {}, format="json")
    assert response.status_code == 405
    assert response.json() == {"message": "405 Method Not Allowed"}
