"""A token acts with exactly its owner's rights: one of a user who holds nothing is refused
on every endpoint, and told what it would be told about a project that does not exist.

The routes are read from the URL configuration itself, so an endpoint added later fails
``test_every_route_is_covered`` until it is listed here with the values its path needs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from hooks.models import Delivery, DeliveryAttempt, Event, Hook
from pipelines import auth
from pipelines.api.graphql.ids import definition_id, encode_id
from pipelines.api.graphql.schema import schema
from pipelines.errors import InvalidInput
from pipelines.models import (
    CicdInstance,
    DistelliEvent,
    GroupProjectPermission,
    Job,
    PipelineDefinition,
)
from tests.factories import DeliveryFactory, PipelineFactory, ProjectFactory, UserFactory

SHA = "5b6a36e1e5fb3a2bfe1f8e2ec0a3dc9b8f7a6c11"
MISSING_ID = "987654"

# Open to anyone, on purpose: the API description, the health check, the way to the admin.
PUBLIC_ROUTES = {"schema", "api-docs", "home", "healthz"}
# Any valid token reads them: they tell of the instance and the token's own user only.
INSTANCE_ROUTES = {"gitlab-current-user", "gitlab-version", "gitlab-metadata"}


@dataclass
class World:
    """A project with one of everything, and the callers who try to reach it."""

    project: object
    pipeline: object
    definition: object
    hook: object
    attempt: object
    instance: object
    build: object
    keys: dict[str, str] = field(default_factory=dict)
    users: dict[str, object] = field(default_factory=dict)


@pytest.fixture
def world(db, receiver):
    project = ProjectFactory(name="Hidden Treasure", namespace="vault", path="treasure")
    pipeline = PipelineFactory(project=project, sha=SHA, status="running")
    Job.objects.create(pipeline=pipeline, name="build", stage="build", status="failed")
    Job.objects.create(pipeline=pipeline, name="test", stage="test", status="running")
    definition = PipelineDefinition.objects.create(project=project, name="Deploy")
    hook = Hook.objects.create(project=project, url=receiver.url, custom_headers={"X-Team": "ops"})
    delivery = DeliveryFactory(hook=hook, event__pipeline=pipeline)
    attempt = DeliveryAttempt.objects.create(
        hook=hook, delivery=delivery, url=hook.url, response_status=500
    )
    instance = CicdInstance.objects.create(project=project, name="Jenkins-1")
    build = DistelliEvent.objects.create(
        project=project, event_type="BUILD", build_status="Running"
    )

    # Holds every right, on this project too: the control that each request is valid.
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    # Holds nothing at all (the user `createtoken` makes for a new name).
    nobody = UserFactory(username="nobody")
    # Holds every right, but on another project only: it passes "may it do this anywhere?".
    outsider = UserFactory(username="outsider")
    elsewhere = Group.objects.create(name="elsewhere")
    outsider.groups.add(elsewhere)
    other = ProjectFactory()
    for permission in Permission.objects.filter(
        content_type__app_label="pipelines", content_type__model="project"
    ):
        GroupProjectPermission.objects.create(group=elsewhere, project=other, permission=permission)
    # Staff, signed in to the admin and so to the browsable API, granted nothing.
    staff = UserFactory(username="staff", is_staff=True)

    world = World(project, pipeline, definition, hook, attempt, instance, build)
    for user in (root, nobody, outsider):
        world.keys[user.username] = auth.create_token(user, scopes=["api"])[1]
    # A group scope cannot widen a token: scoping one to a group its owner is not in is
    # refused, and done behind the rule's back the group does not count.
    with pytest.raises(InvalidInput, match="not in the group"):
        auth.create_token(nobody, scopes=["api"], groups=[elsewhere])
    token, world.keys["nobody-scoped"] = auth.create_token(nobody, scopes=["api"])
    token.groups.add(elsewhere)
    world.users = {"root": root, "nobody": nobody, "outsider": outsider, "staff": staff}
    return world


@dataclass(frozen=True)
class Route:
    path: str  # with {placeholders} for the URL's named groups
    methods: dict[str, dict | None]  # method -> JSON body
    # Path values that differ by method, e.g. {"post": {"name": "<event id>"}}.
    per_method: dict[str, dict[str, str]] = field(default_factory=dict)


def routes(world: World) -> dict[str, Route]:
    """Every token-taking route, by URL name, with a body that works for a caller who may."""
    project = "{project_id}"
    pipeline = f"/api/v4/projects/{project}/pipelines/{{pipeline_id}}"
    hook = f"/api/v4/projects/{project}/hooks/{{hook_id}}"
    distelli = "/distelli/{username}/apps/{app_name}/events"
    run = {
        "pipeline": "deploy",
        "job_full_name": "acme/deploy",
        "qualified_name": "acme/deploy",
        "instance_name": "Jenkins-1",
        "instance_guid": "{instance_guid}",
        "start_time": 1700000000000,
        "duration": 60000,
        "result": "success",
    }
    return {
        "gitlab-projects": Route(
            "/api/v4/projects", {"get": None, "post": {"name": "New", "path": "new"}}
        ),
        "gitlab-project": Route(f"/api/v4/projects/{project}", {"get": None}),
        "gitlab-commit-status-create": Route(
            f"/api/v4/projects/{project}/statuses/{{sha}}",
            {"post": {"state": "success", "name": "lint"}},
        ),
        "gitlab-commit-statuses": Route(
            f"/api/v4/projects/{project}/repository/commits/{{sha}}/statuses", {"get": None}
        ),
        "gitlab-pipelines": Route(f"/api/v4/projects/{project}/pipelines", {"get": None}),
        "gitlab-pipeline-latest": Route(
            f"/api/v4/projects/{project}/pipelines/latest", {"get": None}
        ),
        "gitlab-pipeline-create": Route(
            f"/api/v4/projects/{project}/pipeline", {"post": {"ref": "main"}}
        ),
        "gitlab-pipeline": Route(pipeline, {"get": None, "delete": None}),
        "gitlab-pipeline-jobs": Route(f"{pipeline}/jobs", {"get": None}),
        "gitlab-pipeline-bridges": Route(f"{pipeline}/bridges", {"get": None}),
        "gitlab-pipeline-test-report": Route(f"{pipeline}/test_report", {"get": None}),
        "gitlab-pipeline-test-report-summary": Route(
            f"{pipeline}/test_report_summary", {"get": None}
        ),
        "gitlab-commit": Route(
            f"/api/v4/projects/{project}/repository/commits/{{sha}}", {"get": None}
        ),
        "gitlab-jobs": Route(f"/api/v4/projects/{project}/jobs", {"get": None}),
        "gitlab-job": Route(f"/api/v4/projects/{project}/jobs/{{job_id}}", {"get": None}),
        "gitlab-pipeline-variables": Route(f"{pipeline}/variables", {"get": None}),
        "gitlab-pipeline-retry": Route(f"{pipeline}/retry", {"post": None}),
        "gitlab-pipeline-cancel": Route(f"{pipeline}/cancel", {"post": None}),
        "pipeline-definitions": Route(
            f"/api/v4/projects/{project}/pipeline_definitions",
            {"get": None, "post": {"name": "Release"}},
        ),
        "pipeline-definition": Route(
            f"/api/v4/projects/{project}/pipeline_definitions/{{definition_id}}",
            {
                "get": None,
                "put": {"description": "x"},
                "patch": {"description": "y"},
                "delete": None,
            },
        ),
        "api-hooks": Route(
            f"/api/v4/projects/{project}/hooks",
            {"get": None, "post": {"url": "http://127.0.0.1:9/new"}},
        ),
        "api-hook": Route(hook, {"get": None, "put": {"name": "renamed"}, "delete": None}),
        "api-hook-custom-header": Route(
            f"{hook}/custom_headers/{{key}}", {"put": {"value": "dev"}, "delete": None}
        ),
        "api-hook-test": Route(f"{hook}/test/{{trigger}}", {"post": None}),
        "api-hook-events": Route(f"{hook}/events", {"get": None}),
        "api-hook-event-resend": Route(f"{hook}/events/{{event_id}}/resend", {"post": None}),
        "sei-cicd-instances": Route(
            "/sei/api/v1/cicd/instances",
            {"post": {"integration_id": "{project_id}", "name": "Jenkins-2"}},
        ),
        "sei-custom-cicd": Route("/sei/api/v1/custom-cicd", {"post": run}),
        "distelli-events": Route(distelli, {"get": None}),
        "distelli-event": Route(
            f"{distelli}/{{name}}",
            {"put": {"build_status": "Running"}, "post": {"build_status": "Success"}},
            per_method={"put": {"name": "buildEvent"}, "post": {"name": str(world.build.pk)}},
        ),
    }


def values(world: World, caller: str, *, missing: bool) -> dict[str, str]:
    """What fills the paths and bodies: the world's own objects, or ones that do not exist."""
    project = world.project
    found = {
        "project_id": str(project.pk),
        "pipeline_id": str(world.pipeline.pk),
        "job_id": str(world.pipeline.jobs.first().pk),
        "definition_id": str(world.definition.pk),
        "hook_id": str(world.hook.pk),
        "event_id": str(world.attempt.pk),
        "key": "X-Team",
        "trigger": "pipeline_events",
        "sha": SHA,
        "instance_guid": str(world.instance.guid),
        "username": "nobody" if caller == "nobody-scoped" else caller,
        "app_name": project.path,
    }
    if not missing:
        return found
    return {
        **found,
        "project_id": MISSING_ID,
        "instance_guid": "00000000-0000-4000-8000-000000000000",
        "app_name": "no-such-app",
    }


def fill(template, mapping: dict[str, str]):
    if template is None:
        return None
    text = json.dumps(template)
    for name, value in mapping.items():
        text = text.replace("{" + name + "}", value)
    return json.loads(text)


def url_patterns(resolver=None, prefix=""):
    for pattern in (resolver or get_resolver()).url_patterns:
        if isinstance(pattern, URLResolver):
            yield from url_patterns(pattern, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern), pattern


def implemented_methods(pattern: URLPattern) -> set[str]:
    view = getattr(pattern.callback, "view_class", None)
    verbs = ("get", "post", "put", "patch", "delete")
    return {verb for verb in verbs if view is not None and hasattr(view, verb)}


def request(world: World, caller: str, name: str, method: str, *, missing: bool = False):
    route = routes(world)[name]
    mapping = {**values(world, caller, missing=missing), **route.per_method.get(method, {})}
    path = route.path.format(**mapping)
    body = fill(route.methods[method], mapping)
    client = APIClient()
    if caller == "staff":
        client.force_login(world.users["staff"])
    else:
        client.credentials(HTTP_PRIVATE_TOKEN=world.keys[caller])
    send = getattr(client, method)
    return send(path, body, format="json") if body is not None else send(path)


def snapshot() -> dict:
    """Every row the APIs could change (token use times aside)."""
    rows = {}
    for model in [*apps.get_app_config("pipelines").get_models(), Hook, Event, Delivery]:
        fields = [f.attname for f in model._meta.concrete_fields if f.name != "last_used_at"]
        rows[model._meta.label] = list(model.objects.order_by("pk").values_list(*fields))
    rows["hooks.DeliveryAttempt"] = DeliveryAttempt.objects.count()
    return rows


def test_every_route_is_covered(world):
    listed = routes(world)
    for path, pattern in url_patterns():
        if path.startswith("admin/") or pattern.name in PUBLIC_ROUTES | INSTANCE_ROUTES | {
            "graphql"
        }:
            continue
        assert pattern.name in listed, f"{path}: add it to routes() in {__name__}"
        assert set(listed[pattern.name].methods) == implemented_methods(pattern), path


@pytest.mark.parametrize("caller", ["nobody", "nobody-scoped", "outsider", "staff"])
def test_caller_without_rights_is_refused_everywhere(world, caller):
    before = snapshot()
    hidden = [world.project.name, world.project.path_with_namespace, world.hook.url]
    for name, route in routes(world).items():
        for method in route.methods:
            where = f"{caller} {method.upper()} {name}"
            response = request(world, caller, name, method)
            text = response.content.decode()
            if caller == "outsider" and name == "gitlab-projects" and method == "get":
                # It may list the projects it holds rights on; this one is not among them.
                assert response.status_code == 200, where
                assert str(world.project.pk) not in [str(p["id"]) for p in response.json()]
                continue
            if caller == "staff" and not name.startswith(("gitlab-", "pipeline-", "api-")):
                # The dialects take tokens only, never the admin's session.
                assert response.status_code == 401, where
                continue
            assert response.status_code in (400, 403, 404), (where, response.status_code, text)
            if response.status_code == 400:
                # SEI's answer to an unknown project or instance (a 400 there, as in SEI).
                assert name.startswith("sei-"), (where, text)
            for secret in hidden:
                assert secret not in text, (where, secret, text)
            # Told exactly what a project that does not exist is told.
            twin = request(world, caller, name, method, missing=True)
            found, missing = (
                values(world, caller, missing=False),
                values(world, caller, missing=True),
            )
            expected = twin.content.decode()
            for key in ("project_id", "instance_guid", "app_name"):
                expected = expected.replace(missing[key], found[key])
            assert (response.status_code, text) == (twin.status_code, expected), where
    assert snapshot() == before


def test_the_same_requests_succeed_for_a_caller_who_may(world):
    """The control: every request above is valid, so only the rights made the difference."""
    for name, route in routes(world).items():
        for method in route.methods:
            with transaction.atomic():
                response = request(world, "root", name, method)
                transaction.set_rollback(True)
            assert response.status_code < 400, (method, name, response.content)


# --- GraphQL ------------------------------------------------------------------------------

OPERATIONS = {
    "applicationByName": '{{ applicationByName(name: "{name}") {{ id }} }}',
    "application": '{{ application(applicationId: "{application}") {{ id }} }}',
    "pipelineByName": (
        '{{ pipelineByName(applicationId: "{application}", pipelineName: "Deploy") {{ id }} }}'
    ),
    "workflowByName": (
        '{{ workflowByName(applicationId: "{application}", workflowName: "Deploy") {{ id }} }}'
    ),
    "execution": '{{ execution(executionId: "{execution}") {{ id }} }}',
    "startExecution": (
        'mutation {{ startExecution(input: {{applicationId: "{application}",'
        ' entityId: "{entity}", executionType: PIPELINE}}) {{ execution {{ id }} }} }}'
    ),
}


def graphql(key: str, query: str) -> dict:
    response = APIClient().post("/api/graphql", {"query": query}, format="json", HTTP_X_API_KEY=key)
    return response.json()


def test_every_graphql_operation_is_covered():
    fields = {
        f.graphql_name or f.python_name
        for type_ in (schema.query, schema.mutation)
        for f in type_.__strawberry_definition__.fields
    }
    camel = {re.sub(r"_(\w)", lambda m: m.group(1).upper(), name) for name in fields}
    assert camel == set(OPERATIONS)


@pytest.mark.parametrize("caller", ["nobody", "nobody-scoped", "outsider"])
def test_graphql_refuses_a_key_without_rights_as_if_nothing_were_there(world, caller):
    PipelineDefinition.objects.create(project=world.project, name="Deploy", kind="workflow")
    before = snapshot()
    real = {
        "name": world.project.name,
        "application": encode_id("Application", world.project.pk),
        "execution": encode_id("Execution", world.pipeline.pk),
        "entity": definition_id(world.definition),
    }
    missing = {
        "name": "Nothing Here",
        "application": encode_id("Application", int(MISSING_ID)),
        "execution": encode_id("Execution", int(MISSING_ID)),
        "entity": real["entity"],
    }
    for operation, template in OPERATIONS.items():
        answer = graphql(world.keys[caller], template.format(**real))
        twin = graphql(world.keys[caller], template.format(**missing))
        assert answer["data"] is None or answer["data"] == {operation: None}, operation
        [error] = answer["errors"]
        assert error["extensions"] == {"code": "NOT_FOUND"}, (operation, error)
        expected = json.dumps(twin["errors"])
        for key in ("name", "application", "execution"):
            expected = expected.replace(missing[key], real[key])
        assert json.dumps(answer["errors"]) == expected, operation
        assert "Hidden Treasure" not in json.dumps(answer) or operation == "applicationByName"
    assert snapshot() == before


def test_graphql_control_key_reaches_everything(world):
    PipelineDefinition.objects.create(project=world.project, name="Deploy", kind="workflow")
    real = {
        "name": world.project.name,
        "application": encode_id("Application", world.project.pk),
        "execution": encode_id("Execution", world.pipeline.pk),
        "entity": definition_id(world.definition),
    }
    for operation, template in OPERATIONS.items():
        answer = graphql(world.keys["root"], template.format(**real))
        assert "errors" not in answer, (operation, answer)
