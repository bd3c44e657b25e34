"""The GraphQL API at /api/graphql, driven with the requests release tooling sends.

Bodies marked "as the script sends it" are the ``--data`` of the curl scripts the API's users
run, byte for byte apart from the ids and key filled in.
"""

import json
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Group, Permission

from pipelines import auth, executions, services
from pipelines.api.graphql.ids import decode_id, definition_id, encode_id
from pipelines.api.graphql.types import EXECUTION_STATUS, ExecutionStatus
from pipelines.models import (
    AccessToken,
    Execution,
    GroupProjectPermission,
    Pipeline,
    PipelineDefinition,
    Status,
)
from pipelines.signals import PipelineChange, pipeline_changed
from tests.factories import PipelineFactory, ProjectFactory, UserFactory

URL = "/api/graphql?accountId=acme"

GUESTBOOK_VARIABLES = [
    {"name": "skipCV", "type": "Text", "required": False},
    {"name": "hotfix", "type": "Text", "required": False},
    {"name": "branch", "type": "Text", "required": False},
]
K8S_VARIABLES = [
    {"name": "Environment", "type": "Environment", "required": True},
    {"name": "Service", "type": "Service", "required": True},
    {"name": "InfraDefinition_KUBERNETES", "type": "Infrastructure definition", "required": True},
    {"name": "hotfix", "type": "Text", "required": False},
    {"name": "branch", "type": "Text", "required": False},
    {"name": "skipCV", "type": "Text", "required": False},
]

# --- The scripts' request bodies -------------------------------------------------------------

GET_APP_BY_NAME = (
    r'{"query":"query {\n applicationByName(name:\"APPNAME\"){\n id\n name\n pipelines(limit:4)'
    r'{\n nodes{\n id\n description\n }\n }\n }\n}\n\n"}'
)
EXECUTE_PIPELINE = (
    r'{"query":"\nmutation($startExecution: StartExecutionInput!){\n startExecution '
    r"(input:$startExecution){\n clientMutationId\n execution {\n notes\n id\n application{\n"
    r' id\n }\n }\n }\n}","variables":{"startExecution":{"applicationId":"APPLICATIONID",'
    r'"notes":"Demo","executionType":"PIPELINE","entityId":"PIPELINEID","serviceInputs":'
    r'{"name":"SERVICENAME","artifactValueInput":{"buildNumber":{"buildNumber":"BUILDNO",'
    r'"artifactSourceName":"ARTIFACTSOURCENAME"},"valueType":"BUILD_NUMBER"}}}}}'
)
EXECUTE_WORKFLOW = (
    r'{"query":"\nmutation($startExecution: StartExecutionInput!){\n startExecution '
    r"(input:$startExecution){\n clientMutationId\n execution {\n notes\n status\n startedAt\n"
    r' id\n application{\n id\n }\n }\n }\n}","variables":{"startExecution":{"applicationId":'
    r'"APPLICATIONID","notes":"Demo","executionType":"WORKFLOW","entityId":"WORKFLOWID",'
    r'"serviceInputs":{"name":"guestbook","artifactValueInput":{"buildNumber":{"buildNumber":'
    r'"v6","artifactSourceName":"guestbook"},"valueType":"BUILD_NUMBER"}},"variableInputs":'
    r'[{"name":"Environment","variableValue":{"type":"NAME","value":"dev"}},{"name":'
    r'"InfraDefinition_KUBERNETES","variableValue":{"type":"NAME","value":"k8s-dev"}},'
    r'{"name":"Service","variableValue":{"type":"NAME","value":"guestbook"}},{"name":"skipCV",'
    r'"variableValue":{"type":"NAME","value":"true"}}]}}}'
)

PIPELINE_BY_NAME = """{
pipelineByName(applicationId: "APPLICATIONID", pipelineName: "Guestbook Pipeline") {
id
name
pipelineVariables {
name
type
required
}
}
}"""
WORKFLOW_BY_NAME = """{
workflowByName(applicationId: "APPLICATIONID", workflowName: "K8s Rolling Deployment") {
id
name
workflowVariables {
name
type
required
}
}
}"""
START_WITH_STATUS = """mutation($startExecution: StartExecutionInput!){
startExecution (input:$startExecution){
clientMutationId
execution {
notes
status
startedAt
id
application{
id
}
}
}
}"""
PIPELINE_EXECUTION_STATUS = """query{
execution(executionId: "EXECUTIONID") {
id
... on PipelineExecution {
id
status
}
}
}"""
WORKFLOW_EXECUTION_OUTCOMES = """{
execution(executionId:"EXECUTIONID"){
id
status
... on WorkflowExecution {
id
outcomes{
nodes{
execution {
id
endedAt
startedAt
}
}
}
}
}
}"""


def fill(template: str, **values: str) -> str:
    for name, value in values.items():
        template = template.replace(name, value)
    return template


def post(client, body, key: str | None):
    data = body if isinstance(body, str) else json.dumps(body)
    headers = {"HTTP_X_API_KEY": key} if key else {}
    response = client.post(URL, data=data, content_type="application/json", **headers)
    assert response["Content-Type"].startswith("application/json")
    return response


def graphql(client, key, query: str, variables: dict | None = None) -> dict:
    response = post(client, {"query": query, "variables": variables}, key)
    assert response.status_code == 200, response.content
    return response.json()


def error_messages(result: dict) -> list[str]:
    return [error["message"] for error in result.get("errors", [])]


def ms(moment) -> int:
    return int(moment.timestamp() * 1000)


# --- Fixtures --------------------------------------------------------------------------------


@pytest.fixture
def app(db):
    project = ProjectFactory(name="Harness Demo", default_branch="main")
    PipelineDefinition.objects.create(
        project=project,
        name="Guestbook Pipeline",
        description="Deploys the guestbook",
        variables=GUESTBOOK_VARIABLES,
    )
    PipelineDefinition.objects.create(
        project=project,
        name="K8s Rolling Deployment",
        kind=PipelineDefinition.Kind.WORKFLOW,
        variables=K8S_VARIABLES,
    )
    return project


@pytest.fixture
def pipeline_def(app):
    return app.definitions.get(name="Guestbook Pipeline")


@pytest.fixture
def workflow_def(app):
    return app.definitions.get(name="K8s Rolling Deployment")


@pytest.fixture
def app_id(app):
    return encode_id("Application", app.pk)


def permission(codename: str) -> Permission:
    return Permission.objects.get(content_type__app_label="pipelines", codename=codename)


def group_with(name: str, everywhere=(), on_projects=()) -> Group:
    """A group granting ``everywhere`` codenames on all projects and ``on_projects`` pairs."""
    group = Group.objects.create(name=name)
    group.permissions.add(*(permission(codename) for codename in everywhere))
    for project, codename in on_projects:
        GroupProjectPermission.objects.create(
            group=group, project=project, permission=permission(codename)
        )
    return group


@pytest.fixture
def deployer_key(app, make_token):
    """A key scoped to a group that may read everywhere and start executions on ``app``."""
    group = group_with(
        "deployers", everywhere=["view_project"], on_projects=[(app, "start_execution")]
    )
    return make_token(scopes=["api"], groups=[group])


@pytest.fixture
def changes(db):
    """Every pipeline_changed signal sent while the test runs."""
    seen = []

    def listener(sender, pipeline, previous_status, change, **kwargs):
        seen.append((pipeline.pk, previous_status, change))

    pipeline_changed.connect(listener, weak=False)
    yield seen
    pipeline_changed.disconnect(listener)


# --- The seed's requests -------------------------------------------------------------------


def test_application_by_name_as_the_script_sends_it(client, app, app_id, deployer_key):
    for number in range(4):
        PipelineDefinition.objects.create(project=app, name=f"Extra {number}")
    response = post(client, fill(GET_APP_BY_NAME, APPNAME="Harness Demo"), deployer_key)

    assert response.status_code == 200
    pipelines = list(app.definitions.filter(kind="pipeline").order_by("id")[:4])
    assert response.json() == {
        "data": {
            "applicationByName": {
                "id": app_id,
                "name": "Harness Demo",
                "pipelines": {
                    "nodes": [
                        {"id": definition_id(d), "description": d.description} for d in pipelines
                    ]
                },
            }
        }
    }
    assert decode_id(definition_id(pipelines[0])) == ("Pipeline", pipelines[0].pk)


def test_pipeline_by_name_lists_its_variables(client, app_id, pipeline_def, deployer_key):
    result = graphql(client, deployer_key, fill(PIPELINE_BY_NAME, APPLICATIONID=app_id))
    assert result == {
        "data": {
            "pipelineByName": {
                "id": definition_id(pipeline_def),
                "name": "Guestbook Pipeline",
                "pipelineVariables": GUESTBOOK_VARIABLES,
            }
        }
    }


def test_workflow_by_name_lists_its_variables(client, app_id, workflow_def, deployer_key):
    result = graphql(client, deployer_key, fill(WORKFLOW_BY_NAME, APPLICATIONID=app_id))
    assert result == {
        "data": {
            "workflowByName": {
                "id": definition_id(workflow_def),
                "name": "K8s Rolling Deployment",
                "workflowVariables": K8S_VARIABLES,
            }
        }
    }


def test_start_pipeline_as_the_script_sends_it(
    client, app, app_id, pipeline_def, deployer_key, changes
):
    body = fill(
        EXECUTE_PIPELINE,
        APPLICATIONID=app_id,
        PIPELINEID=definition_id(pipeline_def),
        SERVICENAME="fargate-nginx",
        BUILDNO="1.10.1",
        ARTIFACTSOURCENAME="library_nginx",
    )
    response = post(client, body, deployer_key)

    assert response.status_code == 200
    started = response.json()["data"]["startExecution"]
    pipeline = Pipeline.objects.get()
    assert started == {
        "clientMutationId": None,
        "execution": {
            "notes": "Demo",
            "id": encode_id("Execution", pipeline.pk),
            "application": {"id": app_id},
        },
    }
    assert (pipeline.project, pipeline.source, pipeline.ref) == (app, "api", "main")
    assert pipeline.status == Status.CREATED
    assert pipeline.name == "Guestbook Pipeline"
    assert pipeline.sha == "0" * 40  # nothing was ever reported on main
    assert pipeline.user == AccessToken.objects.get().user
    assert pipeline.variables == [
        {"key": "SERVICE_NAME", "value": "fargate-nginx", "variable_type": "env_var"},
        {"key": "ARTIFACT_SOURCE_NAME", "value": "library_nginx", "variable_type": "env_var"},
        {"key": "ARTIFACT_BUILD_NUMBER", "value": "1.10.1", "variable_type": "env_var"},
    ]
    record = Execution.objects.get()
    assert (record.pipeline, record.definition, record.kind) == (pipeline, pipeline_def, "pipeline")
    assert record.notes == "Demo"
    assert changes == [(pipeline.pk, None, PipelineChange.CREATED)]


def test_start_pipeline_with_variables_returns_status_and_start_time(
    client, app_id, pipeline_def, deployer_key
):
    variables = {
        "startExecution": {
            "applicationId": app_id,
            "notes": "Demo",
            "executionType": "PIPELINE",
            "entityId": definition_id(pipeline_def),
            "clientMutationId": "release-42",
            "variableInputs": [
                {"name": "skipCV", "variableValue": {"type": "NAME", "value": "true"}},
                {"name": "branch", "variableValue": {"value": "master", "type": "NAME"}},
                {"name": "hotfix", "variableValue": {"value": "false", "type": "NAME"}},
            ],
        }
    }
    result = graphql(client, deployer_key, START_WITH_STATUS, variables)

    pipeline = Pipeline.objects.get()
    assert result["data"]["startExecution"] == {
        "clientMutationId": "release-42",
        "execution": {
            "notes": "Demo",
            "status": "QUEUED",
            "startedAt": ms(pipeline.created_at),
            "id": encode_id("Execution", pipeline.pk),
            "application": {"id": app_id},
        },
    }
    assert {v["key"]: v["value"] for v in pipeline.variables} == {
        "skipCV": "true",
        "branch": "master",
        "hotfix": "false",
    }


def test_start_workflow_as_the_script_sends_it(client, app_id, workflow_def, deployer_key, changes):
    body = fill(EXECUTE_WORKFLOW, APPLICATIONID=app_id, WORKFLOWID=definition_id(workflow_def))
    response = post(client, body, deployer_key)

    assert response.status_code == 200
    pipeline = Pipeline.objects.get()
    assert response.json()["data"]["startExecution"] == {
        "clientMutationId": None,
        "execution": {
            "notes": "Demo",
            "status": "QUEUED",
            "startedAt": ms(pipeline.created_at),
            "id": encode_id("Execution", pipeline.pk),
            "application": {"id": app_id},
        },
    }
    assert {v["key"]: v["value"] for v in pipeline.variables} == {
        "Environment": "dev",
        "InfraDefinition_KUBERNETES": "k8s-dev",
        "Service": "guestbook",
        "skipCV": "true",
        "SERVICE_NAME": "guestbook",
        "ARTIFACT_SOURCE_NAME": "guestbook",
        "ARTIFACT_BUILD_NUMBER": "v6",
    }
    assert pipeline.execution.kind == "workflow"
    assert changes == [(pipeline.pk, None, PipelineChange.CREATED)]


def start(client, key, definition, variable_inputs=(), **fields) -> dict:
    variables = {
        "startExecution": {
            "applicationId": encode_id("Application", definition.project_id),
            "entityId": definition_id(definition),
            "executionType": definition.kind.upper(),
            "variableInputs": list(variable_inputs),
            **fields,
        }
    }
    return graphql(client, key, START_WITH_STATUS, variables)


def named(name: str, value: str, value_type: str = "NAME") -> dict:
    return {"name": name, "variableValue": {"type": value_type, "value": value}}


def test_execution_status_follows_the_pipeline(client, pipeline_def, deployer_key):
    started = start(client, deployer_key, pipeline_def)
    execution_id = started["data"]["startExecution"]["execution"]["id"]
    query = fill(PIPELINE_EXECUTION_STATUS, EXECUTIONID=execution_id)

    def status() -> dict:
        return graphql(client, deployer_key, query)["data"]["execution"]

    assert status() == {"id": execution_id, "status": "QUEUED"}
    pipeline = Pipeline.objects.get()
    services.transition_pipeline(pipeline, "running")
    assert status()["status"] == "RUNNING"
    services.transition_pipeline(pipeline, "success")
    assert status()["status"] == "SUCCESS"


def test_workflow_execution_outcomes_carry_start_and_end(client, workflow_def, deployer_key):
    started = start(
        client,
        deployer_key,
        workflow_def,
        [
            named("Environment", "dev"),
            named("Service", "svc-7", "ID"),
            named("InfraDefinition_KUBERNETES", "k8s"),
        ],
    )
    execution_id = started["data"]["startExecution"]["execution"]["id"]
    pipeline = Pipeline.objects.get()
    services.transition_pipeline(pipeline, "running")
    services.transition_pipeline(pipeline, "failed")
    pipeline.refresh_from_db()

    result = graphql(
        client, deployer_key, fill(WORKFLOW_EXECUTION_OUTCOMES, EXECUTIONID=execution_id)
    )
    assert result == {
        "data": {
            "execution": {
                "id": execution_id,
                "status": "FAILED",
                "outcomes": {
                    "nodes": [
                        {
                            "execution": {
                                "id": execution_id,
                                "endedAt": ms(pipeline.finished_at),
                                "startedAt": ms(pipeline.created_at),
                            }
                        }
                    ]
                },
            }
        }
    }


def test_execution_of_a_pipeline_reported_by_ci_is_a_pipeline_execution(client, app, deployer_key):
    reported = PipelineFactory(project=app, status=Status.CANCELED)
    query = """query($id: String!) { execution(executionId: $id) {
        __typename id notes status ... on PipelineExecution { pipeline { id } } } }"""
    result = graphql(client, deployer_key, query, {"id": encode_id("Execution", reported.pk)})
    assert result["data"]["execution"] == {
        "__typename": "PipelineExecution",
        "id": encode_id("Execution", reported.pk),
        "notes": None,
        "status": "ABORTED",
        "pipeline": None,
    }


def test_every_pipeline_status_maps_to_an_execution_status():
    assert set(EXECUTION_STATUS) == set(Status)
    assert EXECUTION_STATUS[Status.CREATED] == ExecutionStatus.QUEUED
    assert EXECUTION_STATUS[Status.MANUAL] == ExecutionStatus.PAUSED
    assert EXECUTION_STATUS[Status.CANCELED] == ExecutionStatus.ABORTED


def test_run_is_for_the_newest_commit_seen_on_the_definitions_ref(
    client, app, pipeline_def, deployer_key
):
    PipelineFactory(project=app, ref="release", sha="a" * 40)
    PipelineFactory(project=app, ref="release", sha="b" * 40)
    PipelineFactory(project=app, ref="main", sha="c" * 40)
    pipeline_def.ref = "release"
    pipeline_def.save()

    start(client, deployer_key, pipeline_def)

    run = Pipeline.objects.get(source="api")
    assert (run.ref, run.sha) == ("release", "b" * 40)


def test_run_carries_what_was_reported_of_its_commit(client, app, pipeline_def, deployer_key):
    """As a pipeline started on the REST API does: whether the ref is a tag, and what an
    earlier report said of the commit, reach the run and its hook payload."""
    committed = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    services.create_pipeline(
        app,
        ref="v1.2",
        sha="d" * 40,
        source=Pipeline.Source.PUSH,
        tag=True,
        commit_title="Release 1.2",
        commit_message="Release 1.2\n\nNotes",
        commit_author_name="Ada",
        commit_author_email="ada@example.com",
        commit_timestamp=committed,
    )
    pipeline_def.ref = "v1.2"
    pipeline_def.save()

    start(client, deployer_key, pipeline_def)

    run = Pipeline.objects.get(source="api")
    assert (run.sha, run.tag) == ("d" * 40, True)
    assert (
        run.commit_title,
        run.commit_message,
        run.commit_author_name,
        run.commit_author_email,
        run.commit_timestamp,
    ) == ("Release 1.2", "Release 1.2\n\nNotes", "Ada", "ada@example.com", committed)


def test_application_pipelines_page_through(client, app, app_id, deployer_key):
    for number in range(3):
        PipelineDefinition.objects.create(project=app, name=f"Extra {number}")
    query = """query($id: String!) { application(applicationId: $id) {
        pipelines(limit: 2, offset: 2) { nodes { name } pageInfo { limit offset total hasMore } }
        workflows(limit: 5) { nodes { name } } } }"""
    result = graphql(client, deployer_key, query, {"id": app_id})
    assert result["data"]["application"] == {
        "pipelines": {
            "nodes": [{"name": "Extra 1"}, {"name": "Extra 2"}],
            "pageInfo": {"limit": 2, "offset": 2, "total": 4, "hasMore": False},
        },
        "workflows": {"nodes": [{"name": "K8s Rolling Deployment"}]},
    }


def test_application_by_name_tells_same_named_applications_apart(client, app, deployer_key):
    twin = ProjectFactory(name="Harness Demo", namespace="other")
    query = "query($name: String!) { applicationByName(name: $name) { id } }"

    ambiguous = graphql(client, deployer_key, query, {"name": "Harness Demo"})
    assert ambiguous["data"]["applicationByName"] is None
    assert "2 applications are named 'Harness Demo'" in error_messages(ambiguous)[0]

    by_path = graphql(client, deployer_key, query, {"name": twin.path_with_namespace})
    assert by_path["data"]["applicationByName"] == {"id": encode_id("Application", twin.pk)}


# --- Permissions ---------------------------------------------------------------------------


def test_key_without_execute_permission_on_the_project_cannot_start(
    client, app, pipeline_def, make_token, changes
):
    elsewhere = ProjectFactory()
    group = group_with(
        "staging-deployers",
        everywhere=["view_project"],
        on_projects=[(elsewhere, "start_execution")],
    )
    key = make_token(scopes=["api"], groups=[group])

    result = start(client, key, pipeline_def)

    assert result["data"] is None
    (error,) = result["errors"]
    assert error["message"].startswith("User not authorized")
    assert "pipelines.start_execution" in error["message"]
    assert app.path_with_namespace in error["message"]
    assert error["extensions"] == {"code": "FORBIDDEN"}
    assert not Pipeline.objects.exists() and not Execution.objects.exists()
    assert changes == []


def test_key_with_execute_permission_on_the_project_starts(
    client, app, pipeline_def, make_token, changes
):
    group = group_with("prod-deployers", on_projects=[(app, "start_execution")])
    key = make_token(scopes=["api"], groups=[group])

    result = start(client, key, pipeline_def)

    assert "errors" not in result
    assert Pipeline.objects.filter(project=app, source="api").count() == 1
    assert len(changes) == 1


def test_group_permission_on_every_project_lets_a_key_start_anywhere(
    client, pipeline_def, make_token
):
    key = make_token(
        scopes=["api"], groups=[group_with("releasers", everywhere=["start_execution"])]
    )
    assert "errors" not in start(client, key, pipeline_def)
    assert Pipeline.objects.count() == 1


def test_read_only_key_can_query_but_not_start(client, app_id, pipeline_def, make_token):
    key = make_token(scopes=["read_api"])

    looked_up = graphql(client, key, fill(PIPELINE_BY_NAME, APPLICATIONID=app_id))
    assert looked_up["data"]["pipelineByName"]["name"] == "Guestbook Pipeline"

    result = start(client, key, pipeline_def)
    assert "User not authorized: insufficient_scope" in error_messages(result)[0]
    assert not Pipeline.objects.exists()


def test_key_without_read_permission_cannot_look_up(client, app, app_id, make_token):
    group = group_with("starters", on_projects=[(app, "start_execution")])
    key = make_token(scopes=["api"], groups=[group])
    result = graphql(client, key, fill(PIPELINE_BY_NAME, APPLICATIONID=app_id))
    assert result["data"] == {"pipelineByName": None}
    assert "User not authorized" in error_messages(result)[0]
    assert "pipelines.view_project" in error_messages(result)[0]
    assert result["errors"][0]["extensions"] == {"code": "FORBIDDEN"}


def test_application_the_key_holds_nothing_on_looks_missing(client, app, make_token, changes):
    # The same error as for an application that does not exist: names and ids can't be probed.
    key = make_token(scopes=["api"], groups=[group_with("nobody")])
    twin = ProjectFactory(name=app.name, namespace="other")
    missing_id = encode_id("Application", 999999)
    for application_id in (encode_id("Application", app.pk), missing_id):
        result = graphql(client, key, fill(PIPELINE_BY_NAME, APPLICATIONID=application_id))
        assert result["errors"] == [
            {
                "message": f"No application with id {application_id!r}",
                "locations": result["errors"][0]["locations"],
                "path": ["pipelineByName"],
                "extensions": {"code": "NOT_FOUND"},
            }
        ]
    query = "query($name: String!) { applicationByName(name: $name) { id } }"
    for name in (app.name, twin.path_with_namespace, "Nope"):
        result = graphql(client, key, query, {"name": name})
        assert error_messages(result) == [f"No application named {name!r}"], name
        assert result["errors"][0]["extensions"] == {"code": "NOT_FOUND"}
    run = PipelineFactory(project=app)
    hidden = encode_id("Execution", run.pk)
    result = graphql(client, key, f'{{ execution(executionId: "{hidden}") {{ id }} }}')
    assert error_messages(result) == [f"No execution with id {hidden!r}"]
    assert changes == []


def test_rotated_key_stops_working_and_its_executions_stay(client, pipeline_def, deployer_key):
    start(client, deployer_key, pipeline_def)
    old = AccessToken.objects.get()
    owner, groups = old.user, list(old.groups.all())
    old.delete()  # rotation: delete the old key...
    _, new_key = auth.create_token(owner, scopes=["api"], groups=groups)  # ...create a new one

    refused = start(client, deployer_key, pipeline_def)
    assert refused["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED"}
    assert "errors" not in start(client, new_key, pipeline_def)
    assert Execution.objects.count() == 2
    assert Execution.objects.filter(token=None).count() == 1


def test_missing_or_unknown_key_is_refused(client, app_id):
    query = fill(PIPELINE_BY_NAME, APPLICATIONID=app_id)
    missing = graphql(client, None, query)
    assert error_messages(missing) == ["Not authenticated: send an API key in the x-api-key header"]
    unknown = graphql(client, "phk_not-a-key", query)
    assert error_messages(unknown) == ["Invalid API key: it is unknown, revoked or expired"]
    assert unknown["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED"}


# --- Errors --------------------------------------------------------------------------------


def test_malformed_query_is_a_graphql_error(client, deployer_key):
    result = graphql(client, deployer_key, "{ applicationByName(name: ")
    assert result["data"] is None
    assert error_messages(result)[0].startswith("Syntax Error")


def test_unknown_field_is_named(client, deployer_key):
    result = graphql(client, deployer_key, '{ applicationByName(name: "x") { owner } }')
    assert "Cannot query field 'owner' on type 'Application'" in error_messages(result)[0]


def test_body_that_is_not_json_is_a_400_with_a_json_error(client, deployer_key):
    response = post(client, "{not json", deployer_key)
    assert response.status_code == 400
    assert response.json() == {
        "data": None,
        "errors": [{"message": "Unable to parse request body as JSON"}],
    }


def test_mutation_over_get_is_refused(client, deployer_key):
    response = client.get(
        "/api/graphql",
        {"query": "mutation { startExecution(input: {}) { clientMutationId } }"},
        HTTP_X_API_KEY=deployer_key,
    )
    assert response.status_code == 400
    assert "mutations are not allowed" in response.json()["errors"][0]["message"].lower()


@pytest.mark.parametrize(
    ("application_id", "message"),
    [
        ("iIfYmHDqTj6Gsygtwt4VRQ", "applicationId 'iIfYmHDqTj6Gsygtwt4VRQ' is not a valid"),
        (encode_id("Application", 999999), "No application with id"),
        (encode_id("Workflow", 1), "is the id of a workflow, not of a application"),
    ],
)
def test_unknown_or_wrong_application_ids_are_named(
    client, app, deployer_key, application_id, message
):
    result = graphql(client, deployer_key, fill(PIPELINE_BY_NAME, APPLICATIONID=application_id))
    assert message in error_messages(result)[0]


def test_unknown_names_and_entities_are_named(
    client, app, app_id, pipeline_def, workflow_def, deployer_key
):
    missing = graphql(client, deployer_key, '{ applicationByName(name: "Nope") { id } }')
    assert error_messages(missing) == ["No application named 'Nope'"]
    assert missing["errors"][0]["extensions"] == {"code": "NOT_FOUND"}

    query = fill(PIPELINE_BY_NAME, APPLICATIONID=app_id).replace("Guestbook Pipeline", "Nope")
    assert error_messages(graphql(client, deployer_key, query)) == [
        "Application 'Harness Demo' has no pipeline named 'Nope'"
    ]

    wrong_kind = start(client, deployer_key, workflow_def, executionType="PIPELINE")
    assert "is a workflow: use executionType WORKFLOW" in error_messages(wrong_kind)[0]

    gone = start(client, deployer_key, pipeline_def, entityId=encode_id("Pipeline", 999999))
    assert "has no pipeline with id" in error_messages(gone)[0]

    no_execution = graphql(
        client,
        deployer_key,
        fill(PIPELINE_EXECUTION_STATUS, EXECUTIONID=encode_id("Execution", 999999)),
    )
    assert "No execution with id" in error_messages(no_execution)[0]
    assert not Pipeline.objects.exists()


def test_missing_required_variables_are_listed_and_nothing_starts(
    client, workflow_def, deployer_key, changes
):
    result = start(client, deployer_key, workflow_def, [named("Environment", "dev")])
    assert error_messages(result) == [
        "required variables missing: 'Service', 'InfraDefinition_KUBERNETES'"
    ]
    assert result["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT"}
    assert not Pipeline.objects.exists() and changes == []


def test_unknown_and_repeated_variables_are_refused(client, pipeline_def, deployer_key):
    result = start(
        client,
        deployer_key,
        pipeline_def,
        [named("branch", "a"), named("branch", "b"), named("colour", "red")],
    )
    message = error_messages(result)[0]
    assert "variable 'branch' is given more than once" in message
    assert (
        "unknown variable 'colour': 'Guestbook Pipeline' declares 'skipCV', 'hotfix', 'branch'"
        in message
    )
    assert not Pipeline.objects.exists()


def test_variable_values_are_checked_against_their_types(client, app, deployer_key):
    definition = PipelineDefinition.objects.create(
        project=app,
        name="Scale",
        variables=[
            {"name": "replicas", "type": "Number", "required": True},
            {"name": "owner", "type": "Email"},
            {"name": "note", "type": "Text"},
        ],
    )
    result = start(
        client,
        deployer_key,
        definition,
        [named("replicas", "three"), named("owner", "not-mail"), named("note", "x", "ID")],
    )
    assert error_messages(result) == [
        "variable 'replicas' is a Number: 'three' is not a number; "
        "variable 'owner' is an Email: 'not-mail' is not an email address; "
        "variable 'note' is Text: give its value with type NAME, not ID"
    ]
    assert not Pipeline.objects.exists()

    fine = start(
        client, deployer_key, definition, [named("replicas", "3"), named("owner", "a@b.io")]
    )
    assert "errors" not in fine


def test_values_of_the_wrong_graphql_type_are_refused(client, pipeline_def, deployer_key):
    wrong_value = start(
        client,
        deployer_key,
        pipeline_def,
        [{"name": "branch", "variableValue": {"type": "NAME", "value": 5}}],
    )
    assert "String cannot represent a non string value: 5" in error_messages(wrong_value)[0]

    wrong_type = start(client, deployer_key, pipeline_def, [named("branch", "x", "EXPRESSION")])
    assert (
        "Value 'EXPRESSION' does not exist in 'VariableValueType' enum"
        in error_messages(wrong_type)[0]
    )

    wrong_kind = start(client, deployer_key, pipeline_def, executionType="DEPLOY")
    assert "'ExecutionType'" in error_messages(wrong_kind)[0]

    no_input = graphql(client, deployer_key, START_WITH_STATUS, {})
    assert (
        "Expected a value of non-null type 'StartExecutionInput!' to be provided"
        in error_messages(no_input)[0]
    )
    assert not Pipeline.objects.exists()


def test_service_input_without_a_build_number_is_refused(client, pipeline_def, deployer_key):
    result = start(
        client,
        deployer_key,
        pipeline_def,
        serviceInputs=[{"name": "web", "artifactValueInput": {"valueType": "BUILD_NUMBER"}}],
    )
    assert error_messages(result) == [
        "serviceInputs 'web': artifactValueInput.buildNumber is needed"
    ]


def test_unexpected_failures_are_masked_not_500(client, pipeline_def, deployer_key, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("database exploded at /secret/path")

    monkeypatch.setattr(executions, "start_execution", broken)
    result = start(client, deployer_key, pipeline_def)
    assert error_messages(result) == ["Unexpected error."]


def test_limits_out_of_range_are_named(client, app_id, deployer_key):
    query = """query($id: String!) {
        application(applicationId: $id) { pipelines(limit: 0) { nodes { id } } } }"""
    result = graphql(client, deployer_key, query, {"id": app_id})
    assert error_messages(result) == ["limit must be between 1 and 100, not 0"]


# --- Explorer ------------------------------------------------------------------------------


def test_introspection_needs_no_key(client):
    result = graphql(client, None, "{ __schema { queryType { name } mutationType { name } } }")
    assert result == {
        "data": {"__schema": {"queryType": {"name": "Query"}, "mutationType": {"name": "Mutation"}}}
    }


def test_browser_gets_the_graphiql_explorer(client):
    response = client.get("/api/graphql", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert b"graphiql" in response.content.lower()


def test_unscoped_key_of_a_user_without_permissions_can_do_nothing(client, pipeline_def):
    _, key = auth.create_token(UserFactory(), scopes=["api"])
    refused = start(client, key, pipeline_def)
    application_id = encode_id("Application", pipeline_def.project_id)
    assert error_messages(refused) == [f"No application with id {application_id!r}"]
    assert not Pipeline.objects.exists()


def test_unscoped_key_of_a_superuser_may_do_anything(client, pipeline_def):
    _, key = auth.create_token(UserFactory(is_superuser=True), scopes=["api"])
    assert "errors" not in start(client, key, pipeline_def)
    assert Pipeline.objects.count() == 1
