"""The path users run, measured: ``manage.py serve`` as ``make run`` starts it, driven only
through the public API by client processes, delivering to a receiver in its own process.

    .venv/bin/python bench/path_bench.py [--quick] [--write-docs]
        [--pg-url postgres://postgres@127.0.0.1:5432/NAME --redis-url redis://127.0.0.1:6379/N]

Each setup (the embedded defaults; with --pg-url and --redis-url also PostgreSQL + Redis, as
the README's production section runs it) is started fresh in a temporary folder and measured:

a. ingest: commit statuses (pending, running, success for each of a client's commits) on a
   project without hooks, by 1 and by 4 client processes; statuses/s and p50/p99 per request;
b. end to end: 100 pipelines x 10 hooks, pending -> running -> success through the commit
   status API by 4 clients; deliveries/s from the first API call until every delivery is
   logged as succeeded (each status change is one delivery per hook: created, pending,
   running, success); and the same again with the hooks' job events on as well (each commit
   status is a job, and each of its Job Hooks one more delivery per hook, in the same
   per-(hook, pipeline) stream), with each kind's count in the hooks' event logs against
   what the service's rules send, and the status posts' rate and p50/p99 during both runs;
c. latency: a new commit's status at 50 events/s to a project with one hook; p50/p99 from the
   API call's start to the request's arrival at the receiver;
d. baseline: one process posting the same number of bodies to the same receiver in a plain
   urllib3 keep-alive loop; the ratio of (b) to it;
e. CPU per delivery during each run of (b) of the web processes, the workers (and beat), the
   broker and the database server (psutil, whole process trees; the machine's PostgreSQL and
   Redis are shared with whatever else runs).

Prints Markdown (bench/path_report.py); --write-docs puts it into docs/benchmarks.md between
its markers. Timings belong here, never in the test suite.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil
import urllib3
from path_report import table, write_docs

ROOT = Path(__file__).resolve().parent.parent
SHA_IN_BODY = re.compile(rb'"sha":"([0-9a-f]{40})"')
# X-Gitlab-Event, and the hooks' event log's trigger, to one word per kind.
KINDS = {"Pipeline Hook": "pipeline", "Job Hook": "job"}
TRIGGERS = {"pipeline_hooks": "pipeline", "job_hooks": "job"}
# What a client posts for each of its commits, one job ("build") moved through them.
STATES = ("pending", "running", "success")
# Pipeline Hooks per commit and hook: created, then pending, running, success as the one job
# moves the pipeline with it.
PIPELINE_HOOKS_PER_COMMIT = 4
# The bench's own environment never picks a setup's database or broker.
CHILD_ENV_DROPPED = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "PIPEHOOK_TEST_DB")


# --- The receiver: its own process; answers 200 at once, counts, and times first arrivals --


def run_receiver(port_queue, arrivals_path: str) -> None:
    log = open(arrivals_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            now = time.time()
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            match = SHA_IN_BODY.search(body)
            kind = KINDS.get(self.headers.get("X-Gitlab-Event", ""), "-")
            log.write(f"{match.group(1).decode() if match else '-'} {kind} {now}\n")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    class Server(ThreadingHTTPServer):
        # socketserver listens with a backlog of 5: the service's workers open up to
        # HOOKS_SEND_CONCURRENCY connections each at once, and a burst past the backlog had
        # connections reset after a second, sent again by the retry schedule (5 s later) and
        # timed as the service's. nginx listens with 511; the kernel caps it at somaxconn.
        request_queue_size = 1024

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_queue.put(server.server_address[1])
    server.serve_forever()


def read_arrivals(path: Path) -> list[tuple[str, str, float]]:
    """(sha, kind, arrival time) of every request the receiver logged."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        fields = line.split(" ")
        if len(fields) == 3:
            rows.append((fields[0], fields[1], float(fields[2])))
    return rows


# --- Clients: separate processes, one keep-alive connection each ----------------------------


def post_statuses(base: str, token: str, project_id: int, shas: list[str], out) -> None:
    """STATES for each commit, one after the other; times every call."""
    http = urllib3.PoolManager(maxsize=1)
    headers = {"PRIVATE-TOKEN": token, "Content-Type": "application/json"}
    timings = []
    for sha in shas:
        for state in STATES:
            started = time.time()
            response = http.request(
                "POST",
                f"{base}/api/v4/projects/{project_id}/statuses/{sha}",
                body=json.dumps({"state": state, "name": "build", "ref": "main"}),
                headers=headers,
            )
            timings.append((started, time.time(), response.status))
    out.put(timings)


def paced_statuses(base: str, token: str, project_id: int, shas: list[str], rate: float, out):
    """One new commit's first status every 1/rate seconds; returns each call's start."""
    http = urllib3.PoolManager(maxsize=1)
    headers = {"PRIVATE-TOKEN": token, "Content-Type": "application/json"}
    starts = {}
    begin = time.monotonic()
    for number, sha in enumerate(shas):
        wait = begin + number / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        starts[sha] = time.time()
        http.request(
            "POST",
            f"{base}/api/v4/projects/{project_id}/statuses/{sha}",
            body=json.dumps({"state": "running", "name": "deploy", "ref": "main"}),
            headers=headers,
        )
    out.put(starts)


def run_clients(target, jobs: list[tuple]) -> list:
    out = multiprocessing.Queue()
    processes = [multiprocessing.Process(target=target, args=(*job, out)) for job in jobs]
    for process in processes:
        process.start()
    results = [out.get(timeout=600) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    return results


def new_shas(count: int) -> list[str]:
    return [uuid.uuid4().hex + uuid.uuid4().hex[:8] for _ in range(count)]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


# --- One setup: a fresh `manage.py serve` ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Setup:
    def __init__(self, name: str, args, pg_url: str | None, redis_url: str | None):
        self.name = name
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="pipehook-path-bench-"))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k not in CHILD_ENV_DROPPED}
        self.env.update(
            PIPEHOOK_VAR_DIR=str(self.tmp),
            HOOKS_ALLOWED_NETWORKS="127.0.0.0/8",
            LOG_LEVEL="WARNING",
            CELERY_TASK_DEFAULT_QUEUE=f"pipehook-bench-{uuid.uuid4().hex[:12]}",
        )
        self.pg_url = None
        if pg_url:
            parts = urlsplit(pg_url)
            self.pg_admin = urlunsplit(parts._replace(path="/postgres"))
            self.pg_name = f"{parts.path.lstrip('/')}_pathbench"
            self.pg_url = urlunsplit(parts._replace(path=f"/{self.pg_name}"))
            self.env["DATABASE_URL"] = self.pg_url
        if redis_url:
            self.env["REDIS_URL"] = redis_url
        self.serve: subprocess.Popen | None = None

    def _pg(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.pg_admin, autocommit=True) as conn:
            conn.execute(statement)

    def start(self) -> str:
        if self.pg_url:
            self._pg(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')
            self._pg(f'CREATE DATABASE "{self.pg_name}"')
        python = str(ROOT / ".venv" / "bin" / "python")
        python = python if Path(python).exists() else sys.executable
        subprocess.run(
            [python, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=self.env, check=True
        )
        self.serve = subprocess.Popen(
            [python, "manage.py", "serve", "--bind", f"127.0.0.1:{self.port}"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        token = None
        deadline = time.monotonic() + 120
        while token is None and time.monotonic() < deadline:
            line = self.serve.stdout.readline()
            if line.startswith("API token: "):
                token = line.split(": ", 1)[1].strip()
        assert token, "serve printed no token"
        http = urllib3.PoolManager()
        while time.monotonic() < deadline:
            try:
                if http.request("GET", f"{self.base}/healthz", retries=False).status == 200:
                    break
            except urllib3.exceptions.HTTPError:
                time.sleep(0.2)
        time.sleep(3)  # workers and beat connect to the broker
        return token

    def stop(self) -> None:
        if self.serve and self.serve.poll() is None:
            self.serve.send_signal(signal.SIGINT)
            try:
                self.serve.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.serve.kill()
        if self.pg_url:
            self._pg(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')

    def process_groups(self) -> dict[str, list[psutil.Process]]:
        groups: dict[str, list[psutil.Process]] = {
            "web": [],
            "workers": [],
            "broker": [],
            "database": [],
        }
        for child in psutil.Process(self.serve.pid).children(recursive=True):
            line = " ".join(child.cmdline())
            if "config.webserver" in line:
                groups["web"].append(child)
            elif "celery" in line:
                groups["workers"].append(child)
            elif "redis-server" in line:
                groups["broker"].append(child)
        if "REDIS_URL" in self.env:
            groups["broker"] += [p for p in psutil.process_iter() if p.name() == "redis-server"]
        if self.pg_url:
            groups["database"] += [p for p in psutil.process_iter() if p.name() == "postgres"]
        return groups


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


class Api:
    def __init__(self, base: str, token: str):
        self.base = base
        self.http = urllib3.PoolManager(headers={"PRIVATE-TOKEN": token})
        self.headers = {"PRIVATE-TOKEN": token, "Content-Type": "application/json"}

    def post(self, path: str, body: dict) -> dict:
        response = self.http.request(
            "POST",
            f"{self.base}/api/v4{path}",
            body=json.dumps(body),
            headers=self.headers,
        )
        assert response.status in (200, 201), (path, response.status, response.data[:300])
        return json.loads(response.data)

    def get(self, path: str):
        return json.loads(self.http.request("GET", f"{self.base}/api/v4{path}").data)


def wait_for_arrivals(path: Path, count: int, timeout: float) -> list[tuple[str, str, float]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        arrivals = read_arrivals(path)
        if len(arrivals) >= count:
            return arrivals
        time.sleep(0.02)
    return read_arrivals(path)


@functools.cache
def job_hooks_per_commit() -> int:
    """The Job Hooks one commit's STATES send to each hook with job events on, by the rule
    the service applies (``hooks.receivers.sends_job_hook``): the first status creates the
    job in that status (previous None), each later one moves the same job, since it is still
    pending or running. Loaded in this process on settings over a scratch folder; no database
    is touched."""
    saved = dict(os.environ)
    try:
        for name in CHILD_ENV_DROPPED:
            os.environ.pop(name, None)
        os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
        os.environ["PIPEHOOK_VAR_DIR"] = tempfile.mkdtemp(prefix="pipehook-path-bench-rules-")
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    from hooks.receivers import sends_job_hook
    from pipelines.models import Job

    sent, previous = 0, None
    for state in STATES:
        sent += sends_job_hook(Job(status=state), previous)
        previous = state
    return sent


def fan_out(
    setup: Setup, api: Api, token: str, hook_url: str, arrivals: Path, pipelines: int, jobs: bool
) -> dict:
    """(b) on a project of its own with 10 hooks: pipeline events, and job events too when
    ``jobs``. Timed from the first status post until the hooks' event logs show every
    delivery of the run succeeded."""
    name = "Fan-out with jobs" if jobs else "Fan-out"
    project = api.post("/projects", {"name": name, "path": name.lower().replace(" ", "-")})["id"]
    for number in range(10):
        api.post(
            f"/projects/{project}/hooks",
            {"url": f"{hook_url}/{number}", "pipeline_events": True, "job_events": jobs},
        )
    hooks = [hook["id"] for hook in api.get(f"/projects/{project}/hooks")]
    per_commit = {
        "pipeline": PIPELINE_HOOKS_PER_COMMIT,
        "job": job_hooks_per_commit() if jobs else 0,
    }
    expected_by_kind = {kind: pipelines * n * len(hooks) for kind, n in per_commit.items()}
    expected = sum(expected_by_kind.values())
    warm = new_shas(2)
    arrivals.write_text("")
    run_clients(post_statuses, [(setup.base, token, project, warm)])
    wait_for_arrivals(arrivals, len(warm) * sum(per_commit.values()) * len(hooks), 60)
    arrivals.write_text("")
    # The warm-up's deliveries are in the log too: wait for this run's on top of them.
    logged_before = logged_count(api, project, hooks)
    groups = setup.process_groups()
    cpu_before = {name: cpu_seconds(procs) for name, procs in groups.items()}
    started = time.time()
    shas = new_shas(pipelines)
    timings = [
        t
        for result in run_clients(
            post_statuses, [(setup.base, token, project, shas[n::4]) for n in range(4)]
        )
        for t in result
    ]
    posted = time.time()
    got = wait_for_arrivals(arrivals, expected, 300)
    last_arrival = max((at for *_, at in got), default=time.time())
    logged_at = wait_until_logged(api, project, hooks, logged_before + expected)
    ended = max(last_arrival, logged_at or last_arrival)
    cpu = {name: cpu_seconds(procs) - cpu_before[name] for name, procs in groups.items()}
    run = set(shas)
    arrived = {kind: 0 for kind in per_commit}
    for sha, kind, _ in got:
        if sha in run and kind in arrived:
            arrived[kind] += 1
    delivered = sum(arrived.values())
    durations = [(end - start) * 1000 for start, end, _ in timings]
    return {
        "deliveries": delivered,
        "expected": expected,
        "per_second": delivered / (ended - started),
        "seconds": ended - started,
        "logged": logged_at is not None,
        "states": list(STATES),
        "per_commit": per_commit,
        "expected_by_kind": expected_by_kind,
        "arrived_by_kind": arrived,
        "logged_by_kind": logged_by_kind(api, project, hooks, run),
        "statuses": {
            "posted": len(timings),
            "failed": sum(1 for *_, status in timings if status != 201),
            "per_second": len(timings) / (posted - started),
            "p50": percentile(durations, 0.5),
            "p99": percentile(durations, 0.99),
            "web_cpu_ms": cpu["web"] * 1000 / max(1, len(timings)),
        },
        "cpu_ms": {name: seconds * 1000 / max(1, delivered) for name, seconds in cpu.items()},
    }


def measure(setup: Setup, receiver_port: int, arrivals: Path, quick: bool) -> dict:
    token = setup.start()
    api = Api(setup.base, token)
    hook_url = f"http://127.0.0.1:{receiver_port}/hook"
    results: dict = {"setup": setup.name}
    try:
        # (a) ingest, no hooks
        bare = api.post("/projects", {"name": "Ingest", "path": "ingest"})["id"]
        per_client = 20 if quick else 100  # commits, three statuses each
        warm = new_shas(5)
        run_clients(post_statuses, [(setup.base, token, bare, warm)])
        for clients in (1, 4):
            jobs = [(setup.base, token, bare, new_shas(per_client)) for _ in range(clients)]
            started = time.time()
            timings = [t for result in run_clients(post_statuses, jobs) for t in result]
            elapsed = time.time() - started
            failed = sum(1 for *_, status in timings if status != 201)
            codes = sorted({status for *_, status in timings})
            durations = [(end - start) * 1000 for start, end, _ in timings]
            results[f"ingest_{clients}"] = {
                "statuses": len(timings),
                "failed": failed,
                "codes": codes,
                "per_second": len(timings) / elapsed,
                "p50": percentile(durations, 0.5),
                "p99": percentile(durations, 0.99),
            }

        # (b) end to end: 100 pipelines x 10 hooks, 4 clients; pipeline events, then both kinds
        pipelines = 20 if quick else 100
        results["e2e"] = fan_out(setup, api, token, hook_url, arrivals, pipelines, jobs=False)
        results["e2e_jobs"] = fan_out(setup, api, token, hook_url, arrivals, pipelines, jobs=True)

        # (c) latency at 50 events/s, one hook
        paced = api.post("/projects", {"name": "Latency", "path": "latency"})["id"]
        api.post(f"/projects/{paced}/hooks", {"url": hook_url, "pipeline_events": True})
        run_clients(paced_statuses, [(setup.base, token, paced, new_shas(10), 50.0)])
        time.sleep(1)
        arrivals.write_text("")
        events = 100 if quick else 500
        starts = run_clients(paced_statuses, [(setup.base, token, paced, new_shas(events), 50.0)])
        starts = starts[0]
        got = wait_for_arrivals(arrivals, 2 * events, 60)
        first: dict[str, float] = {}
        for sha, _, at in got:
            first.setdefault(sha, at)
        latencies = [(first[sha] - start) * 1000 for sha, start in starts.items() if sha in first]
        results["latency"] = {
            "events": events,
            "delivered": len(latencies),
            "p50": percentile(latencies, 0.5) if latencies else float("nan"),
            "p99": percentile(latencies, 0.99) if latencies else float("nan"),
        }
    finally:
        setup.stop()
    return results


def hook_events(api: Api, project_id: int, hook: int, query: str):
    return api.http.request(
        "GET", f"{api.base}/api/v4/projects/{project_id}/hooks/{hook}/events?{query}"
    )


def logged_count(api: Api, project_id: int, hooks: list[int]) -> int:
    """Deliveries of the hooks logged as succeeded (X-Total of the hooks' event logs)."""
    return sum(
        int(hook_events(api, project_id, hook, "per_page=1&status=200").headers.get("X-Total", 0))
        for hook in hooks
    )


def wait_until_logged(api: Api, project_id: int, hooks: list[int], total: int) -> float | None:
    """When the hooks' event logs hold ``total`` succeeded deliveries, by the time the last
    one was seen."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if logged_count(api, project_id, hooks) >= total:
            return time.time()
        time.sleep(0.05)
    return None


def logged_by_kind(api: Api, project_id: int, hooks: list[int], shas: set[str]) -> dict:
    """Each kind's succeeded entries in the hooks' event logs for the commits ``shas``, read
    page by page (GitLab's 20 a page) after the timed part: the log's own ``trigger``."""
    counts = {kind: 0 for kind in TRIGGERS.values()}
    for hook in hooks:
        page = "1"
        while page:
            response = hook_events(api, project_id, hook, f"per_page=20&status=200&page={page}")
            for entry in json.loads(response.data):
                body = entry.get("request_data") or {}
                sha = body.get("sha") or body.get("object_attributes", {}).get("sha")
                kind = TRIGGERS.get(entry.get("trigger"))
                if sha in shas and kind:
                    counts[kind] += 1
            page = response.headers.get("X-Next-Page", "")
    return counts


def baseline(receiver_port: int, count: int) -> float:
    """A plain keep-alive loop posting pipeline-sized bodies to the receiver."""
    body = json.dumps({"object_kind": "pipeline", "sha": "0" * 40, "pad": "x" * 2500})
    http = urllib3.PoolManager(maxsize=1)
    url = f"http://127.0.0.1:{receiver_port}/baseline"
    started = time.time()
    for _ in range(count):
        http.request("POST", url, body=body, headers={"Content-Type": "application/json"})
    return count / (time.time() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small runs, to try the harness")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--pg-url", help="also run on PostgreSQL (a database NAME_pathbench)")
    parser.add_argument("--redis-url", help="the Redis for the PostgreSQL run")
    parser.add_argument("--only-pg", action="store_true", help="skip the embedded defaults")
    args = parser.parse_args()
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    tmp = Path(tempfile.mkdtemp(prefix="pipehook-receiver-"))
    arrivals = tmp / "arrivals.log"
    ports = multiprocessing.Queue()
    receiver = multiprocessing.Process(target=run_receiver, args=(ports, str(arrivals)))
    receiver.start()
    port = ports.get(timeout=10)
    results = []
    try:
        setups = [] if args.only_pg else [Setup("SQLite + embedded Redis", args, None, None)]
        if args.pg_url and args.redis_url:
            setups.append(Setup("PostgreSQL + Redis", args, args.pg_url, args.redis_url))
        for setup in setups:
            arrivals.write_text("")
            results.append(measure(setup, port, arrivals, args.quick))
        loop_rate = baseline(port, 1000 if args.quick else 4000)
    finally:
        receiver.terminate()
        receiver.join(timeout=10)
    load_after = " ".join(f"{v:.2f}" for v in os.getloadavg())
    text = table(results, loop_rate, (load_before, load_after))
    print(text)
    print(json.dumps(results, indent=1), file=sys.stderr)
    if args.write_docs:
        write_docs(text)


if __name__ == "__main__":
    main()
