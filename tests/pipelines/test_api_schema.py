"""The OpenAPI schema documents the GitLab API, validates, and the docs page serves it."""

import pytest
from django.test import Client
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.validation import validate_schema

GITLAB_OPERATIONS = {
    ("/api/v4/projects", "get"): "listProjects",
    ("/api/v4/projects", "post"): "createProject",
    ("/api/v4/projects/{project_id}", "get"): "getProject",
    ("/api/v4/projects/{project_id}/statuses/{sha}", "post"): "createCommitStatus",
    (
        "/api/v4/projects/{project_id}/repository/commits/{sha}/statuses",
        "get",
    ): "listCommitStatuses",
    ("/api/v4/projects/{project_id}/pipelines", "get"): "listPipelines",
    ("/api/v4/projects/{project_id}/pipeline", "post"): "createPipeline",
    ("/api/v4/projects/{project_id}/pipelines/latest", "get"): "getLatestPipeline",
    ("/api/v4/projects/{project_id}/pipelines/{pipeline_id}", "get"): "getPipeline",
    ("/api/v4/projects/{project_id}/pipelines/{pipeline_id}", "delete"): "deletePipeline",
    ("/api/v4/projects/{project_id}/pipelines/{pipeline_id}/retry", "post"): "retryPipeline",
    ("/api/v4/projects/{project_id}/pipelines/{pipeline_id}/cancel", "post"): "cancelPipeline",
    ("/api/v4/projects/{project_id}/pipelines/{pipeline_id}/jobs", "get"): "listPipelineJobs",
    (
        "/api/v4/projects/{project_id}/pipelines/{pipeline_id}/variables",
        "get",
    ): "listPipelineVariables",
}


@pytest.fixture
def schema(db):
    GENERATOR_STATS.reset()
    response = Client().get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def test_schema_is_valid_openapi_with_every_gitlab_operation(schema):
    validate_schema(schema)
    found = {
        (path, method): operation["operationId"]
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    }
    assert {key: found.get(key) for key in GITLAB_OPERATIONS} == GITLAB_OPERATIONS


def test_schema_generation_of_the_gitlab_api_has_no_warnings(schema):
    ours = [
        message
        for message in [*GENERATOR_STATS._warn_cache, *GENERATOR_STATS._error_cache]
        if "pipelines/api/gitlab/" in message
    ]
    assert ours == []


def test_schema_documents_auth_pagination_and_entities(schema):
    assert schema["components"]["securitySchemes"]["PrivateToken"] == {
        "type": "apiKey",
        "in": "header",
        "name": "PRIVATE-TOKEN",
    }
    operation = schema["paths"]["/api/v4/projects/{project_id}/pipelines"]["get"]
    assert {"PrivateToken": []} in operation["security"]
    params = {p["name"] for p in operation["parameters"]}
    assert {"page", "per_page", "status", "ref", "sha", "order_by", "sort"} <= params
    assert {"X-Total", "X-Next-Page", "Link"} <= set(operation["responses"]["200"]["headers"])
    pipeline = schema["components"]["schemas"]["Pipeline"]["properties"]
    assert {"detailed_status", "duration", "queued_duration", "coverage", "user"} <= set(pipeline)


def test_swagger_ui_is_served(db):
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


def test_schema_generation_of_every_pipelines_api_has_no_warnings(schema):
    ours = [
        message
        for message in [*GENERATOR_STATS._warn_cache, *GENERATOR_STATS._error_cache]
        if "pipelines/" in message or 'fields named "kind"' in message
    ]
    assert ours == []


def test_dialect_operations_describe_every_response(schema):
    dialect_paths = [path for path in schema["paths"] if path.startswith(("/sei/", "/distelli/"))]
    assert len(dialect_paths) == 4
    for path in dialect_paths:
        for method, operation in schema["paths"][path].items():
            responses = operation["responses"]
            assert {"400", "401", "403"} <= set(responses), (path, method)
            for code, response in responses.items():
                assert response["description"], (path, method, code)
                body = response["content"]["application/json"]["schema"]
                assert body["$ref"].startswith("#/components/schemas/"), (path, method, code)
    events = schema["paths"]["/distelli/{username}/apps/{app_name}/events"]["get"]
    assert {"apiToken", "filter_name", "max_results", "order", "marker"} <= {
        parameter["name"] for parameter in events["parameters"]
    }


def test_fields_that_may_be_null_say_so(schema):
    components = schema["components"]["schemas"]
    for component, field in [
        ("Pipeline", "started_at"),
        ("Pipeline", "finished_at"),
        ("Pipeline", "committed_at"),
        ("CommitStatus", "started_at"),
        ("CommitStatus", "finished_at"),
        ("Job", "finished_at"),
        ("Project", "avatar_url"),
        ("Namespace", "avatar_url"),
        ("UserBasic", "avatar_url"),
    ]:
        assert components[component]["properties"][field].get("nullable") is True, (
            component,
            field,
        )
    assert "nullable" not in components["Pipeline"]["properties"]["created_at"]
