"""Every kind of secret, looked for in every API response, admin page, log line and table.

The secrets: an API token's raw value, a hook's secret token, signing secret and custom
header values, the credentials and token in a hook URL, the admin's password, SECRET_KEY.
Each may live in one place only: the hook's secrets in the hook's row (they are sent, so
they are kept; encryption at rest is another matter), the password and the API token as
hashes. They reach the receiver, where they belong, and nothing else.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
from collections import deque
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from hooks import delivery as hook_delivery
from hooks.models import Delivery, Hook
from pipelines import auth
from pipelines.api.graphql.ids import encode_id
from pipelines.models import AccessToken, CicdInstance, Job
from tests.clients import api_client_with
from tests.factories import UserFactory
from tests.test_serve import (  # noqa: F401 (embedded_env is a fixture)
    ROOT,
    alive,
    child_pids,
    embedded_env,
    free_port,
    read_first_start,
    start_serve,
    wait_until_up,
)

ADMIN_PASSWORD = "adm1n-pass-never-shown"
HOOK_TOKEN = "hook-token-never-shown"
SIGNING_KEY = base64.b64encode(b"signing-key-never-shown-32-bytes").decode()
SIGNING_TOKEN = "whsec_" + SIGNING_KEY
HEADER_VALUE = "custom-header-never-shown"
URL_USER = "url-user-never-shown"
URL_PASSWORD = "url-password-never-shown"
URL_TOKEN = "url-query-token-never-shown"
# Where the hook's secrets may be stored: its own row.
HOOK_COLUMNS = {("hooks_hook", "token"), ("hooks_hook", "signing_token")}
HOOK_COLUMNS |= {("hooks_hook", "custom_headers"), ("hooks_hook", "url")}


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


@pytest.fixture
def secrets(db, receiver, settings):
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    root.set_password(ADMIN_PASSWORD)
    root.save()
    _, api_token = auth.create_token(root, scopes=["api"], name="ci")
    hook_url = receiver.url.replace("http://", f"http://{URL_USER}:{URL_PASSWORD}@")
    return {
        "api token": api_token,
        "hook token": HOOK_TOKEN,
        "signing secret": SIGNING_TOKEN,
        "signing key": SIGNING_KEY,
        "custom header value": HEADER_VALUE,
        "URL user": URL_USER,
        "URL password": URL_PASSWORD,
        "URL basic auth": base64.b64encode(f"{URL_USER}:{URL_PASSWORD}".encode()).decode(),
        "URL token": URL_TOKEN,
        "admin password": ADMIN_PASSWORD,
        "SECRET_KEY": settings.SECRET_KEY,
        "_hook_url": f"{hook_url}?token={URL_TOKEN}&team=ops",
    }


def leaks(text: str, secrets: dict, allowed: tuple[str, ...] = ()) -> list[str]:
    return [
        name
        for name, value in secrets.items()
        if not name.startswith("_") and name not in allowed and value in text
    ]


def exercise_the_api(secrets: dict) -> list[tuple[str, str]]:
    """Create, report, deliver, read: returns (what, text) of every response, headers too."""
    api = api_client_with(secrets["api token"])
    seen: list[tuple[str, str]] = []

    def keep(what, response):
        headers = "\n".join(f"{k}: {v}" for k, v in response.items())
        seen.append((what, f"{response.status_code}\n{headers}\n\n{response.content.decode()}"))
        return response

    project = keep("create project", api.post("/api/v4/projects", {"name": "web"}, format="json"))
    project_id = project.json()["id"]
    hook = keep(
        "create hook",
        api.post(
            f"/api/v4/projects/{project_id}/hooks",
            {
                "url": secrets["_hook_url"],
                "token": HOOK_TOKEN,
                "signing_token": SIGNING_TOKEN,
                "custom_headers": [{"key": "X-Deploy-Key", "value": HEADER_VALUE}],
            },
            format="json",
        ),
    )
    assert hook.status_code == 201, hook.content
    hook_id = hook.json()["id"]
    sha = "8e2f7c1d9a4b3e6f5a7c8d9e0f1a2b3c4d5e6f70"
    for state in ("running", "success"):
        keep(
            f"report {state}",
            api.post(
                f"/api/v4/projects/{project_id}/statuses/{sha}",
                {"state": state, "name": "build", "ref": "main"},
                format="json",
            ),
        )
    # Deliveries go out as a worker sends them, then by hand.
    hook_delivery.deliver_batch(list(Delivery.objects.values_list("pk", flat=True)))
    keep("test", api.post(f"/api/v4/projects/{project_id}/hooks/{hook_id}/test/pipeline_events"))
    event = api.get(f"/api/v4/projects/{project_id}/hooks/{hook_id}/events").json()[0]
    keep(
        "resend",
        api.post(f"/api/v4/projects/{project_id}/hooks/{hook_id}/events/{event['id']}/resend"),
    )
    keep(
        "edit hook",
        api.put(
            f"/api/v4/projects/{project_id}/hooks/{hook_id}",
            {"url": hook.json()["url"], "description": "edited"},  # sent back as read
            format="json",
        ),
    )
    definition = keep(
        "create definition",
        api.post(
            f"/api/v4/projects/{project_id}/pipeline_definitions",
            {"name": "Deploy"},
            format="json",
        ),
    ).json()
    # Tokens in the query string, the dialects' own way (Distelli documents ?apiToken=).
    query = f"?apiToken={secrets['api token']}"
    keep(
        "distelli build",
        APIClient().put(
            f"/distelli/root/apps/web/events/buildEvent{query}",
            {"build_status": "Running", "commit_id": sha, "branch": "main"},
            format="json",
        ),
    )
    keep("distelli list", APIClient().get(f"/distelli/root/apps/web/events{query}"))
    keep("unknown app", APIClient().get(f"/distelli/root/apps/nope/events{query}"))
    keep(
        "paged",
        APIClient().get(
            f"/api/v4/projects/{project_id}/pipelines?per_page=1"
            f"&private_token={secrets['api token']}"
        ),
    )
    keep(
        "forbidden",
        APIClient().get(f"/api/v4/projects/999/pipelines?access_token={secrets['api token']}"),
    )
    instance = keep(
        "sei instance",
        APIClient().post(
            "/sei/api/v1/cicd/instances",
            {"integration_id": project_id, "name": "Jenkins-1"},
            format="json",
            HTTP_AUTHORIZATION=f"ApiKey {secrets['api token']}",
        ),
    ).json()["id"]
    keep(
        "sei run",
        APIClient().post(
            "/sei/api/v1/custom-cicd",
            {
                "pipeline": "deploy",
                "job_full_name": "team/deploy",
                "qualified_name": "team/deploy",
                "instance_name": "Jenkins-1",
                "instance_guid": instance,
                "start_time": 1711603545000,
                "duration": 780000,
                "result": "SUCCESS",
            },
            format="json",
            HTTP_AUTHORIZATION=f"Bearer {secrets['api token']}",
        ),
    )
    keep(
        "graphql",
        APIClient().post(
            "/api/graphql",
            {
                "query": "mutation($s: StartExecutionInput!) { startExecution(input: $s)"
                " { execution { id status application { id name } } } }",
                "variables": {
                    "s": {
                        "applicationId": encode_id("Application", project_id),
                        "entityId": definition["graphql_id"],
                        "executionType": "PIPELINE",
                    }
                },
            },
            format="json",
            HTTP_X_API_KEY=secrets["api token"],
        ),
    )
    # Every GET the API describes, with this world's ids.
    path_values = {
        "project_id": str(project_id),
        "id": str(project_id),
        "hook_id": str(hook_id),
        "pipeline_id": str(Delivery.objects.first().event.pipeline_id),
        "definition_id": str(definition["id"]),
        "event_id": str(event["id"]),
        "sha": sha,
        "job_id": str(Job.objects.filter(pipeline__project_id=project_id).first().pk),
        "username": "root",
        "app_name": "web",
    }
    schema = keep("schema", api.get("/api/schema/", {"format": "json"}))
    keep("docs", api.get("/api/docs/"))
    described = json.loads(schema.content)["paths"]
    gets = [path for path, operations in described.items() if "get" in operations]
    assert len(gets) >= 10
    for path in gets:
        concrete = path
        for name, value in path_values.items():
            concrete = concrete.replace("{" + name + "}", value)
        assert "{" not in concrete, f"give {path}'s parameters a value in {__name__}"
        keep(f"GET {path}", api.get(concrete))
    return seen


def crawl_the_admin(client: Client, limit: int = 400) -> dict[str, str]:
    """Every admin page reachable by links from the index, without query strings."""
    pages: dict[str, str] = {}
    queue = deque(["/admin/"])
    while queue and len(pages) < limit:
        path = queue.popleft()
        if path in pages:
            continue
        response = client.get(path)
        assert response.status_code in (200, 302), (path, response.status_code)
        text = response.content.decode()
        pages[path] = text
        parser = Links()
        parser.feed(text)
        for href in parser.hrefs:
            target = urlsplit(urljoin(path, href))
            if target.netloc or not target.path.startswith("/admin/"):
                continue
            if target.path.endswith(("/logout/", "/delete/")):
                continue
            queue.append(target.path)
    return pages


def dump_every_table() -> dict[tuple[str, str], list[str]]:
    """Every column of every table, as text."""
    cells: dict[tuple[str, str], list[str]] = {}
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            columns = [
                column.name
                for column in connection.introspection.get_table_description(cursor, table)
            ]
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            for row in cursor.fetchall():
                for column, value in zip(columns, row, strict=True):
                    cells.setdefault((table, column), []).append(str(value))
    return cells


def test_no_secret_leaves_where_it_lives(secrets, receiver, caplog):
    caplog.set_level("DEBUG")
    responses = exercise_the_api(secrets)

    # The secrets are real: they went where they belong.
    delivered = receiver.requests
    assert len(delivered) >= 4
    for request in delivered:
        assert request.header("X-Gitlab-Token") == HOOK_TOKEN
        assert request.header("X-Deploy-Key") == HEADER_VALUE
        assert request.header("Authorization") == "Basic " + secrets["URL basic auth"]
        assert request.path == f"/hook?token={URL_TOKEN}&team=ops"
    hook = Hook.objects.get()
    assert hook.url == secrets["_hook_url"]  # kept through the edit that sent it back masked

    for what, text in responses:
        assert leaks(text, secrets) == [], what

    admin = Client()
    login = admin.post(
        "/admin/login/?next=/admin/",
        {"username": "root", "password": ADMIN_PASSWORD},
    )
    assert login.status_code == 302, login.content
    pages = crawl_the_admin(admin)
    for page in (
        f"/admin/hooks/hook/{hook.pk}/change/",
        f"/admin/hooks/delivery/{Delivery.objects.first().pk}/change/",
        f"/admin/hooks/deliveryattempt/{hook.attempts.first().pk}/change/",
        f"/admin/pipelines/accesstoken/{AccessToken.objects.get().pk}/change/",
        f"/admin/pipelines/project/{hook.project_id}/change/",
        f"/admin/pipelines/cicdinstance/{CicdInstance.objects.get().pk}/change/",
        "/admin/auth/user/",
    ):
        assert page in pages, f"the crawl did not reach {page}"
    for path, text in pages.items():
        assert leaks(text, secrets) == [], path

    assert caplog.records, "nothing was logged"
    assert leaks(caplog.text, secrets) == []

    for (table, column), values in dump_every_table().items():
        text = "\n".join(values)
        allowed = ()
        if (table, column) in HOOK_COLUMNS:
            allowed = tuple(name for name in secrets if name not in ("api token", "SECRET_KEY"))
            allowed = tuple(n for n in allowed if n != "admin password")
        assert leaks(text, secrets, allowed) == [], (table, column)
    # The hashes are not the secrets (and the table check found neither raw value).
    token = AccessToken.objects.get()
    assert token.token_hash == AccessToken.hash_token(secrets["api token"])
    assert hook.project.hooks.get().token == HOOK_TOKEN


def test_the_access_log_of_make_run_masks_query_tokens(embedded_env):  # noqa: F811
    """`manage.py serve` as `make run` starts it: the web server's real access log."""
    port = free_port()
    proc = start_serve(embedded_env, port, stderr=subprocess.STDOUT)
    output: list[str] = []
    try:
        token, output = read_first_start(proc)
        assert token, "".join(output)
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base)
        # The README tour's first step works with the first-start token...
        created = requests.post(
            f"{base}/api/v4/projects",
            json={"name": "Web", "path": "web"},
            headers={"PRIVATE-TOKEN": token},
            timeout=10,
        )
        assert created.status_code == 201, created.text
        # ...and tokens in query strings, as clients send them, are answered but not logged.
        for path in (
            f"/distelli/root/apps/web/events?apiToken={token}",
            f"/api/v4/projects?private_token={token}&per_page=1",
            f"/api/v4/projects/1/pipelines?access_token={token}",
        ):
            answer = requests.get(
                base + path, headers={"Referer": f"https://ops:{URL_PASSWORD}@x/"}, timeout=10
            )
            assert answer.status_code == 200, (path, answer.text)
        unknown = requests.get(f"{base}/api/v4/projects?job_token=glcbt-secret", timeout=10)
        assert unknown.status_code == 401
        proc.send_signal(signal.SIGINT)
        remaining, _ = proc.communicate(timeout=30)
        output.append(remaining)
    finally:
        for pid in child_pids(proc.pid):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
    log = "".join(output)
    access = [line for line in log.splitlines() if '"GET /' in line]
    assert len(access) >= 4, log
    # The one place the token is printed: the first-start line, shown once.
    assert [line for line in log.splitlines() if token in line] == [f"API token: {token}"]
    assert URL_PASSWORD not in log and "glcbt-secret" not in log
    assert any("apiToken=[FILTERED]" in line for line in access), access
    assert any("private_token=[FILTERED]&per_page=1" in line for line in access), access
