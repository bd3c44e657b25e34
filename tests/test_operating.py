"""Operating `make run`: a Prometheus scrape of the running processes, the quiet console and
its minute lines, the first-start credentials where the banner says, JSON logs.

Each test starts `manage.py serve` as `make run` does, on the embedded defaults, and talks to
it over HTTP only; the deliveries go to a real receiver on 127.0.0.1 (or to a closed port).
"""

import contextlib
import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.test_serve import (  # noqa: F401 (embedded_env is a fixture)
    ROOT,
    child_pids,
    embedded_env,
    free_port,
    kill_leftovers,
    wait_for,
)

pytestmark = pytest.mark.e2e

METRICS_TOKEN = "scrape-token-for-the-test-0123456789"
SHA = "8e2f7c1d9a4b3e6f5a7c8d9e0f1a2b3c4d5e6f70"


class Serve:
    """`manage.py serve` running, its stdout and stderr in one file read as it grows."""

    def __init__(self, env: dict, tmp_path: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.output = tmp_path / "serve.out"
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{self.port}"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.children: set[int] = set()

    def lines(self) -> list[str]:
        return self.output.read_text(errors="replace").splitlines()

    def banner_index(self) -> int | None:
        lines = self.lines()
        return next((i for i, line in enumerate(lines) if "Pipehook is running at" in line), None)

    def wait_for_banner(self) -> None:
        wait_for(lambda: self.banner_index() is not None, "the banner", timeout=90)
        self.children = child_pids(self.process.pid)

    def api_token(self) -> str:
        return next(line for line in self.lines() if line.startswith("API token: ")).split()[-1]

    def scrape(self) -> dict[tuple, float]:
        answer = requests.get(
            f"{self.base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer.text)
            for sample in family.samples
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)
        kill_leftovers(self.process, self.children)


@pytest.fixture
def serve(embedded_env, tmp_path):  # noqa: F811
    started: list[Serve] = []

    def start(**settings: str) -> Serve:
        env = {**embedded_env, "PIPEHOOK_METRICS_TOKEN": METRICS_TOKEN, **settings}
        started.append(Serve(env, tmp_path))
        started[-1].wait_for_banner()
        return started[-1]

    yield start
    for running in started:
        running.stop()


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape_until(app: Serve, condition, what: str) -> dict:
    return wait_for(lambda: s if condition(s := app.scrape()) else None, what, timeout=30)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_scrape_shows_deliveries_counted_and_the_backlog_of_a_receiver_that_is_down(
    serve, receiver
):
    app = serve(HOOKS_ALLOWED_NETWORKS="127.0.0.0/8", PIPEHOOK_SUMMARY_INTERVAL_SECONDS="3")
    api = f"{app.base}/api/v4"
    headers = {"PRIVATE-TOKEN": app.api_token()}
    assert requests.get(f"{app.base}/metrics", timeout=10).status_code == 401
    before = app.scrape()

    def new_project_with_hook(path: str, url: str) -> tuple[int, str]:
        project = requests.post(
            f"{api}/projects", json={"name": path, "path": path}, headers=headers, timeout=10
        )
        assert project.status_code == 201, project.text
        project_id = project.json()["id"]
        hook = requests.post(
            f"{api}/projects/{project_id}/hooks",
            json={"url": url, "pipeline_events": True},
            headers=headers,
            timeout=10,
        )
        assert hook.status_code == 201, hook.text
        return project_id, str(hook.json()["id"])

    def report(project_id: int, state: str) -> None:
        answer = requests.post(
            f"{api}/projects/{project_id}/statuses/{SHA}",
            data={"state": state, "name": "build", "ref": "main"},
            headers=headers,
            timeout=10,
        )
        assert answer.status_code in (200, 201), answer.text

    # A receiver that answers: every change of the pipeline arrives, and is counted.
    up_project, up_hook = new_project_with_hook("up", receiver.url)
    report(up_project, "running")
    report(up_project, "success")
    wait_for(lambda: len(receiver.requests) >= 3, "the deliveries", timeout=60)
    arrived = len(receiver.requests)
    after = scrape_until(
        app,
        lambda s: (
            value(s, "pipehook_deliveries_total", outcome="succeeded", hook=up_hook) == arrived
        ),
        "the successes counted",
    )
    assert value(after, "pipehook_events_total", kind="pipeline") >= arrived
    assert value(after, "pipehook_delivery_attempt_duration_seconds_count") >= arrived
    assert value(after, "pipehook_event_to_receiver_seconds_count") >= arrived
    created = value(after, "pipehook_http_requests_total", dialect="gitlab", status="201")
    assert (
        created - value(before, "pipehook_http_requests_total", dialect="gitlab", status="201") >= 4
    )
    assert value(after, "pipehook_deliveries_due") == 0
    assert value(after, "pipehook_hooks", state="active") == 1

    # A receiver that is down: the first change fails and waits for its retry, the next ones
    # wait behind it, due: the backlog rises and ages.
    down_project, down_hook = new_project_with_hook("down", f"http://127.0.0.1:{closed_port()}/")
    report(down_project, "running")
    report(down_project, "success")
    # The gauge is read from the database at the scrape, the counter once the worker has
    # recorded the failure: the later changes can be due before the first one has failed.
    backlog = scrape_until(
        app,
        lambda s: (
            value(s, "pipehook_deliveries_due") >= 2
            and value(s, "pipehook_deliveries_total", outcome="failed_attempt", hook=down_hook) >= 1
        ),
        "the backlog and the failure counted",
    )
    assert value(backlog, "pipehook_deliveries_pending") >= 3
    time.sleep(1.5)
    older = app.scrape()
    assert value(older, "pipehook_deliveries_oldest_due_age_seconds") >= 1
    assert value(older, "pipehook_hooks", state="active") == 2

    # The console: the minute lines (every 3 s here) tell of it; no line per request or task.
    wait_for(
        lambda: any(re.search(r"[1-9]\d* deliveries sent", line) for line in app.lines()),
        "a summary line with the deliveries",
        timeout=20,
    )
    wait_for(
        lambda: any(
            re.search(r"failed; [1-9]\d* due, the oldest for", line) for line in app.lines()
        ),
        "a summary line with the backlog",
        timeout=20,
    )
    output = "\n".join(app.lines())
    assert not re.search(r'"(GET|POST) /', output)  # the access log: LOG_LEVEL=DEBUG only
    assert "received" not in output and "succeeded in" not in output
    assert "Sending due task" not in output


def test_make_run_idle_prints_a_line_a_minute_and_the_credentials_are_where_it_says(serve):
    app = serve()
    banner_at = app.banner_index()
    lines = app.lines()
    # Printed at the end of start-up, above the banner, once.
    password = next(line for line in lines if "user root  password" in line).split()[-1]
    token = app.api_token()
    assert [line for line in lines if token in line] == [f"API token: {token}"]
    kept = next(line for line in lines[banner_at:] if "First-start credentials:" in line)
    path = Path(kept.split(": ", 1)[1].strip())
    assert path.stat().st_mode & 0o777 == 0o600
    assert password in path.read_text() and token in path.read_text()

    # Start-up stragglers (the worker's own start) come within seconds; then a minute idle.
    time.sleep(10)
    settled = len(app.lines())
    time.sleep(62)
    idle = app.lines()[settled:]
    assert len(idle) <= 2, idle
    assert [
        line
        for line in idle
        if "last minute: 0 events, 0 deliveries sent, 0 failed; nothing due" in line
    ], idle
    assert len(app.lines()) - banner_at <= 20, app.lines()[banner_at:]


def test_json_logs_by_setting(embedded_env):  # noqa: F811
    script = (
        "import logging; "
        "logging.getLogger('hooks.delivery').warning('sent to %s', 'https://x/?token=s3cret')"
    )
    written = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env={**embedded_env, "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    record = json.loads(written.stderr.strip().splitlines()[-1])
    assert record["level"] == "WARNING" and record["logger"] == "hooks.delivery"
    assert record["message"].startswith("sent to https://x/?token=")
    assert "s3cret" not in written.stderr
    assert {"time", "process"} <= set(record)


def test_an_unknown_log_format_stops_the_start(embedded_env):  # noqa: F811
    refused = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**embedded_env, "LOG_FORMAT": "xml"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode != 0
    assert "LOG_FORMAT: 'plain' or 'json', not 'xml'" in refused.stderr


def test_a_burst_of_clients_logs_no_line_per_waiting_request():
    """Waitress's "Task queue depth is N" (a request waiting a moment for a thread) is a
    warning it gives under any burst: kept off the console unless LOG_LEVEL=DEBUG."""
    import logging

    queue = logging.getLogger("waitress.queue")
    assert not queue.isEnabledFor(logging.WARNING)
    assert queue.isEnabledFor(logging.ERROR)
