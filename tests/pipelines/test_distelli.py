"""Puppet Pipelines (Distelli) events dialect: the seed page's requests, sent as its curls show."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from hooks.models import Delivery
from pipelines.models import DistelliEvent, Job, Pipeline
from pipelines.signals import pipeline_changed
from tests.factories import HookFactory, ProjectFactory, UserFactory

# The seed's curl bodies, verbatim: the push and pull request examples wrap their long line
# in the middle of two strings ("http" / "s://..." and "re" / "po_provider").
SEED_BUILD_EVENT = (
    '{"build_status":"Running", "build_start":"2016-08-15T22:22:22.111Z", "auto_build":true,'
    ' "build_id":"J23465", "build_provider":"jenkins", "build_url":"http://jenkins.example.com",'
    ' "repo_url":"https://github.example.com/jdoe/example-node", "commit_url":"https://github.'
    'example.com/jdoe/example-node/commits/1234567890123456789012345678901234567890",'
    ' "repo_owner":"jdoe", "repo_name":"example-node", "repo_provider":"github",'
    ' "author_username":"jdoe", "author_name":"John Doe", "commit_msg":"Just a Test",'
    ' "commit_id":"1234567890123456789012345678901234567890", "branch":"master"}'
)
SEED_REPO_EVENT = """{"repo_url":"http
s://github.example.com/jdoe/example-node", "commit_url":"https://github.example.com/jdoe/example-node/commits/1234567890123456789012345678901234567890", "repo_owner":"jdoe", "repo_name":"example-node", "re
po_provider":"github", "author_username":"jdoe", "author_name":"John Doe", "commit_msg":"Just a Test", "commit_id":"1234567890123456789012345678901234567890", "branch":"master"}"""  # noqa: E501
SEED_UPDATE = (
    '{"build_status":"Success","build_end":"2016-08-17T22:22:22.111Z","release_version":"v123"}'  # noqa: E501
)
SHA = "1234567890123456789012345678901234567890"

BUILD_KEYS = [
    "app_name",
    "event_id",
    "event_time",
    "event_type",
    "author_name",
    "author_username",
    "auto_build",
    "branch",
    "build_end",
    "build_id",
    "build_provider",
    "build_start",
    "build_status",
    "build_url",
    "commit_id",
    "commit_msg",
    "commit_url",
    "parent_event_id",
    "release_version",
    "repo_name",
    "repo_owner",
    "repo_provider",
    "repo_url",
]
PUSH_KEYS = [
    "app_name",
    "event_id",
    "event_time",
    "event_type",
    "author_name",
    "author_username",
    "branch",
    "commit_id",
    "commit_msg",
    "commit_url",
    "repo_name",
    "repo_owner",
    "repo_provider",
    "repo_url",
]


@pytest.fixture
def jdoe(db):
    return UserFactory(username="jdoe")


@pytest.fixture
def app(db):
    return ProjectFactory(path="example-node", namespace="jdoe", default_branch="main")


@pytest.fixture
def key(make_token, jdoe):
    return make_token(user=jdoe)


@pytest.fixture
def changes():
    seen = []

    def listen(sender, pipeline, previous_status, change, **kwargs):
        seen.append((previous_status, pipeline.status, str(change)))

    pipeline_changed.connect(listen)
    yield seen
    pipeline_changed.disconnect(listen)


def url(key, tail="", app_name="example-node", username="jdoe", **query):
    params = "&".join(f"{k}={v}" for k, v in {"apiToken": key, **query}.items() if v is not None)
    return f"/distelli/{username}/apps/{app_name}/events{tail}?{params}"


def put(client, kind, body, key, **kwargs):
    text = body if isinstance(body, str) else json.dumps(body)
    return client.put(url(key, f"/{kind}", **kwargs), data=text, content_type="application/json")


def update(client, event_id, body, key, **kwargs):
    text = body if isinstance(body, str) else json.dumps(body)
    return client.post(
        url(key, f"/{event_id}", **kwargs), data=text, content_type="application/json"
    )


def listing(client, key, **query):
    response = client.get(url(key, **query))
    assert response.status_code == 200, response.json()
    return response.json()


def row_counts():
    return Pipeline.objects.count(), Job.objects.count(), DistelliEvent.objects.count()


def utc(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


# --- The seed's requests ----------------------------------------------------------------------


def test_seed_build_event_curl_creates_running_pipeline(client, app, key, jdoe, changes):
    response = put(client, "buildEvent", SEED_BUILD_EVENT, key)

    assert response.status_code == 200, response.json()
    event = DistelliEvent.objects.get()
    assert response.json() == {"event_id": str(event.pk)}
    assert (event.event_type, event.build_status, event.build_id) == ("BUILD", "Running", "J23465")
    pipeline = event.pipeline
    assert (pipeline.project, pipeline.ref, pipeline.sha, pipeline.status) == (
        app,
        "master",
        SHA,
        "running",
    )
    assert (pipeline.source, pipeline.user, pipeline.name) == ("external", jdoe, "Build J23465")
    assert (pipeline.commit_title, pipeline.commit_author_name) == ("Just a Test", "John Doe")
    assert pipeline.started_at == utc("2016-08-15T22:22:22.111Z")
    job = pipeline.jobs.get()
    assert (job.name, job.status, job.target_url) == (
        "build",
        "running",
        "http://jenkins.example.com",
    )
    assert changes == [(None, "created", "created"), ("created", "running", "status_changed")]


@pytest.mark.parametrize(
    ("kind", "event_type"), [("pushEvent", "PUSH"), ("pullRequestEvent", "PULL_REQUEST")]
)
def test_seed_repo_event_curls_with_wrapped_lines_are_recorded(client, app, key, kind, event_type):
    response = put(client, kind, SEED_REPO_EVENT, key)

    assert response.status_code == 200, response.json()
    event = DistelliEvent.objects.get()
    assert response.json() == {"event_id": str(event.pk)}
    assert event.event_type == event_type
    assert event.repo_url == "https://github.example.com/jdoe/example-node"
    assert event.repo_provider == "github"
    assert (event.commit_id, event.branch, event.pipeline) == (SHA, "master", None)
    assert Pipeline.objects.count() == 0


def test_seed_update_curl_finishes_build(client, app, key, changes):
    event_id = put(client, "buildEvent", SEED_BUILD_EVENT, key).json()["event_id"]
    response = update(client, event_id, SEED_UPDATE, key)

    assert response.status_code == 200, response.json()
    event = DistelliEvent.objects.get()
    assert response.json() == {
        "event": {
            "app_name": "example-node",
            "event_id": int(event_id),
            "event_time": event.created_at.strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{event.created_at.microsecond // 1000:03d}Z",
            "event_type": "BUILD",
            "author_name": "John Doe",
            "author_username": "jdoe",
            "auto_build": True,
            "branch": "master",
            "build_end": "2016-08-17T22:22:22.111Z",
            "build_id": "J23465",
            "build_provider": "jenkins",
            "build_start": "2016-08-15T22:22:22.111Z",
            "build_status": "Success",
            "build_url": "http://jenkins.example.com",
            "commit_id": SHA,
            "commit_msg": "Just a Test",
            "commit_url": f"https://github.example.com/jdoe/example-node/commits/{SHA}",
            "parent_event_id": None,
            "release_version": "v123",
            "repo_name": "example-node",
            "repo_owner": "jdoe",
            "repo_provider": "github",
            "repo_url": "https://github.example.com/jdoe/example-node",
        }
    }
    pipeline = event.pipeline
    assert pipeline.status == "success"
    assert pipeline.finished_at == utc("2016-08-17T22:22:22.111Z")
    assert pipeline.duration == int(timedelta(days=2).total_seconds())
    assert pipeline.jobs.get().status == "success"
    assert changes[-1] == ("running", "success", "finished")


def test_seed_list_curl_lists_newest_builds(client, key, jdoe):
    ProjectFactory(path="gobuilddeploy", namespace="jdoe")
    ids = [
        put(client, "buildEvent", {"branch": "master"}, key, app_name="gobuilddeploy").json()
        for _ in range(3)
    ]
    put(client, "pushEvent", {"branch": "master"}, key, app_name="gobuilddeploy")
    body = listing(
        client,
        key,
        app_name="gobuilddeploy",
        max_results=2,
        order="desc",
        filter_name="EventType",
        filter_event_type="build",
    )
    assert body["app_name"] == "gobuilddeploy"
    assert [e["event_id"] for e in body["events"]] == [
        int(ids[2]["event_id"]),
        int(ids[1]["event_id"]),
    ]
    assert all(list(e) == BUILD_KEYS for e in body["events"])
    assert body["marker"] == ids[1]["event_id"]


# --- Build statuses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build_status", "status", "failure_reason"),
    [
        ("Waiting", "created", None),
        ("Queued", "pending", None),
        ("Running", "running", None),
        ("Success", "success", None),
        ("Failed", "failed", "script_failure"),
        ("TimedOut", "failed", "job_execution_timeout"),
        ("Cancelled", "canceled", None),
    ],
)
def test_build_statuses_map_to_gitlab(client, app, key, build_status, status, failure_reason):
    response = put(client, "buildEvent", {"build_status": build_status}, key)
    assert response.status_code == 200, response.json()
    pipeline = Pipeline.objects.get()
    assert pipeline.status == status
    job = pipeline.jobs.get()
    assert (job.status, job.failure_reason) == (status, failure_reason)


def test_build_without_status_is_waiting(client, app, key):
    put(client, "buildEvent", {}, key)
    event = DistelliEvent.objects.get()
    assert event.build_status == "Waiting"
    assert (event.pipeline.status, event.pipeline.ref, event.pipeline.sha) == (
        "created",
        "main",
        "0" * 40,
    )


def test_terminal_status_without_build_end_ends_now(client, app, key):
    before = datetime.now(UTC)
    put(client, "buildEvent", {"build_status": "Failed"}, key)
    event = DistelliEvent.objects.get()
    assert event.build_end >= before
    assert event.pipeline.finished_at == event.build_end


def test_build_moves_through_updates_and_signals_each_change(client, app, key, changes):
    event_id = put(client, "buildEvent", {"build_status": "Waiting"}, key).json()["event_id"]
    for status in ("Queued", "Queued", "Running", "TimedOut"):
        assert update(client, event_id, {"build_status": status}, key).status_code == 200
    assert changes == [
        (None, "created", "created"),
        ("created", "pending", "status_changed"),
        ("pending", "running", "status_changed"),
        ("running", "failed", "finished"),
    ]
    job = Job.objects.get()
    assert (job.status, job.failure_reason) == ("failed", "job_execution_timeout")


def test_build_status_spelling_is_forgiven_in_case_only(client, app, key):
    put(client, "buildEvent", {"build_status": "canceled"}, key)
    assert DistelliEvent.objects.get().build_status == "Cancelled"
    response = put(client, "buildEvent", {"build_status": "Done"}, key)
    assert response.status_code == 400
    assert response.json() == {
        "message": "build_status 'Done' is not one of Waiting, Queued, Running, Success, Failed,"
        " TimedOut, Cancelled"
    }


@pytest.mark.parametrize("terminal", ["Success", "Failed", "TimedOut", "Cancelled"])
def test_terminal_event_is_immutable(client, app, key, changes, terminal):
    event_id = put(client, "buildEvent", {"build_status": terminal}, key).json()["event_id"]
    before = DistelliEvent.objects.values().get()
    pipeline_before = Pipeline.objects.values().get()
    signals_before = len(changes)

    for body in ({"build_status": "Running"}, {"release_version": "v2"}, {}):
        response = update(client, event_id, body, key)
        assert response.status_code == 409
        assert response.json() == {
            "message": f"event {event_id} is {terminal}, a terminal status: it is an immutable"
            " historical object and cannot be updated"
        }
    assert DistelliEvent.objects.values().get() == before
    assert Pipeline.objects.values().get() == pipeline_before
    assert len(changes) == signals_before


# --- Parents ----------------------------------------------------------------------------------


def test_build_links_push_parent_and_takes_its_commit(client, app, key):
    push = put(client, "pushEvent", SEED_REPO_EVENT, key).json()["event_id"]
    build = put(client, "buildEvent", {"parent_event_id": push, "build_status": "Running"}, key)
    assert build.status_code == 200, build.json()
    event = DistelliEvent.objects.get(pk=build.json()["event_id"])
    assert event.parent_id == int(push)
    assert (event.pipeline.source, event.pipeline.sha, event.pipeline.ref) == (
        "push",
        SHA,
        "master",
    )
    listed = listing(client, key, filter_name="EventType", filter_event_type="Build")["events"]
    assert listed[0]["parent_event_id"] == push


def test_build_links_pull_request_parent(client, app, key):
    pull_request = put(client, "pullRequestEvent", {"branch": "feature"}, key).json()["event_id"]
    put(client, "buildEvent", {"parent_event_id": int(pull_request)}, key)
    pipeline = Pipeline.objects.get()
    assert (pipeline.source, pipeline.ref) == ("external_pull_request_event", "feature")


def test_parent_must_be_push_or_pull_request_of_the_app(client, app, key, jdoe):
    build = put(client, "buildEvent", {}, key).json()["event_id"]
    ProjectFactory(path="other", namespace="jdoe")
    foreign = put(client, "pushEvent", {}, key, app_name="other").json()["event_id"]
    counts = row_counts()
    for parent in (build, foreign, "999999"):
        response = put(client, "buildEvent", {"parent_event_id": parent}, key)
        assert response.status_code == 400
        assert response.json() == {
            "message": f"parent_event_id {parent} is not a push or pull request event of app"
            " 'example-node'"
        }
    assert row_counts() == counts


# --- Refusals change nothing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"auto_build": "true"}, "auto_build: must be true or false"),
        ({"build_start": "yesterday"}, "build_start: Datetime has wrong format"),
        ({"commit_id": 1234}, "commit_id: must be a string"),
        ({"branch": ["master"]}, "branch: must be a string"),
        ({"parent_event_id": "abc"}, "parent_event_id: must be an event id returned by this API"),
        ({"parent_event_id": True}, "parent_event_id: must be an event id returned by this API"),
        (
            {"build_start": "2016-08-15T22:22:22Z", "build_end": "2016-08-15T22:00:00Z"},
            "build_end is before build_start",
        ),
        ([], "the body must be a JSON object"),
    ],
)
def test_bad_build_event_is_refused(client, app, key, body, message):
    response = put(client, "buildEvent", body, key)
    assert response.status_code == 400
    assert response.json()["message"].startswith(message)
    assert row_counts() == (0, 0, 0)


def test_unknown_app_is_404(client, app, key):
    response = put(client, "buildEvent", SEED_BUILD_EVENT, key, app_name="nope")
    assert response.status_code == 404
    assert response.json() == {
        "message": "app 'nope' not found: app_name is the path of a project"
        " (example-node for acme/example-node)"
    }
    assert client.get(url(key, app_name="nope")).status_code == 404
    assert row_counts() == (0, 0, 0)


def test_username_must_be_the_token_owner(client, app, key):
    response = put(client, "buildEvent", SEED_BUILD_EVENT, key, username="someone")
    assert response.status_code == 403
    assert response.json() == {
        "message": "this apiToken belongs to user 'jdoe', not 'someone': use /jdoe/apps/..."
    }
    assert row_counts() == (0, 0, 0)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (None, "an access token is needed: add ?apiToken=<token> to the URL"),
        ("abcdefghijklmnopqrstuvwxyz0123456789z", "the access token is not valid"),
    ],
)
def test_missing_or_bad_api_token_is_401(client, app, token, message):
    response = put(client, "buildEvent", SEED_BUILD_EVENT, token)
    assert response.status_code == 401
    assert response.json()["message"].startswith(message)
    assert client.get(url(token)).status_code == 401
    assert row_counts() == (0, 0, 0)


def test_read_only_token_lists_but_cannot_write(client, app, make_token, jdoe):
    read_only = make_token(user=jdoe, scopes=["read_api"])
    assert put(client, "buildEvent", {}, read_only).status_code == 403
    assert listing(client, read_only)["events"] == []
    assert row_counts() == (0, 0, 0)


def test_unknown_event_kind_and_methods(client, app, key):
    response = put(client, "deployEvent", {}, key)
    assert response.status_code == 404
    assert "use buildEvent, pushEvent or pullRequestEvent" in response.json()["message"]
    assert client.delete(url(key, "/1")).status_code == 405
    assert row_counts() == (0, 0, 0)


def test_update_refusals(client, app, key):
    push = put(client, "pushEvent", {}, key).json()["event_id"]
    build = put(client, "buildEvent", {"build_status": "Running"}, key).json()["event_id"]
    counts = row_counts()
    before = list(DistelliEvent.objects.values())

    missing = update(client, 999999, {"build_status": "Success"}, key)
    assert (missing.status_code, missing.json()) == (
        404,
        {"message": "event 999999 not found in app 'example-node'"},
    )
    assert update(client, "abc", {}, key).status_code == 404
    not_build = update(client, push, {"build_status": "Success"}, key)
    assert (not_build.status_code, not_build.json()) == (
        400,
        {"message": f"event {push} is a PUSH event: only build events are updated"},
    )
    bad_status = update(client, build, {"build_status": "Finished"}, key)
    assert bad_status.status_code == 400
    bad_end = update(client, build, {"build_end": "soon"}, key)
    assert bad_end.json()["message"].startswith("build_end: Datetime has wrong format")
    ProjectFactory(path="other", namespace="jdoe")
    other_app = update(client, build, {"build_status": "Success"}, key, app_name="other")
    assert other_app.status_code == 404
    assert row_counts() == counts
    assert list(DistelliEvent.objects.values()) == before
    assert Pipeline.objects.get().status == "running"


def test_app_path_shared_across_namespaces_prefers_the_users_own(client, app, key):
    ProjectFactory(path="example-node", namespace="someone-else")
    put(client, "buildEvent", {}, key)
    assert Pipeline.objects.get().project == app


# --- Listing ----------------------------------------------------------------------------------


@pytest.fixture
def mixed_events(client, app, key):
    """Eleven events, oldest first: builds, pushes and pull requests on two branches."""
    made = []
    plan = [
        ("pushEvent", "master"),
        ("buildEvent", "master"),
        ("pullRequestEvent", "feature"),
        ("buildEvent", "feature"),
        ("pushEvent", "feature"),
        ("buildEvent", "master"),
        ("pushEvent", "master"),
        ("buildEvent", "master"),
        ("pullRequestEvent", "master"),
        ("buildEvent", "feature"),
        ("pushEvent", "master"),
    ]
    for kind, branch in plan:
        event_id = put(client, kind, {"branch": branch}, key).json()["event_id"]
        made.append((int(event_id), kind, branch))
    return made


def all_pages(client, key, **query):
    ids, pages, marker = [], 0, None
    while True:
        body = listing(client, key, marker=marker, **query)
        ids += [e["event_id"] for e in body["events"]]
        pages += 1
        marker = body.get("marker")
        if marker is None:
            return ids, pages
        assert pages < 50, "the marker does not move on"


def test_list_defaults_to_ten_newest(client, key, mixed_events):
    body = listing(client, key)
    assert [e["event_id"] for e in body["events"]] == [i for i, _, _ in mixed_events][::-1][:10]
    assert body["marker"] == str(mixed_events[1][0])


@pytest.mark.parametrize("order", ["desc", "asc", "ASC"])
def test_pagination_walks_every_event_once_in_order(client, key, mixed_events, order):
    ids, pages = all_pages(client, key, max_results=3, order=order)
    expected = [i for i, _, _ in mixed_events]
    assert ids == (expected if order.lower() == "asc" else expected[::-1])
    assert pages == 4


def test_list_shows_each_event_type_in_its_documented_shape(client, key, mixed_events):
    events = listing(client, key, max_results=100)["events"]
    shapes = {e["event_type"]: list(e) for e in events}
    assert shapes == {"BUILD": BUILD_KEYS, "PUSH": PUSH_KEYS, "PULL_REQUEST": PUSH_KEYS}
    build = next(e for e in events if e["event_type"] == "BUILD")
    assert build["build_status"] == "Waiting"
    assert build["auto_build"] is None
    assert build["event_time"].endswith("Z") and len(build["event_time"]) == 24


def _expected(mixed_events, kinds=None, branch=None):
    return [
        i
        for i, kind, b in reversed(mixed_events)
        if (kinds is None or kind in kinds) and (branch is None or b == branch)
    ]


@pytest.mark.parametrize(
    ("query", "kinds", "branch"),
    [
        ({"filter_name": "Branch", "filter_branch": "master"}, None, "master"),
        ({"filter_name": "EventType", "filter_event_type": "build"}, {"buildEvent"}, None),
        ({"filter_name": "EventType", "filter_event_type": "Push"}, {"pushEvent"}, None),
        (
            {"filter_name": "EventType", "filter_event_type": "Pullrequest"},
            {"pullRequestEvent"},
            None,
        ),
        (
            {
                "filter_name": "BranchAndEventType",
                "filter_branch": "feature",
                "filter_event_type": "build",
            },
            {"buildEvent"},
            "feature",
        ),
    ],
)
def test_filters_select_events_across_pages(client, key, mixed_events, query, kinds, branch):
    ids, _ = all_pages(client, key, max_results=2, **query)
    assert ids == _expected(mixed_events, kinds, branch)
    assert ids  # each filter selects something here, and not everything
    assert len(ids) < len(mixed_events)


@pytest.mark.parametrize(
    "query",
    [
        {"filter_name": "EventType", "filter_event_type": "deploy"},
        {
            "filter_name": "BranchAndEventType",
            "filter_branch": "master",
            "filter_event_type": "deploy",
        },
        {"filter_name": "Env", "filter_env": "gbd_dev1"},
        {"filter_name": "EnvAndBranch", "filter_branch": "master", "filter_env": "gbd_dev1"},
    ],
)
def test_deploy_and_env_filters_find_nothing_without_deployments(client, key, mixed_events, query):
    # Only Distelli's own deployments have environments and deploy events.
    assert listing(client, key, **query) == {"app_name": "example-node", "events": []}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"filter_name": "Colour"}, "filter_name 'Colour' is not one of Branch, Env, EventType"),
        ({"filter_name": "Branch"}, "filter_name=Branch needs filter_branch"),
        ({"filter_name": "Env"}, "filter_name=Env needs filter_env"),
        (
            {"filter_name": "EnvAndBranch", "filter_env": "x"},
            "filter_name=EnvAndBranch needs filter_branch",
        ),
        ({"filter_name": "EventType"}, "filter_name=EventType needs filter_event_type"),
        (
            {"filter_name": "BranchAndEventType", "filter_branch": "m"},
            "filter_name=BranchAndEventType needs filter_event_type",
        ),
        ({"filter_name": "EventType", "filter_event_type": "tag"}, "filter_event_type 'tag'"),
        ({"max_results": "0"}, "max_results '0' is not a positive integer"),
        ({"max_results": "ten"}, "max_results 'ten' is not a positive integer"),
        ({"order": "newest"}, "order 'newest' is not asc or desc"),
        ({"marker": "abc"}, "marker 'abc' is not a marker this API returned"),
    ],
)
def test_bad_list_parameters_are_refused(client, key, mixed_events, query, message):
    response = client.get(url(key, **query))
    assert response.status_code == 400
    assert response.json()["message"].startswith(message)


def test_max_results_is_capped(client, key, app):
    for _ in range(3):
        put(client, "pushEvent", {}, key)
    body = listing(client, key, max_results=100000)
    assert len(body["events"]) == 3
    assert "marker" not in body


def test_build_is_visible_through_the_gitlab_api(client, app, key):
    event_id = put(client, "buildEvent", SEED_BUILD_EVENT, key).json()["event_id"]
    update(client, event_id, SEED_UPDATE, key)
    pipeline = DistelliEvent.objects.get().pipeline
    response = client.get(
        f"/api/v4/projects/{app.pk}/pipelines/{pipeline.pk}/jobs", headers={"PRIVATE-TOKEN": key}
    )
    assert response.status_code == 200
    [job] = response.json()
    assert (job["name"], job["stage"], job["status"]) == ("build", "build", "success")


def test_build_becomes_pipeline_hook_deliveries(client, app, key):
    hook = HookFactory(project=app)
    event_id = put(client, "buildEvent", SEED_BUILD_EVENT, key).json()["event_id"]
    update(client, event_id, SEED_UPDATE, key)
    update(client, event_id, SEED_UPDATE, key)  # refused: terminal, so no further delivery
    bodies = [json.loads(d.event.body) for d in Delivery.objects.filter(hook=hook).order_by("id")]
    assert [b["object_attributes"]["status"] for b in bodies] == ["created", "running", "success"]
    assert bodies[-1]["builds"][0]["name"] == "build"


def test_a1_build_event_fills_the_hook_payloads_commit(client, app, key):
    """A1: the commit fields a build event reports are the Pipeline Hook's commit."""
    from hooks.payloads import build_pipeline_payload

    assert put(client, "buildEvent", SEED_BUILD_EVENT, key).status_code == 200
    commit = build_pipeline_payload(DistelliEvent.objects.get().pipeline)["commit"]
    assert (commit["id"], commit["message"], commit["title"]) == (SHA, "Just a Test", "Just a Test")
    assert commit["author"] == {"name": "John Doe", "email": ""}
