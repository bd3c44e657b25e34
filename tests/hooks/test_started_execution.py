"""A run started through the GraphQL API reaches the project's hooks as a Pipeline Hook."""

import json

from hooks import delivery
from hooks.models import Delivery
from pipelines.api.graphql.ids import definition_id, encode_id
from pipelines.models import PipelineDefinition
from tests.factories import HookFactory, ProjectFactory
from tests.pipelines.test_graphql import START_WITH_STATUS, group_with


def test_started_execution_is_delivered_as_pipeline_hook(client, db, receiver, make_token):
    project = ProjectFactory()
    definition = PipelineDefinition.objects.create(
        project=project,
        name="Deploy",
        variables=[{"name": "branch", "type": "Text", "required": True}],
    )
    HookFactory(project=project, url=receiver.url)
    key = make_token(
        scopes=["api"],
        groups=[group_with("deployers", everywhere=["view_project", "start_execution"])],
    )
    variables = {
        "startExecution": {
            "applicationId": encode_id("Application", project.pk),
            "entityId": definition_id(definition),
            "executionType": "PIPELINE",
            "notes": "release 1.10.1",
            "variableInputs": [
                {"name": "branch", "variableValue": {"type": "NAME", "value": "main"}}
            ],
        }
    }
    response = client.post(
        "/api/graphql",
        data=json.dumps({"query": START_WITH_STATUS, "variables": variables}),
        content_type="application/json",
        HTTP_X_API_KEY=key,
    )
    assert response.status_code == 200 and "errors" not in response.json(), response.content

    attempt = delivery.deliver(Delivery.objects.get().pk)

    assert attempt.response_status == 200
    (request,) = receiver.requests
    assert request.header("X-Gitlab-Event") == "Pipeline Hook"
    payload = json.loads(request.body)
    assert payload["object_kind"] == "pipeline"
    assert payload["object_attributes"]["source"] == "api"
    assert payload["object_attributes"]["status"] == "created"
    assert {"key": "branch", "value": "main"} in payload["object_attributes"]["variables"]
