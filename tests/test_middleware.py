"""Request bodies over PIPEHOOK_MAX_REQUEST_BODY_BYTES get GitLab's 413 as JSON before any
view reads them, on every route and in every encoding, and nothing is written. (The real
web server's own refusals, chunked bodies among them, are in test_webserver.py.)"""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from hooks.models import Hook
from pipelines.models import Pipeline, Project

LIMIT = 4096
REFUSAL = {
    "message": f"413 Request Entity Too Large: the request body may be at most {LIMIT} bytes"
}


@pytest.fixture(autouse=True)
def small_limit(settings):
    settings.PIPEHOOK_MAX_REQUEST_BODY_BYTES = LIMIT


@pytest.fixture
def token(make_token):
    return make_token()


def row_counts() -> tuple[int, int, int]:
    return Project.objects.count(), Pipeline.objects.count(), Hook.objects.count()


def padded_json(**fields) -> str:
    """A valid JSON body just over the limit."""
    body = json.dumps({**fields, "description": ""})
    return json.dumps({**fields, "description": "x" * (LIMIT - len(body) + 1)})


def test_an_oversized_json_body_is_refused_and_nothing_is_written(client, token, project):
    before = row_counts()
    body = padded_json(name="big", path="big")
    assert len(body) == LIMIT + 1

    response = client.post(
        "/api/v4/projects", body, content_type="application/json", HTTP_PRIVATE_TOKEN=token
    )

    assert response.status_code == 413
    assert response.json() == REFUSAL
    assert row_counts() == before


def test_a_body_at_the_limit_is_read(client, token, db):
    body = json.dumps({"name": "fits", "path": "fits", "description": ""})
    body = body.replace('""', '"' + "x" * (LIMIT - len(body)) + '"')
    assert len(body) == LIMIT

    response = client.post(
        "/api/v4/projects", body, content_type="application/json", HTTP_PRIVATE_TOKEN=token
    )

    assert response.status_code == 201, response.content
    assert Project.objects.filter(path="fits").exists()


def test_an_oversized_form_is_refused(client, token, project):
    before = row_counts()

    response = client.post(
        f"/api/v4/projects/{project.pk}/statuses/{'a' * 40}",
        {"state": "running", "name": "build", "description": "x" * LIMIT},
        HTTP_PRIVATE_TOKEN=token,
    )

    assert response.status_code == 413
    assert response.json() == REFUSAL
    assert row_counts() == before


def test_an_oversized_multipart_file_is_refused(client, token, project):
    """Django's DATA_UPLOAD_MAX_MEMORY_SIZE leaves file parts out; this limit counts them."""
    before = row_counts()
    upload = SimpleUploadedFile("big.bin", b"\0" * (LIMIT * 4))

    response = client.post(
        f"/api/v4/projects/{project.pk}/hooks",
        {"url": "https://hooks.example.com/a", "attachment": upload},
        HTTP_PRIVATE_TOKEN=token,
    )

    assert response.status_code == 413
    assert response.json() == REFUSAL
    assert row_counts() == before


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/sei/api/v1/custom-cicd", {"HTTP_AUTHORIZATION": "ApiKey {token}"}),
        ("/distelli/root/apps/web/events/buildEvent?apiToken={token}", {}),
        ("/api/graphql", {"HTTP_X_API_KEY": "{token}"}),
        ("/admin/login/", {}),
        ("/api/v4/no-such-route", {}),
    ],
)
def test_every_route_refuses_an_oversized_body(client, token, project, path, headers):
    before = row_counts()
    headers = {name: value.format(token=token) for name, value in headers.items()}

    response = client.post(
        path.format(token=token), padded_json(query="{ x }"), "application/json", **headers
    )

    assert response.status_code == 413
    assert response.json() == REFUSAL
    assert row_counts() == before


def test_a_declared_length_over_the_limit_is_refused_unread(token, db):
    """The length a client declares is refused before a byte of the body is read."""
    client = Client()
    response = client.generic(
        "POST",
        "/api/v4/projects",
        b"{}",
        content_type="application/json",
        HTTP_PRIVATE_TOKEN=token,
        CONTENT_LENGTH=str(LIMIT * 1000),
    )

    assert response.status_code == 413
    assert Project.objects.count() == 0


def test_a_body_over_djangos_own_memory_cap_but_under_ours_is_read(client, settings, db):
    """Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB by default) would refuse it with an HTML
    page; ours is the only cap, so GraphQL reads it and answers in JSON."""
    settings.PIPEHOOK_MAX_REQUEST_BODY_BYTES = 3 * 2**20
    body = json.dumps({"query": "{ __typename }", "variables": {"pad": "x" * (3 * 2**20 - 100)}})
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE >= 2**20 * 10

    response = client.post("/api/graphql", body, content_type="application/json")

    assert response.status_code == 200, response.content[:300]
    assert response.json()["data"] == {"__typename": "Query"}
