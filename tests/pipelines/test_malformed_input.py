"""Malformed input on every inbound API: a clear 4xx, never a 500, and nothing written.

Each class of input here once crashed a view (or crashed it on PostgreSQL only): bodies
nested thousands deep, NUL characters (PostgreSQL stores none), lone surrogates (``"\\ud800"``,
which neither database stores as text), numbers JSON cannot hold, non-UTF-8 bytes, bodies
that are not objects, null items in lists, digits ``int()`` refuses or reads oddly, and
durations that run past year 9999.
"""

import base64
import json

import pytest

from hooks.models import Hook
from pipelines.api.dialect import repair_json_slips
from pipelines.api.graphql.ids import encode_id
from pipelines.api.parsing import MAX_JSON_DEPTH, load_json, parse_id
from pipelines.errors import MalformedInput
from pipelines.models import (
    CicdInstance,
    CicdRun,
    DistelliEvent,
    Execution,
    Job,
    Pipeline,
    PipelineDefinition,
    Project,
)
from tests.factories import ProjectFactory, UserFactory

SHA = "a" * 40


@pytest.fixture
def owner(db):
    return UserFactory(username="jdoe")


@pytest.fixture
def key(make_token, owner):
    return make_token(user=owner)


@pytest.fixture
def app(db):
    return ProjectFactory(path="web", namespace="jdoe")


@pytest.fixture
def instance(app):
    return CicdInstance.objects.create(project=app, name="jenkins")


@pytest.fixture
def definition(app):
    return PipelineDefinition.objects.create(project=app, name="deploy")


@pytest.fixture
def build_event(client, app, key):
    response = client.put(
        f"/distelli/jdoe/apps/web/events/buildEvent?apiToken={key}",
        data=json.dumps({"build_status": "Running", "branch": "main"}),
        content_type="application/json",
    )
    assert response.status_code == 200
    return DistelliEvent.objects.get(pk=response.json()["event_id"])


@pytest.fixture
def unchanged(db):
    """Call it once the scene is set; after the test, no pipelines row may have changed."""
    models = (
        Project,
        Pipeline,
        Job,
        CicdInstance,
        CicdRun,
        DistelliEvent,
        Execution,
        PipelineDefinition,
        Hook,
    )

    def snapshot():
        return [list(model.objects.order_by("pk").values()) for model in models]

    holder = {}
    yield lambda: holder.setdefault("before", snapshot())
    assert "before" in holder, "the test never took its snapshot"
    assert snapshot() == holder["before"]


def run_report(instance, **fields) -> dict:
    return {
        "pipeline": "web",
        "job_full_name": "web/main",
        "qualified_name": "web/main",
        "instance_name": "jenkins",
        "instance_guid": str(instance.guid),
        "start_time": 1_700_000_000_000,
        "duration": 60_000,
        "result": "SUCCESS",
        **fields,
    }


def send(client, key, endpoint: str, body, app, instance, definition, build_event):
    """POST/PUT ``body`` (text or bytes) to one JSON endpoint of each dialect."""
    distelli = "/distelli/jdoe/apps/web/events"
    method, path, headers = {
        "gitlab-status": ("post", f"/api/v4/projects/{app.pk}/statuses/{SHA}", {}),
        "gitlab-pipeline": ("post", f"/api/v4/projects/{app.pk}/pipeline", {}),
        "gitlab-definition": (
            "put",
            f"/api/v4/projects/{app.pk}/pipeline_definitions/{definition.pk}",
            {},
        ),
        "sei-run": ("post", "/sei/api/v1/custom-cicd", {}),
        "sei-instance": ("post", "/sei/api/v1/cicd/instances", {}),
        "distelli-build": ("put", f"{distelli}/buildEvent?apiToken={key}", {}),
        "distelli-update": ("post", f"{distelli}/{build_event.pk}?apiToken={key}", {}),
        "gitlab-hooks": ("post", f"/api/v4/projects/{app.pk}/hooks", {}),
        "graphql": ("post", "/api/graphql", {"HTTP_X_API_KEY": key}),
    }[endpoint]
    if not endpoint.startswith(("distelli", "graphql")):
        headers["HTTP_PRIVATE_TOKEN"] = key
    return getattr(client, method)(path, data=body, content_type="application/json", **headers)


def error_text(response) -> str:
    """Whatever the dialect calls its error: GitLab's, SEI's and Distelli's, GraphQL's."""
    body = response.json()
    if "errors" in body:
        return " ".join(error["message"] for error in body["errors"])
    return str(body.get("error") or body.get("message"))


ENDPOINTS = [
    "gitlab-status",
    "gitlab-pipeline",
    "gitlab-definition",
    "sei-run",
    "sei-instance",
    "distelli-build",
    "distelli-update",
    "gitlab-hooks",
    "graphql",
]
BODIES = {
    "nested too deep": ("[" * 100_000 + "]" * 100_000, f"deeper than {MAX_JSON_DEPTH} levels"),
    "NUL in a value": ('{"ref": "main", "note": "a\\u0000b"}', "body at note contains a NUL"),
    "NUL in a key": ('{"x\\u0000": 1}', "contains a NUL character"),
    "NUL deep inside": ('{"a": [{"b": ["\\u0000"]}]}', "body at a[0].b[0] contains a NUL"),
    "lone surrogate in a value": (
        '{"ref": "main", "note": "a\\ud800b"}',
        "body at note contains a lone surrogate (\\ud800)",
    ),
    "lone surrogate in a key": ('{"x\\udc00": 1}', "contains a lone surrogate (\\udc00)"),
    "lone surrogate deep inside": (
        '{"job_run_params": [{"name": "a", "value": "\\udbff"}]}',
        "body at job_run_params[0].value contains a lone surrogate",
    ),
    "number JSON cannot hold": ('{"coverage": 1e999}', "1e999, which is too large"),
    "integer of 5000 digits": ('{"coverage": ' + "9" * 5000 + "}", "not valid JSON"),
}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("problem", BODIES)
def test_json_body_problems_are_refused_with_400_everywhere(
    client, key, app, instance, definition, build_event, unchanged, endpoint, problem
):
    body, says = BODIES[problem]
    unchanged()
    response = send(client, key, endpoint, body, app, instance, definition, build_event)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    if endpoint == "graphql" and problem == "integer of 5000 digits":
        says = "Unable to parse request body as JSON"  # Strawberry's words for any syntax error
    assert says in error_text(response)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_body_that_is_not_utf8_is_refused(
    client, key, app, instance, definition, build_event, unchanged, endpoint
):
    unchanged()
    body = b'{"pipeline": "\xff\xfe"}'
    response = send(client, key, endpoint, body, app, instance, definition, build_event)
    assert response.status_code == 400
    assert "utf-8 text" in error_text(response).lower()


@pytest.mark.parametrize("body", ["null", '"query"', "5", "[]", '[{"query": "{ __typename }"}]'])
def test_graphql_body_that_is_not_an_object_is_a_400(client, key, body):
    response = client.post("/api/graphql", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["data"] is None
    assert "must be a JSON object" in error_text(response)


def test_graphql_nul_in_a_string_literal_or_variable_is_refused(client, key, app, unchanged):
    unchanged()
    literal = client.post(
        "/api/graphql",
        data=json.dumps({"query": '{ applicationByName(name: "web\\u0000") { id } }'}),
        content_type="application/json",
        HTTP_X_API_KEY=key,
    )
    assert literal.status_code == 200
    assert error_text(literal) == "Strings cannot contain the NUL character (\\u0000)"
    variable = client.post(
        "/api/graphql",
        data=json.dumps(
            {
                "query": "query($n: String!) { applicationByName(name: $n) { id } }",
                "variables": {"n": "web\x00"},
            }
        ),
        content_type="application/json",
        HTTP_X_API_KEY=key,
    )
    assert variable.status_code == 400
    assert "body at variables.n contains a NUL" in error_text(variable)
    over_get = client.get(
        "/api/graphql",
        {
            "query": "query($n: String!) { applicationByName(name: $n) { id } }",
            "variables": '{"n": "\\u0000"}',
        },
        HTTP_X_API_KEY=key,
    )
    assert over_get.status_code == 400
    assert "contains a NUL" in error_text(over_get)


@pytest.mark.parametrize(
    "path",
    [
        "/distelli/jdoe/apps/we%00b/events?apiToken={key}",
        "/distelli/jdoe/apps/web/events?apiToken={key}&filter_name=Branch&filter_branch=ma%00in",
        "/distelli/jdoe/apps/web/events?apiToken={key}&marker%00=1",
    ],
)
def test_nul_in_a_dialect_path_or_query_is_a_400(client, key, app, path):
    response = client.get(path.format(key=key))
    assert response.status_code == 400
    assert "contains a NUL character (%00)" in response.json()["message"]


# --- Ids ------------------------------------------------------------------------------------

# Digits str.isdigit() takes and int() refuses (²) or reads as another number (٣, １).
ODD_DIGITS = ["²", "٣", "１", "9" * 5000]


@pytest.mark.parametrize("digits", ODD_DIGITS)
def test_odd_digits_in_gitlab_ids_are_4xx(client, key, app, definition, digits):
    auth = {"HTTP_PRIVATE_TOKEN": key}
    project = client.get(f"/api/v4/projects/{digits}", **auth)
    assert project.status_code == 404
    pipeline = client.get(f"/api/v4/projects/{app.pk}/pipelines/{digits}", **auth)
    assert pipeline.status_code in (400, 404)
    if digits != "9" * 5000:
        assert pipeline.json() == {"error": "pipeline_id is invalid"}
    found = client.get(f"/api/v4/projects/{app.pk}/pipeline_definitions/{digits}", **auth)
    assert found.status_code == 400
    assert found.json() == {"error": "definition_id is invalid"}


@pytest.mark.parametrize("digits", ODD_DIGITS)
def test_odd_digits_in_distelli_ids_are_4xx(client, key, app, build_event, unchanged, digits):
    unchanged()
    events = f"/distelli/jdoe/apps/web/events?apiToken={key}"
    update = client.post(
        f"/distelli/jdoe/apps/web/events/{digits}?apiToken={key}",
        data="{}",
        content_type="application/json",
    )
    assert update.status_code == 404
    marker = client.get(f"{events}&marker={digits}")
    assert marker.status_code == 400
    assert "is not a marker this API returned" in marker.json()["message"]
    max_results = client.get(f"{events}&max_results={digits}")
    assert max_results.status_code == 400
    assert "is not a positive integer" in max_results.json()["message"]
    build = client.put(
        f"/distelli/jdoe/apps/web/events/buildEvent?apiToken={key}",
        data=json.dumps({"parent_event_id": digits}),
        content_type="application/json",
    )
    assert build.status_code == 400
    assert "parent_event_id: must be an event id returned by this API" in build.json()["message"]


@pytest.mark.parametrize("digits", ODD_DIGITS)
def test_odd_digits_as_sei_integration_id_are_400(client, key, app, unchanged, digits):
    unchanged()
    response = client.post(
        "/sei/api/v1/cicd/instances",
        data=json.dumps({"integration_id": digits, "name": "jenkins"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"ApiKey {key}",
    )
    assert response.status_code == 400
    assert "integration_id: must be a project id (an integer)" in response.json()["message"]


def query_application(client, key, application_id: str) -> dict:
    response = client.post(
        "/api/graphql",
        data=json.dumps(
            {
                "query": "query($id: String!) { application(applicationId: $id) { name } }",
                "variables": {"id": application_id},
            }
        ),
        content_type="application/json",
        HTTP_X_API_KEY=key,
    )
    assert response.status_code == 200
    return response.json()


@pytest.mark.parametrize("digits", ODD_DIGITS)
def test_odd_digits_in_graphql_ids_are_refused_not_masked(client, key, app, digits):
    raw = base64.urlsafe_b64encode(f"Application:{digits}".encode()).decode().rstrip("=")
    result = query_application(client, key, raw)
    assert [error["message"] for error in result["errors"]] == [
        f"applicationId {raw!r} is not a valid application id"
    ]


def test_a_real_graphql_id_still_resolves(client, key, app):
    result = query_application(client, key, encode_id("Application", app.pk))
    assert result == {"data": {"application": {"name": app.name}}}


# --- Numbers past what the columns and the calendar hold --------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"job_run": {"stages": [{"displayName": "build", "durationInMillis": 2**63}]}},
            "job_run.stages[0].durationInMillis: 9223372036854775808 milliseconds from",
        ),
        (
            {
                "job_run": {
                    "stages": [
                        {
                            "displayName": "build",
                            "steps": [{"displayName": "compile", "durationInMillis": 10**17}],
                        }
                    ]
                }
            },
            "job_run.stages[0].steps[0].durationInMillis: 100000000000000000 milliseconds",
        ),
        ({"duration": 10**17}, "duration: 100000000000000000 milliseconds from 2023-11-14"),
        ({"build_number": 2**63}, "build_number: Ensure this value is less than or equal to"),
    ],
)
def test_sei_numbers_past_year_9999_or_a_bigint_are_400(
    client, key, instance, unchanged, fields, message
):
    unchanged()
    response = client.post(
        "/sei/api/v1/custom-cicd",
        data=json.dumps(run_report(instance, **fields)),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"ApiKey {key}",
    )
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert "past year 9999" in response.json()["message"] or "build_number" in message


def test_sei_instance_with_a_taken_guid_is_409(client, key, app, instance, unchanged):
    unchanged()
    response = client.post(
        "/sei/api/v1/cicd/instances",
        data=json.dumps({"integration_id": app.pk, "name": "again", "id": str(instance.guid)}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"ApiKey {key}",
    )
    assert response.status_code == 409
    assert response.json() == {"message": f"an instance with id {instance.guid} already exists"}


# --- The shared parsing rules -----------------------------------------------------------------


def test_parse_id_takes_only_ascii_digits_that_fit_a_database_id():
    assert parse_id("42") == 42
    assert parse_id(str(2**63 - 1)) == 2**63 - 1
    for text in ["²", "٣", "１", "-1", "1_000", " 1", "1e3", "", str(2**63), "9" * 5000]:
        assert parse_id(text) is None, text
    assert parse_id(7) is None  # text only: bodies pass their integers through validation


def test_load_json_mends_only_what_is_invalid_and_still_checks_the_mended_body():
    assert load_json('{"a": [1,]}', mend=repair_json_slips) == {"a": [1]}
    with pytest.raises(MalformedInput, match="not valid JSON"):
        load_json('{"a": [1,]}')
    with pytest.raises(MalformedInput, match="body at a contains a NUL"):
        load_json('{"a": "\\u0000",}', mend=repair_json_slips)
    deepest = load_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)
    for _ in range(MAX_JSON_DEPTH - 1):
        deepest = deepest[0]
    assert deepest == []
    with pytest.raises(MalformedInput, match=f"deeper than {MAX_JSON_DEPTH} levels"):
        load_json("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    with pytest.raises(MalformedInput, match="NaN is not a JSON value"):
        load_json('{"a": NaN}')


@pytest.mark.parametrize(
    ("method", "tail"),
    [
        ("post", "/statuses/" + SHA),
        ("post", "/pipeline"),
        ("post", "/pipelines/1/cancel"),
        ("get", "/pipelines"),
        ("delete", "/pipeline_definitions/1"),
        # The hooks API reads the id with the same converter.
        ("post", "/hooks"),
        ("put", "/hooks/1/custom_headers/X-Env"),
    ],
)
def test_project_id_with_a_line_break_is_404_not_405(client, key, app, method, tail):
    response = getattr(client, method)(
        f"/api/v4/projects/we%0Ab{tail}", HTTP_PRIVATE_TOKEN=key, content_type="application/json"
    )
    assert response.status_code == 404
    assert response.json() == {"message": "404 Project Not Found"}


# --- Lone surrogates and bytes that are not UTF-8, wherever text arrives -----------------------

NOT_UTF8 = "is not UTF-8 text once its %-escapes are decoded"


@pytest.mark.parametrize(
    ("method", "path", "says"),
    [
        ("get", "/api/v4/projects?search=%ED%A0%80", "the query string"),
        ("get", "/api/v4/projects/{app}/pipelines?ref=ma%FFin", "the query string"),
        ("get", "/api/v4/projects/{app}/hooks?page=%C0%AF", "the query string"),
        ("post", "/api/v4/projects/{app}/statuses/" + SHA + "?name=%ED%A0%80", "the query string"),
        ("get", "/distelli/jdoe/apps/web/events?filter_branch=%ED%B0%80", "the query string"),
        ("post", "/sei/api/v1/custom-cicd?x=%ED%A0%80", "the query string"),
        ("get", "/api/graphql?query=%7B%20__typename%20%7D&x=%ED%A0%80", "the query string"),
    ],
)
def test_a_query_string_that_is_not_utf8_is_a_400_everywhere(
    client, key, app, instance, unchanged, method, path, says
):
    """``%ED%A0%80`` is a lone surrogate in UTF-8's form; Django would read it as U+FFFD."""
    unchanged()
    separator = "&" if "?" in path else "?"
    url = f"{path.format(app=app.pk)}{separator}apiToken={key}"
    body = {"data": "{}", "content_type": "application/json"} if method == "post" else {}
    response = getattr(client, method)(url, HTTP_PRIVATE_TOKEN=key, **body)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert f"{says} {NOT_UTF8}" in error_text(response)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v4/projects/{app}/statuses/" + SHA, "state=running&name=%ED%A0%80"),
        ("/api/v4/projects/{app}/statuses/" + SHA, "state=running&ref=%FF"),
        ("/api/v4/projects/{app}/hooks", "url=http%3A%2F%2F127.0.0.1%2F&name=%ED%A0%80"),
        ("/api/v4/projects", "name=we%C3b"),
    ],
)
def test_a_form_body_that_is_not_utf8_is_a_400(client, key, app, unchanged, path, body):
    unchanged()
    response = client.post(
        path.format(app=app.pk),
        data=body,
        content_type="application/x-www-form-urlencoded",
        HTTP_PRIVATE_TOKEN=key,
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": f"400 Bad request - the form body {NOT_UTF8} (a lone surrogate, such as"
        " %ED%A0%80, is not text)"
    }


def test_utf8_in_a_query_string_and_a_form_body_is_still_taken(client, key, app):
    response = client.post(
        f"/api/v4/projects/{app.pk}/statuses/{SHA}?stage=%C3%A9tape",
        data="state=running&name=caf%C3%A9&ref=main",
        content_type="application/x-www-form-urlencoded",
        HTTP_PRIVATE_TOKEN=key,
    )
    assert response.status_code == 201, response.content
    assert Job.objects.get().name == "café"
    assert Job.objects.get().stage == "étape"


def graphql(client, key, payload: str):
    return client.post(
        "/api/graphql", data=payload, content_type="application/json", HTTP_X_API_KEY=key
    )


def test_graphql_lone_surrogates_in_variables_and_literals_are_refused(client, key, app):
    by_name = "query($n: String!) { applicationByName(name: $n) { id } }"
    variable = graphql(client, key, json.dumps({"query": by_name, "variables": {"n": "\ud800"}}))
    assert variable.status_code == 400
    assert "body at variables.n contains a lone surrogate (\\ud800)" in error_text(variable)
    # In the query's text, as a character (JSON's escape) or as GraphQL's own escape.
    literal = '{ applicationByName(name: "web\ud800") { id } }'
    as_character = graphql(client, key, json.dumps({"query": literal}))
    assert as_character.status_code == 400
    assert "body at query contains a lone surrogate" in error_text(as_character)
    escaped = '{ applicationByName(name: "web\\\\ud800") { id } }'
    as_escape = graphql(client, key, '{"query": "' + escaped.replace('"', '\\"') + '"}')
    assert as_escape.status_code == 200
    assert as_escape.json()["data"] is None
    assert "Invalid Unicode escape sequence" in error_text(as_escape)


# --- Null items and values of the wrong type, in every dialect ---------------------------------


def sei_run(client, key, instance, **fields):
    return client.post(
        "/sei/api/v1/custom-cicd",
        data=json.dumps(run_report(instance, **fields)),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"ApiKey {key}",
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"job_run": {"stages": [None]}}, "job_run.stages[0]: This field may not be null."),
        (
            {"job_run": {"stages": [{"displayName": "build", "steps": [None]}]}},
            "job_run.stages[0].steps[0]: This field may not be null.",
        ),
        ({"job_run_params": [None]}, "job_run_params[0]: This field may not be null."),
        ({"scm_commit_ids": [None]}, "scm_commit_ids[0]: This field may not be null."),
        ({"themes": ["a", None]}, "themes[1]: This field may not be null."),
        ({"artifacts": [None]}, "artifacts[0]: This field may not be null."),
        ({"trigger_chain": [None]}, "trigger_chain[0]: This field may not be null."),
        # Objects and lists where text, lists or numbers belong.
        ({"pipeline": {"name": "web"}}, "pipeline: must be a string"),
        ({"job_run": {"stages": [{"displayName": ["a"]}]}}, "displayName: must be a string"),
        ({"job_run": {"stages": "build"}}, "job_run.stages: Expected a list of items but got"),
        ({"job_run": {"stages": [[]]}}, "job_run.stages[0]: Invalid data. Expected a dict"),
        ({"job_run_params": [{"name": "a", "value": {"b": 1}}]}, "must be a string, number"),
        ({"duration": "soon"}, "duration: A valid integer is required."),
        ({"start_time": [1]}, "start_time: A valid integer is required."),
        ({"scm_commit_ids": "abc"}, 'scm_commit_ids: Expected a list of items but got type "str"'),
    ],
)
def test_sei_null_items_and_wrong_types_are_400(client, key, instance, unchanged, fields, message):
    unchanged()
    response = sei_run(client, key, instance, **fields)
    assert response.status_code == 400
    assert message in response.json()["message"]


@pytest.mark.parametrize(
    ("method", "path", "body", "answer"),
    [
        (
            "post",
            "/api/v4/projects/{app}/pipeline",
            {"ref": "main", "sha": SHA, "variables": [None]},
            {"error": "variables[0] is missing"},
        ),
        (
            "post",
            "/api/v4/projects/{app}/pipeline",
            {"ref": {"name": "main"}, "sha": SHA},
            {"error": "ref is invalid"},
        ),
        (
            "post",
            "/api/v4/projects/{app}/statuses/" + SHA,
            {"state": ["running"]},
            {"error": "state does not have a valid value (one of: pending, running, success,"},
        ),
        (
            "post",
            "/api/v4/projects/{app}/pipeline_definitions",
            {"name": "d", "variables": [None]},
            {"error": "variables[0] is missing"},
        ),
        (
            "post",
            "/api/v4/projects/{app}/pipeline_definitions",
            {"name": ["d"]},
            {"error": "name is invalid"},
        ),
        (
            "post",
            "/api/v4/projects/{app}/hooks",
            {"url": "http://127.0.0.1:9/x", "custom_headers": [None]},
            {"error": "custom_headers[0] is missing"},
        ),
        (
            "post",
            "/api/v4/projects/{app}/hooks",
            {"url": {"href": "http://127.0.0.1:9/x"}},
            {"error": "url is invalid"},
        ),
        (
            "post",
            "/api/v4/projects/{app}/hooks",
            {"url": "http://127.0.0.1:9/x", "status_filter": ["failed", None]},
            {"error": "status_filter is invalid"},
        ),
        (
            "put",
            "/distelli/jdoe/apps/web/events/buildEvent?apiToken={key}",
            {"branch": {"name": "main"}},
            {"message": "branch: must be a string"},
        ),
        (
            "put",
            "/distelli/jdoe/apps/web/events/buildEvent?apiToken={key}",
            {"build_start": ["2016-08-15T22:22:22.111Z"]},
            {"message": "build_start: Datetime has wrong format."},
        ),
        (
            "put",
            "/distelli/jdoe/apps/web/events/pushEvent?apiToken={key}",
            {"commit_msg": None, "author_name": 5},
            {"message": "author_name: must be a string"},
        ),
    ],
)
def test_null_items_and_wrong_types_are_4xx_in_the_other_dialects(
    client, key, app, unchanged, method, path, body, answer
):
    unchanged()
    response = getattr(client, method)(
        path.format(app=app.pk, key=key),
        data=json.dumps(body),
        content_type="application/json",
        HTTP_PRIVATE_TOKEN=key,
    )
    assert response.status_code == 400
    [(field, text)] = answer.items()
    assert response.json()[field].startswith(text)


def test_graphql_variables_of_the_wrong_type_or_null_items_are_refused(
    client, key, app, definition, unchanged
):
    unchanged()
    start = (
        "mutation($input: StartExecutionInput!) { startExecution(input: $input) {"
        " execution { id } } }"
    )
    base = {
        "applicationId": encode_id("Application", app.pk),
        "entityId": encode_id("Pipeline", definition.pk),
        "executionType": "PIPELINE",
    }
    for variables, says in [
        (
            {"input": {**base, "variableInputs": [None]}},
            "of non-null type 'VariableInput!' not to be None",
        ),
        ({"input": {**base, "notes": {"text": "hi"}}}, "String cannot represent a non string"),
        ({"input": {**base, "applicationId": ["x"]}}, "String cannot represent a non string"),
    ]:
        response = graphql(client, key, json.dumps({"query": start, "variables": variables}))
        assert response.status_code == 200
        assert response.json()["data"] is None
        assert says in error_text(response)
