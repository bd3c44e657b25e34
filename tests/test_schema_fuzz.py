"""Generated requests from the OpenAPI and GraphQL schemas: never a 5xx, never an answer the
schema does not describe.

schemathesis builds requests from ``/api/schema/`` (every REST operation: GitLab v4, hooks,
pipeline definitions, SEI, Distelli) and from the GraphQL schema's introspection, valid ones
and invalid ones, and sends them in process to the WSGI application, authenticated with a
real token of a user who may do everything. Each answer must be below 500 and be what the
schema says of that operation: a documented status and content type, and a body whose fields,
types, nulls and required keys match.

Random ids name nothing, so half of the generated path parameters (and SEI's instance GUID)
are swapped for rows that exist: a project, its pipeline, definition, hook, logged attempt,
CI/CD instance and Distelli build. The budget is fixed and generation derandomized, so a run
is the same run every time: ``FUZZ_EXAMPLES`` examples per operation (plus schemathesis's
coverage cases: boundaries, missing and mistyped fields), about a minute of CPU for both
schemas. Nothing leaves the machine: requests go straight into the
application, and a hook test or resend may resolve loopback literals only, which the SSRF
rule then refuses (no allow-list here).
"""

from __future__ import annotations

import ipaddress
import socket
import uuid
from dataclasses import dataclass

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application
from hooks.models import DeliveryAttempt, Hook
from pipelines import auth
from pipelines.commit_statuses import ReportedCommitStatus, report_commit_status
from pipelines.models import CicdInstance, DistelliEvent, PipelineDefinition
from tests.factories import DeliveryFactory, ProjectFactory, UserFactory

FUZZ_EXAMPLES = 25
SHA = "a" * 40

openapi = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
graphql = schemathesis.graphql.from_wsgi("/api/graphql", application)

FUZZ_SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    # The scene is set once per operation, on purpose: examples build on what earlier ones
    # wrote, inside the test's transaction.
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


@dataclass
class Scene:
    token: str
    path_values: dict[str, str]
    build_event_id: str
    instance_guid: str


# The rows of the operation being fuzzed; the hooks below read them while generating.
current: dict[str, Scene] = {}


@openapi.hook
def flatmap_path_parameters(context, path_parameters):
    if not path_parameters:
        return st.just(path_parameters)
    scene = current["scene"]
    real = dict(path_parameters)
    for name in path_parameters:
        if name in scene.path_values:
            real[name] = scene.path_values[name]
    if context.operation.path.startswith("/distelli/") and "name" in path_parameters:
        real["name"] = "buildEvent" if context.operation.method == "put" else scene.build_event_id
    return st.sampled_from([real, path_parameters])


@openapi.hook
def flatmap_body(context, body):
    if context.operation.path.endswith("/custom-cicd") and isinstance(body, dict):
        return st.sampled_from([{**body, "instance_guid": current["scene"].instance_guid}, body])
    return st.just(body)


_real_getaddrinfo = socket.getaddrinfo


def _loopback_only_getaddrinfo(host, port, *args, **kwargs):
    """Resolve loopback literals only: a fuzzed hook URL can name no other host."""
    try:
        address = ipaddress.ip_address(str(host).strip("[]").split("%", 1)[0])
    except ValueError:
        raise socket.gaierror(socket.EAI_NONAME, "names are not resolved in the fuzz") from None
    plain = getattr(address, "ipv4_mapped", None) or address
    if not plain.is_loopback:
        raise socket.gaierror(socket.EAI_NONAME, "only loopback addresses in the fuzz")
    return _real_getaddrinfo(host, port, *args, **kwargs)


@pytest.fixture
def scene(db, monkeypatch, settings):
    settings.HOOKS_ALLOWED_NETWORKS = []
    monkeypatch.setattr(socket, "getaddrinfo", _loopback_only_getaddrinfo)
    user = UserFactory(username="fuzz")
    _, token = auth.create_token(user, scopes=["api"])
    project = ProjectFactory(path="web", namespace="fuzz")
    job = report_commit_status(
        project, ReportedCommitStatus(SHA, state="running", name="build", ref="main")
    )
    definition = PipelineDefinition.objects.create(
        project=project, name="deploy", variables=[{"name": "env", "type": "Text"}]
    )
    hook = Hook.objects.create(
        project=project, url="http://127.0.0.1:9/hook", custom_headers={"X-Fuzz": "1"}
    )
    delivery = DeliveryFactory(hook=hook, event__pipeline=job.pipeline)
    attempt = DeliveryAttempt.objects.create(hook=hook, delivery=delivery, url=hook.redacted_url)
    instance = CicdInstance.objects.create(project=project, name="jenkins", guid=uuid.uuid4())
    build = DistelliEvent.objects.create(
        project=project, event_type=DistelliEvent.Type.BUILD, build_status="Running"
    )
    current["scene"] = Scene(
        token=token,
        path_values={
            "project_id": str(project.pk),
            "pipeline_id": str(job.pipeline_id),
            "definition_id": str(definition.pk),
            "hook_id": str(hook.pk),
            "event_id": str(attempt.pk),
            "key": "X-Fuzz",
            "sha": SHA,
            "username": "fuzz",
            "app_name": "web",
        },
        build_event_id=str(build.pk),
        instance_guid=str(instance.guid),
    )
    # As Django's test client does: the test's transaction holds the connection, which the
    # handler would otherwise close at the end of every request.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield current["scene"]
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)
    current.clear()


@openapi.parametrize()
@FUZZ_SETTINGS
def test_openapi_operations_answer_below_500_as_the_schema_says(case, scene):
    case.call_and_validate(
        headers={"PRIVATE-TOKEN": scene.token},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )


# The caller's mistakes: bad input, unknown ids, missing rights or key. Anything else a
# resolver raises is a bug, which the API masks as "Unexpected error." without a code.
CALLER_ERROR_CODES = frozenset({"BAD_USER_INPUT", "NOT_FOUND", "FORBIDDEN", "UNAUTHENTICATED"})


def graphql_errors_are_the_callers(ctx, response, case) -> None:
    """Below 500, and every resolver error (one with a ``path``) one the caller caused.

    schemathesis counts every resolver error as a server error; this API answers the
    caller's mistakes as resolver errors with ``extensions.code``, as Apollo servers do."""
    assert response.status_code < 500, f"HTTP {response.status_code}"
    for error in response.json().get("errors") or []:
        if "path" in error:
            code = (error.get("extensions") or {}).get("code")
            assert code in CALLER_ERROR_CODES, f"a resolver failed: {error}"


@graphql.parametrize()
@FUZZ_SETTINGS
def test_graphql_fields_answer_the_caller_as_the_schema_says(case, scene):
    case.call_and_validate(
        headers={"x-api-key": scene.token},
        checks=[graphql_errors_are_the_callers, response_schema_conformance],
    )
