"""The project hooks API, GitLab's shape: /api/v4/projects/:id/hooks and its sub-resources."""

import base64
import json
import logging
import re

import gitlab
import pytest
from django.contrib.auth.models import Group, Permission
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.validation import validate_schema
from gitlab import exceptions as gitlab_errors
from rest_framework.test import APIClient

from hooks.models import Delivery, DeliveryAttempt, Hook
from pipelines import services
from tests.clients import api_client_with
from tests.factories import DeliveryFactory, ProjectFactory, UserFactory
from tests.hooks.receiver import Reply

GITLAB_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SIGNING_TOKEN = "whsec_" + base64.b64encode(b"k" * 32).decode()
SECRET_TOKEN = "s3cret-token-value"
HEADER_SECRET = "Bearer header-secret-value"


def hooks_url(project, suffix: str = "") -> str:
    return f"/api/v4/projects/{project.pk}/hooks{suffix}"


def make_hook(project, **fields) -> Hook:
    fields.setdefault("url", "http://127.0.0.1:9/hook")
    return Hook.objects.create(project=project, **fields)


def assert_no_secret(text: str) -> None:
    for secret in (SECRET_TOKEN, SIGNING_TOKEN, HEADER_SECRET, "header-secret-value"):
        assert secret not in text


# --- Add ----------------------------------------------------------------------------------


def test_add_hook_answers_201_with_gitlab_fields_and_no_secret(api_client, project):
    response = api_client.post(
        hooks_url(project),
        {
            "url": "http://127.0.0.1:8080/ci",
            "name": "deploy bot",
            "description": "tells the deploy bot",
            "token": SECRET_TOKEN,
            "signing_token": SIGNING_TOKEN,
            "custom_headers": [{"key": "Authorization", "value": HEADER_SECRET}],
            "pipeline_events": True,
            "push_events": False,
            "enable_ssl_verification": False,
            "ref_filter_strategy": "wildcard",
            "ref_filter": "release/*",
            "status_filter": ["failed", "success"],
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    assert_no_secret(response.content.decode())
    body = response.json()
    hook = Hook.objects.get()
    assert body == {
        "id": hook.pk,
        "url": "http://127.0.0.1:8080/ci",
        "name": "deploy bot",
        "description": "tells the deploy bot",
        "created_at": body["created_at"],
        "project_id": project.pk,
        "pipeline_events": True,
        "job_events": False,
        "push_events": False,
        "tag_push_events": False,
        "merge_requests_events": False,
        "repository_update_events": False,
        "issues_events": False,
        "confidential_issues_events": False,
        "note_events": False,
        "confidential_note_events": False,
        "wiki_page_events": False,
        "deployment_events": False,
        "feature_flag_events": False,
        "releases_events": False,
        "milestone_events": False,
        "emoji_events": False,
        "resource_access_token_events": False,
        "resource_deploy_token_events": False,
        "vulnerability_events": False,
        "enable_ssl_verification": False,
        "alert_status": "executable",
        "disabled_until": None,
        "push_events_branch_filter": None,
        "branch_filter_strategy": "all_branches",
        "custom_webhook_template": None,
        "token_present": True,
        "signing_token_present": True,
        "ref_filter_strategy": "wildcard",
        "ref_filter": "release/*",
        "status_filter": ["failed", "success"],
        "recent_failures": 0,
        "custom_headers": [{"key": "Authorization"}],
    }
    assert GITLAB_TIME.match(body["created_at"])
    # Stored as given, for the deliveries to use.
    assert hook.token == SECRET_TOKEN
    assert hook.signing_token == SIGNING_TOKEN
    assert hook.custom_headers == {"Authorization": HEADER_SECRET}


def test_add_hook_with_only_a_url_wants_pipeline_events(api_client, project):
    response = api_client.post(hooks_url(project), {"url": "http://127.0.0.1:8080/ci"})

    assert response.status_code == 201
    body = response.json()
    assert body["pipeline_events"] is True
    assert body["token_present"] is False
    assert body["signing_token_present"] is False
    assert body["custom_headers"] == []
    assert body["status_filter"] == []


def test_add_hook_accepts_form_fields_with_gitlab_array_of_hashes(api_client, project):
    response = api_client.post(
        hooks_url(project),
        {
            "url": "http://127.0.0.1:8080/ci",
            "custom_headers[][key]": "X-Team",
            "custom_headers[][value]": "platform",
            "status_filter": "failed,canceled",
        },
    )

    assert response.status_code == 201, response.content
    hook = Hook.objects.get()
    assert hook.custom_headers == {"X-Team": "platform"}
    assert hook.status_filter == ["failed", "canceled"]


def test_add_hook_without_url_is_refused(api_client, project):
    response = api_client.post(hooks_url(project), {"name": "no url"}, format="json")

    assert response.status_code == 400
    assert response.json() == {"error": "url is missing"}
    assert not Hook.objects.exists()


def test_add_hook_on_loopback_is_refused_without_allow_list(api_client, project, settings):
    settings.HOOKS_ALLOWED_NETWORKS = []

    response = api_client.post(hooks_url(project), {"url": "http://127.0.0.1:8080/ci"})

    assert response.status_code == 422
    message = response.json()["message"]
    assert message.startswith("Invalid url given: url is blocked")
    assert "loopback" in message and "HOOKS_ALLOWED_NETWORKS" in message
    assert not Hook.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
        "http://[fd00::1]/",
    ],
)
def test_add_hook_on_private_addresses_is_refused(api_client, project, settings, url):
    settings.HOOKS_ALLOWED_NETWORKS = []

    response = api_client.post(hooks_url(project), {"url": url})

    assert response.status_code == 422
    assert response.json()["message"].startswith("Invalid url given")
    assert not Hook.objects.exists()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"url": "ftp://127.0.0.1/x"}, "Invalid url given: url must start with http"),
        ({"signing_token": "not-a-secret"}, "Invalid hook settings: signing_token must start"),
        (
            {"signing_token": "whsec_!!!"},
            "Invalid hook settings: signing_token is not valid base64",
        ),
        (
            {"signing_token": "whsec_" + base64.b64encode(b"short").decode()},
            "Invalid hook settings: signing_token must encode 24 to 64 bytes",
        ),
        (
            {"custom_headers": [{"key": "X-Gitlab-Token", "value": "x"}]},
            "Custom headers validation failed: X-Gitlab-Token is set by every delivery",
        ),
        # Hop-by-hop headers the sender would drop: refused when saved, not dropped later.
        (
            {"custom_headers": [{"key": "Connection", "value": "close"}]},
            "Custom headers validation failed: Connection is set by every delivery",
        ),
        (
            {"custom_headers": [{"key": "transfer-encoding", "value": "chunked"}]},
            "Custom headers validation failed: transfer-encoding is set by every delivery",
        ),
        (
            {"custom_headers": [{"key": "Bad Header", "value": "x"}]},
            "Custom headers validation failed: header name 'Bad Header' may contain only",
        ),
        (
            {"custom_headers": [{"key": "X-A", "value": "x\r\nX-Injected: 1"}]},
            "Custom headers validation failed: the value of header X-A may not contain line",
        ),
        (
            {"custom_headers": [{"key": "X-New"}]},
            "Custom headers validation failed: header X-New needs a value",
        ),
        (
            {"custom_headers": [{"key": f"X-H{n}", "value": "v"} for n in range(21)]},
            "Custom headers validation failed: at most 20 custom headers",
        ),
        (
            {"ref_filter_strategy": "regex", "ref_filter": "release/(unclosed"},
            "Invalid ref filter given: ref_filter is not a valid regular expression",
        ),
        (
            {"status_filter": ["failed", "exploded"]},
            "Invalid hook settings: status_filter: 'exploded' is not a pipeline status",
        ),
        ({"token": "line\nbreak"}, "Invalid hook settings: token may not contain line breaks"),
    ],
)
def test_add_hook_refuses_bad_settings_with_422_and_writes_nothing(
    api_client, project, fields, expected
):
    response = api_client.post(
        hooks_url(project), {"url": "http://127.0.0.1:8080/ci", **fields}, format="json"
    )

    assert response.status_code == 422, response.content
    assert response.json()["message"].startswith(expected)
    assert not Hook.objects.exists()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"url": "http://127.0.0.1/x", "pipeline_events": "maybe"}, "pipeline_events is invalid"),
        ({"url": "http://127.0.0.1/x", "push_events": "perhaps"}, "push_events is invalid"),
        ({"url": "http://127.0.0.1/x", "ref_filter_strategy": "glob"}, "does not have a valid"),
        ({"url": "http://127.0.0.1/x", "custom_headers": "X-A: b"}, "custom_headers"),
        (
            {"url": "http://127.0.0.1/x", "custom_headers": [{"value": "v"}]},
            "custom_headers[0][key] is missing",
        ),
        ({"url": "http://127.0.0.1/x", "status_filter": [1, 2]}, "status_filter"),
        ({"url": ["http://127.0.0.1/x"]}, "url is invalid"),
    ],
)
def test_add_hook_refuses_malformed_parameters_with_400(api_client, project, body, expected):
    response = api_client.post(hooks_url(project), body, format="json")

    assert response.status_code == 400, response.content
    assert expected in response.json()["error"]
    assert not Hook.objects.exists()


def test_add_hook_refuses_a_body_that_is_not_an_object(api_client, project):
    response = api_client.post(
        hooks_url(project), json.dumps(["url"]), content_type="application/json"
    )

    assert response.status_code == 400
    assert "JSON object" in response.json()["error"]
    assert not Hook.objects.exists()


def test_add_hook_refuses_broken_json(api_client, project):
    response = api_client.post(hooks_url(project), "{url:", content_type="application/json")

    assert response.status_code == 400
    assert not Hook.objects.exists()


# --- List, get --------------------------------------------------------------------------


def test_list_hooks_pages_with_gitlab_headers_and_leaves_custom_headers_out(api_client, project):
    hooks = [make_hook(project, name=f"hook {n}") for n in range(3)]
    make_hook(ProjectFactory())  # another project's hook is not listed

    response = api_client.get(hooks_url(project), {"per_page": 2})

    assert response.status_code == 200
    assert [hook["id"] for hook in response.json()] == [hooks[0].pk, hooks[1].pk]
    assert "custom_headers" not in response.json()[0]
    assert response["X-Total"] == "3"
    assert response["X-Total-Pages"] == "2"
    assert response["X-Next-Page"] == "2"
    assert 'rel="next"' in response["Link"]


def test_get_hook_by_url_encoded_project_path(api_client, db):
    project = ProjectFactory(namespace="acme", path="web")
    hook = make_hook(project, custom_headers={"X-Team": "platform"}, token=SECRET_TOKEN)

    response = api_client.get(f"/api/v4/projects/acme%2Fweb/hooks/{hook.pk}")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == hook.pk
    assert body["custom_headers"] == [{"key": "X-Team"}]
    assert body["token_present"] is True
    assert "platform" not in response.content.decode()
    assert_no_secret(response.content.decode())


def test_get_hook_of_another_project_is_not_found(api_client, project):
    other = make_hook(ProjectFactory())

    response = api_client.get(hooks_url(project, f"/{other.pk}"))

    assert response.status_code == 404
    assert response.json() == {"message": "404 Hook Not Found"}


@pytest.mark.parametrize("hook_id", ["abc", "99999999999999999999999", "1.5", "²", "٣", "9" * 5000])
def test_get_hook_with_a_bad_id_is_a_400(api_client, project, hook_id):
    response = api_client.get(hooks_url(project, f"/{hook_id}"))

    assert response.status_code == 400
    assert response.json() == {"error": "hook_id is invalid"}


@pytest.mark.parametrize("event_id", ["²", "9" * 5000])
def test_resend_with_a_bad_event_id_is_a_400(api_client, project, event_id):
    hook = make_hook(project)
    response = api_client.post(hooks_url(project, f"/{hook.pk}/events/{event_id}/resend"))

    assert response.status_code == 400
    assert response.json() == {"error": "hook_log_id is invalid"}


@pytest.mark.parametrize("query", ["status=²", "status=" + "5" * 5000, "per_page=" + "9" * 5000])
def test_hook_events_with_odd_numbers_are_a_400(api_client, project, query):
    hook = make_hook(project)
    response = api_client.get(hooks_url(project, f"/{hook.pk}/events?{query}"))

    assert response.status_code == 400


def test_hooks_of_a_missing_project_are_not_found(api_client, db):
    response = api_client.get("/api/v4/projects/424242/hooks")

    assert response.status_code == 404
    assert response.json() == {"message": "404 Project Not Found"}


# --- Edit, delete -----------------------------------------------------------------------


def test_edit_hook_changes_given_fields_and_keeps_secrets(api_client, project):
    hook = make_hook(
        project,
        token=SECRET_TOKEN,
        signing_token=SIGNING_TOKEN,
        custom_headers={"Authorization": HEADER_SECRET},
    )

    response = api_client.put(
        hooks_url(project, f"/{hook.pk}"),
        {
            "name": "renamed",
            "custom_headers": [{"key": "X-Team", "value": "platform"}],
            "status_filter": ["failed"],
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    assert_no_secret(response.content.decode())
    hook.refresh_from_db()
    assert hook.name == "renamed"
    assert hook.url == "http://127.0.0.1:9/hook"
    assert hook.token == SECRET_TOKEN
    assert hook.signing_token == SIGNING_TOKEN
    # GitLab merges custom headers on edit.
    assert hook.custom_headers == {"Authorization": HEADER_SECRET, "X-Team": "platform"}
    assert hook.status_filter == ["failed"]
    assert response.json()["custom_headers"] == [{"key": "Authorization"}, {"key": "X-Team"}]


def test_edit_hook_with_empty_secrets_removes_them(api_client, project):
    hook = make_hook(project, token=SECRET_TOKEN, signing_token=SIGNING_TOKEN)

    response = api_client.put(
        hooks_url(project, f"/{hook.pk}"), {"token": "", "signing_token": ""}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["token_present"] is False
    assert response.json()["signing_token_present"] is False
    hook.refresh_from_db()
    assert (hook.token, hook.signing_token) == ("", "")


def test_edit_hook_without_parameters_is_refused(api_client, project):
    hook = make_hook(project)

    response = api_client.put(hooks_url(project, f"/{hook.pk}"), {}, format="json")

    assert response.status_code == 400
    assert response.json() == {"error": "No parameters provided"}


def test_edit_hook_with_a_blocked_url_changes_nothing(api_client, project, settings):
    hook = make_hook(project, name="before")
    settings.HOOKS_ALLOWED_NETWORKS = []

    response = api_client.put(
        hooks_url(project, f"/{hook.pk}"),
        {"name": "after", "url": "http://192.168.1.10/hook"},
        format="json",
    )

    assert response.status_code == 422
    assert "private address" in response.json()["message"]
    hook.refresh_from_db()
    assert (hook.name, hook.url) == ("before", "http://127.0.0.1:9/hook")


CREDENTIALS_URL = "http://ci:url-password@127.0.0.1:8080/ci?apiToken=query-secret&team=ops"
SHOWN_URL = "http://*****:*****@127.0.0.1:8080/ci?apiToken=[FILTERED]&team=ops"


def test_hook_url_credentials_are_masked_in_every_answer(api_client, project):
    created = api_client.post(hooks_url(project), {"url": CREDENTIALS_URL}, format="json")
    assert created.status_code == 201, created.content
    hook = Hook.objects.get()
    assert hook.url == CREDENTIALS_URL
    make_attempt(hook, status=200)  # a log row that kept the URL as it was

    answers = [
        created,
        api_client.get(hooks_url(project)),
        api_client.get(hooks_url(project, f"/{hook.pk}")),
        api_client.put(hooks_url(project, f"/{hook.pk}"), {"name": "renamed"}, format="json"),
        api_client.get(hooks_url(project, f"/{hook.pk}/events")),
    ]
    urls = [created.json()["url"], answers[1].json()[0]["url"]]
    urls += [answers[2].json()["url"], answers[3].json()["url"], answers[4].json()[0]["url"]]
    assert urls == [SHOWN_URL] * 5
    for answer in answers:
        assert "url-password" not in answer.content.decode()
        assert "query-secret" not in answer.content.decode()


def test_hook_url_sent_back_as_shown_keeps_its_credentials(api_client, project):
    hook = make_hook(project, url=CREDENTIALS_URL)
    # What a client that reads the hook and writes it back sends (Terraform, scripts).
    response = api_client.put(
        hooks_url(project, f"/{hook.pk}"),
        {"url": SHOWN_URL.replace("/ci?", "/v2/ci?"), "name": "moved"},
        format="json",
    )
    assert response.status_code == 200, response.content
    hook.refresh_from_db()
    assert hook.url == CREDENTIALS_URL.replace("/ci?", "/v2/ci?")


def test_masked_credentials_never_follow_a_url_to_another_host(api_client, project):
    hook = make_hook(project, url=CREDENTIALS_URL)
    response = api_client.put(
        hooks_url(project, f"/{hook.pk}"),
        {"url": SHOWN_URL.replace("127.0.0.1:8080", "127.0.0.2:8080")},
        format="json",
    )
    assert response.status_code == 422
    assert "masked parts" in response.json()["message"]
    hook.refresh_from_db()
    assert hook.url == CREDENTIALS_URL
    # A new hook cannot be made from a masked URL either.
    refused = api_client.post(hooks_url(project), {"url": SHOWN_URL}, format="json")
    assert refused.status_code == 422
    assert Hook.objects.count() == 1


def test_moving_a_hook_to_another_receiver_drops_the_secrets_it_would_send(api_client, project):
    hook = make_hook(
        project,
        url="http://127.0.0.1:8080/ci",
        token=SECRET_TOKEN,
        signing_token=SIGNING_TOKEN,
        custom_headers={"Authorization": HEADER_SECRET},
    )
    # Another path on the same receiver keeps them...
    kept = api_client.put(hooks_url(project, f"/{hook.pk}"), {"url": "http://127.0.0.1:8080/v2"})
    assert kept.status_code == 200
    hook.refresh_from_db()
    assert (hook.token, hook.custom_headers) == (SECRET_TOKEN, {"Authorization": HEADER_SECRET})
    # ...another receiver gets none of them unless they are given again (GitLab's rule).
    moved = api_client.put(
        hooks_url(project, f"/{hook.pk}"),
        {"url": "http://127.0.0.2:8080/ci", "custom_headers": [{"key": "X-Team", "value": "a"}]},
        format="json",
    )
    assert moved.status_code == 200, moved.content
    hook.refresh_from_db()
    assert (hook.token, hook.custom_headers) == ("", {"X-Team": "a"})
    assert hook.signing_token == SIGNING_TOKEN  # never sent, only used to sign
    # A header named without a value cannot take the old receiver's value along.
    hook.custom_headers = {"Authorization": HEADER_SECRET}
    hook.save()
    refused = api_client.put(
        hooks_url(project, f"/{hook.pk}"),
        {"url": "http://127.0.0.3/ci", "custom_headers": [{"key": "Authorization"}]},
        format="json",
    )
    assert refused.status_code == 422
    hook.refresh_from_db()
    assert hook.custom_headers == {"Authorization": HEADER_SECRET}


def test_delete_hook_answers_204_and_removes_it(api_client, project):
    hook = make_hook(project)

    response = api_client.delete(hooks_url(project, f"/{hook.pk}"))

    assert response.status_code == 204
    assert response.content == b""
    assert not Hook.objects.exists()
    assert api_client.delete(hooks_url(project, f"/{hook.pk}")).status_code == 404


def test_custom_header_endpoints_set_and_remove_one_header(api_client, project):
    hook = make_hook(project, custom_headers={"X-Keep": "kept"})

    put = api_client.put(hooks_url(project, f"/{hook.pk}/custom_headers/X-Team"), {"value": "ops"})
    assert put.status_code == 204
    hook.refresh_from_db()
    assert hook.custom_headers == {"X-Keep": "kept", "X-Team": "ops"}

    refused = api_client.put(
        hooks_url(project, f"/{hook.pk}/custom_headers/webhook-signature"), {"value": "v1,x"}
    )
    assert refused.status_code == 422
    assert refused.json()["message"].startswith("Custom headers validation failed")

    deleted = api_client.delete(hooks_url(project, f"/{hook.pk}/custom_headers/X-Team"))
    assert deleted.status_code == 204
    hook.refresh_from_db()
    assert hook.custom_headers == {"X-Keep": "kept"}

    missing = api_client.delete(hooks_url(project, f"/{hook.pk}/custom_headers/X-Team"))
    assert missing.status_code == 404


# --- Who may -----------------------------------------------------------------------------


def test_hooks_need_a_token(project):
    response = APIClient().get(hooks_url(project))

    assert response.status_code == 401
    assert response.json() == {"message": "401 Unauthorized"}


def test_read_api_token_may_list_hooks_but_not_add_them(make_token, project):
    reader = api_client_with(make_token(scopes=("read_api",)))
    make_hook(project)

    assert reader.get(hooks_url(project)).status_code == 200
    response = reader.post(hooks_url(project), {"url": "http://127.0.0.1:8080/ci"})

    assert response.status_code == 403
    assert "insufficient_scope" in response.json()["error"]
    assert Hook.objects.count() == 1


def test_group_token_without_manage_hooks_may_not_touch_hooks(make_token, project):
    editors = Group.objects.create(name="editors")
    editors.permissions.add(
        Permission.objects.get(codename="view_project"),
        Permission.objects.get(codename="change_project"),
    )
    api = api_client_with(make_token(groups=[editors]))

    for response in (
        api.get(hooks_url(project)),
        api.post(hooks_url(project), {"url": "http://127.0.0.1:8080/ci"}),
    ):
        assert response.status_code == 403
        assert "pipelines.manage_hooks" in response.json()["message"]
    assert not Hook.objects.exists()


def test_group_token_with_manage_hooks_may_add_hooks(make_token, project):
    hookers = Group.objects.create(name="hook managers")
    hookers.permissions.add(
        Permission.objects.get(codename="view_project"),
        Permission.objects.get(codename="manage_hooks"),
    )
    api = api_client_with(make_token(groups=[hookers]))

    response = api.post(hooks_url(project), {"url": "http://127.0.0.1:8080/ci"})

    assert response.status_code == 201, response.content


def test_token_limited_to_another_project_may_not_see_its_hooks(make_token, project):
    api = api_client_with(make_token(projects=[ProjectFactory()]))

    response = api.get(hooks_url(project))

    assert response.status_code == 404
    assert response.json() == {"message": "404 Project Not Found"}


def test_secrets_are_not_logged(api_client, project, caplog):
    caplog.set_level(logging.DEBUG)
    created = api_client.post(
        hooks_url(project),
        {
            "url": "http://127.0.0.1:8080/ci",
            "token": SECRET_TOKEN,
            "signing_token": SIGNING_TOKEN,
            "custom_headers": [{"key": "Authorization", "value": HEADER_SECRET}],
        },
        format="json",
    )
    hook_id = created.json()["id"]
    api_client.put(hooks_url(project, f"/{hook_id}"), {"token": SECRET_TOKEN + "2"}, format="json")
    api_client.post(
        hooks_url(project), {"url": "http://127.0.0.1/x", "token": "a\nb" + SECRET_TOKEN}
    )

    assert "hook" in caplog.text  # something was logged, and it holds no secret
    assert_no_secret(caplog.text)


# --- The delivery log (events) and resend -------------------------------------------------


def make_attempt(hook: Hook, *, status: int | None, delivery: Delivery | None = None, **fields):
    return DeliveryAttempt.objects.create(
        hook=hook,
        delivery=delivery,
        url=hook.url,
        response_status=status,
        succeeded=status is not None and 200 <= status < 300,
        **fields,
    )


def make_delivery(hook: Hook, body: dict | None = None) -> Delivery:
    body = json.dumps(body or {"object_kind": "pipeline"})
    return DeliveryFactory(hook=hook, event__body=body, order_key=1)


def test_events_list_the_log_in_gitlab_shape_newest_first(api_client, project):
    hook = make_hook(project, token=SECRET_TOKEN, custom_headers={"Authorization": "x"})
    delivery = make_delivery(hook, {"object_kind": "pipeline", "object_attributes": {"id": 7}})
    first = make_attempt(
        hook,
        status=None,
        delivery=delivery,
        error="connection refused by 127.0.0.1",
        request_headers={"X-Gitlab-Event": "Pipeline Hook", "X-Gitlab-Token": "[REDACTED]"},
    )
    second = make_attempt(
        hook,
        status=200,
        delivery=delivery,
        attempt_number=2,
        duration_ms=1234,
        # Even a log row written unredacted never shows a secret through the API.
        request_headers={"X-Gitlab-Token": SECRET_TOKEN, "Authorization": HEADER_SECRET},
        response_headers={"Content-Type": "text/plain"},
        response_body="ok",
    )

    response = api_client.get(hooks_url(project, f"/{hook.pk}/events"))

    assert response.status_code == 200
    assert_no_secret(response.content.decode())
    events = response.json()
    assert [event["id"] for event in events] == [second.pk, first.pk]
    assert events[0] == {
        "id": second.pk,
        "url": hook.url,
        "trigger": "pipeline_hooks",
        "request_headers": {"X-Gitlab-Token": "[REDACTED]", "Authorization": "[REDACTED]"},
        "request_data": {"object_kind": "pipeline", "object_attributes": {"id": 7}},
        "response_headers": {"Content-Type": "text/plain"},
        "response_body": "ok",
        "execution_duration": 1.234,
        "response_status": "200",
        "created_at": events[0]["created_at"],
        "internal_error_message": None,
        "response_body_truncated": False,
        "delivery_id": delivery.pk,
        "attempt_number": 2,
        "attempt_trigger": "scheduled",
        "succeeded": True,
    }
    assert events[1]["response_status"] == "internal error"
    assert events[1]["internal_error_message"] == "connection refused by 127.0.0.1"


@pytest.mark.parametrize(
    ("status_filter", "expected"),
    [
        ("successful", [201, 200]),
        ("client_failure", [404]),
        ("server_failure", [None, 503]),
        ("404,503", [503, 404]),
        ("200", [200]),
    ],
)
def test_events_filter_by_status(api_client, project, status_filter, expected):
    hook = make_hook(project)
    for status in (200, 404, 503, None, 201):
        make_attempt(hook, status=status)

    response = api_client.get(hooks_url(project, f"/{hook.pk}/events"), {"status": status_filter})

    assert response.status_code == 200
    got = [
        None if e["response_status"] == "internal error" else int(e["response_status"])
        for e in response.json()
    ]
    assert got == expected


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"status": "great"}, "status does not have a valid value"),
        ({"status": "700"}, "status does not have a valid value"),
        ({"per_page": "21"}, "per_page does not have a valid value"),
        ({"per_page": "x"}, "per_page does not have a valid value"),
    ],
)
def test_events_refuse_bad_filters(api_client, project, params, error):
    hook = make_hook(project)

    response = api_client.get(hooks_url(project, f"/{hook.pk}/events"), params)

    assert response.status_code == 400
    assert response.json() == {"error": error}


def test_events_page_with_gitlab_headers(api_client, project):
    hook = make_hook(project)
    for _ in range(3):
        make_attempt(hook, status=200)

    response = api_client.get(hooks_url(project, f"/{hook.pk}/events"), {"per_page": 2, "page": 2})

    assert len(response.json()) == 1
    assert response["X-Total"] == "3"
    assert response["X-Page"] == "2"


def test_resend_sends_the_same_event_again_with_the_same_idempotency_key(
    api_client, project, receiver
):
    hook = make_hook(project, url=receiver.url)
    delivery = make_delivery(hook, {"object_kind": "pipeline", "marker": "resend-me"})
    failed = make_attempt(hook, status=500, delivery=delivery)
    Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.FAILED, attempt_count=1)

    response = api_client.post(hooks_url(project, f"/{hook.pk}/events/{failed.pk}/resend"))

    assert response.status_code == 201, response.content
    assert response.json()["response_status"] == 200
    (request,) = receiver.wait_for(1)
    assert json.loads(request.body)["marker"] == "resend-me"
    assert request.header("Idempotency-Key") == str(delivery.idempotency_key)
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SUCCEEDED


def test_resend_of_a_test_request_is_refused(api_client, project):
    hook = make_hook(project)
    test_attempt = make_attempt(hook, status=200, trigger=DeliveryAttempt.Trigger.TEST)

    response = api_client.post(hooks_url(project, f"/{hook.pk}/events/{test_attempt.pk}/resend"))

    assert response.status_code == 422
    assert "test request cannot be resent" in response.json()["message"]


def test_resend_of_another_hooks_event_is_not_found(api_client, project):
    hook = make_hook(project)
    other = make_attempt(make_hook(project), status=500)

    response = api_client.post(hooks_url(project, f"/{hook.pk}/events/{other.pk}/resend"))

    assert response.status_code == 404


# --- Test event ---------------------------------------------------------------------------


def test_test_event_without_a_pipeline_says_so(api_client, project, receiver):
    hook = make_hook(project, url=receiver.url)

    response = api_client.post(hooks_url(project, f"/{hook.pk}/test/pipeline_events"))

    assert response.status_code == 422
    assert response.json() == {"message": "Ensure the project has CI pipelines."}
    assert receiver.requests == []


def test_test_event_sends_the_newest_pipeline_and_answers_201(api_client, project, receiver):
    hook = make_hook(project, url=receiver.url, token=SECRET_TOKEN)
    services.create_pipeline(project, ref="main", sha="a" * 40)
    newest = services.create_pipeline(project, ref="release", sha="b" * 40)
    receiver.requests.clear()  # only the test request counts below

    response = api_client.post(hooks_url(project, f"/{hook.pk}/test/pipeline_events"))

    assert response.status_code == 201, response.content
    assert response.json() == {"message": "201 Created"}
    request = receiver.wait_for(1)[-1]
    assert request.header("X-Gitlab-Event") == "Pipeline Hook"
    assert request.header("X-Gitlab-Token") == SECRET_TOKEN
    assert json.loads(request.body)["object_attributes"]["id"] == newest.pk


def test_test_event_to_an_ipv6_literal_without_a_port_is_a_422_not_a_500(
    api_client, project, settings
):
    """Such a URL is saved (it is valid); the test button used to answer 500 with it."""
    settings.HOOKS_ALLOWED_NETWORKS = ["::ffff:127.0.0.0/104"]
    saved = api_client.post(
        hooks_url(project), {"url": "http://[::ffff:127.0.0.1]/hook"}, format="json"
    )
    assert saved.status_code == 201, saved.content
    services.create_pipeline(project, ref="main", sha="a" * 40)
    settings.HOOKS_ALLOWED_NETWORKS = []  # refused when sent: nothing leaves, whatever is on :80

    response = api_client.post(hooks_url(project, f"/{saved.json()['id']}/test/pipeline_events"))

    assert response.status_code == 422
    assert (
        "::ffff:127.0.0.1 resolves to ::ffff:7f00:1, which is a loopback address"
        in (response.json()["message"])
    )
    attempt = DeliveryAttempt.objects.get(trigger=DeliveryAttempt.Trigger.TEST)
    assert (attempt.url, attempt.response_status) == ("http://[::ffff:127.0.0.1]/hook", None)


def test_test_event_that_the_receiver_refuses_is_a_422_with_its_answer(
    api_client, project, receiver
):
    hook = make_hook(project, url=receiver.url, pipeline_events=False)
    services.create_pipeline(project, ref="main", sha="a" * 40)
    receiver.script(Reply(500, body=b"database is down"))

    response = api_client.post(hooks_url(project, f"/{hook.pk}/test/pipeline_events"))

    assert response.status_code == 422
    assert response.json() == {"message": "Hook executed with HTTP 500: database is down"}


@pytest.mark.parametrize(
    ("trigger", "status", "message"),
    [
        ("push_events", 422, "Pipehook sends pipeline events only; push_events cannot be tested."),
        ("nonsense", 400, None),
    ],
)
def test_test_event_for_other_triggers_is_refused(api_client, project, trigger, status, message):
    hook = make_hook(project)

    response = api_client.post(hooks_url(project, f"/{hook.pk}/test/{trigger}"))

    assert response.status_code == status
    if message:
        assert response.json() == {"message": message}
    else:
        assert response.json() == {"error": "trigger does not have a valid value"}


def test_other_users_hooks_are_not_reachable_with_a_limited_token(make_token, project):
    owner_hook = make_hook(project)
    api = api_client_with(make_token(user=UserFactory(), projects=[ProjectFactory()]))

    response = api.delete(hooks_url(project, f"/{owner_hook.pk}"))

    assert response.status_code == 404
    assert Hook.objects.filter(pk=owner_hook.pk).exists()


# --- GitLab's own client ------------------------------------------------------------------


def test_python_gitlab_manages_hooks_against_a_live_server(
    live_server, transactional_db, receiver, make_token
):
    project = ProjectFactory(namespace="acme", path="web")
    with gitlab.Gitlab(live_server.url, private_token=make_token()) as gl:
        remote = gl.projects.get("acme/web", lazy=True)  # sent as acme%2Fweb

        created = remote.hooks.create(
            {
                "url": receiver.url,
                "name": "ci bot",
                "token": SECRET_TOKEN,
                "signing_token": SIGNING_TOKEN,
                "custom_headers": [{"key": "X-Team", "value": "platform"}],
                "pipeline_events": True,
                "push_events": False,
            }
        )
        assert created.url == receiver.url
        assert created.token_present is True and created.signing_token_present is True
        assert not hasattr(created, "token")

        listed = remote.hooks.list(get_all=True)
        assert [hook.id for hook in listed] == [created.id]

        fetched = remote.hooks.get(created.id)
        assert fetched.name == "ci bot"
        assert fetched.custom_headers == [{"key": "X-Team"}]

        fetched.name = "renamed"
        fetched.status_filter = ["failed"]
        fetched.save()
        updated = remote.hooks.update(created.id, {"url": receiver.url, "description": "hi"})
        assert updated["description"] == "hi"
        stored = Hook.objects.get(pk=created.id)
        assert (stored.name, stored.status_filter, stored.description) == (
            "renamed",
            ["failed"],
            "hi",
        )
        # Edits that did not send a secret keep it; save() sent the headers back as read
        # ([{"key": "X-Team"}], no value), which keeps the stored value too.
        assert stored.token == SECRET_TOKEN
        assert stored.custom_headers == {"X-Team": "platform"}

        with pytest.raises(gitlab_errors.GitlabHookTestError, match="CI pipelines"):
            fetched.test("pipeline_events")
        with pytest.raises(gitlab_errors.GitlabCreateError, match="Invalid url given"):
            remote.hooks.create({"url": "ftp://127.0.0.1/hook"})

        remote.hooks.delete(created.id)
        assert remote.hooks.list(get_all=True) == []
        with pytest.raises(gitlab_errors.GitlabGetError) as missing:
            remote.hooks.get(created.id)
        assert missing.value.response_code == 404
    assert project.hooks.count() == 0


def test_python_gitlab_test_call_reaches_the_receiver(
    live_server, transactional_db, receiver, make_token
):
    project = ProjectFactory()
    # The pipeline exists before the hook, so no delivery is queued: only the test is sent.
    services.create_pipeline(project, ref="main", sha="c" * 40)
    hook = make_hook(project, url=receiver.url, token=SECRET_TOKEN)
    with gitlab.Gitlab(live_server.url, private_token=make_token()) as gl:
        gl.projects.get(project.pk, lazy=True).hooks.get(hook.pk, lazy=True).test("pipeline_events")

    (request,) = receiver.wait_for(1)
    assert request.header("X-Gitlab-Event") == "Pipeline Hook"
    assert request.header("X-Gitlab-Token") == SECRET_TOKEN
    assert DeliveryAttempt.objects.get().trigger == DeliveryAttempt.Trigger.TEST


# --- OpenAPI -----------------------------------------------------------------------------


def test_schema_documents_every_hooks_operation_without_warnings(db):
    GENERATOR_STATS.reset()
    response = APIClient().get("/api/schema/?format=json")

    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)
    operations = {
        (path, method): operation["operationId"]
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
        if "/hooks" in path
    }
    base = "/api/v4/projects/{project_id}/hooks"
    assert operations == {
        (base, "get"): "listProjectHooks",
        (base, "post"): "createProjectHook",
        (f"{base}/{{hook_id}}", "get"): "getProjectHook",
        (f"{base}/{{hook_id}}", "put"): "editProjectHook",
        (f"{base}/{{hook_id}}", "delete"): "deleteProjectHook",
        (f"{base}/{{hook_id}}/custom_headers/{{key}}", "put"): "setProjectHookCustomHeader",
        (f"{base}/{{hook_id}}/custom_headers/{{key}}", "delete"): "deleteProjectHookCustomHeader",
        (f"{base}/{{hook_id}}/test/{{trigger}}", "post"): "triggerProjectHookTest",
        (f"{base}/{{hook_id}}/events", "get"): "listProjectHookEvents",
        (f"{base}/{{hook_id}}/events/{{event_id}}/resend", "post"): "resendProjectHookEvent",
    }
    written = schema["components"]["schemas"]["HookCreate"]["properties"]
    assert {"token", "signing_token", "custom_headers", "status_filter"} <= set(written)
    shown = schema["components"]["schemas"]["ProjectHook"]["properties"]
    assert "token" not in shown and "signing_token" not in shown
    assert {"token_present", "signing_token_present", "custom_headers"} <= set(shown)
    ours = [
        message
        for message in [*GENERATOR_STATS._warn_cache, *GENERATOR_STATS._error_cache]
        if "hooks/api/" in message
    ]
    assert ours == []
